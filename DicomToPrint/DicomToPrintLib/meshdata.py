"""The ground floor of the mesh code: triangle meshes as arrays, and what their topology and geometry are.

A vtkPolyData and numpy arrays of points (P, 3) and triangles (N, 3) back and forth; per triangle volume, area and
normal; edges and how many triangles use each; the fans of triangles around each vertex; connected shells and
how they nest; triangles that cross each other; the distance from a mesh to another. Repair (:mod:`.mesh`), the
surface (:mod:`.surface`), export (:mod:`.export`) and validation (:mod:`.validate`) build on this module; it
builds on nothing of the library but :mod:`.runtime`.
"""

from __future__ import annotations

import numpy as np
import vtk
from vtk.util import numpy_support

from .helperworker import closestSquaredDistances
from .runtime import checkpoint, threadMap, update


def trianglesArray(polyData) -> np.ndarray:
    """(N, 3) point indices of the triangles; raises ValueError if the mesh has other polygons."""
    polys = polyData.GetPolys()
    if polys.GetNumberOfCells() == 0:
        return np.zeros((0, 3), np.int64)
    offsets = numpy_support.vtk_to_numpy(polys.GetOffsetsArray())
    if not np.all(np.diff(offsets) == 3):
        raise ValueError("The mesh has polygons that are not triangles")
    return numpy_support.vtk_to_numpy(polys.GetConnectivityArray()).reshape(-1, 3).astype(np.int64)


def pointsArray(polyData) -> np.ndarray:
    if polyData.GetNumberOfPoints() == 0:
        return np.zeros((0, 3))
    return numpy_support.vtk_to_numpy(polyData.GetPoints().GetData()).astype(np.float64)


def polyDataFromArrays(points: np.ndarray, triangles: np.ndarray) -> vtk.vtkPolyData:
    """A triangle mesh from (P, 3) points and (N, 3) point indices."""
    polyData = vtk.vtkPolyData()
    vtkPoints = vtk.vtkPoints()
    vtkPoints.SetData(numpy_support.numpy_to_vtk(np.ascontiguousarray(points, np.float64), deep=True))
    polyData.SetPoints(vtkPoints)
    cells = vtk.vtkCellArray()
    offsets = np.arange(0, 3 * len(triangles) + 1, 3, dtype=np.int64)
    cells.SetData(numpy_support.numpy_to_vtkIdTypeArray(offsets, deep=True),
                  numpy_support.numpy_to_vtkIdTypeArray(np.ascontiguousarray(triangles, np.int64).ravel(), deep=True))
    polyData.SetPolys(cells)
    return polyData


#: Triangles at a time in the per-triangle measures: their corners' copies stay a few MB, not several arrays the
#: size of the mesh (a 1.6 M triangle surface: 39 MB each); every triangle's number is its own, so the same.
_TRIANGLE_CHUNK = 1 << 17


def _perTriangle(points: np.ndarray, triangles: np.ndarray, measure, columns: tuple = ()) -> np.ndarray:
    """``measure(a, b, c)`` of each triangle's corners, computed a chunk of triangles at a time."""
    result = np.empty((len(triangles), *columns))
    for start in range(0, len(triangles), _TRIANGLE_CHUNK):
        checkpoint()
        # np.take on contiguous indices: the same rows as points[part[:, k]], several times faster
        corners = triangles[start:start + _TRIANGLE_CHUNK].T.copy()
        result[start:start + _TRIANGLE_CHUNK] = measure(*(np.take(points, index, axis=0) for index in corners))
    return result


def _crossInto(u, v, out: np.ndarray) -> None:
    """The cross product of u and v (each three columns: the x, y and z of N vectors) into ``out`` (N, 3), with
    np.cross's products and differences in its order: its numbers."""
    np.subtract(u[1] * v[2], u[2] * v[1], out=out[:, 0])
    np.subtract(u[2] * v[0], u[0] * v[2], out=out[:, 1])
    np.subtract(u[0] * v[1], u[1] * v[0], out=out[:, 2])


def cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Row-wise cross product of two (N, 3) arrays: np.cross's numbers, at a sixth of its time on a million rows
    (np.cross makes a temporary array per term)."""
    result = np.empty(np.broadcast_shapes(u.shape, v.shape))
    _crossInto(u.T, v.T, result)
    return result


def faceNormals(points: np.ndarray, triangles: np.ndarray, byAxis: bool = False) -> np.ndarray:
    """(N, 3) normal of each triangle by its winding, as long as twice its area.

    On each coordinate's own contiguous array (the refinement's normals of 1.6 M triangles: a quarter of the time
    of rows of three), with :func:`cross`'s numbers.

    :param byAxis: return them as (3, N): each axis's values contiguous (written so, not copied after).
    """
    coordinates = [np.ascontiguousarray(points[:, k], np.float64) for k in range(3)]
    byAxisResult = np.empty((3, len(triangles)))
    result = byAxisResult.T if byAxis else np.empty((len(triangles), 3))
    for start in range(0, len(triangles), _TRIANGLE_CHUNK):
        checkpoint()
        part = triangles[start:start + _TRIANGLE_CHUNK]
        a, b, c = ([np.take(x, index) for x in coordinates] for index in part.T.copy())  # (indices contiguous)
        _crossInto([b[k] - a[k] for k in range(3)], [c[k] - a[k] for k in range(3)],
                   result[start:start + _TRIANGLE_CHUNK])
    return byAxisResult if byAxis else result


def triangleVolumes(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Signed volume of the tetrahedron from the origin to each triangle (they sum to the enclosed volume)."""
    return _perTriangle(points, triangles, lambda a, b, c: np.einsum("ij,ij->i", a, cross(b, c)) / 6.0)


def signedVolume(polyData) -> float:
    """Enclosed volume in mm^3 by the divergence theorem: positive when triangles face outward."""
    triangles = trianglesArray(polyData)
    if len(triangles) == 0:
        return 0.0
    return float(triangleVolumes(pointsArray(polyData), triangles).sum())


def triangleAreas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    return _perTriangle(points, triangles, lambda a, b, c: 0.5 * np.linalg.norm(cross(b - a, c - a), axis=1))


def pointNormals(polyData) -> np.ndarray:
    """Per-point unit normals from the triangles' winding (area-weighted), outward on an oriented mesh.

    Computed here rather than read from the mesh: normals carried in its point data may be stale.
    """
    triangles, points = trianglesArray(polyData), pointsArray(polyData)
    weights = faceNormals(points, triangles, byAxis=True)  # length: twice the area; (3, N)
    checkpoint()
    # each vertex's sum over every triangle's first corners, then second, then third, in that order: a bincount of
    # the first corners continued by np.add.at (which adds in order) over the others, the same sums as one
    # bincount of all corners without the transposed copy of the corners and a tiled copy of the weights per axis
    corners = [np.ascontiguousarray(triangles[:, k]) for k in range(3)]
    del triangles
    totals = []
    for weight in weights:
        total = np.bincount(corners[0], weights=weight, minlength=len(points))
        np.add.at(total, corners[1], weight)
        np.add.at(total, corners[2], weight)
        totals.append(total)
        checkpoint()
    del weights, corners
    # each normal's length as np.linalg.norm sums the squares of a row (x^2 + y^2, then + z^2): its numbers
    length = totals[0] * totals[0]
    length += totals[1] * totals[1]
    length += totals[2] * totals[2]
    np.sqrt(length, out=length)
    np.maximum(length, 1e-300, out=length)
    normals = np.empty((len(points), 3))
    for axis, total in enumerate(totals):
        np.divide(total, length, out=normals[:, axis])
    return normals


#: How integer keys of a mesh are sorted: numpy's stable sort (a merge of runs) finds the runs a mesh's keys come
#: in (triangles and points are numbered as the surface was swept, and decimation keeps much of that order) and is
#: 2-4x faster on them than its default introsort (a 1.6 M triangle surface's 4.9 M edge keys: 0.12 s against
#: 0.33 s; its decimation to 300,000 triangles: 0.03 s against 0.05 s). Sorted integers are the same either way.
SORT_KIND = "stable"


