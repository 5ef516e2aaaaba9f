"""Step 3 of the pipeline: segment the volume with Slicer's segment editor logic, without Qt.

The operations are those of Slicer's Segment Editor effects, with their parameter names and defaults, so a
result here equals what a user gets by clicking the effect in Slicer:

- Threshold: ``vtkImageThreshold`` of the source volume into the modifier labelmap, applied with "Set".
- Islands: ``vtkITKIslandMath`` (face connectivity, a minimum size), keep the largest or drop the small ones.
- Smoothing: median (``vtkImageMedian3D``), opening/closing (``vtkImageOpenClose3D``), Gaussian
  (``vtkImageGaussianSmooth`` then threshold at half), and joint smoothing (discrete marching cubes, windowed
  sinc, back to labelmaps); kernel sizes in mm rounded to odd voxel counts.

Everything goes through ``vtkSlicerSegmentEditorLogic.ModifySegmentByLabelmap``, which honours the segment
editor node's masking and overwrite settings exactly as the Qt effects do.
"""

from __future__ import annotations

import math

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from .levels import boundingBox, widened
from .runtime import DicomToPrintError, SlicerContext, checkChoice, checkpoint, execute, threadMap, update

# Threshold presets: (lower, upper) in HU; upper None means "up to the highest value in the volume", so metal
# and dense bone above the nominal 3071 HU are not cut out. Bone and soft tissue are the ranges users of
# InVesalius and Mimics know; the skin outline sits halfway between air (-1000 HU) and soft tissue (about 0 HU),
# where the partial-volume boundary is, and selects the body as one solid.
THRESHOLD_PRESETS: dict[str, tuple[float, float | None]] = {
    "CT bone": (226.0, None),
    "CT skin": (-500.0, None),
    "CT soft tissue": (-700.0, 225.0),
}
CT_PRESET_MODALITIES = ("CT",)

# Automatic threshold methods of Slicer's Threshold effect (vtkITKImageThresholdCalculator).
AUTO_THRESHOLD_METHODS = {
    "HUANG": "SetMethodToHuang",
    "INTERMODES": "SetMethodToIntermodes",
    "ISO_DATA": "SetMethodToIsoData",
    "KITTLER_ILLINGWORTH": "SetMethodToKittlerIllingworth",
    "LI": "SetMethodToLi",
    "MAXIMUM_ENTROPY": "SetMethodToMaximumEntropy",
    "MOMENTS": "SetMethodToMoments",
    "OTSU": "SetMethodToOtsu",
    "RENYI_ENTROPY": "SetMethodToRenyiEntropy",
    "SHANBHAG": "SetMethodToShanbhag",
    "TRIANGLE": "SetMethodToTriangle",
    "YEN": "SetMethodToYen",
}
# What the threshold effect does with the computed value ("AutoThresholdMode").
AUTO_THRESHOLD_MODES = ("SET_LOWER_MAX", "SET_MIN_UPPER", "SET_LOWER", "SET_UPPER")

KEEP_LARGEST_ISLAND = "KEEP_LARGEST_ISLAND"
REMOVE_SMALL_ISLANDS = "REMOVE_SMALL_ISLANDS"
ISLANDS_NONE = "NONE"
ISLANDS_OPERATIONS = (KEEP_LARGEST_ISLAND, REMOVE_SMALL_ISLANDS, ISLANDS_NONE)

MEDIAN = "MEDIAN"
MORPHOLOGICAL_OPENING = "MORPHOLOGICAL_OPENING"
MORPHOLOGICAL_CLOSING = "MORPHOLOGICAL_CLOSING"
GAUSSIAN = "GAUSSIAN"
JOINT_TAUBIN = "JOINT_TAUBIN"
SMOOTHING_NONE = "NONE"
SMOOTHING_METHODS = (MEDIAN, MORPHOLOGICAL_OPENING, MORPHOLOGICAL_CLOSING, GAUSSIAN, JOINT_TAUBIN, SMOOTHING_NONE)


def presetRange(preset: str, volumeNode) -> tuple[float, float]:
    """Threshold range of a preset for this volume.

    :raises ValueError: for an unknown preset, or a CT preset on a series that is not CT (no Hounsfield units).
    """
    checkChoice("threshold preset", preset, THRESHOLD_PRESETS)
    lower, upper = THRESHOLD_PRESETS[preset]
    high = scalarRange(volumeNode)[1]
    return lower, max(lower, high) if upper is None else upper


def autoThreshold(volumeNode, method: str = "OTSU", mode: str = "SET_LOWER_MAX") -> tuple[float, float]:
    """Threshold range from one of the Threshold effect's automatic methods.

    :param volumeNode: scalar volume.
    :param method: a key of :data:`AUTO_THRESHOLD_METHODS` (the effect's "AutoThresholdMethod").
    :param mode: the effect's "AutoThresholdMode": SET_LOWER_MAX selects values above the computed threshold,
        SET_MIN_UPPER those below; SET_LOWER / SET_UPPER return (threshold, threshold) for the caller to pair.
    :return: (minimum, maximum) threshold.
    """
    checkChoice("automatic threshold method", method, AUTO_THRESHOLD_METHODS)
    checkChoice("automatic threshold mode", mode, AUTO_THRESHOLD_MODES)
    calculator = slicer.vtkITKImageThresholdCalculator()
    getattr(calculator, AUTO_THRESHOLD_METHODS[method])()
    calculator.SetInputData(volumeNode.GetImageData())
    calculator.Update()
    value = calculator.GetThreshold()
    low, high = scalarRange(volumeNode)
    return {"SET_LOWER_MAX": (value, high), "SET_MIN_UPPER": (low, value)}.get(mode, (value, value))


def kernelSizePixel(kernelSizeMm: float, spacing) -> list[int]:
    """Kernel size in voxels as the Smoothing effect computes it: rounded to the nearest odd number, because an
    even kernel shifts the image."""
    return [int(round((kernelSizeMm / spacing[i] + 1) / 2) * 2 - 1) for i in range(3)]


def createSegmentation(context: SlicerContext, volumeNode, name: str = "DicomToPrint segmentation"):
    """A segmentation node whose geometry (origin, spacing, axes, extent) is the volume's."""
    segmentationNode = context.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentationNode.CreateDefaultDisplayNodes()
    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    return segmentationNode


def volumeArray(volumeNode) -> np.ndarray:
    """The volume's voxels as a (k, j, i) array (a view: do not modify)."""
    image = volumeNode.GetImageData()
    dims = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1])


def scalarRange(volumeNode) -> tuple[float, float]:
    """The volume's lowest and highest value, as VTK's GetScalarRange gives them, found slab by slab: on 1000
    slices VTK's one call holds Python's lock (and a Cancel) for a second."""
    values = volumeArray(volumeNode)
    low, high = np.inf, -np.inf
    for k in range(0, len(values), 32):  # fmin and fmax leave NaN out, as VTK does
        checkpoint()
        low = np.fmin(low, np.fmin.reduce(values[k:k + 32], axis=None))
        high = np.fmax(high, np.fmax.reduce(values[k:k + 32], axis=None))
    return float(low), float(high)


