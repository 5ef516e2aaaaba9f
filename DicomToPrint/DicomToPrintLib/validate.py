"""Step 6 of the pipeline: measure the mesh that will be printed, and say whether it will print.

Everything is computed on the mesh itself (by default the STL read back from disk, as a slicer reads it):
edges shared by exactly two triangles (watertight, manifold), vertices where surfaces only touch, winding,
connected shells and how they nest (a cavity's shell faces into the cavity, so its enclosed volume is
negative), triangles crossing each other, volume, area, bounds and build volume, and the wall thickness by
casting a ray inwards from every vertex to the opposite side.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import vtk

from .meshdata import (
    edgeCounts,
    labelShells,
    nonManifoldVertexCount,
    pointNormals,
    pointsArray,
    polyDataFromArrays,
    selfIntersections,
    shellNesting,
    sortedSides,
    triangleAreas,
    trianglesArray,
    triangleVolumes,
    windingConsistent,
)
from .runtime import checkpoint

#: Ray casters for the wall thickness: Embree (Intel's, through embreex) where it is installed, else VTK's cell
#: locator. Embree casts in single precision; rays it ends within SELF_HIT_GUARD_MM of their start, where that
#: matters, are cast again by VTK.
EMBREE, VTK_LOCATOR = "embree", "vtk"

#: Embree hits closer than this (mm) to the ray's start are cast again with VTK: in single precision a ray that
#: starts 0.1 micrometre inside can touch a triangle next to its own vertex (3 of 149,604 vertices on the skull CT).
SELF_HIT_GUARD_MM = 0.05


def rayCaster() -> str:
    """The ray caster :func:`wallThickness` uses by default: EMBREE where embreex is installed (Linux and Windows
    on x86-64: the plain-Python install has it), else VTK_LOCATOR (the same thicknesses, about 6x slower)."""
    try:
        import embreex.mesh_construction  # noqa: F401
    except ImportError:
        return VTK_LOCATOR
    return EMBREE


def wallThickness(polyData, maximumMm: float = 20.0, method: str | None = None) -> np.ndarray:
    """Wall thickness at every vertex: distance along the inward normal to the first wall hit.

    :param maximumMm: rays stop here; vertices with no wall within it get NaN (thick enough to not matter).
    :param method: EMBREE or VTK_LOCATOR; default :func:`rayCaster`. They agree to within 0.001 mm (a test
        compares them on the skull CT's model).
    """
    points = pointsArray(polyData)
    if len(points) == 0:
        return np.zeros(0)
    normals = pointNormals(polyData)
    start = 1e-4  # mm: begin just inside, so the ray does not hit the vertex's own triangles
    if (method or rayCaster()) == EMBREE:
        thickness = _embreeThickness(points, trianglesArray(polyData), normals, start, maximumMm)
        again = np.flatnonzero(thickness < SELF_HIT_GUARD_MM)
    else:
        thickness, again = np.full(len(points), np.nan), np.arange(len(points))
    checkpoint()
    if len(again):
        thickness[again] = _vtkThickness(polyData, points[again], normals[again], start, maximumMm)
    return thickness


def _embreeThickness(points, triangles, normals, start: float, maximumMm: float) -> np.ndarray:
    import embreex.mesh_construction
    import embreex.rtcore_scene

    # single precision about the middle, so that a model far from the scanner's origin loses no digits
    middle = (points.min(axis=0) + points.max(axis=0)) / 2.0
    scene = embreex.rtcore_scene.EmbreeScene(robust=True)  # robust: no ray slips between two triangles
    embreex.mesh_construction.TriangleMesh(scene, (points - middle).astype(np.float32),
                                           np.ascontiguousarray(triangles, np.int32))
    hits = scene.run(((points - middle) - start * normals).astype(np.float32), (-normals).astype(np.float32),
                     dists=np.full(len(points), maximumMm - start, np.float32), output=1)
    return np.where(hits["primID"] >= 0, start + hits["tfar"].astype(np.float64), np.nan)


def _vtkThickness(polyData, points, normals, start: float, maximumMm: float) -> np.ndarray:
    locator = vtk.vtkStaticCellLocator()
    locator.SetDataSet(polyData)
    locator.BuildLocator()
    thickness = np.full(len(points), np.nan)
    parameter, position, parametric = vtk.reference(0.0), [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
    subId, cellId, cell = vtk.reference(0), vtk.reference(0), vtk.vtkGenericCell()
    # Python lists and one reused cell: a tenth less per ray than numpy rows and a cell made in every call
    origins = (points - start * normals).tolist()
    ends = (points - maximumMm * normals).tolist()
    intersect = locator.IntersectWithLine
    for i in range(len(origins)):
        if i % 4096 == 0:
            checkpoint()
        if intersect(origins[i], ends[i], 1e-6, parameter, position, parametric, subId, cellId, cell):
            thickness[i] = start + parameter.get() * (maximumMm - start)
    return thickness


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


def meshStatistics(polyData, shells: tuple | None = None, sides: tuple | None = None) -> MeshStatistics:
    """Count and measure a triangle mesh (see :class:`MeshStatistics`).

    :param shells: :func:`.meshdata.labelShells` of the mesh, if it was made already.
    :param sides: :func:`.meshdata.sortedSides` of the mesh's triangles, if made already.
    """
    labelled, labels, shells = shells or labelShells(polyData)
    triangles = trianglesArray(labelled)
    # (the edges counted on the mesh's own point numbers: the labelling renumbers the points, not the edges)
    _, boundary, nonManifold = edgeCounts(trianglesArray(polyData), sides)
    p = pointsArray(labelled)
    if len(triangles):
        perTriangleVolume = triangleVolumes(p, triangles)
        shellVolumes = np.bincount(labels, weights=perTriangleVolume, minlength=shells)
        area = float(triangleAreas(p, triangles).sum())
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
    shells = labelShells(polyData)  # for the statistics and the shells' nesting
    triangles, points = trianglesArray(polyData), pointsArray(polyData)
    sides = sortedSides(triangles) if len(triangles) else None  # for the edges' and the vertices' counts
    statistics = meshStatistics(polyData, shells, sides)
    # The crossing finder is numpy on large arrays (which lets go of Python's lock), the wall thickness Embree's
    # rays (or VTK's, one after another): side by side they take the time of the longer. The finder gets its own copy of
    # the mesh (VTK builds cell links lazily) and no progress callback (the checks here run in the caller's).
    finder = ThreadPoolExecutor(max_workers=1)
    crossingPairs = finder.submit(selfIntersections, polyDataFromArrays(points, triangles)) \
        if statistics.triangles else None
    finder.shutdown(wait=False)
    winding = windingConsistent(triangles)
    wrongWay = 0
    if statistics.watertight:
        _, _, volumes, depth = shellNesting(polyData, shells)
        wrongWay = int(np.count_nonzero((volumes > 0) != (depth % 2 == 0)))
    checkpoint()
    pinched = nonManifoldVertexCount(polyData, sides)
    checkpoint()
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
    crossings = len(crossingPairs.result()) if crossingPairs else 0
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
