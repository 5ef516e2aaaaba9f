"""Step 6 of the pipeline: measure the mesh that will be printed.

Everything is computed on the mesh itself: edges shared by exactly two triangles (watertight, manifold),
connected shells, the enclosed volume with its sign (outward-facing triangles give a positive volume; an inner
cavity's shell gives a negative one), area and bounds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import vtk
from vtk.util import numpy_support


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
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    edges.sort(axis=1)
    _, inverse, counts = np.unique(edges, axis=0, return_inverse=True, return_counts=True)
    return counts[inverse.ravel()]


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
    connectivity.Update()
    labelled = connectivity.GetOutput()
    labels = labelled.GetCellData().GetArray("RegionId")
    if labels is None:
        return labelled, np.zeros(0, np.int64), 0
    shells = int(connectivity.GetNumberOfExtractedRegions())
    return labelled, numpy_support.vtk_to_numpy(labels).astype(np.int64), shells


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