def _slabLabelmap(extent, imageToWorld, voxels: np.ndarray, labelValue: int = 1):
    """A modifier labelmap over ``extent`` holding ``voxels`` (k, j, i; non-zero: ``labelValue``), in an image VTK
    owns (Slicer may keep it in the segment)."""
    image = vtk.vtkImageData()
    image.SetExtent(*extent)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    values = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(voxels.shape)
    for k in range(0, len(voxels), 64):  # slab by slab: no copy of a part of a volume first, a Cancel between
        checkpoint()
        if labelValue == 1:
            values[k:k + 64] = voxels[k:k + 64]
        else:
            np.multiply(voxels[k:k + 64] != 0, labelValue, out=values[k:k + 64], casting="unsafe")
    labelmap = slicer.vtkOrientedImageData()
    labelmap.ShallowCopy(image)
    labelmap.SetGeometryFromImageToWorldMatrix(imageToWorld)
    return labelmap


def _storedOverlap(labelmap, extent) -> tuple[np.ndarray, tuple] | None:
    """Where a stored labelmap (same grid) and an ``extent`` of that grid meet: the labelmap's voxels there (a view,
    k, j, i) and the overlap as slices of an array over ``extent``; None where they do not meet."""
    stored = labelmap.GetExtent() if labelmap is not None and labelmap.GetPointData().GetScalars() is not None \
        else (0, -1, 0, -1, 0, -1)
    low = [max(stored[2 * a], extent[2 * a]) for a in range(3)]
    high = [min(stored[2 * a + 1], extent[2 * a + 1]) for a in range(3)]
    if any(h < lo for lo, h in zip(low, high, strict=True)):
        return None
    values = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(labelmap.GetDimensions()[::-1])
    return (values[tuple(slice(low[a] - stored[2 * a], high[a] - stored[2 * a] + 1) for a in (2, 1, 0))],
            tuple(slice(low[a] - extent[2 * a], high[a] - extent[2 * a] + 1) for a in (2, 1, 0)))


def _boxExtent(extent, box) -> list[int]:
    """The extent (i0, i1, j0, j1, k0, k1) of ``box`` ((k, j, i) slices) of an image over ``extent``."""
    return [extent[2 * axis] + box[2 - axis].start + offset for axis in range(3)
            for offset in (0, box[2 - axis].stop - box[2 - axis].start - 1)]


def _maskBox(whole: np.ndarray, margin: int, evenStart: bool) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """:func:`.levels.boundingBox` of a mask and a copy of its voxels there, copied slab by slab (a Cancel
    answered between: 0.9 s at 2000 slices); None when it is empty."""
    box = boundingBox(whole, margin, evenStart)
    if box is None:
        return None
    inside = np.empty(whole[box].shape, bool)
    for k in range(0, len(inside), 64):
        checkpoint()
        inside[k:k + 64] = whole[box][k:k + 64]
    return box, inside


def segmentBox(segmentationNode, segmentId: str, volumeNode, margin: int = 0,
               evenStart: bool = False) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """The segment's bounding box on the volume's grid (``margin`` voxels wider, clipped to the volume, as
    :func:`.levels.boundingBox` finds it on :func:`segmentMask`'s array) and its voxels there (bool, k, j, i);
    None when it is empty. The segmentation's only segment on the volume's grid (as the pipeline makes it) is
    read where it is stored, without a mask of the whole volume first (78 MB at 512 x 512 x 300)."""
    segmentation = segmentationNode.GetSegmentation()
    stored = segmentationNode.GetBinaryLabelmapInternalRepresentation(segmentId)
    reference = slicer.vtkOrientedImageData()
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    reference.SetImageToWorldMatrix(matrix)
    volumeExtent = volumeNode.GetImageData().GetExtent()
    reference.SetExtent(volumeExtent)
    if segmentation.GetNumberOfSegments() != 1 or stored is None or stored.GetPointData().GetScalars() is None \
            or not slicer.vtkOrientedImageDataResample.DoGeometriesMatch(stored, reference):
        return _maskBox(segmentMask(segmentationNode, segmentId, volumeNode), margin, evenStart)
    overlap = _storedOverlap(stored, volumeExtent)
    if overlap is None:
        return None
    # alone in its labelmap: its voxels are the non-zero ones
    source, placed = overlap
    tight = boundingBox(source)
    if tight is None:
        return None
    shape = [volumeExtent[2 * a + 1] - volumeExtent[2 * a] + 1 for a in (2, 1, 0)]
    # (widened as levels.boundingBox widens the box of a whole-volume mask)
    box = tuple(widened(placed[a].start + tight[a].start, placed[a].start + tight[a].stop - 1, shape[a], margin,
                        evenStart) for a in range(3))
    inside = np.zeros([b.stop - b.start for b in box], bool)
    target = inside[tuple(slice(placed[a].start + tight[a].start - box[a].start,
                                placed[a].start + tight[a].stop - box[a].start) for a in range(3))]
    labelValue = segmentation.GetSegment(segmentId).GetLabelValue()
    voxels = source[tight]
    for k in range(0, len(voxels), 64):  # slab by slab, a Cancel answered between
        checkpoint()
        np.equal(voxels[k:k + 64], labelValue, out=target[k:k + 64])
    return box, inside


def segmentMask(segmentationNode, segmentId: str, volumeNode) -> np.ndarray:
    """The segment as a boolean (k, j, i) array on the volume's voxel grid (resampled if its geometry differs)."""
    reference = slicer.vtkOrientedImageData()
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    reference.SetImageToWorldMatrix(matrix)
    reference.SetExtent(volumeNode.GetImageData().GetExtent())
    labelValue = segmentationNode.GetSegmentation().GetSegment(segmentId).GetLabelValue()
    stored = segmentationNode.GetBinaryLabelmapInternalRepresentation(segmentId)
    if stored is not None and stored.GetPointData().GetScalars() is not None \
            and slicer.vtkOrientedImageDataResample.DoGeometriesMatch(stored, reference):
        # on the volume's grid (as the segment editor makes it): read where it is stored, slab by slab (a Cancel is
        # answered between; copying and padding it to the volume first was one call of 1.4 s at 2000 slices)
        volumeExtent = reference.GetExtent()
        mask = np.zeros([volumeExtent[2 * a + 1] - volumeExtent[2 * a] + 1 for a in (2, 1, 0)], bool)
        overlap = _storedOverlap(stored, volumeExtent)
        if overlap is not None:
            source, target = overlap[0], mask[overlap[1]]
            for k in range(0, len(source), 64):
                checkpoint()
                np.equal(source[k:k + 64], labelValue, out=target[k:k + 64])
        return mask
    labelmap = slicer.vtkOrientedImageData()
    if not slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
            segmentationNode, segmentId, labelmap):
        raise ValueError(f"Segment '{segmentId}' has no binary labelmap")
    resampled = slicer.vtkOrientedImageData()
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(labelmap, reference, resampled)
    dims = resampled.GetDimensions()
    values = numpy_support.vtk_to_numpy(resampled.GetPointData().GetScalars()).reshape(dims[::-1])
    # segments that do not overlap share one labelmap, each with its own label value
    return values == labelValue


def segmentVoxelCount(segmentationNode, segmentId: str) -> int:
    """Number of voxels in a segment's binary labelmap."""
    labelmap = segmentationNode.GetBinaryLabelmapInternalRepresentation(segmentId)
    if labelmap is None or labelmap.GetPointData().GetScalars() is None:
        return 0
    values = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())
    labelValue = segmentationNode.GetSegmentation().GetSegment(segmentId).GetLabelValue()
    count = 0
    for start in range(0, len(values), 1 << 25):  # 32 M voxels at a time, asking the progress callback between
        checkpoint()
        count += int(np.count_nonzero(values[start:start + (1 << 25)] == labelValue))
    return count


