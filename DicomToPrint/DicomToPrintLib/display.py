"""What the module panel puts in Slicer's scene and views, without Qt: the mesh to print as a model node coloured
by wall thickness, the segmentation shown as it changes, the modality a volume came from, and the files an
export writes.

Only MRML nodes, vtk and numpy, so the panel stays thin and these run (and are tested) on slicer-core's scene.
"""

from __future__ import annotations

import os
import re

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

#: Point array of the model node holding each vertex's wall thickness (mm).
THICKNESS_ARRAY_NAME = "WallThickness"
#: Volume node attribute with the DICOM modality of the series it was loaded from.
MODALITY_ATTRIBUTE = "DicomToPrint.Modality"
#: The colour table is the same for every limit (the display node's scalar range carries the limit), so one
#: node per scene is enough; it is found again by this singleton tag.
THICKNESS_COLOR_TAG = "DicomToPrintWallThickness"
THICKNESS_COLORS = 256
#: Colours as in the PNG preview the command line writes: bone, orange near the limit, red below it.
BONE_COLOR = (0.93, 0.89, 0.80)
NEAR_LIMIT_COLOR = (1.0, 0.55, 0.1)
THIN_COLOR = (0.85, 0.1, 0.1)


def thicknessColor(thicknessMm: float, limitMm: float) -> tuple[float, float, float]:
    """Colour of a wall thickness: red below the limit, orange fading to bone up to twice the limit, bone beyond.

    NaN (no opposite wall within reach of the rays) counts as thick.
    """
    if not np.isfinite(thicknessMm) or thicknessMm >= 2.0 * limitMm:
        return BONE_COLOR
    if thicknessMm < limitMm:
        return THIN_COLOR
    f = (thicknessMm - limitMm) / limitMm
    return tuple((1.0 - f) * o + f * b for o, b in zip(NEAR_LIMIT_COLOR, BONE_COLOR, strict=True))


def thicknessColorNode(scene):
    """The colour table for wall thickness shown over the scalar range 0 to twice the limit (one per scene)."""
    colorNode = scene.GetSingletonNode(THICKNESS_COLOR_TAG, "vtkMRMLColorTableNode")
    if colorNode is not None:
        return colorNode
    colorNode = slicer.vtkMRMLColorTableNode()
    colorNode.SetSingletonTag(THICKNESS_COLOR_TAG)
    colorNode.SetName("DicomToPrint wall thickness")
    colorNode.SetTypeToUser()
    colorNode.SetNumberOfColors(THICKNESS_COLORS)
    # Entry i stands for the fraction i / (n - 1) of the range 0 .. 2 x limit: the colours depend only on
    # thickness / limit, so a limit of 1 gives the table for every limit.
    for i in range(THICKNESS_COLORS):
        r, g, b = thicknessColor(2.0 * i / (THICKNESS_COLORS - 1), 1.0)
        colorNode.SetColor(i, "", r, g, b, 1.0)
    colorNode.SetNamesFromColors()
    return scene.AddNode(colorNode)


def appendMeshes(meshes) -> vtk.vtkPolyData:
    """One mesh of several, points in input order (the first mesh's points first), with point normals for
    smooth shading. No points are split or reordered, so per-point values of the inputs, concatenated, still
    belong to the output's points."""
    append = vtk.vtkAppendPolyData()
    for mesh in meshes:
        geometry = vtk.vtkPolyData()
        geometry.SetPoints(mesh.GetPoints())
        geometry.SetPolys(mesh.GetPolys())
        append.AddInputData(geometry)
    normals = vtk.vtkPolyDataNormals()
    normals.SetInputConnection(append.GetOutputPort())
    normals.SplittingOff()  # splitting would duplicate points at sharp edges and break the 1:1 point order
    normals.ConsistencyOff()  # the repaired meshes are oriented already; reordering triangles is not needed
    normals.AutoOrientNormalsOff()
    normals.ComputeCellNormalsOff()
    normals.Update()
    output = vtk.vtkPolyData()
    output.DeepCopy(normals.GetOutput())
    return output