def stableArgsort(keys: np.ndarray) -> np.ndarray:
    """np.argsort(keys, kind="stable") for non-negative integer keys, by sorting the keys with each one's index
    in the low bits: numpy sorts plain integers many times faster than it argsorts them (a 1.6 M triangle
    surface's 4.9 M edge keys: 0.05 s against 0.6 s). Keys too large to share 64 bits with the index take
    numpy's argsort."""
    n = len(keys)
    indexBits = max(int(n - 1).bit_length(), 1)
    if n == 0 or int(keys.min()) < 0 or int(keys.max()) >= 1 << (64 - indexBits):
        return np.argsort(keys, kind="stable")
    packed = keys.astype(np.uint64)
    packed <<= np.uint64(indexBits)
    packed |= np.arange(n, dtype=np.uint64)
    packed.sort(kind=SORT_KIND)
    packed &= np.uint64((1 << indexBits) - 1)
    return packed.astype(np.intp)


def sideKeys(triangles: np.ndarray, directed: bool = False) -> np.ndarray:
    """One integer per triangle side (side k of all triangles first): the edge's two point indices combined,
    smaller first unless ``directed``. Sorting integers is many times faster than sorting rows."""
    base = int(triangles.max()) + 1 if len(triangles) else 1
    start = np.empty(3 * len(triangles), np.int64)  # filled in place: two side-sized arrays at most
    end = np.empty(3 * len(triangles), np.int64)
    for k in range(3):
        checkpoint()
        start[k * len(triangles):(k + 1) * len(triangles)] = triangles[:, k]
        end[k * len(triangles):(k + 1) * len(triangles)] = triangles[:, (k + 1) % 3]
    checkpoint()
    if not directed:
        smaller = np.minimum(start, end)
        np.maximum(start, end, out=end)
        start = smaller
    start *= base
    start += end
    return start


def everyEdgeSharedByTwo(triangles: np.ndarray) -> bool:
    """Whether each edge is used by exactly two triangles (closed, no non-manifold edge), by sorting the edge
    keys in place: what :func:`edgeUse` finds for a closed mesh, with a third of its memory and time."""
    if len(triangles) == 0:
        return False
    keys = sideKeys(triangles)
    checkpoint()
    keys.sort(kind=SORT_KIND)
    checkpoint()
    first, second = keys[0::2], keys[1::2]  # sorted: each key twice, and no key in two pairs
    return len(keys) % 2 == 0 and bool(np.array_equal(first, second)) and not np.any(second[:-1] == first[1:])


