"""Step 5 of the pipeline: decimate and repair the surface so that it stays a closed, printable solid.

Each step takes a vtkPolyData and returns a new one (the input is never modified). All are VTK filters;
the one thing decided here is the choice and order: quadric decimation with volume preservation instead of
Slicer's vtkDecimatePro (which opens and splits surfaces), and normals made consistent without
"auto orient" (which flips inner cavity surfaces outward and inflates the volume).
"""

from __future__ import annotations

import numpy as np
import vtk

from .validate import (
    edgeUse,
    labelShells,
    pointsArray,
    polyDataFromArrays,
    signedVolume,
    trianglesArray,
    triangleVolumes,
)


def _run(algorithm, polyData) -> vtk.vtkPolyData:
    algorithm.SetInputData(polyData)
    algorithm.Update()
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
    """Merge coincident points and drop degenerate triangles (collapsed to a line or a point).

    :param polyData: input mesh.
    """
    clean = vtk.vtkCleanPolyData()
    clean.PointMergingOn()
    clean.SetTolerance(0.0)
    clean.ConvertPolysToLinesOff()  # a collapsed triangle is removed, not kept as a line
    clean.ConvertLinesToPointsOff()
    clean.ConvertStripsToPolysOn()
    return _run(clean, polyData)


def orientOutward(polyData) -> vtk.vtkPolyData:
    """Consistent triangle winding, facing outward.

    ``ConsistencyOn`` makes neighbouring triangles agree; it is not followed by ``AutoOrientNormals``, which
    turns inner cavity walls to face outward and so turns a hollow part into a solid one. The whole mesh is
    flipped when its enclosed volume comes out negative.

    :param polyData: closed triangle mesh.
    """
    normals = vtk.vtkPolyDataNormals()
    normals.ConsistencyOn()
    normals.AutoOrientNormalsOff()
    normals.SplittingOff()  # splitting duplicates points along sharp edges and opens the mesh
    normals.ComputeCellNormalsOff()
    normals.ComputePointNormalsOn()
    oriented = _run(normals, polyData)
    if signedVolume(oriented) < 0:
        reverse = vtk.vtkReverseSense()
        reverse.ReverseCellsOn()
        reverse.ReverseNormalsOn()
        oriented = _run(reverse, oriented)
    return oriented


def decimate(polyData, targetTriangles: int) -> vtk.vtkPolyData:
    """Reduce to about ``targetTriangles`` triangles with quadric decimation, preserving volume.

    Edge collapses of ``vtkQuadricDecimation`` keep a closed manifold mesh closed, and volume preservation
    keeps the surface where it was (10x reduction of a 0.5 mm-voxel surface moves it by hundredths of a mm).
    Nothing is done when the mesh is already small enough.

    :param polyData: closed triangle mesh.
    :param targetTriangles: wanted number of triangles (> 0).
    """
    if targetTriangles <= 0:
        raise ValueError(f"Target triangle count must be positive (got {targetTriangles})")
    triangles = polyData.GetNumberOfPolys()
    if triangles <= targetTriangles:
        output = vtk.vtkPolyData()
        output.ShallowCopy(polyData)
        return output
    quadric = vtk.vtkQuadricDecimation()
    quadric.SetTargetReduction(1.0 - targetTriangles / triangles)
    quadric.VolumePreservationOn()
    # Attribute arrays (normals) are recomputed after decimation; carrying them along slows the quadrics down.
    quadric.AttributeErrorMetricOff()
    return _run(quadric, polyData)


def removeSmallShells(polyData, minimumVolumeMm3: float) -> vtk.vtkPolyData:
    """Drop connected shells that enclose less than ``minimumVolumeMm3`` (in absolute value).

    Surface extraction leaves a few crumbs: shells of a few voxels where the labelmap touches itself
    diagonally, and slivers of near-zero volume. A small cavity shell dropped this way just fills the cavity,
    which a printer could not empty anyway.

    :param polyData: triangle mesh.
    :param minimumVolumeMm3: shells enclosing less are removed; 0 keeps everything.
    """
    labelled, labels, shells = labelShells(polyData)
    if shells <= 1 or minimumVolumeMm3 <= 0:
        return labelled
    triangles, points = trianglesArray(labelled), pointsArray(labelled)
    shellVolumes = np.bincount(labels, weights=triangleVolumes(points, triangles), minlength=shells)
    keep = np.abs(shellVolumes) >= minimumVolumeMm3
    if keep.all():
        return labelled
    return cleanMesh(polyDataFromArrays(points, triangles[keep[labels]]))


