"""Step 5 of the pipeline: repair and decimate the surface so that it stays a closed, printable solid.

Each step takes a vtkPolyData and returns a new one (the input is never modified). Decimation is done by a
library made for it, fast-simplification (the Fast-Quadric-Mesh-Simplification algorithm; VTK's quadric
decimation where it is not installed); VTK does the rest of the geometry: cleaning (vtkCleanPolyData), hole
filling (vtkFillHolesFilter), winding (vtkPolyDataNormals), nesting (vtkSelectEnclosedPoints). What no library
does right is written here on numpy arrays: counting how many triangles use each edge, telling duplicate
triangles apart, finding triangles that cross each other (:func:`.meshdata.selfIntersections`), refining crossing
triangles back onto the surface they were decimated from, splitting a vertex where two sheets of surface touch at
a point, orienting each shell by how deeply it is nested (a cavity faces inwards), and keeping the parts the
Islands step kept.

Choices that matter: decimation only of a repaired mesh; every decimated mesh repaired in a bounded number of
rounds and kept only if it is closed, free of crossings and within half a millimetre of the surface it was made
from, else the undecimated surface is written (a model is never worse than the surface); and winding made
consistent without "auto orient" (which turns cavities outwards).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import vtk

from .meshdata import (
    _TRIANGLE_CHUNK,
    SORT_KIND,
    _cornerFans,
    _perTriangle,
    closestPointsOnTriangles,
    edgeUse,
    enclosedByRay,
    everyEdgeSharedByTwo,
    faceNormals,
    labelShells,
    newTriangles,
    nonManifoldVertexCount,
    pointNormals,
    pointsArray,
    polyDataFromArrays,
    selfIntersections,
    shellNesting,
    shellVolumes,
    sideKeys,
    surfaceDeviation,
    trianglesArray,
    windingConsistent,
)
from .runtime import Aside, HelperProcess, checkpoint, helperCommand, logger, update, updateAside


def _run(algorithm, polyData) -> vtk.vtkPolyData:
    algorithm.SetInputData(polyData)
    # in a thread, the progress callback asked meanwhile: vtkCleanPolyData reports no progress while it merges
    # points (1.2 s on a 2000-slice scan's surface)
    updateAside(algorithm)
    output = vtk.vtkPolyData()
    output.ShallowCopy(algorithm.GetOutput())
    return output


def triangulate(polyData) -> vtk.vtkPolyData:
    """Only triangles (surface nets without smoothing make quads; STL needs triangles).

    :param polyData: input mesh.
    """
    triangles = vtk.vtkTriangleFilter()
    triangles.PassVertsOff()
    triangles.PassLinesOff()
    return _run(triangles, polyData)


def cleanMesh(polyData) -> vtk.vtkPolyData:
    """Merge coincident points, drop triangles collapsed to a line or a point, drop unused points.

    :param polyData: input mesh.
    """
    clean = vtk.vtkCleanPolyData()
    clean.PointMergingOn()
    clean.SetTolerance(0.0)
    clean.ConvertPolysToLinesOff()  # a collapsed triangle is removed, not kept as a line
    clean.ConvertLinesToPointsOff()
    clean.ConvertStripsToPolysOn()
    return _run(clean, polyData)


def _keepTriangles(polyData, keep: np.ndarray) -> vtk.vtkPolyData:
    return cleanMesh(polyDataFromArrays(pointsArray(polyData), trianglesArray(polyData)[keep]))


def removeDuplicateTriangles(polyData) -> tuple[vtk.vtkPolyData, int]:
    """Remove triangles that repeat another's three corners.

    A pair facing opposite ways is a zero-thickness fin and both go; a repeat facing the same way goes alone.

    :return: (mesh, triangles removed).
    """
    triangles = trianglesArray(polyData)
    if len(triangles) == 0:
        return polyData, 0
    base = int(triangles.max()) + 1
    key = np.empty(len(triangles), np.int64)
    for start in range(0, len(triangles), _TRIANGLE_CHUNK):  # a chunk at a time, a Cancel answered between
        checkpoint()
        corners = np.sort(triangles[start:start + _TRIANGLE_CHUNK], axis=1).astype(np.int64)
        key[start:start + _TRIANGLE_CHUNK] = (corners[:, 0] * base + corners[:, 1]) * base + corners[:, 2]
    checkpoint()
    ordered = np.sort(key, kind=SORT_KIND)
    checkpoint()
    if not np.any(ordered[1:] == ordered[:-1]):  # the usual case, found by a plain sort
        return polyData, 0
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    # winding parity: an even permutation of the sorted corners faces the same way
    order = np.argsort(triangles, axis=1)
    parity = ((order[:, 0] > order[:, 1]).astype(int) + (order[:, 0] > order[:, 2]) + (order[:, 1] > order[:, 2])) % 2
    keep = np.ones(len(triangles), bool)
    for group in np.nonzero(counts > 1)[0]:
        members = np.nonzero(inverse == group)[0]
        facing = parity[members]
        up, down = members[facing == 0], members[facing == 1]
        pairs = min(len(up), len(down))
        keep[up[:pairs]] = keep[down[:pairs]] = False  # opposite pairs cancel
        rest = np.concatenate([up[pairs:], down[pairs:]])
        keep[rest[1:]] = False  # of the same-facing ones keep one
    return _keepTriangles(polyData, keep), int(np.count_nonzero(~keep))


def removeSmallShells(polyData, minimumVolumeMm3: float) -> tuple[vtk.vtkPolyData, int]:
    """Drop connected shells that enclose less than ``minimumVolumeMm3`` (in absolute value).

    Surface extraction leaves a few crumbs: shells of a few voxels where the labelmap touches itself
    diagonally, and slivers of near-zero volume. A small cavity shell dropped this way just fills the cavity,
    which a printer could not empty anyway.

    :param minimumVolumeMm3: shells enclosing less are removed; 0 keeps everything.
    :return: (mesh, shells removed).
    """
    if minimumVolumeMm3 <= 0:
        return polyData, 0
    shells = labelShells(polyData)
    if shells[2] <= 1:
        return polyData, 0
    labelled, labels, _, volumes = shellVolumes(polyData, shells)
    keep = np.abs(volumes) >= minimumVolumeMm3
    if keep.all():
        return polyData, 0
    return cleanMesh(polyDataFromArrays(pointsArray(labelled), trianglesArray(labelled)[keep[labels]])), \
        int(np.count_nonzero(~keep))


def _badEdgeTriangles(triangles: np.ndarray, use: np.ndarray | None = None) -> np.ndarray:
    """Triangles with a side not shared by exactly two triangles (``use``: :func:`edgeUse`, if known)."""
    return ((edgeUse(triangles) if use is None else use) != 2).reshape(3, -1).any(axis=0)


def cutAndFill(polyData, badTriangles: np.ndarray) -> vtk.vtkPolyData:
    """Remove the given triangles with their neighbours (sharing a corner), and close the holes left with
    vtkFillHolesFilter."""
    triangles, points = trianglesArray(polyData), pointsArray(polyData)
    nearBad = np.zeros(len(points), bool)
    nearBad[triangles[badTriangles].ravel()] = True
    opened = cleanMesh(polyDataFromArrays(points, triangles[~nearBad[triangles].any(axis=1)]))
    fill = vtk.vtkFillHolesFilter()
    fill.SetHoleSize(1e30)  # the holes are small by construction; their size in mm does not matter
    return cleanMesh(triangulate(_run(fill, opened)))


class ReferenceSurface:
    """The surface a decimated mesh was made from: where its vertices belong."""

    def __init__(self, polyData):
        self.polyData = polyData
        self._locator = self._arrays = None

    def locator(self) -> vtk.vtkStaticCellLocator:
        """A cell locator on the surface, built when first asked for (most decimations need none)."""
        if self._locator is None:
            self._locator = vtk.vtkStaticCellLocator()
            self._locator.SetDataSet(self.polyData)
            self._locator.BuildLocator()
        return self._locator

    def _triangles(self):
        if self._arrays is None:  # only when something is projected: most meshes need no refinement
            points, triangles = pointsArray(self.polyData), trianglesArray(self.polyData)
            self._arrays = points, triangles, faceNormals(points, triangles)
        return self._arrays

    def project(self, points: np.ndarray, normals: np.ndarray, radius: float) -> np.ndarray:
        """The nearest point of the surface to each point, among the triangles within ``radius`` that face the
        same way as its normal: on a wall thinner than a triangle, the point goes back to its own side of the
        wall, never to the other (whose triangles face the other way). Points with none stay where they are."""
        result = points.copy()
        referencePoints, referenceTriangles, referenceNormals = self._triangles()
        locator, ids = self.locator(), vtk.vtkIdList()
        for index, (point, normal) in enumerate(zip(points.tolist(), normals, strict=True)):
            bounds = [point[0] - radius, point[0] + radius, point[1] - radius, point[1] + radius,
                      point[2] - radius, point[2] + radius]
            locator.FindCellsWithinBounds(bounds, ids)
            cells = np.array([ids.GetId(i) for i in range(ids.GetNumberOfIds())], np.int64)
            if len(cells) == 0:
                continue
            cells = cells[referenceNormals[cells] @ normal > 0]
            if len(cells) == 0:
                continue
            corners = referencePoints[referenceTriangles[cells]]
            nearest = closestPointsOnTriangles(np.repeat([point], len(cells), axis=0), corners[:, 0],
                                               corners[:, 1], corners[:, 2])
            distance = np.linalg.norm(nearest - point, axis=1)
            if distance.min() <= radius:
                result[index] = nearest[np.argmin(distance)]
        return result


def refineTowards(polyData, selected: np.ndarray, reference: ReferenceSurface) -> tuple[vtk.vtkPolyData, np.ndarray]:
    """Split the selected triangles in four (and neighbours in two, or in four where two of their sides are split,
    so that no edge is left half split), with the new vertices and the selected triangles' corners put back on
    the reference surface, on their own side of it.

    Decimation can leave a triangle whose long edge cuts through a thin wall's other side; smaller triangles that
    lie on the surface follow the wall instead. Unlike cutting out and filling, this keeps the mesh on the surface.

    :return: (mesh, mask of its triangles that are new or have a moved corner).
    """
    triangles, points = trianglesArray(polyData), pointsArray(polyData)
    n = len(triangles)
    keys = sideKeys(triangles)  # side k of all triangles first
    splitSide = np.zeros((3, n), bool)
    splitSide[:, selected] = True
    while True:  # every use of a split edge is split; a triangle with two split sides gets its third split too
        splitKeys = np.unique(keys[splitSide.ravel()])
        splitSide = np.isin(keys, splitKeys).reshape(3, n)
        two = splitSide.sum(axis=0) == 2
        if not two.any():
            break
        splitSide[:, two] = True
    base = int(triangles.max()) + 1
    start, end = splitKeys // base, splitKeys % base
    newIds = len(points) + np.arange(len(splitKeys))
    sideIds = np.full((3, n), -1, np.int64)
    sideIds[splitSide] = newIds[np.searchsorted(splitKeys, keys.reshape(3, n)[splitSide])]
    # where each new vertex belongs: the edge's middle, facing as the triangles that share the edge
    normals = faceNormals(points, triangles)
    edgeNormals = np.zeros((len(splitKeys), 3))
    for k in range(3):
        np.add.at(edgeNormals, sideIds[k][splitSide[k]] - len(points), normals[splitSide[k]])
    moved = np.unique(triangles[selected].ravel())
    radius = max(0.5, float(np.linalg.norm(points[start] - points[end], axis=1).max()))
    newPoints = np.vstack([points, 0.5 * (points[start] + points[end])])
    vertexNormals = pointNormals(polyData)
    toPlace = np.concatenate([moved, newIds])
    newPoints[toPlace] = reference.project(newPoints[toPlace],
                                           np.vstack([vertexNormals[moved], edgeNormals]), radius)
    count = splitSide.sum(axis=0)
    result = [triangles[count == 0]]
    single = np.flatnonzero(count == 1)
    side = np.argmax(splitSide[:, single], axis=0)
    a = triangles[single, side]
    b = triangles[single, (side + 1) % 3]
    c = triangles[single, (side + 2) % 3]
    m = sideIds[side, single]
    result += [np.stack([a, m, c], axis=1), np.stack([m, b, c], axis=1)]
    full = np.flatnonzero(count == 3)
    c0, c1, c2 = triangles[full, 0], triangles[full, 1], triangles[full, 2]
    m0, m1, m2 = sideIds[0, full], sideIds[1, full], sideIds[2, full]
    result += [np.stack(t, axis=1) for t in ((c0, m0, m2), (m0, c1, m1), (m2, m1, c2), (m0, m1, m2))]
    refined = np.vstack(result)
    changed = np.zeros(len(newPoints), bool)
    changed[toPlace] = True
    return polyDataFromArrays(newPoints, refined), changed[refined].any(axis=1)


def closeDefects(polyData, maximumIterations: int = 8) -> tuple[vtk.vtkPolyData, int]:
    """Re-close the places where the surface is open or where more than two triangles share an edge.

    The triangles touching a bad edge, and their neighbours, are cut out and the hole is filled; this repeats
    until no bad edge is left (or the iterations run out). Quadric decimation leaves a handful of such edges on
    complex anatomy (thin walls folding onto each other).

    :return: (mesh, bad edges found in the first pass).
    """
    found = None
    for _ in range(maximumIterations):
        # hole filling can close a hole with a fin (a triangle and its mirror image): take those out first
        polyData, _ = removeDuplicateTriangles(polyData)
        checkpoint()
        triangles = trianglesArray(polyData)
        if everyEdgeSharedByTwo(triangles):  # the usual case, found without counting each edge's triangles
            found = found or 0
            break
        use = edgeUse(triangles)
        if found is None:
            found = int(round((1.0 / use[use != 2]).sum())) if len(use) else 0
        bad = _badEdgeTriangles(triangles, use)
        if not bad.any():
            break
        checkpoint()
        polyData = cutAndFill(polyData, bad)
    return polyData, found or 0


def isClosedManifold(polyData) -> bool:
    """Every edge shared by exactly two triangles (watertight, no non-manifold edges)."""
    return everyEdgeSharedByTwo(trianglesArray(polyData))


def degenerateTriangles(polyData, relativeArea: float = 1e-10) -> np.ndarray:
    """Mask of the triangles of (near) zero area whose corners are distinct but in a line.

    :param relativeArea: area below this times the squared longest edge counts as zero.
    """
    triangles, points = trianglesArray(polyData), pointsArray(polyData)
    doubleArea = np.linalg.norm(faceNormals(points, triangles), axis=1)
    longest = _perTriangle(points, triangles, lambda a, b, c: np.max(
        [np.sum((b - a) ** 2, 1), np.sum((c - b) ** 2, 1), np.sum((a - c) ** 2, 1)], axis=0))
    return doubleArea <= relativeArea * longest


def splitNonManifoldVertices(polyData, separationMm: float = 1e-3) -> tuple[vtk.vtkPolyData, int]:
    """Give each fan of triangles around a vertex its own copy of the vertex, a micrometre apart.

    Where two sheets of surface touch at a single point (a pinch), the point is shared by two separate fans of
    triangles. Each extra fan gets its own vertex, moved ``separationMm`` into its own side: an STL has no
    connectivity, so copies left at the same place would be merged again by any slicer. Needs every edge to be
    used by two triangles (see :func:`closeDefects`).

    :return: (mesh, vertices that were split).
    """
    triangles, points = trianglesArray(polyData), pointsArray(polyData)
    if len(triangles) == 0:
        return polyData, 0
    label, fans = _cornerFans(triangles, len(points))
    pinched = np.nonzero(fans > 1)[0]
    if len(pinched) == 0:
        return polyData, 0
    vertexOfCorner = triangles.ravel().copy()
    normals = faceNormals(points, triangles)
    newPoints = [points]
    nextId = len(points)
    for vertex in pinched:
        corners = np.nonzero(vertexOfCorner == vertex)[0]
        fanLabels = np.unique(label[corners])
        for fanLabel in fanLabels[1:]:  # the first fan keeps the original vertex
            fanCorners = corners[label[corners] == fanLabel]
            normal = normals[fanCorners // 3].sum(axis=0)
            normal /= max(float(np.linalg.norm(normal)), 1e-12)
            vertexOfCorner[fanCorners] = nextId
            newPoints.append(points[vertex][None, :] - separationMm * normal)
            nextId += 1
    return polyDataFromArrays(np.vstack(newPoints), vertexOfCorner.reshape(-1, 3)), int(len(pinched))


def consistentWinding(polyData) -> vtk.vtkPolyData:
    """Neighbouring triangles wound the same way (vtkPolyDataNormals consistency, no auto-orientation), with
    point normals for display."""
    normals = vtk.vtkPolyDataNormals()
    normals.ConsistencyOn()
    normals.AutoOrientNormalsOff()  # would turn cavities outwards
    normals.SplittingOff()  # splitting duplicates points along sharp edges and opens the mesh
    normals.ComputeCellNormalsOff()
    normals.ComputePointNormalsOn()
    return _run(normals, polyData)


def orientShells(polyData) -> tuple[vtk.vtkPolyData, int]:
    """Consistent winding, then each shell turned to face away from the material: outward for a shell nested
    in an even number of others (a part), inward for one nested in an odd number (a cavity in a part).

    :return: (mesh, shells flipped).
    """
    # (VTK's consistency pass only where it has something to do: a simplified surface is wound consistently
    # already, and checking that is a quarter of the pass's time; nothing after the repair uses its point normals)
    wound = polyData if windingConsistent(trianglesArray(polyData)) else consistentWinding(polyData)
    labelled, labels, volumes, depth = shellNesting(wound)
    wrong = (volumes > 0) != (depth % 2 == 0)
    if not wrong.any():
        return wound, 0
    triangles = trianglesArray(labelled)
    flip = wrong[labels]
    triangles[flip] = triangles[flip][:, ::-1]  # whole shells turned over: the winding stays consistent
    return polyDataFromArrays(pointsArray(labelled), triangles), int(np.count_nonzero(wrong))


@dataclass
class RepairLog:
    """What the repair found and did (counts; defects as found before the first round)."""

    duplicateTriangles: int = 0
    smallShellsRemoved: int = 0
    openOrNonManifoldEdges: int = 0
    degenerateTriangles: int = 0
    nonManifoldVerticesSplit: int = 0
    selfIntersections: int = 0
    shellsFlipped: int = 0
    #: rounds of mending: cutting out and re-closing, or refining towards the reference surface
    rounds: int = 0
    #: of them, rounds that refined crossing triangles towards the reference surface
    refined: int = 0
    #: triangles still open, non-manifold, degenerate or crossing when the rounds ran out (0: repaired)
    defectsLeft: int = 0
    #: the final repair's last round found every edge shared by two triangles and no vertex pinched (False: not
    #: so, or not checked)
    closedManifold: bool = False

    def asDict(self) -> dict:
        return asdict(self)


def crossing(pairs: np.ndarray, triangleCount: int) -> np.ndarray:
    """Mask of the triangles in any of the crossing ``pairs``."""
    mask = np.zeros(triangleCount, bool)
    mask[pairs.ravel()] = True
    return mask


#: Rounds of cutting out and re-closing that the final repair may take. Each round cuts out every defect found,
#: with its neighbours, and fills the holes; a mesh that needs more is not repaired here (the caller keeps a
#: better one: :func:`decimateClosed` keeps the undecimated surface).
REPAIR_ROUNDS = 6


#: Of the rounds, how many may refine crossing triangles towards the reference surface before they are cut out.
REFINE_ROUNDS = 3


def repair(polyData, minimumShellVolumeMm3: float = 0.0, final: bool = False,
           maximumRounds: int = REPAIR_ROUNDS,
           reference: ReferenceSurface | None = None) -> tuple[vtk.vtkPolyData, RepairLog]:
    """Make a closed, manifold, outward-facing triangle mesh.

    Always: triangles only and coincident points merged; crumbs removed (shells under ``minimumShellVolumeMm3``);
    open and non-manifold edges cut out and re-closed. That is all decimation needs. For the ``final`` mesh, the
    one that is written, a bounded loop instead: each round finds the open and non-manifold edges, degenerate
    triangles and triangles that cross each other, cuts them out with their neighbours and fills the holes (only
    what a round made is tested for crossings again); once nothing is left, each shell is oriented by its nesting
    and pinched vertices are split a micrometre apart, and because that moves vertices the triangles around them
    are tested for crossings again. ``defectsLeft`` says whether the rounds ran out first.

    :param polyData: mesh from the closed-surface conversion or from :func:`simplify`.
    :param minimumShellVolumeMm3: remove shells enclosing less (see :func:`removeSmallShells`).
    :param final: do the complete repair (a few seconds per million triangles; pointless before decimation,
        which changes the mesh again).
    :param maximumRounds: rounds of cutting out and re-closing (final repair).
    :param reference: the surface the mesh was decimated from: triangles that cross others are first refined
        towards it (:func:`refineTowards`), which keeps the mesh on that surface; only what that does not mend
        is cut out and re-closed.
    """
    log = RepairLog()
    polyData = cleanMesh(triangulate(polyData))
    checkpoint()
    if final:
        polyData, log.duplicateTriangles = removeDuplicateTriangles(polyData)
    polyData, log.smallShellsRemoved = removeSmallShells(polyData, minimumShellVolumeMm3)
    checkpoint()
    if not final:
        polyData, log.openOrNonManifoldEdges = closeDefects(polyData)
        return polyData, log
    check = None  # which triangles to test for crossings: all at first, then only those a round made or moved
    for round_ in range(maximumRounds + 1):
        checkpoint()
        use = edgeUse(trianglesArray(polyData))
        openEdges = (use != 2).reshape(3, -1).any(axis=0)
        bad = openEdges | degenerateTriangles(polyData)
        pairs = selfIntersections(polyData, involving=check)
        if round_ == 0:
            log.openOrNonManifoldEdges = int(round((1.0 / use[use != 2]).sum())) if len(use) else 0
            log.degenerateTriangles = int(np.count_nonzero(bad & ~openEdges))
        log.selfIntersections += len(pairs)
        bad[pairs.ravel()] = True
        if not bad.any():
            polyData, flipped = orientShells(polyData)
            log.shellsFlipped += flipped
            pointCount = polyData.GetNumberOfPoints()
            polyData, split = splitNonManifoldVertices(polyData)
            log.nonManifoldVerticesSplit += split
            if not split:  # this round's edges are all shared by two (turning shells over keeps that), no pinch
                log.closedManifold = polyData.GetNumberOfPolys() > 0
                break
            check = (trianglesArray(polyData) >= pointCount).any(axis=1)  # around the moved copies
            continue
        if round_ == maximumRounds:
            log.defectsLeft = int(np.count_nonzero(bad))
            break
        log.rounds += 1
        if reference is not None and len(pairs) and not (bad & ~crossing(pairs, len(bad))).any() \
                and log.refined < REFINE_ROUNDS:
            polyData, check = refineTowards(polyData, crossing(pairs, len(bad)), reference)
            log.refined += 1
            continue
        before = polyData
        # hole filling can close a hole with a fin (a triangle and its mirror image): taken out at once
        polyData, _ = removeDuplicateTriangles(cutAndFill(polyData, bad))
        check = newTriangles(before, polyData)
    return polyData, log


def repairKeepingParts(polyData, keepLargest: bool = True, minimumVolumeMm3: float = 0.0,
                       minimumShellVolumeMm3: float = 0.0) -> tuple[vtk.vtkPolyData, int, RepairLog]:
    """:func:`repair` before decimation, then :func:`keepParts`, for a surface from the closed-surface conversion.

    The conversion's surfaces are closed: the repair finds nothing to re-close and gives the mesh back as it is.
    So its shells are labelled and measured on a thread of their own while the repair checks the edges (both let
    go of Python's lock), and used if the repair changed nothing.

    :return: (mesh, parts removed, repair log with the small shells removed).
    """
    log = RepairLog()
    cleaned = cleanMesh(triangulate(polyData))
    checkpoint()
    with Aside(shellVolumes, cleaned) as labelling:
        polyData, log.openOrNonManifoldEdges = closeDefects(cleaned)
        shells = labelling.result() if polyData is cleaned else None
    checkpoint()
    polyData, removed, log.smallShellsRemoved = keepParts(polyData, keepLargest, minimumVolumeMm3,
                                                          minimumShellVolumeMm3, shells=shells)
    return polyData, removed, log


def isPrintable(polyData, log: RepairLog) -> bool:
    """A repaired mesh is printable as far as its topology goes: closed, manifold, nothing left to repair (as the
    final repair found it in its last round, or checked here)."""
    if log.defectsLeft:
        return False
    return log.closedManifold or (isClosedManifold(polyData) and nonManifoldVertexCount(polyData) == 0)


FAST_SIMPLIFICATION = "fast-simplification"
VTK_QUADRIC = "vtkQuadricDecimation"


def simplificationMethod() -> str:
    """The decimation in use: fast-simplification (the Fast-Quadric-Mesh-Simplification algorithm, MIT) where it
    is installed (the plain-Python install has it; inside Slicer it is installed on first use), else VTK's quadric
    decimation with volume preservation (about 6x slower on the skull CT's surface, same quality)."""
    try:
        import fast_simplification  # noqa: F401
    except ImportError:
        return VTK_QUADRIC
    return FAST_SIMPLIFICATION


#: fast-simplification's aggressiveness (its default): higher is faster and further from the surface.
SIMPLIFICATION_AGGRESSIVENESS = 7


#: Surfaces with more triangles are simplified in two halves side by side (see :class:`Simplification`).
SPLIT_TRIANGLES = 200_000


#: How far beyond the cut each half's helper process also holds the other half's triangles (mm), to measure its
#: simplified points' distances to the surface on its half alone (see :func:`simplificationParts`).
MEASURE_MARGIN_MM = 2.0


@dataclass
class SimplificationPart:
    """A part of a surface to simplify on its own (see :func:`simplificationParts`)."""

    #: the points its triangles use, in the surface's order (float64)
    points: np.ndarray
    #: the part's triangles, then those of the other part within the margin of the cut (int32, into ``points``)
    triangles: np.ndarray
    #: how many of ``triangles`` are the part's
    count: int
    #: its share of the target triangle count
    target: int
    #: (axis, limit, side): every triangle of the surface left out of ``triangles`` lies at ``limit`` or beyond
    #: along the axis, on ``side`` (+1: above, -1: below); (0, 0, 0) when none is left out
    guard: tuple[float, float, float] = (0.0, 0.0, 0.0)


def simplificationParts(points: np.ndarray, triangles: np.ndarray, targetTriangles: int,
                        marginMm: float = MEASURE_MARGIN_MM) -> list[SimplificationPart]:
    """The surface cut in two across its longest extent at the median triangle (one part below
    :data:`SPLIT_TRIANGLES`), each part with its share of the target.

    Each part also holds the other part's triangles that reach within ``marginMm`` of the cut, and only the points
    it uses: what its helper process needs to measure its own simplified points' distances to the whole surface.
    A point nearer the surface than to the guard's limit has its distance from these triangles alone; the others
    are measured again by the caller.
    """
    if len(triangles) < SPLIT_TRIANGLES:
        return [SimplificationPart(np.ascontiguousarray(points, np.float64),
                                   np.ascontiguousarray(triangles, np.int32), len(triangles), int(targetTriangles))]
    axis = int(np.argmax(np.ptp(points, axis=0)))
    along = points[:, axis].astype(np.float64)  # whatever the points' type
    corners = [along[triangles[:, c]] for c in range(3)]  # (column by column: many times faster than along rows)
    del along
    where = corners[0] + corners[1] + corners[2]  # three times the triangle's middle, along the axis
    checkpoint()
    half = len(triangles) // 2
    order = np.argpartition(where, half)
    cut = float(where[order[half]]) / 3.0  # the first part's middles are at or below it, the second's at or above
    del where
    checkpoint()
    # each part in the surface's own order (a mask read back in order: no sort of 800,000 indices)
    below = np.zeros(len(triangles), bool)
    below[order[:half]] = True
    del order
    first, second = np.flatnonzero(below), np.flatnonzero(~below)
    del below
    low, high = np.minimum(np.minimum(*corners[:2]), corners[2]), np.maximum(np.maximum(*corners[:2]), corners[2])
    del corners
    checkpoint()
    # the other part's triangles reaching within the margin of the cut; those left out lie beyond the limit
    nearFirst = second[low[second] <= cut + marginMm]
    nearSecond = first[high[first] >= cut - marginMm]
    firstTarget = int(round(targetTriangles * half / len(triangles)))
    parts = []
    for own, near, target, guard in ((first, nearFirst, firstTarget, (axis, cut + marginMm, 1.0)),
                                     (second, nearSecond, targetTriangles - firstTarget, (axis, cut - marginMm, -1.0))):
        checkpoint()
        held = triangles[np.concatenate([own, near])]
        used = np.zeros(len(points), bool)
        used[held.ravel()] = True
        index = (np.cumsum(used) - 1).astype(np.int32)  # the part's points keep the surface's order
        parts.append(SimplificationPart(np.ascontiguousarray(points[used], np.float64), index[held], len(own),
                                        target, (float(guard[0]), float(guard[1]), guard[2])))
    return parts


class Simplification:
    """A simplification (:func:`simplify`) started now, its mesh from :meth:`result`.

    fast-simplification runs in processes of its own (see :mod:`.helperworker`): a large surface is cut in two
    halves (:func:`simplificationParts`), simplified side by side with the cut kept where it is, and joined again
    along it; meanwhile this process goes on, a cancel stops them at once, and their memory is given back when they
    end. Where no Python interpreter can be started, ``inProcess`` is asked, or the method is VTK's, it runs in
    :meth:`result`, half after half. The same mesh either way.

    :param measure: the helper processes go on to measure each simplified point's distance to the surface
        (:meth:`distances`) while this one repairs the mesh.
    :param helpers: helper processes started before (:meth:`startHelpers`), which have imported what they need
        meanwhile; used instead of new ones, and stopped if not needed.
    """

    @staticmethod
    def startHelpers(count: int = 2) -> list:
        """Helper processes for a simplification to come (none where no interpreter can be started)."""
        command = helperCommand("simplify")
        helpers = []
        try:
            for _ in range(count if command is not None else 0):
                helpers.append(HelperProcess(command, None, "fast-simplification", frames=True))
        except OSError as error:
            logger.warning("fast-simplification's helper process could not be started (%s)", error)
        return helpers

    def __init__(self, polyData, targetTriangles: int, method: str | None = None, inProcess: bool = False,
                 measure: bool = False, helpers: list | None = None):
        if targetTriangles <= 0:
            raise ValueError(f"Target triangle count must be positive (got {targetTriangles})")
        self.polyData, self.targetTriangles = polyData, int(targetTriangles)
        self.method = method or simplificationMethod()
        self.helpers, self.parts, self.measure = [], [], measure
        if self.method == FAST_SIMPLIFICATION and polyData.GetNumberOfPolys() > targetTriangles:
            self.parts = simplificationParts(pointsArray(polyData), trianglesArray(polyData), self.targetTriangles)
            command = None if inProcess else helperCommand("simplify")
            started = list(helpers or []) if command is not None else []
            try:
                for part in self.parts if command is not None else []:
                    data = [np.array([len(part.points), len(part.triangles), part.count, part.target,
                                      SIMPLIFICATION_AGGRESSIVENESS, int(measure)], np.int64).tobytes(),
                            np.array(part.guard, np.float64), part.points, part.triangles]
                    if started:
                        self.helpers.append(started.pop(0))
                        self.helpers[-1].send(*data)
                    else:
                        self.helpers.append(HelperProcess(command, data, "fast-simplification", frames=True))
            except OSError as error:
                self.stop()
                self.helpers = []
                logger.warning("fast-simplification runs in this process (%s could not be started: %s)",
                               command[0], error)
            helpers = started
        for helper in helpers or []:  # started before, not needed
            helper.stop()

    def result(self, merge: bool = True) -> vtk.vtkPolyData:
        """The simplified mesh (waits for it, cancellably).

        :param merge: merge the halves' copies of the points along the cut (False: :func:`repair` does it).
        """
        if self.helpers:
            pieces = [self._simplified(helper) for helper in self.helpers]
        elif self.parts:  # (made for fast-simplification only)
            from .helperworker import simplifyPart

            pieces = [simplifyPart(part.points, part.triangles, part.count, part.target,
                                   SIMPLIFICATION_AGGRESSIVENESS) for part in self.parts]
        elif self.polyData.GetNumberOfPolys() <= self.targetTriangles:
            output = vtk.vtkPolyData()
            output.ShallowCopy(self.polyData)
            return output
        else:
            quadric = vtk.vtkQuadricDecimation()
            quadric.SetTargetReduction(1.0 - self.targetTriangles / self.polyData.GetNumberOfPolys())
            quadric.VolumePreservationOn()
            # Attribute arrays (normals) are recomputed after decimation; carrying them along slows the quadrics
            # down.
            quadric.AttributeErrorMetricOff()
            return _run(quadric, self.polyData)
        offsets = np.cumsum([0] + [len(points) for points, _ in pieces[:-1]])
        joined = polyDataFromArrays(np.concatenate([points for points, _ in pieces]), np.concatenate(
            [faces + offset for (_, faces), offset in zip(pieces, offsets, strict=True)]))
        # the halves share the points of the cut (kept as they were): merged into one surface again
        return cleanMesh(joined) if len(pieces) > 1 and merge else joined

    def distances(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(points, their squared distances to the surface) of the simplified halves, as the helper processes
        measured them with ``measure`` (NaN where a half's triangles alone do not prove it); None when there are
        none (this process measures then)."""
        if not self.helpers:
            return None
        points = [self._simplified(helper)[0] for helper in self.helpers]
        return np.concatenate(points), np.concatenate([np.frombuffer(self._frame(helper, 1), np.float64)
                                                       for helper in self.helpers])

    def _frame(self, helper, index: int) -> bytes:
        try:
            data = helper.frame(index)
        except BaseException:  # a cancel or a failure: the others too
            self.stop()
            raise
        if index == int(self.measure):  # its last: it ends now
            helper.process.wait()
            helper.stop()
        return data

    def _simplified(self, helper) -> tuple[np.ndarray, np.ndarray]:
        data = self._frame(helper, 0)
        split = 16 + 24 * int(np.frombuffer(data[:16], np.int64)[0])
        return (np.frombuffer(data[16:split], np.float64).reshape(-1, 3),
                np.frombuffer(data[split:], np.int32).reshape(-1, 3))

    def stop(self) -> None:
        """Stop the helper processes, if any (when their results are no longer wanted)."""
        for helper in self.helpers:
            helper.stop()


def simplify(polyData, targetTriangles: int, method: str | None = None) -> vtk.vtkPolyData:
    """Reduce to about ``targetTriangles`` triangles by quadric edge collapses. The result may be open or cross
    itself in a few places: :func:`decimateClosed` repairs and checks it.

    :param polyData: closed manifold triangle mesh.
    :param targetTriangles: wanted number of triangles (> 0); nothing is done when the mesh has no more.
    :param method: FAST_SIMPLIFICATION or VTK_QUADRIC; default :func:`simplificationMethod`.
    """
    return Simplification(polyData, targetTriangles, method).result()


#: A decimated mesh further than this from the surface it was made from is not kept (mm): a repair that closed a
#: large hole with a flat patch, or a collapse that folded a thin wall.
MAXIMUM_DEVIATION_MM = 0.5


def decimateClosed(polyData, targetTriangles: int, minimumShellVolumeMm3: float = 0.0, attempts: int = 2,
                   maximumDeviationMm: float = MAXIMUM_DEVIATION_MM, method: str | None = None,
                   helpers: list | None = None) -> tuple[vtk.vtkPolyData, dict, RepairLog]:
    """Decimate towards ``targetTriangles``; the result is never worse than the undecimated surface.

    The mesh is simplified (:func:`simplify`) and repaired (:func:`repair`, bounded), and kept only if it is
    closed, manifold, free of crossings and within ``maximumDeviationMm`` of the input everywhere it was
    measured (:func:`.meshdata.surfaceDeviation`: every vertex, and the middle of every triangle the repair
    made). Otherwise it is done again with twice the triangles; when no attempt is kept, the input itself is
    repaired and returned undecimated, and the info says why.

    :param polyData: closed manifold triangle mesh (the surface conversion's, repaired).
    :param targetTriangles: wanted number of triangles.
    :param helpers: helper processes for the first simplification (:meth:`Simplification.startHelpers`); stopped
        here if not used.
    :return: (mesh, {"requestedTriangles", "triangles", "attempts", "decimated", "method", "deviation",
        "rejected"}, repair log of the result).
    """
    method = method or simplificationMethod()
    info = {"requestedTriangles": int(targetTriangles), "triangles": polyData.GetNumberOfPolys(), "attempts": 0,
            "decimated": False, "method": None, "deviation": None, "rejected": []}
    target, reference = targetTriangles, None
    for attempt in range(1, attempts + 1):
        if target >= polyData.GetNumberOfPolys():
            break
        info["attempts"] = attempt
        # a little below the target: refining crossings adds a few triangles, and the target is a maximum; the
        # helper processes measure the simplified points' distances while this one repairs
        simplification = Simplification(polyData, max(4, int(target * 0.998)), method, measure=True,
                                        helpers=helpers)
        helpers = None  # used (or stopped) by the first
        try:
            reference = reference or ReferenceSurface(polyData)
            simplified = simplification.result(merge=False)  # the repair merges the cut's points
            checkpoint()
            candidate, log = repair(simplified, minimumShellVolumeMm3, final=True, reference=reference)
            deviation = None
            if isPrintable(candidate, log):
                # only cutting out and filling, refining or splitting a vertex makes triangles (the other steps
                # remove triangles, merge points or turn triangles over)
                made = log.rounds or log.refined or log.nonManifoldVerticesSplit
                deviation = surfaceDeviation(candidate, reference.locator,
                                             extraSamples=newTriangles(simplified, candidate) if made else None,
                                             known=simplification.distances())
        finally:
            simplification.stop()
        if deviation is None:
            info["rejected"].append(f"{target} triangles: {log.defectsLeft} defects left after {log.rounds} rounds "
                                    "of repair")
        elif deviation["maximumMm"] <= maximumDeviationMm:
            info.update(triangles=candidate.GetNumberOfPolys(), decimated=True, method=method, deviation=deviation)
            return candidate, info, log
        else:
            info["rejected"].append(f"{target} triangles: {deviation['maximumMm']:.2f} mm from the surface "
                                    f"(limit {maximumDeviationMm:g} mm)")
        target *= 2
    for helper in helpers or []:  # none was needed
        helper.stop()
    polyData, log = repair(polyData, minimumShellVolumeMm3, final=True)
    info["triangles"] = polyData.GetNumberOfPolys()
    return polyData, info, log


#: Up to this many shells are placed in another by :func:`.meshdata.enclosedByRay`, more by
#: vtkSelectEnclosedPoints (whose cell locator then pays for itself).
RAY_PROBES = 8


def keepParts(polyData, keepLargest: bool = True, minimumVolumeMm3: float = 0.0,
              minimumShellVolumeMm3: float = 0.0, shells: tuple | None = None) -> tuple[vtk.vtkPolyData, int, int]:
    """Keep the largest part (or the parts of at least ``minimumVolumeMm3``) with the cavities inside them.

    A part is a shell enclosing material, counted with the cavities it seals; a shell inside a cavity is a part
    of its own. The surface placed from the intensities can bring back crumbs of what the Islands effect
    removed, at a distance of a voxel: this makes the model hold what the Islands step kept, and no more.

    :param polyData: closed triangle mesh.
    :param minimumShellVolumeMm3: shells enclosing less are dropped first, as :func:`removeSmallShells` does (one
        labelling of the shells for both).
    :param shells: :func:`.meshdata.shellVolumes` of the mesh, if they were found already.
    :return: (mesh, parts removed, small shells removed).
    """
    labelled, labels, shells, volumes = shells or shellVolumes(polyData)
    if shells <= 1:
        return polyData, 0, 0
    triangles, points = trianglesArray(labelled), pointsArray(labelled)
    volumes = np.abs(volumes)
    crumbs = volumes < minimumShellVolumeMm3
    volumes[crumbs] = 0.0  # not a container of anything, and dropped below
    # nesting: the enclosing shell of each shell is the smallest shell that contains a point of it; crumbs are
    # dropped whatever holds them, so only the other shells are placed, and only in shells whose bounding box
    # holds their point
    firstTriangle = np.zeros(shells, np.int64)
    firstTriangle[labels[::-1]] = np.arange(len(labels))[::-1]
    probes = points[triangles[firstTriangle, 0]]
    pointShell = np.full(len(points), -1)
    checkpoint()
    pointShell[triangles.ravel()] = np.repeat(labels, 3)
    checkpoint()
    order = np.argsort(-volumes, kind="stable")
    parent = np.full(shells, -1)
    for s in order:  # largest first: a shell's smallest container is the last one found
        if volumes[s] <= 0:
            continue
        checkpoint()
        corners = points[pointShell == s]
        low, high = corners.min(axis=0), corners.max(axis=0)
        inner = [o for o in range(shells) if o != s and not crumbs[o] and volumes[o] < volumes[s]
                 and np.all((low <= probes[o]) & (probes[o] <= high))]
        if not inner:
            continue
        surface = triangles[labels == s]
        inside = enclosedByRay(points, surface, probes[inner]) if len(inner) <= RAY_PROBES else None
        if inside is None:
            probePoints = vtk.vtkPoints()
            for o in inner:
                probePoints.InsertNextPoint(*probes[o])
            probeData = vtk.vtkPolyData()
            probeData.SetPoints(probePoints)
            enclosed = vtk.vtkSelectEnclosedPoints()
            enclosed.SetInputData(probeData)
            enclosed.SetSurfaceData(polyDataFromArrays(points, surface))
            enclosed.SetTolerance(1e-9)
            update(enclosed)
            inside = [enclosed.IsInside(index) for index in range(len(inner))]
        for o, isInside in zip(inner, inside, strict=True):
            if isInside:
                parent[o] = s
    depth = np.zeros(shells, np.int64)
    for s in range(shells):
        p = parent[s]
        while p >= 0:
            depth[s] += 1
            p = parent[p]
    part = np.where(depth % 2 == 0, np.arange(shells), parent)  # a cavity belongs to the part around it
    outer = np.flatnonzero(depth % 2 == 0)
    if keepLargest:
        keptParts = {int(outer[np.argmax(volumes[outer])])}
    else:
        keptParts = {int(s) for s in outer if volumes[s] >= minimumVolumeMm3}
    keep = np.isin(part, list(keptParts)) & ~crumbs
    if keep.all():
        return polyData, 0, 0
    removed = int(np.count_nonzero(~keep[outer] & ~crumbs[outer]))
    kept = triangles[keep[labels]]
    used = np.zeros(len(points), bool)
    used[kept.ravel()] = True  # the points of the shells kept, in their order
    return (polyDataFromArrays(points[used], (np.cumsum(used) - 1)[kept]), removed,
            int(np.count_nonzero(crumbs)))


def separateParts(parts: list, stepMm: float = 0.05, iterations: int = 12,
                  clearanceMm: float = 0.001) -> tuple[list, dict]:
    """Make parts that touch (two structures sharing a boundary) stop crossing each other.

    Surfaces of neighbouring structures are computed separately and meet within hundredths of a millimetre,
    so where they touch their triangles cross; a printer would fuse or reject the overlap. Where a pair
    crosses, the vertices of the part that gave way in the segmentation (the earlier one: a later structure
    takes the voxels they share) move inwards along their normals, a step at a time, with their neighbours,
    until no pair crosses.

    :param parts: closed meshes, in structure order.
    :param clearanceMm: how far apart (about twice this) the parts must be to count as not crossing.
    :return: (meshes, {"crossingsFound", "crossingsLeft", "verticesMoved"}).
    """
    parts = [polyDataFromArrays(pointsArray(p), trianglesArray(p)) for p in parts]
    info = {"crossingsFound": 0, "crossingsLeft": 0, "verticesMoved": 0}
    if len(parts) < 2:
        return parts, info
    moved = [np.zeros(p.GetNumberOfPoints(), bool) for p in parts]
    for iteration in range(iterations):
        counts = [p.GetNumberOfPolys() for p in parts]
        owner = np.repeat(np.arange(len(parts)), counts)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        # tested with each part a clearance larger (moved out along its normals): surfaces that do not cross but lie
        # within a rounding of each other cross once written (a file stores float32 or 6 decimals)
        pairs = selfIntersections(_appendArrays([polyDataFromArrays(pointsArray(p) + clearanceMm * pointNormals(p),
                                                                    trianglesArray(p)) for p in parts]))
        pairs = pairs[owner[pairs[:, 0]] != owner[pairs[:, 1]]]
        if iteration == 0:
            info["crossingsFound"] = int(len(pairs))
        info["crossingsLeft"] = int(len(pairs))
        if len(pairs) == 0:
            break
        # of each crossing pair, the triangle of the earlier part gives way
        yielding = np.where(owner[pairs[:, 0]] < owner[pairs[:, 1]], pairs[:, 0], pairs[:, 1])
        for index, polyData in enumerate(parts):
            local = yielding[owner[yielding] == index] - first[index]
            if len(local) == 0:
                continue
            triangles, points = trianglesArray(polyData), pointsArray(polyData)
            selected = np.zeros(len(points), bool)
            selected[triangles[local].ravel()] = True
            selected[triangles[selected[triangles].any(axis=1)].ravel()] = True  # and their neighbours
            points[selected] -= stepMm * pointNormals(polyData)[selected]
            moved[index] |= selected
            parts[index] = polyDataFromArrays(points, triangles)
    info["verticesMoved"] = int(sum(m.sum() for m in moved))
    return parts, info


def _appendArrays(parts) -> vtk.vtkPolyData:
    points, triangles, offset = [], [], 0
    for polyData in parts:
        points.append(pointsArray(polyData))
        triangles.append(trianglesArray(polyData) + offset)
        offset += polyData.GetNumberOfPoints()
    return polyDataFromArrays(np.vstack(points), np.vstack(triangles))