def sortedSides(triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The triangle sides' edge keys (:func:`sideKeys`) sorted, and their order (:func:`stableArgsort`): what
    :func:`edgeUse` and the corner fans are found from, made once where a check needs both."""
    keys = sideKeys(triangles)
    checkpoint()
    order = stableArgsort(keys)
    checkpoint()
    return keys[order], order


def edgeUse(triangles: np.ndarray, sides: tuple | None = None) -> np.ndarray:
    """For each triangle side (3 per triangle, side k of all triangles first), how many triangles use that edge:
    2 on a closed manifold mesh, 1 on a boundary, more where sheets meet.

    :param sides: :func:`sortedSides` of ``triangles``, if made already."""
    if len(triangles) == 0:
        return np.zeros(0, np.int64)
    sortedKeys, order = sides or sortedSides(triangles)
    starts = np.flatnonzero(np.concatenate([[True], sortedKeys[1:] != sortedKeys[:-1]]))
    counts = np.diff(np.concatenate([starts, [len(order)]]))
    use = np.empty(len(order), np.int64)
    use[order] = np.repeat(counts, counts)
    return use


def edgeCounts(triangles: np.ndarray, sides: tuple | None = None) -> tuple[int, int, int]:
    """(edges, boundary edges, non-manifold edges): how many triangles share each undirected edge.

    :param sides: :func:`sortedSides` of ``triangles``, if made already."""
    if len(triangles) == 0:
        return 0, 0, 0
    use = edgeUse(triangles, sides)
    # each edge appears `use` times among the sides: weight by 1/use to count edges
    return (int(round((1.0 / use).sum())), int(np.count_nonzero(use == 1)),
            int(round((1.0 / use[use > 2]).sum())))


def windingConsistent(triangles: np.ndarray) -> bool:
    """Each edge traversed once in each direction by the triangles that share it (a consistently wound mesh)."""
    if len(triangles) == 0:
        return True
    keys = np.sort(sideKeys(triangles, directed=True), kind=SORT_KIND)
    return not bool(np.any(keys[1:] == keys[:-1]))


def _cornerFans(triangles: np.ndarray, pointCount: int, sides: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Group each vertex's triangle corners into fans: the corners met by walking around the vertex from
    triangle to triangle across shared edges. Needs manifold edges and consistent winding.

    :param sides: :func:`sortedSides` of ``triangles``, if made already.
    :return: (fan label per corner, in triangle-major order (3 per triangle); fans per vertex).
    """
    n = len(triangles)
    # side k of all triangles first; side k runs from corner k to corner k+1
    sortedKeys, order = sides or sortedSides(triangles)
    same = sortedKeys[1:] == sortedKeys[:-1]
    first, second = order[:-1][same], order[1:][same]  # the two uses of each edge
    twin = np.arange(3 * n)
    twin[first], twin[second] = second, first
    side = np.arange(3 * n)
    k, t = np.divmod(side, n)
    twinK, twinT = np.divmod(twin, n)
    # Walking around the vertex at the start of side (k, t): across that side into the twin triangle, whose
    # corner at the same vertex is at the twin side's end (consistent winding runs the twin side backwards).
    nextCorner = twinT * 3 + (twinK + 1) % 3
    corner = t * 3 + k
    step = np.empty(3 * n, np.int64)
    step[corner] = nextCorner
    label = np.arange(3 * n)
    valence = int(np.bincount(triangles.ravel(), minlength=pointCount).max()) if n else 1
    for _ in range(int(np.ceil(np.log2(valence + 1))) + 1):  # pointer doubling: minimum over each cycle
        label = np.minimum(label, label[step])
        step = step[step]
    # each fan's label is its smallest corner: one corner per fan carries its own number (no unique over all
    # the corners, 0.2 s on 300,000 triangles)
    fans = np.bincount(triangles.ravel()[label == np.arange(3 * n)], minlength=pointCount)
    return label, fans


def nonManifoldVertexCount(polyData, sides: tuple | None = None) -> int:
    """Vertices where more than one fan of triangles meet (edges must be manifold for this count).

    :param sides: :func:`sortedSides` of the mesh's triangles, if made already."""
    triangles = trianglesArray(polyData)
    if len(triangles) == 0:
        return 0
    sides = sides or sortedSides(triangles)
    if not np.all(edgeUse(triangles, sides) == 2):
        return 0
    return int(np.count_nonzero(_cornerFans(triangles, polyData.GetNumberOfPoints(), sides)[1] > 1))


def labelShells(polyData) -> tuple[vtk.vtkPolyData, np.ndarray, int]:
    """The mesh with its triangles numbered by shell (connected through shared points).

    vtkPolyDataConnectivityFilter keeps the triangles in their order and numbers the points by region, twice as
    fast as vtkConnectivityFilter (0.34 s against 0.64 s on the skull CT's 1.6 M triangle surface); a triangle's
    shell is its first corner's.

    :return: (mesh as output by the filter: the same triangles, unused points dropped; per-triangle shell
        number; number of shells).
    """
    connectivity = vtk.vtkPolyDataConnectivityFilter()
    connectivity.SetInputData(polyData)
    connectivity.SetExtractionModeToAllRegions()
    connectivity.ColorRegionsOn()
    update(connectivity)
    labelled = connectivity.GetOutput()
    regions = labelled.GetPointData().GetArray("RegionId")
    triangles = trianglesArray(labelled)
    if regions is None or len(triangles) == 0:
        return labelled, np.zeros(0, np.int64), 0
    shells = int(connectivity.GetNumberOfExtractedRegions())
    return labelled, numpy_support.vtk_to_numpy(regions).astype(np.int64)[triangles[:, 0]], shells


def enclosedByRay(points: np.ndarray, triangles: np.ndarray, probes: np.ndarray) -> np.ndarray | None:
    """Whether each probe lies inside the closed surface (``triangles`` into ``points``): the parity of the
    surface's crossings of a ray from it along +x. Only the triangles whose corners straddle the ray are looked
    at, with no search structure to build: for a few probes many times faster than vtkSelectEnclosedPoints (which
    builds a cell locator over the whole surface: 0.27 s for a skull's 1.5 M triangles).

    :return: bool per probe; None where a ray passes within rounding of an edge or a corner of the surface, or a
        probe lies on it (a crossing could count twice or not at all): then ask vtkSelectEnclosedPoints.
    """
    inside = np.zeros(len(probes), bool)
    if len(triangles) == 0:
        return inside
    # each triangle's extent (x: its far end only), column by column, once for all the probes
    bounds, corner = [], [np.ascontiguousarray(triangles[:, k]) for k in range(3)]
    for axis in (1, 2, 0):
        checkpoint()  # (each axis: 0.3 s on the 10 M triangles of 2000 slices)
        column = np.ascontiguousarray(points[:, axis])
        corners = [column[corner[k]] for k in range(3)]
        if axis:
            bounds.append(np.minimum(np.minimum(corners[0], corners[1]), corners[2]))
        bounds.append(np.maximum(np.maximum(corners[0], corners[1]), corners[2]))
    del corners, corner, column
    checkpoint()
    yLow, yHigh, zLow, zHigh, xHigh = bounds
    scale = max(float(yHigh.max() - yLow.min()), float(zHigh.max() - zLow.min()), 1e-12)  # the surface's size
    for index, (px, py, pz) in enumerate(np.asarray(probes, np.float64)):
        checkpoint()
        # corners on both sides of the ray in y and in z, and one at or beyond the probe along x
        straddle = np.flatnonzero((yLow <= py) & (yHigh >= py) & (zLow <= pz) & (zHigh >= pz) & (xHigh >= px))
        a, b, c = (points[triangles[straddle, k]] for k in range(3))

        # twice the signed area of (u, v, probe) seen along x, for each edge (u, v)
        edges = np.stack([(v[:, 1] - u[:, 1]) * (pz - u[:, 2]) - (v[:, 2] - u[:, 2]) * (py - u[:, 1])
                          for u, v in ((b, c), (c, a), (a, b))], axis=1)
        if np.any(np.abs(edges) <= 1e-9 * scale * scale):
            return None  # the ray grazes an edge or a corner
        crossed = np.all(edges > 0, axis=1) | np.all(edges < 0, axis=1)
        weights = edges[crossed] / edges[crossed].sum(axis=1, keepdims=True)
        x = (weights[:, 0] * a[crossed, 0] + weights[:, 1] * b[crossed, 0] + weights[:, 2] * c[crossed, 0])
        if np.any(np.abs(x - px) <= 1e-9 * scale):
            return None  # the probe is on the surface
        inside[index] = np.count_nonzero(x > px) % 2 == 1
    return inside


def shellVolumes(polyData, shells: tuple | None = None) -> tuple[vtk.vtkPolyData, np.ndarray, int, np.ndarray]:
    """:func:`labelShells` of the mesh (or ``shells``, if it was made already), and each shell's signed volume."""
    labelled, labels, count = shells or labelShells(polyData)
    checkpoint()
    triangles, points = trianglesArray(labelled), pointsArray(labelled)
    return labelled, labels, count, np.bincount(labels, weights=triangleVolumes(points, triangles), minlength=count)


def shellNesting(polyData, shells: tuple | None = None) -> tuple[vtk.vtkPolyData, np.ndarray, np.ndarray, np.ndarray]:
    """Each shell's signed volume and how many other shells enclose it.

    :param shells: :func:`labelShells` of the mesh, if it was made already.
    :return: (mesh labelled by shell, per-triangle shell, per-shell signed volume, per-shell nesting depth).
    """
    labelled, labels, shells, volumes = shellVolumes(polyData, shells)
    triangles, points = trianglesArray(labelled), pointsArray(labelled)
    depth = np.zeros(shells, np.int64)
    if shells > 1:
        probes = vtk.vtkPoints()  # a point of each shell, tested against every other shell
        firstTriangle = np.array([np.argmax(labels == s) for s in range(shells)])
        for p in points[triangles[firstTriangle, 0]]:
            probes.InsertNextPoint(*p)
        probeData = vtk.vtkPolyData()
        probeData.SetPoints(probes)
        for s in range(shells):
            enclosed = vtk.vtkSelectEnclosedPoints()
            enclosed.SetInputData(probeData)
            enclosed.SetSurfaceData(polyDataFromArrays(points, triangles[labels == s]))
            update(enclosed)
            inside = np.array([enclosed.IsInside(i) for i in range(shells)], bool)
            inside[s] = False
            depth += inside
    return labelled, labels, volumes, depth


def newTriangles(before, after) -> np.ndarray:
    """Mask of the triangles of ``after`` that ``before`` does not have (same three corner positions)."""
    old, new = trianglesArray(before), trianglesArray(after)
    oldPoints = pointsArray(before)
    points = np.concatenate([oldPoints, pointsArray(after)])
    # one number per distinct corner position, then one per triangle (its sorted corner numbers)
    rows = np.ascontiguousarray(points).view(np.dtype((np.void, points.dtype.itemsize * 3))).ravel()
    _, position = np.unique(rows, return_inverse=True)  # rows as bytes: much faster than unique(axis=0)
    position = position.ravel().astype(np.int64)
    corners = np.sort(np.concatenate([position[old], position[new + len(oldPoints)]]), axis=1)
    base = int(position.max()) + 1
    key = (corners[:, 0] * base + corners[:, 1]) * base + corners[:, 2]
    return ~np.isin(key[len(old):], key[:len(old)])


def _trianglesCross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For pairs of triangles (m, 3, 3) each, whether their interiors cross (Moeller's interval test).

    Triangles that only touch (at a vertex or along an edge) or lie in one plane do not count.
    """
    def sides(t, origin, normal):
        return np.einsum("mkj,mj->mk", t - origin[:, None, :], normal)

    normalA = cross(a[:, 1] - a[:, 0], a[:, 2] - a[:, 0])
    normalB = cross(b[:, 1] - b[:, 0], b[:, 2] - b[:, 0])
    scale = np.maximum(np.abs(a).max(axis=(1, 2)), np.abs(b).max(axis=(1, 2))) + 1.0
    eps = 1e-9 * scale * scale
    distanceA = sides(a, b[:, 0], normalB)  # a's corners against b's plane
    distanceB = sides(b, a[:, 0], normalA)
    straddle = ((distanceA.max(1) > eps) & (distanceA.min(1) < -eps)
                & (distanceB.max(1) > eps) & (distanceB.min(1) < -eps))
    axis = np.argmax(np.abs(cross(normalA, normalB)), axis=1)
    rows = np.arange(len(a))

    def interval(t, d):
        p = t[rows, :, axis]  # corners projected on the dominant axis of the intersection line
        positive = d > 0
        lonely = np.where(positive[:, 0] == positive[:, 1], 2, np.where(positive[:, 0] == positive[:, 2], 1, 0))
        o1, o2 = (lonely + 1) % 3, (lonely + 2) % 3
        pl, dl = p[rows, lonely], d[rows, lonely]
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = pl + (p[rows, o1] - pl) * dl / (dl - d[rows, o1])
            t2 = pl + (p[rows, o2] - pl) * dl / (dl - d[rows, o2])
        return np.minimum(t1, t2), np.maximum(t1, t2)

    lowA, highA = interval(a, distanceA)
    lowB, highB = interval(b, distanceB)
    tolerance = 1e-9 * scale
    return straddle & (highA > lowB + tolerance) & (highB > lowA + tolerance)


def selfIntersections(polyData, chunk: int = 500_000, involving: np.ndarray | None = None) -> np.ndarray:
    """Pairs of triangles (indices, (M, 2)) that cross each other; neighbours sharing a corner are not tested.

    Candidates come from a uniform grid of cells the median edge long (triangles sharing a cell, not sharing a
    corner), then bounding boxes, then Moeller's triangle-triangle test on numpy arrays.

    :param involving: per-triangle mask: only pairs with at least one of these triangles are tested (e.g. the
        triangles a repair has just made; the rest of the mesh was checked before).
    """
    triangles, points = trianglesArray(polyData), pointsArray(polyData)
    n = len(triangles)
    if n < 2:
        return np.zeros((0, 2), np.int64)
    corners = np.take(points, triangles, axis=0)  # points[triangles], in a fraction of the time
    # (the three corners compared pairwise: a reduction over the middle axis of (N, 3, 3) is several times slower)
    low = np.minimum(np.minimum(corners[:, 0], corners[:, 1]), corners[:, 2])
    high = np.maximum(np.maximum(corners[:, 0], corners[:, 1]), corners[:, 2])
    # the box test on float32 copies: half the memory traffic, and rounding keeps every overlapping pair
    low32, high32 = low.astype(np.float32), high.astype(np.float32)
    cell = max(float(np.median(np.linalg.norm(corners[:, 1] - corners[:, 0], axis=1))), 1e-9)
    start = np.floor((low - low.min(axis=0)) / cell).astype(np.int64)
    span = np.floor((high - low.min(axis=0)) / cell).astype(np.int64) - start + 1
    count = span.prod(axis=1)
    dims = [int(d) for d in (start + span).max(axis=0) + 1]
    total = int(count.sum())
    # 32-bit cell numbers where they fit (a head's grid and cells do): half the memory to write and read
    itype = np.int32 if dims[0] * dims[1] * dims[2] < 2**31 and total < 2**31 else np.int64
    start, span = start.astype(itype), span.astype(itype)
    owner = np.repeat(np.arange(n, dtype=itype), count)
    local = np.arange(total, dtype=itype) - np.repeat((np.cumsum(count) - count).astype(itype), count)
    # (np.take on each column: the same values as span[owner, 0], a fraction of the time)
    sx, sy = np.take(span[:, 0], owner), np.take(span[:, 1], owner)
    ix = np.take(start[:, 0], owner) + local % sx
    iy = np.take(start[:, 1], owner) + (local // sx) % sy
    iz = np.take(start[:, 2], owner) + local // (sx * sy)
    key = (ix * dims[1] + iy) * dims[2] + iz
    del sx, sy, ix, iy, iz, local
    checkpoint()
    # in cell order, each cell's triangles in their order: the cell and the triangle packed in one integer and
    # sorted once (what a stable argsort of the cells gives, without the argsort and the two gathers after it)
    ownerBits = max(int(n - 1).bit_length(), 1)
    if int(key.max()).bit_length() + ownerBits <= 64:
        packed = key.astype(np.uint64)
        packed <<= np.uint64(ownerBits)
        packed |= owner.astype(np.uint64)
        del key, owner
        packed.sort(kind=SORT_KIND)
        key = packed >> np.uint64(ownerBits)
        packed &= np.uint64((1 << ownerBits) - 1)
        owner = packed.astype(np.intp)
        del packed
    else:
        order = stableArgsort(key)
        key, owner = np.take(key, order), np.take(owner, order)
    checkpoint()
    groupStart = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    groupSize = np.diff(np.concatenate([groupStart, [len(key)]]))
    if involving is not None:  # only the cells that hold one of the triangles asked about
        involvingCell = np.add.reduceat(involving[owner].astype(np.int64), groupStart) > 0
        groupStart, groupSize = groupStart[involvingCell], groupSize[involvingCell]
    # Most pairs in a cell are neighbours (a vertex's fan fills the cells around it: 96 % of the pairs on a
    # decimated head phantom), so the shared-corner test comes first, on each cell's members' corners gathered
    # once per member (not per pair); repeats (a pair shares several cells) and bounding boxes only for the few
    # pairs left.
    # each column on its own contiguous array, read with np.take (the same values as fancy indexing into rows of
    # three, a fraction of the time)
    cornerColumns = [np.ascontiguousarray(triangles[:, k], np.int32) for k in range(3)]
    lowColumns = [np.ascontiguousarray(low32[:, k]) for k in range(3)]
    highColumns = [np.ascontiguousarray(high32[:, k]) for k in range(3)]

    def candidatesIn(size: int) -> np.ndarray:  # all pairs within the cells of this many triangles
        members = np.take(owner, groupStart[groupSize == size][:, None] + np.arange(size)[None, :])
        first, second = np.triu_indices(size, 1)
        memberCorners = [np.take(c, members) for c in cornerColumns]
        ca = [np.take(c, first, axis=1) for c in memberCorners]
        cb = [np.take(c, second, axis=1) for c in memberCorners]
        shared = ca[0] == cb[0]
        for i, j in ((0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)):
            shared |= ca[i] == cb[j]
        apart = ~shared
        if involving is not None:
            apart &= np.take(involving, np.take(members, first, axis=1)) | \
                np.take(involving, np.take(members, second, axis=1))
        rows, column = np.nonzero(apart)
        p, q = rows * size + first[column], rows * size + second[column]  # into the members, flat
        for k in range(3):  # bounding boxes overlap, axis by axis on what is left
            memberLow, memberHigh = np.take(lowColumns[k], members), np.take(highColumns[k], members)
            overlap = (np.take(memberLow, p) <= np.take(memberHigh, q)) & \
                (np.take(memberLow, q) <= np.take(memberHigh, p))
            p, q = p[overlap], q[overlap]
        a, b = np.take(members, p), np.take(members, q)
        return np.minimum(a, b) * n + np.maximum(a, b)

    # the cells batched by size, two batches at a time (numpy lets go of Python's lock in these passes)
    candidates = threadMap(candidatesIn, np.unique(groupSize[groupSize > 1]).tolist())
    if not candidates:
        return np.zeros((0, 2), np.int64)
    pairs = np.unique(np.concatenate(candidates))
    pairs = np.stack([pairs // n, pairs % n], axis=1)
    crossing = threadMap(lambda i: pairs[i:i + chunk][_trianglesCross(np.take(corners, pairs[i:i + chunk, 0], axis=0),
                                                                      np.take(corners, pairs[i:i + chunk, 1], axis=0))],
                         range(0, len(pairs), chunk))
    return np.concatenate(crossing) if crossing else np.zeros((0, 2), np.int64)


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (lanes a mask leaves unused)."""
    return numerator / np.where(denominator == 0, 1.0, denominator) * (denominator != 0)


def closestPointsOnTriangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The point of each triangle (a, b, c) nearest to p, all (N, 3) (Ericson, Real-Time Collision Detection,
    5.1.5: by the Voronoi region of the triangle that p projects into)."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(1), (ac * ap).sum(1)
    bp = p - b
    d3, d4 = (ab * bp).sum(1), (ac * bp).sum(1)
    cp = p - c
    d5, d6 = (ab * cp).sum(1), (ac * cp).sum(1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    denominator = va + vb + vc
    result = a + ab * _divide(vb, denominator)[:, None] + ac * _divide(vc, denominator)[:, None]  # the face
    regions = [  # (mask, point) from the last to the first: the first region that applies wins
        ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0),
         b + (c - b) * _divide(d4 - d3, (d4 - d3) + (d5 - d6))[:, None]),
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), a + ac * _divide(d2, d2 - d6)[:, None]),
        ((d6 >= 0) & (d5 <= d6), c),
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), a + ab * _divide(d1, d1 - d3)[:, None]),
        ((d3 >= 0) & (d4 <= d3), b),
        ((d1 <= 0) & (d2 <= 0), a),
    ]
    for mask, point in regions:
        result[mask] = point[mask]
    return result


