"""Step 6 of the pipeline: measure the mesh that will be printed, and say whether it will print.

Everything is computed on the mesh itself (by default the STL read back from disk, as a slicer reads it):
edges shared by exactly two triangles (watertight, manifold), vertices where surfaces only touch, winding,
connected shells and how they nest (a cavity's shell faces into the cavity, so its enclosed volume is
negative), triangles crossing each other, volume, area, bounds and build volume, and the wall thickness by
casting a ray inwards from every vertex to the opposite side.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import vtk
from vtk.util import numpy_support

from .runtime import checkpoint, update


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


def triangleVolumes(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Signed volume of the tetrahedron from the origin to each triangle (they sum to the enclosed volume)."""
    a, b, c = points[triangles[:, 0]], points[triangles[:, 1]], points[triangles[:, 2]]
    return np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0


def signedVolume(polyData) -> float:
    """Enclosed volume in mm^3 by the divergence theorem: positive when triangles face outward."""
    triangles = trianglesArray(polyData)
    if len(triangles) == 0:
        return 0.0
    return float(triangleVolumes(pointsArray(polyData), triangles).sum())


def edgeUse(triangles: np.ndarray) -> np.ndarray:
    """For each triangle side (3 per triangle, side k of all triangles first), how many triangles use that edge:
    2 on a closed manifold mesh, 1 on a boundary, more where sheets meet."""
    if len(triangles) == 0:
        return np.zeros(0, np.int64)
    keys = sideKeys(triangles)
    order = np.argsort(keys, kind="stable")
    sortedKeys = keys[order]
    starts = np.flatnonzero(np.concatenate([[True], sortedKeys[1:] != sortedKeys[:-1]]))
    counts = np.diff(np.concatenate([starts, [len(keys)]]))
    use = np.empty(len(keys), np.int64)
    use[order] = np.repeat(counts, counts)
    return use


def triangleAreas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    a, b, c = points[triangles[:, 0]], points[triangles[:, 1]], points[triangles[:, 2]]
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


def sideKeys(triangles: np.ndarray, directed: bool = False) -> np.ndarray:
    """One integer per triangle side (side k of all triangles first): the edge's two point indices combined,
    smaller first unless ``directed``. Sorting integers is many times faster than sorting rows."""
    start = np.concatenate([triangles[:, 0], triangles[:, 1], triangles[:, 2]]).astype(np.int64)
    end = np.concatenate([triangles[:, 1], triangles[:, 2], triangles[:, 0]]).astype(np.int64)
    if not directed:
        start, end = np.minimum(start, end), np.maximum(start, end)
    return start * (int(triangles.max()) + 1) + end


def windingConsistent(triangles: np.ndarray) -> bool:
    """Each edge traversed once in each direction by the triangles that share it (a consistently wound mesh)."""
    if len(triangles) == 0:
        return True
    keys = np.sort(sideKeys(triangles, directed=True))
    return not bool(np.any(keys[1:] == keys[:-1]))


def edgeCounts(triangles: np.ndarray) -> tuple[int, int, int]:
    """(edges, boundary edges, non-manifold edges): how many triangles share each undirected edge."""
    if len(triangles) == 0:
        return 0, 0, 0
    use = edgeUse(triangles)
    # each edge appears `use` times among the sides: weight by 1/use to count edges
    return (int(round((1.0 / use).sum())), int(np.count_nonzero(use == 1)),
            int(round((1.0 / use[use > 2]).sum())))


def labelShells(polyData) -> tuple[vtk.vtkPolyData, np.ndarray, int]:
    """The mesh with its triangles numbered by shell (connected through shared points).

    :return: (mesh as output by vtkConnectivityFilter, per-triangle shell number, number of shells).
    """
    connectivity = vtk.vtkConnectivityFilter()
    connectivity.SetInputData(polyData)
    connectivity.SetExtractionModeToAllRegions()
    connectivity.ColorRegionsOn()
    update(connectivity)
    labelled = connectivity.GetOutput()
    labels = labelled.GetCellData().GetArray("RegionId")
    if labels is None:
        return labelled, np.zeros(0, np.int64), 0
    shells = int(connectivity.GetNumberOfExtractedRegions())
    return labelled, numpy_support.vtk_to_numpy(labels).astype(np.int64), shells