def islandsMask(voxels: np.ndarray, operation: str, minimumSize: int) -> tuple[np.ndarray, int, int]:
    """The Islands effect's result on a labelmap array, with a quarter of the memory of vtkITKIslandMath.

    The same ITK connected-component labelling as Slicer's vtkITKIslandMath (face-connected: its FullyConnected
    off), and the same choice as its RelabelComponentImageFilter: islands smaller than ``minimumSize`` voxels are
    dropped; the largest is the one with most voxels, the first found (in voxel order) among equals. Instead of
    casting the labelmap to 32 bits and relabelling the whole volume again (three 32-bit copies, e.g. 1.3 GB for
    512 x 512 x 300), the island sizes are counted slab by slab. The test suite checks that the result and the
    counts equal vtkITKIslandMath's.

    :param voxels: the labelmap (k, j, i); non-zero is inside.
    :param operation: KEEP_LARGEST_ISLAND or REMOVE_SMALL_ISLANDS.
    :return: (bool mask of the voxels kept, islands found, islands kept).
    """
    import SimpleITK as sitk

    checkChoice("islands operation", operation, (KEEP_LARGEST_ISLAND, REMOVE_SMALL_ISLANDS))
    # (a bool mask as it is: its bytes are 0 and 1; comparing first was a second volume-sized pass with no Cancel
    # answered, 1.3 s with the copy at 2000 slices)
    image = sitk.GetImageFromArray(voxels.view(np.uint8) if voxels.dtype == bool else (voxels != 0).view(np.uint8))
    checkpoint()
    labeller = sitk.ConnectedComponentImageFilter()
    labeller.SetFullyConnected(False)
    labelImage = execute(labeller, image)
    del image
    checkpoint()
    found = int(labeller.GetObjectCount())
    labels = sitk.GetArrayViewFromImage(labelImage)
    slab = max(1, 2**24 // max(1, labels[0].size))  # about 16 M voxels at a time: bounded temporary copies
    sizes = np.zeros(found + 1, np.int64)
    for k in range(0, len(labels), slab):
        checkpoint()
        part = labels[k:k + slab]
        sizes += np.bincount(part[part != 0], minlength=found + 1)  # the background is most of the volume
    large = sizes >= minimumSize
    large[0] = False
    kept = int(large.sum())
    largest = None
    if operation == KEEP_LARGEST_ISLAND and kept:
        largest = int(np.argmax(sizes))  # the first of the largest, as the relabelling's stable order
        kept = 1
    keep = np.empty(labels.shape, bool)
    for k in range(0, len(labels), slab):
        checkpoint()
        if largest is not None:  # one label: a comparison, not a lookup
            np.equal(labels[k:k + slab], largest, out=keep[k:k + slab])
        else:
            keep[k:k + slab] = large[labels[k:k + slab]]
    return keep, found, kept


def _faceNeighbours(mask: np.ndarray, axes=(0, 1, 2)) -> np.ndarray:
    """Voxels with a face neighbour in ``mask`` along the given axes (k, j, i)."""
    result = np.zeros_like(mask)
    for axis in axes:
        checkpoint()
        lower, upper = [slice(None)] * 3, [slice(None)] * 3
        lower[axis], upper[axis] = slice(0, -1), slice(1, None)
        result[tuple(lower)] |= mask[tuple(upper)]
        result[tuple(upper)] |= mask[tuple(lower)]
    return result


def _dilateWithin(grown: np.ndarray, allowed: np.ndarray | None, steps) -> np.ndarray:
    """Grow ``grown`` by face neighbours into ``allowed`` voxels (None: anywhere), ``steps`` (k, j, i) times along
    each axis."""
    grown = grown.copy()
    for step in range(max(steps)):
        checkpoint()
        near = _faceNeighbours(grown, [axis for axis, count in enumerate(steps) if step < count])
        if allowed is not None:
            near &= allowed
        grown |= near
    return grown


def _image(array: np.ndarray):
    import SimpleITK as sitk

    return sitk.GetImageFromArray(np.ascontiguousarray(array).view(np.uint8))


def sealedCavities(inside: np.ndarray, sliceWise: bool = False) -> np.ndarray:
    """The sealed cavities of an object: the background that no path of background voxels (26-connected, the
    dual of the object's face connectivity) joins to the outside. The faces of the array are open: a cavity that
    the field of view cuts is not sealed (ITK's binary fill-hole).

    :param inside: the object (k, j, i), bool.
    :param sliceWise: also what each slice (k) encloses that the 3D test leaves open (a nostril, an ear canal:
        right for a body's surface, wrong for bone).
    :return: the cavities' voxels, bool.
    """
    import SimpleITK as sitk

    filler = sitk.BinaryFillholeImageFilter()
    filler.SetFullyConnected(True)
    filler.SetForegroundValue(1)
    filled = execute(filler, _image(inside))  # a view of an image is valid only while the image lives
    filledVoxels = sitk.GetArrayViewFromImage(filled).view(bool)
    holes = np.empty(inside.shape, bool)
    for k in range(0, len(holes), 64):  # slab by slab, a Cancel answered between (1.3 s at 2000 slices)
        checkpoint()
        np.greater(filledVoxels[k:k + 64], inside[k:k + 64], out=holes[k:k + 64])  # filled and not inside
    del filledVoxels, filled
    checkpoint()
    if sliceWise:
        for k in range(len(inside)):
            checkpoint()
            filled = filler.Execute(_image(inside[k] | holes[k]))
            holes[k] |= sitk.GetArrayViewFromImage(filled).view(bool) & ~inside[k]
    return holes


def cavitiesToFill(inside: np.ndarray, values: np.ndarray | None, outsideLevel: float | None = None,
                   tolerance: float | None = None, sliceWise: bool = False, spacing=(1.0, 1.0, 1.0),
                   reachMm: float = 3.0) -> tuple[np.ndarray, dict]:
    """What inside the object belongs to its solid besides the voxels the threshold selected.

    Bone (``values`` given): cancellous bone, diploe and marrow lie inside the cortical bone but below the
    threshold that finds cortical bone. First the voxels denser than the tissue around the object that lie
    within ``reachMm`` of it, reached through such voxels, join it (the diploe between a skull's two tables,
    whose thin tables the threshold leaves with gaps; the partial-volume rim also joins, which does not move a
    surface placed from the intensities). Then every sealed cavity is filled unless it holds what surrounds the
    object (measured two to four voxels out): soft tissue inside a hollow phantom, the brain in a skull whose
    foramen magnum is closed, air inside a dry skull, are real hollows; fatty marrow is not.

    A body's surface (``values`` None): every sealed cavity, and what each slice encloses.

    :param inside: the object (k, j, i), bool.
    :param values: the intensities on the same grid, or None for a body's surface.
    :param outsideLevel: what the joining voxels must be denser than (e.g. soft tissue, for bone); None: what
        surrounds the object.
    :param tolerance: denser by more than this is "denser"; a cavity within it of what surrounds the object is
        kept; None: five noise standard deviations of what surrounds the object.
    :param spacing: voxel size (i, j, k) in mm.
    :return: (voxels to add, {"cavities", "filled", "voxelsFilled"}): sealed cavities found and filled, voxels
        added inside the object (not counting those added on its outside).
    """
    import SimpleITK as sitk

    grown = inside
    if values is not None:
        # what surrounds the object: two to four voxels out, beyond the partial-volume rim, on every second voxel
        # along each axis (a median needs no more)
        coarse = inside[::2, ::2, ::2]
        ring = _dilateWithin(coarse, None, (2, 2, 2)) & ~_dilateWithin(coarse, None, (1, 1, 1))
        around = values[::2, ::2, ::2][ring] if ring.any() else values.ravel()
        del ring
        surrounding = float(np.median(around))
        if tolerance is None:  # five noise standard deviations (robust: 1.4826 x median absolute deviation)
            tolerance = 5.0 * 1.4826 * float(np.median(np.abs(around - surrounding)))
        denserThan = surrounding if outsideLevel is None else outsideLevel
        # the denser voxels within reach (a box on the coarse grid, looked up for those voxels only) ...
        dense = values > denserThan + tolerance
        reach = _dilateWithin(coarse, None, [max(1, int(np.ceil(reachMm / (2.0 * s)))) for s in reversed(spacing)])
        nj, ni = inside.shape[1:]
        for k in range(len(dense)):  # slice by slice: no full-size temporary
            dense[k] &= reach[k // 2].repeat(2, axis=0)[:nj].repeat(2, axis=1)[:, :ni]
        del reach
        dense |= inside
        checkpoint()
        # ... joined to the object through such voxels (face-connected, as islands are)
        joined = sitk.BinaryReconstructionByDilationImageFilter()
        joined.SetFullyConnected(False)
        grownImage = execute(joined, _image(inside), _image(dense))
        del dense
        grown = sitk.GetArrayViewFromImage(grownImage).view(bool)
    holes = sealedCavities(grown, sliceWise)
    cavities = filled = 0
    add = np.empty_like(inside)
    for k in range(0, len(add), 32):  # slab by slab: no volume-sized temporary, a Cancel answered between
        checkpoint()
        np.greater(grown[k:k + 32], inside[k:k + 32], out=add[k:k + 32])  # grown and not inside
    box = boundingBox(holes)
    if box is not None:
        labeller = sitk.ConnectedComponentImageFilter()
        labeller.SetFullyConnected(True)
        labelImage = execute(labeller, _image(holes[box]))
        del holes  # the labels hold them: one array of the box's size less at this step's peak
        labels = sitk.GetArrayViewFromImage(labelImage)
        cavities = int(labels.max())
        fill = np.ones(cavities + 1, bool)
        if values is not None:  # each cavity's mean, over the cavities' voxels only, slab by slab (a brain is
            # ten million voxels: its labels and values as 64-bit copies at once would be the step's peak)
            boxValues = values[box]
            voxels, sums = np.zeros(cavities + 1), np.zeros(cavities + 1)
            slab = max(1, 2**22 // max(1, labels[0].size))
            for k in range(0, len(labels), slab):
                checkpoint()
                part = labels[k:k + slab]
                inCavity = part != 0
                which = part[inCavity]
                voxels += np.bincount(which, minlength=cavities + 1)
                sums += np.bincount(which, weights=boxValues[k:k + slab][inCavity], minlength=cavities + 1)
            fill = np.abs(sums / np.maximum(voxels, 1) - surrounding) > tolerance
        fill[0] = False
        filled = int(np.count_nonzero(fill))
        addBox = add[box]
        for k in range(0, len(labels), 16):  # slab by slab: no box-sized temporary
            addBox[k:k + 16] |= fill[labels[k:k + 16]]
        del labels, labelImage, addBox
    else:
        del holes
    # what joined on the outside (the partial-volume rim, which the surface's placement ignores) is not "filled"
    added = rim = 0
    for k in range(0, len(add), 32):  # slab by slab (with the slices either side): no volume-sized temporaries
        checkpoint()
        low, high = max(k - 1, 0), min(k + 33, len(add))
        outside = ~(inside[low:high] | add[low:high])
        slab = add[k:k + 32]
        added += int(np.count_nonzero(slab))
        rim += int(np.count_nonzero(slab & _faceNeighbours(outside)[k - low:k - low + len(slab)]))
    return add, {"cavities": cavities, "filled": filled, "voxelsFilled": added - rim}


def _boxSum(values: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Sums of ``values`` over the windows [p - radius, p + radius] along ``axis``, clipped to the array: the
    array added to itself shifted by 1 to ``radius`` each way (median kernels are a few voxels)."""
    result = values.copy()
    n = values.shape[axis]
    for shift in range(1, min(radius, n - 1) + 1):
        lower, upper = [slice(None)] * values.ndim, [slice(None)] * values.ndim
        lower[axis], upper[axis] = slice(0, n - shift), slice(shift, n)
        result[tuple(lower)] += values[tuple(upper)]
        result[tuple(upper)] += values[tuple(lower)]
    return result


def _clippedCounts(n: int, radius: int) -> np.ndarray:
    position = np.arange(n)
    return np.minimum(position + radius, n - 1) - np.maximum(position - radius, 0) + 1


def binaryMedian(voxels: np.ndarray, kernelSize) -> np.ndarray:
    """vtkImageMedian3D of a binary labelmap, as a majority count: the same labelmap, at a fraction of the cost.

    The median of zeros and ones is one where more than half of the kernel's voxels are one. vtkImageMedian3D
    clips its kernel at the image's faces and takes the median of the voxels left, which for zeros and ones is
    a strict majority of them (the test suite compares the two on random volumes, faces included). Counting is
    a box sum, separable into three one-axis sums, instead of sorting every neighbourhood (vtkImageMedian3D on
    512 x 512 x 1000 at 0.24 mm slices, 1 mm kernel: 10.9 s). Slab by slab along k, so the 16-bit sums never
    span the volume.

    :param voxels: the labelmap (k, j, i); non-zero is inside.
    :param kernelSize: odd voxel counts (i, j, k), as vtkImageMedian3D's SetKernelSize.
    :return: bool mask of the smoothed labelmap.
    """
    ri, rj, rk = [(int(n) - 1) // 2 for n in kernelSize]
    nk, nj, ni = voxels.shape
    countJI = (_clippedCounts(nj, rj)[:, None] * _clippedCounts(ni, ri)[None, :]).astype(np.int32)
    countK = _clippedCounts(nk, rk).astype(np.int32)
    result = np.empty(voxels.shape, bool)

    def medianSlab(k0: int) -> None:
        k1 = min(k0 + slab, nk)
        low, high = max(k0 - rk, 0), min(k1 + rk, nk)
        inside = (voxels[low:high] != 0).astype(np.int16)
        sums = _boxSum(_boxSum(_boxSum(inside, rk, 0)[k0 - low:k1 - low], rj, 1), ri, 2)
        sums *= 2
        for k in range(k0, k1):  # a strict majority of the voxels the clipped kernel holds
            np.greater(sums[k - k0], countK[k] * countJI, out=result[k])

    # about 8 M voxels at a time, two slabs at a time (numpy lets go of Python's lock in these passes; each slab
    # writes its own slices)
    slab = max(1, 2**23 // max(1, nj * ni))
    threadMap(medianSlab, range(0, nk, slab))
    return result


def _binary(labelmap) -> vtk.vtkImageThreshold:
    """A filter giving the labelmap as 0 and 1 in its own scalar type, for filters that need the label value."""
    binary = vtk.vtkImageThreshold()
    binary.SetInputData(labelmap)
    binary.ThresholdByLower(0)
    binary.SetInValue(0)
    binary.SetOutValue(1)
    binary.SetOutputScalarType(labelmap.GetScalarType())
    return binary


#: Slices of the cleaned segment's box written back to Slicer's segment editor at a time (see SegmentEditor.clean).
WRITE_BACK_SLICES = 64


class SegmentEditor:
    """``vtkSlicerSegmentEditorLogic`` on one segmentation and source volume, with the effects' operations.

    Use it as a context manager: its temporary segment editor node is removed from the scene on exit::

        with SegmentEditor(context, segmentationNode, volumeNode) as editor:
            segmentId = editor.addSegment("Bone")
            editor.threshold(segmentId, 300, 3071)
            editor.islands(segmentId, KEEP_LARGEST_ISLAND, minimumSizeMm3=100)
    """

    def __init__(self, context: SlicerContext, segmentationNode, sourceVolumeNode, maximumUndoStates: int = 0):
        self.context = context
        self.segmentationNode = segmentationNode
        self.sourceVolumeNode = sourceVolumeNode
        self.logic = slicer.vtkSlicerSegmentEditorLogic()
        self.logic.SetMRMLScene(context.scene)
        self.logic.SetMRMLApplicationLogic(context.applicationLogic)
        self.editorNode = context.scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode", "DicomToPrint editor")
        self.logic.SetSegmentEditorNode(self.editorNode)
        self.editorNode.SetAndObserveSegmentationNode(segmentationNode)
        self.logic.SetSourceVolumeNode(sourceVolumeNode)
        # Undo states are full copies of the segmentation: none unless a user can undo (the app's panel).
        self.logic.SetMaximumNumberOfUndoStates(maximumUndoStates)

    def __enter__(self) -> SegmentEditor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def releaseWorkingImages(self) -> None:
        """Free the logic's working images as large as the volume: the source volume resampled to the
        segmentation's grid (a copy of the volume), the modifier and the selected segment's labelmap. The logic
        makes them again when an effect next asks (an empty extent never matches the reference geometry)."""
        for image in (self.logic.GetAlignedSourceVolume(), self.logic.GetModifierLabelmap(),
                      self.logic.GetSelectedSegmentLabelmap()):
            image.Initialize()

    def close(self) -> None:
        self.releaseWorkingImages()
        if self.editorNode is not None:
            self.logic.SetSegmentEditorNode(None)
            self.context.removeNode(self.editorNode)
            self.editorNode = None

    # -- helpers shared by the operations -------------------------------------------------------------------
    def addSegment(self, name: str, color=None) -> str:
        """Add an empty segment and return its ID."""
        segmentation = self.segmentationNode.GetSegmentation()
        segmentId = segmentation.AddEmptySegment("", name, color) if color else segmentation.AddEmptySegment("", name)
        return segmentId

    def _onVolumeGrid(self) -> bool:
        """Whether the segmentation's grid (its reference geometry) is the source volume's, voxel for voxel."""
        volumeGeometry = slicer.vtkOrientedImageData()
        matrix = vtk.vtkMatrix4x4()
        self.sourceVolumeNode.GetIJKToRASMatrix(matrix)
        volumeGeometry.SetImageToWorldMatrix(matrix)
        volumeGeometry.SetExtent(self.sourceVolumeNode.GetImageData().GetExtent())
        return self.logic.GetReferenceImageGeometryString() == \
            slicer.vtkSegmentationConverter.SerializeImageGeometry(volumeGeometry)

    def _aloneOnVolumeGrid(self) -> bool:
        """Whether the segmentation holds one segment, on the source volume's grid."""
        return self.segmentationNode.GetSegmentation().GetNumberOfSegments() == 1 and self._onVolumeGrid()

    def _storeAlone(self, segmentId: str, voxels: np.ndarray, extent, imageToWorld) -> None:
        """Store ``voxels`` (k, j, i over ``extent``; non-zero: in the segment) as the segment's labelmap, cropped to
        the box of its voxels as Slicer's update crops it to the effective extent, for the segmentation's only
        segment on the volume's grid. Slicer's update (ModifySegmentByLabelmap) would copy the box in one call
        (0.7-2 s at 2000 slices, no Cancel answered meanwhile); this copies it slab by slab. Masking and overwriting
        other segments, which that update also does, have nothing to act on. The old labelmap is let go first (0.02
        s), not held beside the new one at the step's peak."""
        box = boundingBox(voxels) or tuple(slice(0, 1) for _ in range(3))  # (none: one voxel, of nothing)
        segment = self.segmentationNode.GetSegmentation().GetSegment(segmentId)
        slicer.vtkSlicerSegmentationsModuleLogic.ClearSegment(self.segmentationNode, segmentId)
        segment.AddRepresentation(slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName(),
                                  _slabLabelmap(_boxExtent(extent, box), imageToWorld, voxels[box],
                                                segment.GetLabelValue()))
        logic = slicer.vtkSlicerSegmentationsModuleLogic
        logic.SetSegmentStatus(segment, logic.InProgress)

    def _select(self, segmentId: str) -> None:
        if not self.segmentationNode.GetSegmentation().GetSegment(segmentId):
            raise ValueError(f"No segment '{segmentId}' in {self.segmentationNode.GetName()}")
        self.editorNode.SetSelectedSegmentID(segmentId)
        if not self.logic.ResetModifierLabelmapToDefault():
            raise RuntimeError("Slicer's segment editor logic could not set up its modifier labelmap")

    def _modify(self, segmentId: str, labelmap, mode=None) -> None:
        mode = self.logic.ModificationModeSet if mode is None else mode
        # isPerSegment=True, bypassMasking=False: what Threshold, Islands and Smoothing do in Slicer
        self.logic.ModifySegmentByLabelmap(self.segmentationNode, segmentId, labelmap, mode, True, False)

    def _selectedSegmentLabelmap(self, segmentId: str):
        self._select(segmentId)
        self.logic.UpdateSelectedSegmentLabelmap()
        return self.logic.GetSelectedSegmentLabelmap()

    def _otherSegments(self, segmentId: str, box) -> np.ndarray:
        """The voxels of the segmentation's other segments within ``box`` (an extent of the segment's grid)."""
        result = np.zeros((box[5] - box[4] + 1, box[3] - box[2] + 1, box[1] - box[0] + 1), bool)
        segmentation = self.segmentationNode.GetSegmentation()
        for otherId in segmentation.GetSegmentIDs():
            if otherId == segmentId:
                continue
            overlap = _storedOverlap(self.segmentationNode.GetBinaryLabelmapInternalRepresentation(otherId), box)
            if overlap is not None:
                result[overlap[1]] |= overlap[0] == segmentation.GetSegment(otherId).GetLabelValue()
        return result

    def _orientedCopy(self, imageData, geometrySource):
        image = slicer.vtkOrientedImageData()
        image.DeepCopy(imageData)
        matrix = vtk.vtkMatrix4x4()
        geometrySource.GetImageToWorldMatrix(matrix)
        image.SetGeometryFromImageToWorldMatrix(matrix)
        return image

    # -- the effects -----------------------------------------------------------------------------------------
    def threshold(self, segmentId: str, minimumThreshold: float, maximumThreshold: float) -> None:
        """Set the segment to the voxels of the source volume within [minimum, maximum] (Threshold effect).

        :param segmentId: segment to set.
        :param minimumThreshold: lowest value included ("MinimumThreshold").
        :param maximumThreshold: highest value included ("MaximumThreshold").
        """
        if not minimumThreshold <= maximumThreshold:
            raise ValueError(f"Minimum threshold {minimumThreshold} is above maximum threshold {maximumThreshold}")
        self._select(segmentId)
        modifier = self.logic.GetModifierLabelmap()
        segmentation = self.segmentationNode.GetSegmentation()
        stored = self.segmentationNode.GetBinaryLabelmapInternalRepresentation(segmentId)
        extent = stored.GetExtent() if stored is not None else (0, -1, 0, -1, 0, -1)
        # the segmentation's only segment, with nothing in it yet (as the pipeline makes it): what the effect's
        # update would give is the threshold's output itself, the segment's label where selected
        alone = segmentation.GetNumberOfSegments() == 1 and (
            extent[1] < extent[0] or extent[3] < extent[2] or extent[5] < extent[4])
        if alone and self._onVolumeGrid():
            # the segment editor's aligned source volume would be a copy of these voxels (150 MB at 300 slices)
            source = self.sourceVolumeNode.GetImageData()
        else:
            if not self.logic.UpdateAlignedSourceVolume():
                raise RuntimeError("Slicer's segment editor logic could not resample the source volume")
            source = self.logic.GetAlignedSourceVolume()
        threshold = vtk.vtkImageThreshold()
        threshold.SetInputData(source)
        threshold.ThresholdBetween(minimumThreshold, maximumThreshold)
        threshold.SetInValue(segmentation.GetSegment(segmentId).GetLabelValue() if alone else 1)
        threshold.SetOutValue(0)
        threshold.SetOutputScalarType(modifier.GetScalarType())
        update(threshold)
        if alone:
            output = threshold.GetOutput()
            voxels = numpy_support.vtk_to_numpy(output.GetPointData().GetScalars()).reshape(
                output.GetDimensions()[::-1])
            matrix = vtk.vtkMatrix4x4()
            modifier.GetImageToWorldMatrix(matrix)
            self._storeAlone(segmentId, voxels, output.GetExtent(), matrix)
            del voxels, output, threshold
        else:
            modifier.ShallowCopy(threshold.GetOutput())  # its voxels, not a copy (a volume-sized one: 1 s at 2000
            del threshold  # slices)
            self._modify(segmentId, modifier)
        self.releaseWorkingImages()  # the next steps work on the segment, not on the copy of the volume

    def islands(self, segmentId: str, operation: str = KEEP_LARGEST_ISLAND, minimumSize: int | None = None,
                minimumSizeMm3: float | None = None) -> dict:
        """Keep the largest island, or remove islands smaller than a size (Islands effect).

        Islands are face-connected (``FullyConnected`` off, as in Slicer).

        :param operation: KEEP_LARGEST_ISLAND, REMOVE_SMALL_ISLANDS or NONE.
        :param minimumSize: minimum island size in voxels (the effect's "MinimumSize", default 1000).
        :param minimumSizeMm3: the same in mm^3, converted with the labelmap's voxel size; used when given.
        :return: counts: islands found, islands kept, minimum size used in voxels.
        """
        checkChoice("islands operation", operation, ISLANDS_OPERATIONS)
        if operation == ISLANDS_NONE:
            return {"islands": None, "kept": None, "minimumSizeVoxels": None}
        labelmap = self._selectedSegmentLabelmap(segmentId)
        if minimumSizeMm3 is not None:
            if minimumSizeMm3 < 0:
                raise ValueError(f"Minimum island size must not be negative (got {minimumSizeMm3} mm^3)")
            voxelVolume = float(np.prod(labelmap.GetSpacing()))
            minimumSize = int(math.ceil(minimumSizeMm3 / voxelVolume - 1e-9))
        minimumSize = 1000 if minimumSize is None else int(minimumSize)
        dims = labelmap.GetDimensions()
        voxels = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(dims[::-1])
        keep, found, kept = islandsMask(voxels, operation, minimumSize)
        result = vtk.vtkImageData()
        result.SetDimensions(dims)
        result.SetExtent(labelmap.GetExtent())
        result.GetPointData().SetScalars(numpy_support.numpy_to_vtk(keep.ravel().view(np.uint8), deep=True,
                                                                    array_type=vtk.VTK_UNSIGNED_CHAR))
        del keep
        self._modify(segmentId, self._orientedCopy(result, labelmap))
        return {"islands": int(found), "kept": int(kept), "minimumSizeVoxels": minimumSize}

    def fillCavities(self, segmentId: str, everything: bool = False, outsideLevel: float | None = None,
                     tolerance: float | None = None, reachMm: float = 3.0) -> dict:
        """Add to the segment what lies inside it and belongs to its solid (:func:`cavitiesToFill`): cancellous
        bone, diploe, marrow; with ``everything``, all it encloses (a body's surface).

        Slicer has no effect for this; its result is what a user gets by painting these regions in.

        :param outsideLevel: what joining voxels must be denser than (see :func:`cavitiesToFill`).
        :param tolerance: what counts as denser, and as the same as what surrounds the segment.
        :param reachMm: how far from the segment denser voxels join it.
        :return: counts: cavities found, cavities filled, voxels added, and their volume.
        """
        return self.clean(segmentId, None, fill={"everything": everything, "outsideLevel": outsideLevel,
                                                 "tolerance": tolerance, "reachMm": reachMm})["cavities"]

    def clean(self, segmentId: str, islandsOperation: str | None = None, minimumSizeMm3: float = 0.0,
              fill: dict | None = None, medianKernelMm: float | None = None) -> dict:
        """Islands (:meth:`islands`), cavities (:meth:`fillCavities`) and a median smoothing (:meth:`smoothing`)
        as one modification of the segment: each step on the array the step before gave, so the labelmap is the
        three one after another give, with the segment editor's copies of the labelmap made once, not three
        times (on 512 x 512 x 300, a second and a half and 300 MB less).

        :param islandsOperation: KEEP_LARGEST_ISLAND, REMOVE_SMALL_ISLANDS, or None/NONE to skip.
        :param minimumSizeMm3: islands smaller than this are removed.
        :param fill: the keyword arguments of :meth:`fillCavities`, or None to skip.
        :param medianKernelMm: the median's kernel, or None to skip.
        :return: {"islands", "kept", "minimumSizeVoxels", "cavities"} (None where skipped).
        :raises DicomToPrintError: when removing islands leaves the segment empty.
        """
        result = {"islands": None, "kept": None, "minimumSizeVoxels": None, "cavities": None}
        self._select(segmentId)
        matrix = vtk.vtkMatrix4x4()
        self.sourceVolumeNode.GetIJKToRASMatrix(matrix)
        onGrid = self._onVolumeGrid()
        if onGrid:
            # the segmentation's grid is the volume's (as the pipeline makes it): the segment read where it is
            # stored, not copied whole by the segment editor first (one call of 1 s at 2000 slices)
            self.releaseWorkingImages()  # (selecting the segment had the logic make its labelmap)
            extent, spacing = self.sourceVolumeNode.GetImageData().GetExtent(), self.sourceVolumeNode.GetSpacing()
        else:
            labelmap = self._selectedSegmentLabelmap(segmentId)
            checkpoint()
            extent, spacing = labelmap.GetExtent(), labelmap.GetSpacing()
            if extent[1] < extent[0]:
                return result
            labelmap.GetImageToWorldMatrix(matrix)
        # Every step works on the segment's bounding box with a margin of background that none of them can
        # cross (the reach of the joining voxels, the ring around the object, twice the median's radius), so the
        # result is the whole volume's: a bone is half of a head CT's box or less.
        radius = max(((int(n) - 1) // 2 for n in kernelSizePixel(medianKernelMm, spacing)), default=0) \
            if medianKernelMm and medianKernelMm > 0 else 0
        reach = max(int(np.ceil((fill or {}).get("reachMm", 3.0) / (2.0 * s))) for s in spacing) if fill else 0
        margin = 2 * reach + 2 * radius + 6
        if onGrid:
            located = segmentBox(self.segmentationNode, segmentId, self.sourceVolumeNode, margin, evenStart=True)
            shape = [extent[2 * a + 1] - extent[2 * a] + 1 for a in (2, 1, 0)]
        else:
            # the selected segment's labelmap is that segment alone, as 0 and 1, on the reference geometry
            whole = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(
                labelmap.GetDimensions()[::-1]) != 0
            self.releaseWorkingImages()  # the logic's copy of the labelmap is not needed again
            del labelmap
            checkpoint()
            located = _maskBox(whole, margin, evenStart=True)
            shape = whole.shape
            del whole
        checkpoint()
        # (an empty segment: the whole, as before; the starts even: the cavity step samples every second voxel)
        box, inside = located or (tuple(slice(0, n) for n in shape), np.zeros(shape, bool))
        del located  # (each step below replaces inside: the first one must not stay held here)
        checkpoint()
        boxExtent = _boxExtent(extent, box)
        changed = False
        if islandsOperation not in (None, ISLANDS_NONE):
            minimumSize = int(math.ceil(minimumSizeMm3 / float(np.prod(spacing)) - 1e-9))
            inside, found, kept = islandsMask(inside, islandsOperation, minimumSize)
            result.update(islands=int(found), kept=int(kept), minimumSizeVoxels=minimumSize)
            if not inside.any():
                name = self.segmentationNode.GetSegmentation().GetSegment(segmentId).GetName()
                raise DicomToPrintError(f"Segment '{name}' is empty after removing islands smaller than "
                                        f"{minimumSizeMm3:g} mm^3")
            changed = True
        if fill is not None:
            everything = fill.get("everything", False)
            volumeExtent = self.sourceVolumeNode.GetImageData().GetExtent()
            if tuple(volumeExtent) != tuple(extent):
                raise RuntimeError("The segment's labelmap and the source volume do not share their grid")
            values = None if everything else volumeArray(self.sourceVolumeNode)[box]
            add, counts = cavitiesToFill(inside, values, fill.get("outsideLevel"), fill.get("tolerance"),
                                         sliceWise=everything, spacing=spacing, reachMm=fill.get("reachMm", 3.0))
            counts["volumeFilledCm3"] = round(counts["voxelsFilled"] * float(np.prod(spacing)) / 1000.0, 3)
            checkpoint()
            if add.any():
                add &= ~self._otherSegments(segmentId, boxExtent)  # another structure's voxels stay its own
                inside |= add
                changed = True
            del add
            result["cavities"] = counts
        if medianKernelMm is not None:
            if medianKernelMm <= 0:
                raise ValueError(f"Kernel size must be positive (got {medianKernelMm} mm)")
            inside = binaryMedian(inside, kernelSizePixel(medianKernelMm, spacing))
            changed = True
        if changed and self._aloneOnVolumeGrid():
            # the segmentation's only segment, on the volume's grid (as the pipeline makes it): stored as threshold()
            # stores it (Slicer's update below, a slab at a time, pads and copies the growing labelmap at each slab:
            # 0.2 s at 300 slices). The test suite checks that the segment is the same either way.
            self._storeAlone(segmentId, inside, boxExtent, matrix)
            del inside
        elif changed:
            # the box only: the segment has no voxel outside the box before or after, so the box's voxels are the
            # whole segment, and Slicer's update has them to go through, not the volume's. A slab at a time,
            # because each update is one call that holds Python's lock (a Cancel waited 1-1.6 s on the whole box
            # at 1000 slices): the segment is emptied, then each slab added. (Setting the segment to the first slab
            # went over all of the old one: 1.9 s at 2000 slices; emptying it takes 0.02 s.)
            slicer.vtkSlicerSegmentationsModuleLogic.ClearSegment(self.segmentationNode, segmentId)
            for k in range(0, inside.shape[0], WRITE_BACK_SLICES):
                checkpoint()
                slab = inside[k:k + WRITE_BACK_SLICES]
                slabExtent = (*boxExtent[:4], boxExtent[4] + k, boxExtent[4] + k + len(slab) - 1)
                self._modify(segmentId, _slabLabelmap(slabExtent, matrix, slab), self.logic.ModificationModeAdd)
            del inside
        return result

    def smoothing(self, segmentId: str, smoothingMethod: str = MEDIAN, kernelSizeMm: float = 3.0,
                  gaussianStandardDeviationMm: float = 3.0, jointTaubinSmoothingFactor: float = 0.5) -> None:
        """Smooth the segment (Smoothing effect; its defaults: median, 3 mm).

        :param smoothingMethod: MEDIAN, MORPHOLOGICAL_OPENING (removes extrusions), MORPHOLOGICAL_CLOSING (fills
            holes), GAUSSIAN, JOINT_TAUBIN (joint smoothing of all segments) or NONE.
        :param kernelSizeMm: median/opening/closing kernel ("KernelSizeMm").
        :param gaussianStandardDeviationMm: Gaussian sigma ("GaussianStandardDeviationMm").
        :param jointTaubinSmoothingFactor: 0-1 ("JointTaubinSmoothingFactor").
        """
        checkChoice("smoothing method", smoothingMethod, SMOOTHING_METHODS)
        if smoothingMethod == SMOOTHING_NONE:
            return
        if smoothingMethod == JOINT_TAUBIN:
            self._jointSmoothing([segmentId], jointTaubinSmoothingFactor)
            return
        labelmap = self._selectedSegmentLabelmap(segmentId)
        if smoothingMethod == GAUSSIAN:
            if gaussianStandardDeviationMm <= 0:
                raise ValueError(f"Gaussian standard deviation must be positive (got {gaussianStandardDeviationMm})")
            maxValue, radiusFactor = 255, 4.0
            sigmaPixel = [gaussianStandardDeviationMm / s for s in labelmap.GetSpacing()]
            binary = vtk.vtkImageThreshold()
            binary.SetInputData(labelmap)
            binary.ThresholdByLower(0)
            binary.SetInValue(0)
            binary.SetOutValue(maxValue)
            binary.SetOutputScalarType(vtk.VTK_UNSIGNED_CHAR)
            gaussian = vtk.vtkImageGaussianSmooth()
            gaussian.SetInputConnection(binary.GetOutputPort())
            gaussian.SetStandardDeviation(*sigmaPixel)
            gaussian.SetRadiusFactor(radiusFactor)
            result = vtk.vtkImageThreshold()
            result.SetInputConnection(gaussian.GetOutputPort())
            result.ThresholdByUpper(int(maxValue / 2))
            result.SetInValue(1)
            result.SetOutValue(0)
            result.SetOutputScalarType(labelmap.GetScalarType())
            update(result)
            output = result.GetOutput()
        else:
            if kernelSizeMm <= 0:
                raise ValueError(f"Kernel size must be positive (got {kernelSizeMm} mm)")
            kernel = kernelSizePixel(kernelSizeMm, labelmap.GetSpacing())
            scalars = labelmap.GetPointData().GetScalars()
            values = numpy_support.vtk_to_numpy(scalars).reshape(labelmap.GetDimensions()[::-1])
            if smoothingMethod == MEDIAN and int(values.max(initial=0)) <= 1 and int(values.min(initial=0)) >= 0:
                # the effect's vtkImageMedian3D, counted instead of sorted (same labelmap: binaryMedian)
                smoothed = vtk.vtkDataArray.CreateDataArray(scalars.GetDataType())  # the labelmap's scalar type
                smoothed.SetNumberOfTuples(values.size)
                numpy_support.vtk_to_numpy(smoothed)[:] = binaryMedian(values, kernel).ravel()
                output = vtk.vtkImageData()
                output.CopyStructure(labelmap)
                output.GetPointData().SetScalars(smoothed)
            else:
                if smoothingMethod == MEDIAN:
                    smoothingFilter = vtk.vtkImageMedian3D()
                    smoothingFilter.SetInputData(labelmap)
                else:
                    # opening/closing need to know the label value exactly: force it to 1
                    binary = _binary(labelmap)  # kept: an output port does not keep its filter alive
                    smoothingFilter = vtk.vtkImageOpenClose3D()
                    smoothingFilter.SetInputConnection(binary.GetOutputPort())
                    opening = smoothingMethod == MORPHOLOGICAL_OPENING
                    smoothingFilter.SetOpenValue(1 if opening else 0)
                    smoothingFilter.SetCloseValue(0 if opening else 1)
                smoothingFilter.SetKernelSize(*kernel)
                update(smoothingFilter)
                output = smoothingFilter.GetOutput()
        modifier = self.logic.GetModifierLabelmap()
        modifier.DeepCopy(output)
        self._modify(segmentId, modifier)

    def hollow(self, segmentId: str, shellMode: str = "INSIDE_SURFACE", shellThicknessMm: float = 3.0) -> None:
        """Turn the segment into a shell (Hollow effect; its defaults: inside surface, 3 mm).

        :param shellMode: what the segment's surface becomes (the effect's "ShellMode", "use current segment
            as"): INSIDE_SURFACE (the inside of the wall: it grows outwards), MEDIAL_SURFACE (its middle) or
            OUTSIDE_SURFACE (its outside: the wall grows inwards).
        :param shellThicknessMm: wall thickness ("ShellThicknessMm").
        """
        checkChoice("shell mode", shellMode, ("INSIDE_SURFACE", "MEDIAL_SURFACE", "OUTSIDE_SURFACE"))
        if not shellThicknessMm > 0:
            raise ValueError(f"Shell thickness must be positive (got {shellThicknessMm} mm)")
        labelmap = self._selectedSegmentLabelmap(segmentId)
        binary = _binary(labelmap)  # kept: an output port does not keep its filter alive
        margin = slicer.vtkITKImageMargin()
        margin.SetInputConnection(binary.GetOutputPort())
        margin.CalculateMarginInMMOn()
        voxelDiameter = min(labelmap.GetSpacing())
        # the margins of Slicer's effect, fractions of a voxel included, so that the results are the same
        if shellMode == "MEDIAL_SURFACE":
            margin.SetOuterMarginMM(0.5 * shellThicknessMm)
            margin.SetInnerMarginMM(-0.5 * shellThicknessMm + 0.5 * voxelDiameter)
        elif shellMode == "INSIDE_SURFACE":
            margin.SetOuterMarginMM(shellThicknessMm + 0.1 * voxelDiameter)
            margin.SetInnerMarginMM(0.0 + 0.1 * voxelDiameter)
        else:
            margin.SetOuterMarginMM(0.0)
            margin.SetInnerMarginMM(-shellThicknessMm + voxelDiameter)
        margin.Update()
        modifier = self.logic.GetModifierLabelmap()
        modifier.ShallowCopy(margin.GetOutput())
        self._modify(segmentId, modifier)

    def _jointSmoothing(self, segmentIds: list[str], smoothingFactor: float) -> None:
        """Joint smoothing of segments, as the Smoothing effect's JOINT_TAUBIN: one surface for all of them, so
        neighbouring segments move together, then back to labelmaps."""
        if not 0.0 <= smoothingFactor <= 1.0:
            raise ValueError(f"Joint smoothing factor must be within 0-1 (got {smoothingFactor})")
        ids = vtk.vtkStringArray()
        for segmentId in segmentIds:
            ids.InsertNextValue(segmentId)
        merged = slicer.vtkOrientedImageData()
        if not self.segmentationNode.GenerateMergedLabelmapForAllSegments(
                merged, slicer.vtkSegmentation.EXTENT_UNION_OF_SEGMENTS_PADDED, None, ids):
            raise RuntimeError("Joint smoothing: could not merge the segments' labelmaps")
        voxelSpace = vtk.vtkImageChangeInformation()
        voxelSpace.SetInputData(merged)
        voxelSpace.SetOutputSpacing(1, 1, 1)
        voxelSpace.SetOutputOrigin(0, 0, 0)
        # discrete marching cubes (not flying edges) keeps the labels' surfaces connected, so they move together
        contours = vtk.vtkDiscreteMarchingCubes()
        contours.SetInputConnection(voxelSpace.GetOutputPort())
        contours.SetNumberOfContours(len(segmentIds))
        for index in range(len(segmentIds)):
            contours.SetValue(index, index + 1)
        smoother = vtk.vtkWindowedSincPolyDataFilter()
        smoother.SetInputConnection(contours.GetOutputPort())
        smoother.SetNumberOfIterations(100)  # many iterations reduce the chance of shrinking
        smoother.BoundarySmoothingOff()
        smoother.FeatureEdgeSmoothingOff()
        smoother.SetFeatureAngle(90.0)
        smoother.SetPassBand(pow(10.0, -4.0 * smoothingFactor))  # 1 .. 0.0001 from a 0-1 factor
        smoother.NonManifoldSmoothingOn()
        smoother.NormalizeCoordinatesOn()
        selectLabel = vtk.vtkThreshold()
        selectLabel.SetInputConnection(smoother.GetOutputPort())
        geometry = vtk.vtkGeometryFilter()
        geometry.SetInputConnection(selectLabel.GetOutputPort())
        toStencil = vtk.vtkPolyDataToImageStencil()
        toStencil.SetInputConnection(geometry.GetOutputPort())
        toStencil.SetOutputSpacing(1, 1, 1)
        toStencil.SetOutputOrigin(0, 0, 0)
        toStencil.SetOutputWholeExtent(merged.GetExtent())
        empty = vtk.vtkImageData()
        empty.SetExtent(merged.GetExtent())
        empty.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        empty.GetPointData().GetScalars().Fill(0)
        stencil = vtk.vtkImageStencil()
        stencil.SetInputData(empty)
        stencil.SetStencilConnection(toStencil.GetOutputPort())
        stencil.ReverseStencilOn()
        stencil.SetBackgroundValue(1)
        imageToWorld = vtk.vtkMatrix4x4()
        merged.GetImageToWorldMatrix(imageToWorld)
        previousOverwriteMode = self.editorNode.GetOverwriteMode()
        self.editorNode.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteVisibleSegments)
        try:
            for index, segmentId in enumerate(segmentIds):
                selectLabel.SetLowerThreshold(index + 1)
                selectLabel.SetUpperThreshold(index + 1)
                selectLabel.SetThresholdFunction(vtk.vtkThreshold.THRESHOLD_BETWEEN)
                stencil.Update()
                smoothed = slicer.vtkOrientedImageData()
                smoothed.ShallowCopy(stencil.GetOutput())
                smoothed.SetImageToWorldMatrix(imageToWorld)
                self._select(segmentId)
                self.logic.ModifySegmentByLabelmap(self.segmentationNode, segmentId, smoothed,
                                                   self.logic.ModificationModeSet, False, False)
        finally:
            self.editorNode.SetOverwriteMode(previousOverwriteMode)


def requireNonEmpty(segmentationNode, segmentId: str, what: str) -> int:
    """Voxel count of the segment; a clear error when a step left it empty."""
    count = segmentVoxelCount(segmentationNode, segmentId)
    if count == 0:
        name = segmentationNode.GetSegmentation().GetSegment(segmentId).GetName()
        raise DicomToPrintError(f"Segment '{name}' is empty after {what}")
    return count
