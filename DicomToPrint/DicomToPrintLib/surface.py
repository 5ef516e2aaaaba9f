"""Step 4 of the pipeline: the closed surface, through the segmentation's own conversion rules.

Two ways, both Slicer's conversion rules:

- SUBVOXEL (default): the segment says *which* object; where its surface lies is taken from the intensities.
  A fraction map (see :mod:`.levels`: local ISO-50 between the levels on both sides of the boundary) becomes
  a "Fractional labelmap" and Slicer's "Fractional labelmap to closed surface" rule contours it, at the value
  that makes the surface enclose the partial-volume integral. The surface lands within a small fraction of a
  voxel of the true boundary, thin structures included.
- LABELMAP: Slicer's classic "Binary labelmap to closed surface" (discrete flying edges or surface nets, then
  windowed sinc smoothing), as the Segmentations module shows it. A binary labelmap cannot place a surface
  between voxel centres, so thin structures come out a voxel thick or thin.

Slicer's "Decimation factor" is always left at 0: its vtkDecimatePro step opens and splits surfaces, so
decimation is done afterwards by :mod:`.mesh`, which keeps the mesh closed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from . import levels, segment
from .meshdata import pointNormals, pointsArray, polyDataFromArrays, signedVolume, trianglesArray
from .runtime import (
    HelperProcess,
    checkChoice,
    checkpoint,
    helperCommand,
    inChunks,
    isSlicerApplication,
    logger,
    releaseFreedMemory,
)

FLYING_EDGES = "FLYING_EDGES"
SURFACE_NETS = "SURFACE_NETS"
CONVERSION_METHODS = {FLYING_EDGES: "0", SURFACE_NETS: "1"}

SUBVOXEL = "SUBVOXEL"
LABELMAP = "LABELMAP"
SURFACE_PLACEMENTS = (SUBVOXEL, LABELMAP)
#: Smoothing factor of each placement when none is given: Slicer's default for labelmaps (removes the voxel
#: staircase); a light one for the sub-voxel surface, which averages out noise without moving it (measured on
#: the phantoms: mean error 0.024 -> 0.016 mm on the shell, volume unchanged).
DEFAULT_SMOOTHING = {SUBVOXEL: 0.2, LABELMAP: 0.5}

CLOSED_SURFACE = slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName()
FRACTIONAL_LABELMAP = slicer.vtkSegmentationConverter.GetSegmentationFractionalLabelmapRepresentationName()


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
    # Oversampling interpolates the fractions (which blurs thin structures) and multiplies the triangles.
    segmentation.SetConversionParameter("Fractional labelmap oversampling factor", "1")
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


@dataclass
class SubvoxelSurface:
    """A sub-voxel surface and how it was placed."""

    polyData: vtk.vtkPolyData
    insideLevel: float
    outsideLevel: float
    insideLevelSource: str
    contourFraction: float
    partialVolumeMm3: float
    hollow: dict | None = None

    def describe(self) -> str:
        how = {"interior": "measured inside the object", "given": "the tissue's level, the skin being too thin to "
               "measure"}.get(self.insideLevelSource, "the object's plateau (it is thin everywhere)")
        return (f"surface at the local half-step between the levels on both sides of the boundary (overall "
                f"{self.outsideLevel:.0f} outside, {self.insideLevel:.0f} inside, {how}), contoured at fraction "
                f"{self.contourFraction:.3f}")


def _fractionalLabelmap(fraction: levels.FractionMap, volumeNode) -> slicer.vtkOrientedImageData:
    """The fraction map as Slicer's fractional labelmap: its stored levels, not copied (the image holds them)."""
    image = slicer.vtkOrientedImageData()
    k0, j0, i0 = fraction.offset
    nk, nj, ni = fraction.levels.shape
    image.SetExtent(i0, i0 + ni - 1, j0, j0 + nj - 1, k0, k0 + nk - 1)
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    image.SetImageToWorldMatrix(matrix)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(fraction.levels.reshape(-1), deep=False,
                                                               array_type=vtk.VTK_SIGNED_CHAR))
    scalarRange = vtk.vtkDoubleArray()
    scalarRange.SetName(slicer.vtkSegmentationConverter.GetScalarRangeFieldName())
    scalarRange.InsertNextValue(levels.FRACTION_MIN)
    scalarRange.InsertNextValue(levels.FRACTION_MAX)
    image.GetFieldData().AddArray(scalarRange)
    return image