def showMeshModel(scene, meshes, name: str = "DicomToPrint model", modelNode=None, thickness=None,
                  limitMm: float = 1.0):
    """Show the mesh(es) to print as one model node, coloured by wall thickness when it is given.

    :param scene: the MRML scene.
    :param meshes: vtkPolyData meshes in RAS millimetres (e.g. each segment's decimated closed surface).
    :param name: name of a new model node.
    :param modelNode: model node to update instead of adding one (ignored when it is no longer in the scene).
    :param thickness: per-point wall thickness of each mesh (mm, NaN = thick; e.g.
        :attr:`.validate.ValidationReport.thickness`), or None for a plain model.
    :param limitMm: walls thinner than this are red; orange fades to bone colour up to twice the limit.
    :return: the model node.
    """
    polyData = appendMeshes(meshes)
    if thickness is not None:
        values = np.concatenate([np.asarray(t, float) for t in thickness]) if len(thickness) else np.zeros(0)
        if len(values) != polyData.GetNumberOfPoints():
            raise ValueError(f"{len(values)} wall thickness values for {polyData.GetNumberOfPoints()} points")
        # NaN means no opposite wall was found within the rays' reach: thick, shown in bone colour (the colour
        # table clamps values above its range to its last entry).
        values = np.where(np.isfinite(values), values, 4.0 * limitMm)
        array = numpy_support.numpy_to_vtk(values.astype(np.float32), deep=True)
        array.SetName(THICKNESS_ARRAY_NAME)
        polyData.GetPointData().AddArray(array)
    if modelNode is None or not scene.IsNodePresent(modelNode):
        modelNode = scene.AddNewNodeByClass("vtkMRMLModelNode", name)
    modelNode.SetAndObservePolyData(polyData)
    if modelNode.GetDisplayNode() is None:
        modelNode.CreateDefaultDisplayNodes()
    displayNode = modelNode.GetDisplayNode()
    displayNode.SetColor(*BONE_COLOR)
    displayNode.SetVisibility(True)
    displayNode.SetVisibility2D(True)  # the outline on the slices shows where the surface lies on the image
    if thickness is not None:
        displayNode.SetActiveScalar(THICKNESS_ARRAY_NAME, vtk.vtkAssignAttribute.POINT_DATA)
        displayNode.SetAndObserveColorNodeID(thicknessColorNode(scene).GetID())
        displayNode.SetScalarRangeFlag(slicer.vtkMRMLDisplayNode.UseManualScalarRange)
        displayNode.SetScalarRange(0.0, 2.0 * limitMm)
        displayNode.ScalarVisibilityOn()
    else:
        displayNode.ScalarVisibilityOff()
    return modelNode


def setModelVisible(modelNode, visible: bool) -> None:
    if modelNode is not None and modelNode.GetDisplayNode() is not None:
        modelNode.GetDisplayNode().SetVisibility(visible)


def showSegmentation(segmentationNode, show3D: bool = True) -> None:
    """Show the segmentation in the slice views, and in 3D as a surface that Slicer updates as it is edited.

    The 3D surface is Slicer's own closed-surface conversion (what the Segment Editor's "Show 3D" does).
    """
    if segmentationNode.GetDisplayNode() is None:
        segmentationNode.CreateDefaultDisplayNodes()
    displayNode = segmentationNode.GetDisplayNode()
    displayNode.SetVisibility(True)
    displayNode.SetVisibility2D(True)
    if show3D:
        segmentationNode.CreateClosedSurfaceRepresentation()
    displayNode.SetVisibility3D(show3D)


def setVolumeModality(volumeNode, modality: str) -> None:
    """Remember the DICOM modality of a loaded series on its volume node (saved with the scene)."""
    volumeNode.SetAttribute(MODALITY_ATTRIBUTE, modality or "")


def volumeModality(volumeNode) -> str:
    """The DICOM modality of a volume: the one recorded when DicomToPrint loaded it, else, for a volume loaded
    through Slicer's DICOM browser, its first instance's Modality in the DICOM database; "" when unknown."""
    modality = volumeNode.GetAttribute(MODALITY_ATTRIBUTE)
    if modality:
        return modality
    database = getattr(slicer, "dicomDatabase", None)  # the application's; slicer-core has none
    instanceUIDs = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
    if database is None or not instanceUIDs:
        return ""
    fileName = database.fileForInstance(instanceUIDs[0])
    return database.fileValue(fileName, "0008,0060").strip() if fileName else ""


def safeFileNamePart(text: str) -> str:
    """Text usable in a file name on every system: letters, digits, '-', '_' and '.' kept, the rest '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "segment"


def exportTargets(outputPath: str, segments, oneFilePerSegment: bool) -> list[tuple[str, list[str], str]]:
    """The files an export writes: (name, segment IDs, path) for each.

    Merged: all segments into exactly ``outputPath``. One file per segment: ``outputPath`` itself when there is
    one segment, else ``<stem>_<segment name>.stl`` beside it (names made safe, made unique by their position).

    :param segments: (segment ID, segment name) pairs, in the order to write.
    """
    segments = list(segments)
    if not segments:
        raise ValueError("No segment to export")
    if not oneFilePerSegment:
        return [("all segments" if len(segments) > 1 else segments[0][1], [s for s, _ in segments], outputPath)]
    if len(segments) == 1:
        return [(segments[0][1], [segments[0][0]], outputPath)]
    stem, extension = os.path.splitext(outputPath)
    targets, used = [], set()
    for index, (segmentId, segmentName) in enumerate(segments, start=1):
        part = safeFileNamePart(segmentName)
        if part.lower() in used:
            part = f"{part}_{index}"
        used.add(part.lower())
        targets.append((segmentName, [segmentId], f"{stem}_{part}{extension or '.stl'}"))
    return targets


def seriesLabel(entry: dict) -> str:
    """One line for a series of :meth:`.dicom.DicomScan.listing`, for a pick list: number, modality,
    description, size and voxel spacing (no patient data: the listing has none)."""
    size = entry.get("size") or []
    spacing = [f"{float(v):g}" if v is not None else "?" for v in entry.get("spacingMm") or []]
    parts = [f"{entry.get('number', '?')}: {entry.get('modality') or '?'}"]
    if entry.get("description"):
        parts.append(str(entry["description"]))
    details = [f"{entry.get('slices', '?')} slices"]
    if size:
        details.append(" x ".join(str(v) for v in size))
    if spacing:
        details.append(" x ".join(spacing) + " mm")
    return " ".join(parts) + " (" + ", ".join(details) + ")"
