"""Step 4 of the pipeline: the closed surface, through the segmentation's own conversion rules.

Slicer's "Binary labelmap to closed surface" rule runs discrete flying edges (or surface nets) and a windowed
sinc smoother. Its "Decimation factor" is always left at 0 here: Slicer's vtkDecimatePro step opens and splits
surfaces, so decimation is done afterwards by :mod:`.mesh`, which keeps the mesh closed.
"""

from __future__ import annotations

import slicer
import vtk

from .runtime import checkChoice

FLYING_EDGES = "FLYING_EDGES"
SURFACE_NETS = "SURFACE_NETS"
CONVERSION_METHODS = {FLYING_EDGES: "0", SURFACE_NETS: "1"}

CLOSED_SURFACE = slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName()


def createClosedSurface(segmentationNode, conversionMethod: str = FLYING_EDGES, smoothingFactor: float = 0.5,
                        jointSmoothing: bool = False) -> None:
    """(Re)create the closed-surface representation of every segment with the given conversion parameters.

    :param segmentationNode: segmentation whose source representation is converted.
    :param conversionMethod: FLYING_EDGES (Slicer's default) or SURFACE_NETS.
    :param smoothingFactor: the rule's "Smoothing factor", 0 (none) to 1 (strong); Slicer's default 0.5.
    :param jointSmoothing: smooth all segments together so neighbours keep touching ("Joint smoothing").
    """
    checkChoice("conversion method", conversionMethod, CONVERSION_METHODS)
    if not 0.0 <= smoothingFactor <= 1.0:
        raise ValueError(f"Smoothing factor must be within 0-1 (got {smoothingFactor})")
    segmentation = segmentationNode.GetSegmentation()
    segmentation.SetConversionParameter("Conversion method", CONVERSION_METHODS[conversionMethod])
    segmentation.SetConversionParameter("Smoothing factor", str(smoothingFactor))
    segmentation.SetConversionParameter("Decimation factor", "0.0")
    segmentation.SetConversionParameter("Joint smoothing", "1" if jointSmoothing else "0")
    # Surface nets without smoothing gives quads; smoothing in the windowed sinc filter keeps triangles.
    segmentation.SetConversionParameter("SurfaceNets smoothing", "0")
    segmentation.SetConversionParameter("Compute surface normals", "1")
    segmentationNode.RemoveClosedSurfaceRepresentation()
    if not segmentationNode.CreateClosedSurfaceRepresentation():
        raise RuntimeError("Slicer could not convert the segmentation to a closed surface")


def closedSurface(segmentationNode, segmentId: str) -> vtk.vtkPolyData:
    """A copy of the segment's closed surface (world coordinates, RAS)."""
    polyData = vtk.vtkPolyData()
    if not segmentationNode.GetClosedSurfaceRepresentation(segmentId, polyData):
        raise RuntimeError(f"Segment '{segmentId}' has no closed surface representation")
    return polyData


def setClosedSurface(segmentationNode, segmentId: str, polyData) -> None:
    """Make a (decimated, repaired) mesh the segment's closed surface, which is what Slicer's export writes.

    The binary labelmap stays the source representation, so Slicer keeps this surface until the labelmap
    changes.
    """
    segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
    stored = vtk.vtkPolyData()
    stored.DeepCopy(polyData)
    segment.AddRepresentation(CLOSED_SURFACE, stored)