def surfaceDeviation(polyData, reference, extraSamples: np.ndarray | None = None,
                     known: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """How far a mesh lies from a reference surface (mm): the distance from every vertex, and from the middle of
    each triangle flagged in ``extraSamples`` (e.g. those a repair made, whose vertices alone would not show a
    patch across a hole), to the nearest point of the reference.

    :param reference: the reference surface (vtkPolyData), a cell locator built on it, or a function returning
        one (called only if a point is left to measure).
    :param known: (points, squared distances) measured before, e.g. by the helper processes of a simplification:
        a point at exactly one of these positions has that distance.
    :return: {"meanMm", "p95Mm", "maximumMm", "samples"}.
    """
    points = pointsArray(polyData)
    if extraSamples is not None and extraSamples.any():
        points = np.vstack([points, points[trianglesArray(polyData)[extraSamples]].mean(axis=1)])
    if len(points) == 0:
        return {"meanMm": 0.0, "p95Mm": 0.0, "maximumMm": 0.0, "samples": 0}
    distance = np.full(len(points), np.nan)
    if known is not None and len(known[0]):
        both = np.ascontiguousarray(np.concatenate([known[0], points]), np.float64)
        _, first, inverse = np.unique(both.view(np.dtype((np.void, 24))).ravel(), return_index=True,
                                      return_inverse=True)
        source = first[inverse.ravel()[len(known[0]):]]  # the first of the positions equal to each point's
        found = source < len(known[0])
        distance[found] = known[1][source[found]]
    left = np.flatnonzero(np.isnan(distance))
    if len(left):
        locator = reference() if callable(reference) else reference
        if not locator.IsA("vtkAbstractCellLocator"):
            surface, locator = locator, vtk.vtkStaticCellLocator()
            locator.SetDataSet(surface)
            locator.BuildLocator()
        distance[left] = closestSquaredDistances(locator, points[left], between=checkpoint)
    distance = np.sqrt(distance)
    return {"meanMm": round(float(distance.mean()), 4), "p95Mm": round(float(np.percentile(distance, 95)), 4),
            "maximumMm": round(float(distance.max()), 4), "samples": int(len(points))}