def shellNesting(polyData) -> tuple[vtk.vtkPolyData, np.ndarray, np.ndarray, np.ndarray]:
    """Each shell's signed volume and how many other shells enclose it.

    :return: (mesh labelled by shell, per-triangle shell, per-shell signed volume, per-shell nesting depth).
    """
    labelled, labels, shells = labelShells(polyData)
    triangles, points = trianglesArray(labelled), pointsArray(labelled)
    volumes = np.bincount(labels, weights=triangleVolumes(points, triangles), minlength=shells)
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


def _trianglesCross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For pairs of triangles (m, 3, 3) each, whether their interiors cross (Moeller's interval test).

    Triangles that only touch (at a vertex or along an edge) or lie in one plane do not count.
    """
    def sides(t, origin, normal):
        return np.einsum("mkj,mj->mk", t - origin[:, None, :], normal)

    normalA = np.cross(a[:, 1] - a[:, 0], a[:, 2] - a[:, 0])
    normalB = np.cross(b[:, 1] - b[:, 0], b[:, 2] - b[:, 0])
    scale = np.maximum(np.abs(a).max(axis=(1, 2)), np.abs(b).max(axis=(1, 2))) + 1.0
    eps = 1e-9 * scale * scale
    distanceA = sides(a, b[:, 0], normalB)  # a's corners against b's plane
    distanceB = sides(b, a[:, 0], normalA)
    straddle = ((distanceA.max(1) > eps) & (distanceA.min(1) < -eps)
                & (distanceB.max(1) > eps) & (distanceB.min(1) < -eps))
    axis = np.argmax(np.abs(np.cross(normalA, normalB)), axis=1)
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

    Candidates come from a uniform grid of cells twice the median edge long (triangles sharing a cell), then
    bounding boxes, then Moeller's triangle-triangle test on numpy arrays.

    :param involving: per-triangle mask: only pairs with at least one of these triangles are tested (e.g. the
        triangles a repair has just made; the rest of the mesh was checked before).
    """
    triangles, points = trianglesArray(polyData), pointsArray(polyData)
    n = len(triangles)
    if n < 2:
        return np.zeros((0, 2), np.int64)
    corners = points[triangles]
    low, high = corners.min(axis=1), corners.max(axis=1)
    # the box test on float32 copies: half the memory traffic, and rounding keeps every overlapping pair
    low32, high32 = low.astype(np.float32), high.astype(np.float32)
    cell = max(float(np.median(np.linalg.norm(corners[:, 1] - corners[:, 0], axis=1))), 1e-9)
    start = np.floor((low - low.min(axis=0)) / cell).astype(np.int64)
    span = np.floor((high - low.min(axis=0)) / cell).astype(np.int64) - start + 1
    count = span.prod(axis=1)
    owner = np.repeat(np.arange(n), count)
    local = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    sx, sy = span[owner, 0], span[owner, 1]
    ix = start[owner, 0] + local % sx
    iy = start[owner, 1] + (local // sx) % sy
    iz = start[owner, 2] + local // (sx * sy)
    dims = (start + span).max(axis=0) + 1
    key = (ix * dims[1] + iy) * dims[2] + iz
    checkpoint()
    order = np.argsort(key, kind="stable")
    key, owner = key[order], owner[order]
    checkpoint()
    groupStart = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    groupSize = np.diff(np.concatenate([groupStart, [len(key)]]))
    if involving is not None:  # only the cells that hold one of the triangles asked about
        involvingCell = np.add.reduceat(involving[owner].astype(np.int64), groupStart) > 0
        groupStart, groupSize = groupStart[involvingCell], groupSize[involvingCell]
    candidates = []
    for size in np.unique(groupSize[groupSize > 1]):  # all pairs within each cell, batched by cell size
        checkpoint()
        members = owner[groupStart[groupSize == size][:, None] + np.arange(size)[None, :]]
        first, second = np.triu_indices(size, 1)
        pairs = np.stack([members[:, first].ravel(), members[:, second].ravel()], axis=1)
        # cheap filters before removing repeats: bounding boxes overlap, no shared corner
        if involving is not None:
            pairs = pairs[involving[pairs[:, 0]] | involving[pairs[:, 1]]]
        a, b = pairs[:, 0], pairs[:, 1]
        pairs = pairs[np.all((low32[a] <= high32[b]) & (low32[b] <= high32[a]), axis=1)]
        a, b = triangles[pairs[:, 0]], triangles[pairs[:, 1]]
        candidates.append(pairs[~(a[:, :, None] == b[:, None, :]).any(axis=(1, 2))])
    if not candidates:
        return np.zeros((0, 2), np.int64)
    pairs = np.concatenate(candidates)
    pairs = np.unique(np.minimum(pairs[:, 0], pairs[:, 1]) * n + np.maximum(pairs[:, 0], pairs[:, 1]))
    pairs = np.stack([pairs // n, pairs % n], axis=1)
    crossing = []
    for i in range(0, len(pairs), chunk):
        checkpoint()
        crossing.append(pairs[i:i + chunk][_trianglesCross(corners[pairs[i:i + chunk, 0]],
                                                           corners[pairs[i:i + chunk, 1]])])
    return np.concatenate(crossing) if crossing else np.zeros((0, 2), np.int64)


def pointNormals(polyData) -> np.ndarray:
    """Per-point unit normals from the triangles' winding (area-weighted), outward on an oriented mesh.

    Computed here rather than read from the mesh: normals carried in its point data may be stale.
    """
    triangles, points = trianglesArray(polyData), pointsArray(polyData)
    a, b, c = points[triangles[:, 0]], points[triangles[:, 1]], points[triangles[:, 2]]
    faceNormals = np.cross(b - a, c - a)  # length: twice the area
    corners = triangles.T.ravel()  # every triangle's first corners, then second, then third
    normals = np.stack([np.bincount(corners, weights=np.tile(faceNormals[:, axis], 3), minlength=len(points))
                        for axis in range(3)], axis=1)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-300)


def wallThickness(polyData, maximumMm: float = 20.0) -> np.ndarray:
    """Wall thickness at every vertex: distance along the inward normal to the first wall hit.

    :param maximumMm: rays stop here; vertices with no wall within it get NaN (thick enough to not matter).
    """
    points = pointsArray(polyData)
    if len(points) == 0:
        return np.zeros(0)
    normals = pointNormals(polyData)
    locator = vtk.vtkStaticCellLocator()
    locator.SetDataSet(polyData)
    locator.BuildLocator()
    thickness = np.full(len(points), np.nan)
    start = 1e-4  # mm: begin just inside, so the ray does not hit the vertex's own triangles
    parameter, position, parametric = vtk.reference(0.0), [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
    subId, cellId = vtk.reference(0), vtk.reference(0)
    origins = points - start * normals
    ends = points - maximumMm * normals
    for i in range(len(points)):
        if i % 4096 == 0:
            checkpoint()
        if locator.IntersectWithLine(origins[i], ends[i], 1e-6, parameter, position, parametric, subId, cellId):
            thickness[i] = start + parameter.get() * (maximumMm - start)
    return thickness


def surfaceDeviation(polyData, reference, extraSamples: np.ndarray | None = None) -> dict:
    """How far a mesh lies from a reference surface (mm): the distance from every vertex, and from the middle of
    each triangle flagged in ``extraSamples`` (e.g. those a repair made, whose vertices alone would not show a
    patch across a hole), to the nearest point of the reference.

    :param reference: the reference surface (vtkPolyData), or a cell locator built on it.
    :return: {"meanMm", "p95Mm", "maximumMm", "samples"}.
    """
    points = pointsArray(polyData)
    if extraSamples is not None and extraSamples.any():
        points = np.vstack([points, points[trianglesArray(polyData)[extraSamples]].mean(axis=1)])
    if len(points) == 0:
        return {"meanMm": 0.0, "p95Mm": 0.0, "maximumMm": 0.0, "samples": 0}
    locator = reference
    if not reference.IsA("vtkAbstractCellLocator"):
        locator = vtk.vtkStaticCellLocator()
        locator.SetDataSet(reference)
        locator.BuildLocator()
    closest, cellId, subId, squared = [0.0, 0.0, 0.0], vtk.reference(0), vtk.reference(0), vtk.reference(0.0)
    distance = np.empty(len(points))
    for i, point in enumerate(points.tolist()):
        if i % 8192 == 0:
            checkpoint()
        locator.FindClosestPoint(point, closest, cellId, subId, squared)
        distance[i] = squared.get()
    distance = np.sqrt(distance)
    return {"meanMm": round(float(distance.mean()), 4), "p95Mm": round(float(np.percentile(distance, 95)), 4),
            "maximumMm": round(float(distance.max()), 4), "samples": int(len(points))}


@dataclass
class MeshStatistics:
    """Facts about a triangle mesh, in the units of its coordinates (mm)."""

    triangles: int
    points: int
    boundaryEdges: int
    nonManifoldEdges: int
    shells: int
    #: Shells enclosing material (positive volume); cavities inside them do not count as parts.
    parts: int
    volumeMm3: float
    areaMm2: float
    bounds: list[float]

    @property
    def watertight(self) -> bool:
        return self.triangles > 0 and self.boundaryEdges == 0 and self.nonManifoldEdges == 0

    def asDict(self) -> dict:
        result = asdict(self)
        result["watertight"] = self.watertight
        return result


def meshStatistics(polyData) -> MeshStatistics:
    """Count and measure a triangle mesh (see :class:`MeshStatistics`)."""
    labelled, labels, shells = labelShells(polyData)
    triangles = trianglesArray(labelled)
    _, boundary, nonManifold = edgeCounts(triangles)
    p = pointsArray(labelled)
    if len(triangles):
        a, b, c = p[triangles[:, 0]], p[triangles[:, 1]], p[triangles[:, 2]]
        perTriangleVolume = triangleVolumes(p, triangles)
        shellVolumes = np.bincount(labels, weights=perTriangleVolume, minlength=shells)
        area = float(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum())
        volume = float(perTriangleVolume.sum())
    else:
        shellVolumes, area, volume = np.zeros(0), 0.0, 0.0
    return MeshStatistics(
        triangles=int(len(triangles)), points=int(polyData.GetNumberOfPoints()),
        boundaryEdges=boundary, nonManifoldEdges=nonManifold, shells=shells,
        parts=int(np.count_nonzero(shellVolumes > 0)), volumeMm3=volume, areaMm2=area,
        bounds=[float(v) for v in polyData.GetBounds()])


#: A common desktop printer's build volume (mm), e.g. Prusa MK-class: 250 x 210 x 210.
BUILD_VOLUME_MM = (250.0, 210.0, 210.0)


@dataclass
class WallThickness:
    """Wall thickness over the surface (from :func:`wallThickness`)."""

    limitMm: float
    minimumMm: float | None
    percentile5Mm: float | None
    thinAreaMm2: float
    thinAreaPercent: float


@dataclass
class ValidationReport:
    """Whether the mesh will print, and why not."""

    statistics: MeshStatistics
    nonManifoldVertices: int
    windingConsistent: bool
    shellsFacingWrongWay: int
    selfIntersections: int
    boundingBoxMm: list[float]
    buildVolumeMm: list[float]
    fitsBuildVolume: bool
    wallThickness: WallThickness | None
    printable: bool
    reasons: list[str]
    warnings: list[str]
    #: per-point wall thickness (mm, NaN where thicker than the rays reach), for display; not in asDict()
    thickness: np.ndarray | None = None

    def asDict(self) -> dict:
        s = self.statistics
        return {
            "printable": self.printable,
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "watertight": s.watertight,
            "boundaryEdges": s.boundaryEdges,
            "nonManifoldEdges": s.nonManifoldEdges,
            "nonManifoldVertices": self.nonManifoldVertices,
            "orientation": "outward" if self.windingConsistent and not self.shellsFacingWrongWay else "inconsistent",
            "selfIntersections": self.selfIntersections,
            "triangles": s.triangles,
            "shells": s.shells,
            "parts": s.parts,
            "volumeCm3": round(s.volumeMm3 / 1000.0, 3),
            "surfaceAreaCm2": round(s.areaMm2 / 100.0, 3),
            "boundingBoxMm": [round(v, 2) for v in self.boundingBoxMm],
            "buildVolumeMm": list(self.buildVolumeMm),
            "fitsBuildVolume": self.fitsBuildVolume,
            "wallThickness": asdict(self.wallThickness) if self.wallThickness else None,
        }

    def summaryLines(self) -> list[str]:
        d = self.asDict()
        wall = self.wallThickness
        lines = [
            f"{'PRINTABLE' if self.printable else 'NOT PRINTABLE'}" + ("" if self.printable else
                                                                     ": " + "; ".join(self.reasons)),
            f"watertight {d['watertight']}, non-manifold edges {d['nonManifoldEdges']}, vertices "
            f"{d['nonManifoldVertices']}, orientation {d['orientation']}, self-intersections {d['selfIntersections']}",
            f"{d['triangles']} triangles, {d['parts']} part(s) in {d['shells']} shell(s), {d['volumeCm3']:.2f} cm^3, "
            f"{d['surfaceAreaCm2']:.1f} cm^2",
            "bounding box " + " x ".join(f"{v:.1f}" for v in d["boundingBoxMm"]) + " mm, "
            + ("fits" if self.fitsBuildVolume else "does NOT fit")
            + " the build volume " + " x ".join(f"{v:g}" for v in self.buildVolumeMm) + " mm",
        ]
        if wall:
            minimum = "n/a" if wall.minimumMm is None else f"{wall.minimumMm:.2f}"
            p5 = "n/a" if wall.percentile5Mm is None else f"{wall.percentile5Mm:.2f}"
            lines.append(f"wall thickness: minimum {minimum} mm, 5th percentile {p5} mm, "
                         f"{wall.thinAreaMm2 / 100.0:.2f} cm^2 ({wall.thinAreaPercent:.1f} %) thinner than "
                         f"{wall.limitMm:g} mm")
        lines.extend(f"warning: {w}" for w in self.warnings)
        return lines


def _percentileOrNone(values: np.ndarray, percent: float) -> float | None:
    """The percentile (linear, as numpy's) with NaN counted as larger than anything; None when it falls there
    (e.g. more than 95 % of a thick body's vertices have no wall within the rays' reach)."""
    ordered = np.sort(np.where(np.isfinite(values), values, np.inf))
    position = percent / 100.0 * (len(ordered) - 1)
    low, high = ordered[int(np.floor(position))], ordered[int(np.ceil(position))]
    if not np.isfinite(high):
        return None
    return round(float(low + (high - low) * (position - np.floor(position))), 4)


def validateMesh(polyData, buildVolumeMm=BUILD_VOLUME_MM, wallThicknessLimitMm: float = 1.0,
                 maximumThinAreaPercent: float = 10.0, computeWallThickness: bool = True) -> ValidationReport:
    """Check a mesh for printing.

    Not printable: open or non-manifold edges, non-manifold vertices, inconsistent or wrong-way winding,
    self-intersections, no triangles, larger than the build volume in every axis order, or more than
    ``maximumThinAreaPercent`` of the surface thinner than ``wallThicknessLimitMm``. Thinner walls on a smaller
    area are a warning (thin plates of bone are real; the print lab decides).

    :param polyData: the mesh as it will be printed (e.g. the STL read back).
    :param buildVolumeMm: the printer's build volume (x, y, z) in mm.
    :param wallThicknessLimitMm: walls thinner than this are reported.
    """
    from .mesh import nonManifoldVertexCount  # mesh builds on this module

    statistics = meshStatistics(polyData)
    triangles, points = trianglesArray(polyData), pointsArray(polyData)
    winding = windingConsistent(triangles)
    wrongWay = 0
    if statistics.watertight:
        _, _, volumes, depth = shellNesting(polyData)
        wrongWay = int(np.count_nonzero((volumes > 0) != (depth % 2 == 0)))
    checkpoint()
    pinched = nonManifoldVertexCount(polyData)
    checkpoint()
    crossings = len(selfIntersections(polyData)) if statistics.triangles else 0
    bounds = statistics.bounds
    box = [bounds[1] - bounds[0], bounds[3] - bounds[2], bounds[5] - bounds[4]] if statistics.triangles else [0.0] * 3
    fits = bool(np.all(np.sort(box) <= np.sort(np.asarray(buildVolumeMm, float)) + 1e-9))
    wall, thickness = None, None
    if computeWallThickness and statistics.triangles:
        thickness = wallThickness(polyData, maximumMm=max(20.0, 10.0 * wallThicknessLimitMm))
        measured = thickness[np.isfinite(thickness)]
        perTriangle = np.nanmean(np.where(np.isfinite(thickness), thickness, np.inf)[triangles], axis=1)
        areas = triangleAreas(points, triangles)
        thinArea = float(areas[perTriangle < wallThicknessLimitMm].sum())
        wall = WallThickness(
            limitMm=wallThicknessLimitMm,
            minimumMm=round(float(measured.min()), 4) if len(measured) else None,
            percentile5Mm=_percentileOrNone(thickness, 5),
            thinAreaMm2=round(thinArea, 3),
            thinAreaPercent=round(100.0 * thinArea / max(statistics.areaMm2, 1e-12), 3))
    reasons, warnings = [], []
    if statistics.triangles == 0:
        reasons.append("the mesh is empty")
    if statistics.boundaryEdges:
        reasons.append(f"not watertight: {statistics.boundaryEdges} open edges")
    if statistics.nonManifoldEdges:
        reasons.append(f"{statistics.nonManifoldEdges} non-manifold edges")
    if pinched:
        reasons.append(f"{pinched} non-manifold vertices")
    if not winding or wrongWay:
        reasons.append("triangles do not all face outward" + (f" ({wrongWay} shells inside out)" if wrongWay else ""))
    if crossings:
        reasons.append(f"{crossings} pairs of triangles cross each other")
    if not fits:
        reasons.append("larger than the build volume " + " x ".join(f"{v:g}" for v in buildVolumeMm) + " mm")
    if wall and wall.thinAreaMm2 > 0:
        text = (f"{wall.thinAreaMm2 / 100.0:.2f} cm^2 ({wall.thinAreaPercent:.1f} % of the surface) has walls "
                f"thinner than {wallThicknessLimitMm:g} mm (minimum {wall.minimumMm:.2f} mm)")
        (reasons if wall.thinAreaPercent > maximumThinAreaPercent else warnings).append(text)
    return ValidationReport(statistics, pinched, winding, wrongWay, crossings, box,
                            [float(v) for v in buildVolumeMm], fits, wall, not reasons, reasons, warnings, thickness)


def reportTableNode(report: ValidationReport, scene, name: str = "DicomToPrint validation",
                    provenance: dict | None = None):
    """The report as a vtkMRMLTableNode (Check, Value, Result) in the scene, where it is saved with the scene.

    :param provenance: rows to add after the checks (e.g. software versions, input fingerprint, output hashes).
    """
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    columns = []
    for title in ("Check", "Value", "Result"):
        column = vtk.vtkStringArray()
        column.SetName(title)
        table.AddColumn(column)
        columns.append(column)
    d = report.asDict()
    wall = report.wallThickness

    def row(check, value, ok):
        table.AddEmptyRow()
        index = table.GetNumberOfRows() - 1
        for column, text in enumerate((check, str(value), "" if ok is None else ("pass" if ok else "FAIL"))):
            table.SetCellText(index, column, text)

    row("Printable", "yes" if report.printable else "no: " + "; ".join(report.reasons), report.printable)
    row("Watertight", f"{d['boundaryEdges']} open edges", d["watertight"])
    row("Manifold", f"{d['nonManifoldEdges']} edges, {d['nonManifoldVertices']} vertices",
        not d["nonManifoldEdges"] and not d["nonManifoldVertices"])
    row("Orientation", d["orientation"], d["orientation"] == "outward")
    row("Self-intersections", d["selfIntersections"], d["selfIntersections"] == 0)
    row("Shells / parts", f"{d['shells']} / {d['parts']}", None)
    row("Volume", f"{d['volumeCm3']:.2f} cm^3", None)
    row("Surface area", f"{d['surfaceAreaCm2']:.1f} cm^2", None)
    row("Bounding box", " x ".join(f"{v:.1f}" for v in d["boundingBoxMm"]) + " mm", None)
    row("Fits build volume", " x ".join(f"{v:g}" for v in d["buildVolumeMm"]) + " mm", d["fitsBuildVolume"])
    if wall:
        row("Minimum wall thickness", "n/a" if wall.minimumMm is None else f"{wall.minimumMm:.2f} mm", None)
        row("5th percentile wall", "n/a" if wall.percentile5Mm is None else f"{wall.percentile5Mm:.2f} mm", None)
        row(f"Area thinner than {wall.limitMm:g} mm", f"{wall.thinAreaMm2 / 100.0:.2f} cm^2 "
            f"({wall.thinAreaPercent:.1f} %)", not any("thinner" in r for r in report.reasons))
    for key, value in (provenance or {}).items():
        row(key, value, None)
    return table