class SurfaceConversion:
    """Slicer's "Fractional labelmap to closed surface" rule, in a helper process started now (see
    :mod:`.helperworker`): it imports Slicer's segmentation core while this one makes the fraction map, and
    while it converts, a Cancel is answered (``vtkSegmentation.CreateRepresentation`` holds Python's lock) and
    stops it at once. Inside Slicer (whose PythonSlicer is not the application), where no interpreter can be
    started, for a second conversion, or with ``inProcess``, the rule runs here. The same surface either way.
    """

    def __init__(self, inProcess: bool = False):
        self.helper = None
        command = None if inProcess or isSlicerApplication() else helperCommand("convert")
        if command is not None:
            try:
                self.helper = HelperProcess(command, None, "Slicer's closed surface conversion", toFile=True)
            except OSError as error:
                logger.warning("The closed surface conversion runs in this process (%s could not be started: "
                               "%s)", command[0], error)

    def convert(self, image, parameters: dict) -> vtk.vtkPolyData:
        """The closed surface of the fractional labelmap ``image`` (vtkOrientedImageData with its scalar range
        field) with the conversion ``parameters`` (names and values as text)."""
        helper, self.helper = self.helper, None  # one conversion per process
        if helper is None:
            return self._convertHere(image, parameters)
        import json

        try:
            matrix = vtk.vtkMatrix4x4()
            image.GetImageToWorldMatrix(matrix)
            scalarRange = image.GetFieldData().GetArray(slicer.vtkSegmentationConverter.GetScalarRangeFieldName())
            header = json.dumps({
                "extent": list(image.GetExtent()),
                "imageToWorld": [matrix.GetElement(r, c) for r in range(4) for c in range(4)],
                "scalarRange": [scalarRange.GetValue(i) for i in range(scalarRange.GetNumberOfValues())],
                "parameters": {str(k): str(v) for k, v in parameters.items()},
                "threads": vtk.vtkSMPTools.GetEstimatedNumberOfThreads()}).encode("utf-8")
            voxels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())  # a view: no copy is sent
            helper.send(np.array([len(header)], np.int64).tobytes(), header, np.ascontiguousarray(voxels).data)
            output = helper.result()
        finally:
            helper.stop()
        with output:  # read as it is stored, each array once, in this thread, into the arrays VTK then holds
            length = int(np.fromfile(output, np.int64, 1)[0])
            reply = json.loads(output.read(length).decode("utf-8"))
            arrays = [np.empty((reply["points"], 3), reply["pointType"]), np.empty(reply["offsets"], np.int64),
                      np.empty(reply["connectivity"], reply["sentIndexType"])]
            for array in arrays:
                if output.readinto(array.data.cast("B")) != array.nbytes:
                    raise RuntimeError("Slicer's closed surface conversion sent a shorter reply than it announced")
        polyData = vtk.vtkPolyData()
        points = vtk.vtkPoints()
        points.SetData(numpy_support.numpy_to_vtk(arrays[0]))  # no copy: the VTK array keeps the numpy one
        polyData.SetPoints(points)
        # stored as Slicer's conversion stores them (its index width), no offsets for triangles
        cells = vtk.vtkCellArray()
        indices = arrays[2].astype(reply["indexType"], copy=False)
        connectivity = numpy_support.numpy_to_vtk(indices)
        if len(arrays[1]):
            cells.SetData(numpy_support.numpy_to_vtk(arrays[1].astype(indices.dtype, copy=False)), connectivity)
        else:
            cells.SetData(3, connectivity)
        polyData.SetPolys(cells)
        return polyData

    @staticmethod
    def _convertHere(image, parameters: dict) -> vtk.vtkPolyData:
        factory = slicer.vtkSegmentationConverterFactory.GetInstance()
        rule = slicer.vtkFractionalLabelmapToClosedSurfaceConversionRule()
        if rule.GetName() not in [r.GetName() for r in factory.GetConverterRules()]:
            factory.RegisterConverterRule(rule)  # as Slicer's Segmentations logic does (none may exist yet)
        segmentation = slicer.vtkSegmentation()
        segmentation.SetSourceRepresentationName(FRACTIONAL_LABELMAP)
        fractional = slicer.vtkSegment()
        fractional.AddRepresentation(FRACTIONAL_LABELMAP, image)
        segmentation.AddSegment(fractional, "surface")
        for name, value in parameters.items():
            segmentation.SetConversionParameter(name, str(value))
        if not segmentation.CreateRepresentation(CLOSED_SURFACE, True):
            raise RuntimeError("Slicer could not convert the fractional labelmap to a closed surface")
        polyData = vtk.vtkPolyData()
        polyData.DeepCopy(segmentation.GetSegment("surface").GetRepresentation(CLOSED_SURFACE))
        segmentation.RemoveAllSegments()
        return polyData

    def stop(self) -> None:
        """Stop the helper process, if it was not used."""
        if self.helper is not None:
            self.helper.stop()
            self.helper = None