def closeDefects(polyData, maximumIterations: int = 8) -> tuple[vtk.vtkPolyData, int]:
    """Cut out and re-close the places where the surface is open or where more than two triangles share an edge.

    The triangles touching a bad edge, and their neighbours, are removed; the hole left is closed by
    ``vtkFillHolesFilter``; this repeats until no bad edge is left (or the iterations run out). Quadric
    decimation leaves a handful of such edges on complex anatomy (thin walls folding onto each other).

    :param polyData: triangle mesh.
    :return: (mesh, number of bad edges found in the first pass).
    """
    found = None
    for _ in range(maximumIterations):
        triangles, points = trianglesArray(polyData), pointsArray(polyData)
        use = edgeUse(triangles)
        badTriangles = (use != 2).reshape(3, -1).any(axis=0)
        if found is None:
            found = int(np.count_nonzero(use != 2))
        if not badTriangles.any():
            break
        nearBad = np.zeros(len(points), bool)
        nearBad[triangles[badTriangles].ravel()] = True
        opened = cleanMesh(polyDataFromArrays(points, triangles[~nearBad[triangles].any(axis=1)]))
        fill = vtk.vtkFillHolesFilter()
        fill.SetHoleSize(1e30)  # the holes are small by construction; their size in mm does not matter
        polyData = cleanMesh(triangulate(_run(fill, opened)))
    return polyData, found or 0


def isClosedManifold(polyData) -> bool:
    """Every edge shared by exactly two triangles (watertight, no non-manifold edges)."""
    use = edgeUse(trianglesArray(polyData))
    return len(use) > 0 and bool(np.all(use == 2))


def repair(polyData, minimumShellVolumeMm3: float = 0.0) -> vtk.vtkPolyData:
    """The standard clean-up after surface generation and after decimation: triangles only, coincident points
    merged, degenerate triangles removed, crumbs removed, open or non-manifold places re-closed, consistent
    outward winding.

    :param polyData: mesh from the closed-surface conversion or from :func:`decimate`.
    :param minimumShellVolumeMm3: remove shells enclosing less (see :func:`removeSmallShells`).
    """
    polyData = removeSmallShells(cleanMesh(triangulate(polyData)), minimumShellVolumeMm3)
    if not isClosedManifold(polyData):
        polyData, _ = closeDefects(polyData)
    return orientOutward(polyData)


def decimateClosed(polyData, targetTriangles: int, minimumShellVolumeMm3: float = 0.0,
                   attempts: int = 4) -> tuple[vtk.vtkPolyData, dict]:
    """Decimate towards ``targetTriangles`` and guarantee the result is still a closed manifold.

    After :func:`decimate` and :func:`repair`, a result that is still open or non-manifold is discarded and the
    decimation is redone with twice as many triangles; if no attempt succeeds, the input is returned
    undecimated (it is closed: the closed-surface conversion makes it so). The returned info says which.

    :param polyData: closed manifold triangle mesh.
    :param targetTriangles: wanted number of triangles.
    :return: (mesh, {"requestedTriangles", "triangles", "attempts", "decimated"}).
    """
    info = {"requestedTriangles": int(targetTriangles), "triangles": polyData.GetNumberOfPolys(), "attempts": 0,
            "decimated": False}
    target = targetTriangles
    for attempt in range(1, attempts + 1):
        if target >= polyData.GetNumberOfPolys():
            break
        info["attempts"] = attempt
        candidate = repair(decimate(polyData, target), minimumShellVolumeMm3)
        if isClosedManifold(candidate):
            info.update(triangles=candidate.GetNumberOfPolys(), decimated=True)
            return candidate, info
        target *= 2
    return polyData, info