def refinePartialVolume(polyData, fraction: levels.FractionMap, volumeNode) -> vtk.vtkPolyData:
    """Move each vertex along its normal so that the mesh's partial volumes match the measured ones.

    Contouring a fraction map by linear interpolation misplaces a boundary by up to a tenth of a voxel,
    depending on where it falls between voxel centres (worst on thin structures along the slices). For the 8
    voxels around each vertex, the fraction the mesh cuts off is computed exactly for the vertex's tangent plane
    (:func:`.levels.voxelPlaneFractions`); the measured minus that, weighted as in trilinear interpolation and
    times the voxel's depth along the normal, is how far the vertex moves. One step; a second adds noise.

    :param polyData: closed surface (RAS) contoured from ``fraction``.
    """
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    ijkToRas = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    spacing = np.array(volumeNode.GetSpacing())
    directions = ijkToRas[:3, :3] / spacing  # unit voxel axes (RAS) as columns
    points = pointsArray(polyData)
    ijk = (np.c_[points, np.ones(len(points))] @ np.linalg.inv(ijkToRas).T)[:, :3] - np.array(fraction.offset[::-1])
    checkpoint()  # (0.5 s at 2000 slices since the last)
    normals = pointNormals(polyData)
    slope = (normals @ directions) * spacing  # how far along the normal one voxel step along each axis goes (mm)
    measured = fraction.levels
    # the stored levels as bytes (a view: the map is one contiguous array), and each byte's fraction
    flatMeasured, toFraction = measured.reshape(-1).view(np.uint8), levels.FractionMap.fractionTable()
    corners = np.array(list(np.ndindex(2, 2, 2)))
    residual = np.zeros(len(points))

    def refineChunk(start: int, stop: int) -> None:
        part = slice(start, stop)
        base = np.clip(np.floor(ijk[part]).astype(np.int64), 0, np.array(measured.shape[::-1]) - 2)
        weight = ijk[part] - base
        # the tangent plane's fraction of each of the 8 voxels around the vertex
        meshFraction = levels.voxelPlaneFractions(slope[part], base - ijk[part])
        # the trilinear weights per axis, as contiguous columns: the weight of the voxel at 1 along an axis, and at 0
        upper = [np.ascontiguousarray(weight[:, axis]) for axis in range(3)]
        lower = [1.0 - w for w in upper]
        # the 8 voxels' numbers in the (k, j, i) array, read with np.take (a third of the time of three indices)
        first = (base[:, 2] * measured.shape[1] + base[:, 1]) * measured.shape[2] + base[:, 0]
        for index, corner in enumerate(corners):
            # the product in np.prod's order (i, j, k): the same numbers
            w = (upper[0] if corner[0] else lower[0]) * (upper[1] if corner[1] else lower[1])
            w *= upper[2] if corner[2] else lower[2]
            offset = (corner[2] * measured.shape[1] + corner[1]) * measured.shape[2] + corner[0]
            measuredFraction = np.take(toFraction, np.take(flatMeasured, first + offset))
            residual[part] += w * (measuredFraction - meshFraction[index])

    # vertices a chunk at a time, two threads at a time: each vertex's residual is its own, the 8 voxels' arrays
    # stay small
    inChunks(refineChunk, len(points), 1 << 17)
    # depth of a voxel along the normal: its volume over the area of the surface it contains
    depth = 1.0 / np.maximum((np.abs(normals @ directions) / spacing).sum(axis=1), 1e-9)
    points += (residual * depth)[:, None] * normals
    ijk = slope = residual = depth = normals = None  # noqa: F841 (freed before the mesh is made)
    return polyDataFromArrays(points, trianglesArray(polyData))


def createSubvoxelSurface(segmentationNode, segmentId: str, volumeNode, smoothingFactor: float = 0.2,
                          preserveVolume: bool = False, refine: bool = True, hollowWallMm: float = 0.0,
                          hollowMode: str = levels.OUTSIDE_SURFACE,
                          drainHoleDiameterMm: float = 0.0, threshold: float | None = None,
                          insideLevel: float | None = None, intensitiesRead=None,
                          conversion: SurfaceConversion | None = None) -> SubvoxelSurface:
    """The segment's surface placed from the intensities of the volume (local ISO-50), see the module's text.

    The fraction map goes into a temporary segmentation (no node in the scene) as a fractional labelmap and is
    converted by Slicer's "Fractional labelmap to closed surface" rule.

    :param segmentationNode: holds the segment that says which object (binary labelmap).
    :param segmentId: the segment.
    :param volumeNode: the intensities the segment was made from.
    :param smoothingFactor: the rule's "Smoothing factor" (0 = none).
    :param preserveVolume: choose the contour value so that the surface encloses the partial-volume integral
        instead of contouring at one half. This removes the interpolation bias of a thin structure lying along
        the slices (1.8 mm plate between 1 mm slice centres: +5 % -> 0.3 % in volume) when its level is known,
        but follows any error of the estimated levels, so it is off by default.
    :param refine: correct the contour with the measured partial volumes (:func:`refinePartialVolume`).
    :param hollowWallMm: if above 0, hollow the object to this wall (:func:`.levels.hollowFraction`), in
        ``hollowMode``, with drain holes of ``drainHoleDiameterMm`` (0: none).
    :param threshold: the lower threshold that found the object (see :func:`.levels.fractionMap`).
    :param insideLevel: the level inside the object, where it is not to be measured locally (see
        :func:`.levels.fractionMap`).
    :param intensitiesRead: called with no arguments once the volume's voxels are no longer needed (the
        fraction map is made), e.g. to free them before the surface is made (its geometry is still used).
    :param conversion: a :class:`SurfaceConversion` started before (its helper process imports meanwhile);
        used once and stopped here. Default: one started now.
    :return: the surface (RAS) and how it was placed.
    """
    conversion = conversion or SurfaceConversion(inProcess=preserveVolume)
    try:
        return _subvoxelSurface(conversion, segmentationNode, segmentId, volumeNode, smoothingFactor, preserveVolume,
                                refine, hollowWallMm, hollowMode, drainHoleDiameterMm, threshold, insideLevel,
                                intensitiesRead)
    finally:
        conversion.stop()


def _subvoxelSurface(conversion: SurfaceConversion, segmentationNode, segmentId: str, volumeNode,
                     smoothingFactor: float, preserveVolume: bool, refine: bool, hollowWallMm: float, hollowMode: str,
                     drainHoleDiameterMm: float, threshold, insideLevel, intensitiesRead) -> SubvoxelSurface:
    # the object's part only (its box and the fraction map's margin), read without a mask of the whole volume
    found = segment.segmentBox(segmentationNode, segmentId, volumeNode, levels.fractionMargin(volumeNode.GetSpacing()))
    checkpoint()
    if found is None:
        raise ValueError(f"Segment '{segmentId}' is empty")
    box, mask = found
    del found  # (the mask goes once the fraction map is made)
    # no reference to the voxels is kept here: the fraction map lets them go as soon as it can
    fraction = levels.fractionMap(segment.volumeArray(volumeNode)[box], mask, volumeNode.GetSpacing(),
                                  threshold=threshold, insideLevel=insideLevel, offset=tuple(s.start for s in box),
                                  valuesRead=intensitiesRead)
    del mask
    checkpoint()
    measured, hollow = fraction, None
    if hollowWallMm > 0:
        matrix = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(matrix)
        ijkToRas = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
        fraction, hollow = levels.hollowFraction(fraction, volumeNode.GetSpacing(), ijkToRas, hollowWallMm,
                                                 hollowMode, drainHoleDiameterMm)
    voxelVolume = float(np.prod(volumeNode.GetSpacing()))
    partialVolume = fraction.unclippedSum * voxelVolume
    image = _fractionalLabelmap(fraction, volumeNode)
    parameters = {
        "Smoothing factor": str(smoothingFactor),
        "Decimation factor": "0.0",
        # no normals: the refinement computes its own from the triangles, and every later step makes a new mesh
        "Compute surface normals": "0",
        # Oversampling interpolates the fractions (which blurs thin structures) and multiplies the triangles.
        "Fractional labelmap oversampling factor": "1"}
    surfaces = {}

    def contour(value: float) -> float:
        surfaces[value] = conversion.convert(image, {**parameters, "Threshold fraction": repr(float(value))})
        checkpoint()
        return surfaces[value]

    if preserveVolume:
        value, _ = levels.volumePreservingFraction(lambda v: abs(signedVolume(contour(v))), partialVolume)
    else:
        value = 0.5
        contour(value)
    polyData = surfaces[value]
    # the fractional labelmap and the other contours, before the refinement allocates
    surfaces.clear()
    image = None  # noqa: F841 (contour's too)
    releaseFreedMemory()  # the labelmap and the conversion's reply, before the refinement allocates
    checkpoint()
    if refine and hollow is None:  # the inner wall of a hollow has no measured partial volumes to match
        polyData = refinePartialVolume(polyData, measured, volumeNode)
        checkpoint()
    return SubvoxelSurface(polyData, fraction.insideLevel, fraction.outsideLevel, fraction.insideLevelSource,
                           value, partialVolume, hollow.asDict() if hollow else None)
