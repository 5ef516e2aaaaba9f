"""Where a boundary is: ISO-50 from the intensity levels on both sides of it.

A CT voxel cut by a boundary holds the mix of the two materials in proportion to their volumes (partial
volume). The boundary is therefore where the intensity is halfway between the two levels (ISO-50), and a fixed
threshold that is not halfway moves the surface: 300 HU on a 1000 HU bone / 40 HU tissue step puts it a
quarter voxel inside the bone, and on a bone / air step (ISO-50 near -100 HU) even further.

This module estimates the levels and turns the intensities into a fraction map that Slicer's
"Fractional labelmap to closed surface" conversion contours:

1. :func:`iso50Threshold`: a global threshold for the first segmentation: on CT halfway between soft tissue and
   cortical bone, searched where bone lives (:func:`boneLevels`); on MR halfway between the background and the
   tissue of the body (:func:`bodyLevels`).
2. :func:`fractionMap`: for the segmented object, the levels just inside and just outside its boundary,
   measured locally (so bone next to air and bone next to soft tissue each get their own half-step), and
   the fraction (intensity - outside) / (inside - outside) in a band around the boundary.
3. :func:`volumePreservingFraction`: the contour value at which the surface encloses the partial-volume
   integral, which removes the bias of linear interpolation on thin structures (a 1.8 mm plate in 1 mm slices
   comes out 5 % too thick when contoured at exactly one half).

Levels that the data does not show cannot be estimated: a structure thinner than two voxels everywhere and
nowhere next to thicker material of the same kind never reaches its true level, and its ISO-50 boundary is
then placed with the highest level it reaches (it comes out thicker). Real anatomy has thicker bone nearby.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .runtime import DicomToPrintError, checkpoint, execute, inChunks


def boxPlaneFraction(m: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Volume of {u in [0,1]^3 : m . u < c}, for rows of m (N, 3) and c (N,): the fraction of a voxel on the
    inside of a plane, by inclusion-exclusion over the cube's corners. ``c`` may also be (K, N): K offsets of
    each plane at once, the slopes' share of the work done once."""
    c = c - np.where(m < 0, m, 0.0).sum(axis=1)  # mirror axes so that every m_i >= 0
    m = np.abs(m)
    # A row of zeros is no plane (a zero gradient, a vertex whose triangles cancel out): the voxel is then wholly
    # on the side c says, never NaN. An axis parallel to the plane is tilted negligibly.
    flat = m.max(axis=1) <= 0.0
    m = np.maximum(m, 1e-4 * np.where(flat, 1.0, m.max(axis=1))[:, None])
    total = np.zeros(np.shape(c))
    part = np.empty(np.shape(c))
    for corner in np.ndindex(2, 2, 2):  # in place, and cubes as products (pow is 3 times slower)
        np.subtract(c, m @ np.array(corner, float), out=part)
        np.maximum(part, 0.0, out=part)
        cube = part * part
        cube *= part
        if sum(corner) % 2:
            total -= cube
        else:
            total += cube
    return np.where(flat, (c > 0).astype(float), np.clip(total / (6.0 * m.prod(axis=1)), 0.0, 1.0))


class NothingToPrint(DicomToPrintError):
    """The automatic threshold found no structure that stands out from the noise: there is nothing to print."""


#: A structure counts only when it stands out from the noise by this many standard deviations.
MINIMUM_CONTRAST_IN_NOISE = 5.0
#: Soft tissue on CT (fat -100 HU to muscle and blood 60 HU): where its histogram peak is looked for.
SOFT_TISSUE_HU = (-150.0, 150.0)
#: Bone is searched this far (HU) above the soft-tissue peak at least, and below metal.
BONE_MARGIN_HU = 100.0
METAL_HU = 2500.0
#: Slicer's fractional labelmaps store a voxel's fraction as a signed char from -108 (outside) to 108 (inside).
FRACTION_MIN, FRACTION_MAX = -108, 108
FRACTION_STEPS = FRACTION_MAX - FRACTION_MIN


@dataclass
class ThresholdLevels:
    """An automatic threshold, the levels it lies halfway between, and what it selects."""

    threshold: float
    lowerLevel: float
    upperLevel: float
    #: standard deviation of the noise at the lower level (same units)
    noise: float
    #: what the threshold selects, as a segment name ("Bone", "Skin")
    structure: str
    lowerName: str
    upperName: str
    units: str = ""

    def describe(self) -> str:
        """In words a clinician understands: what, at which level, between what."""
        u = f" {self.units}" if self.units else ""
        what = {"Bone": "bone", "Skin": "the body's outer surface (skin)"}.get(self.structure, self.structure)
        text = (f"{what}: voxels of {self.threshold:.0f}{u} and more, halfway between {self.lowerName} "
                f"({self.lowerLevel:.0f}{u}) and {self.upperName} ({self.upperLevel:.0f}{u})")
        if self.structure == "Skin":
            text += "; an MR has no Hounsfield units, so it is the body's surface that is found automatically"
        return text

    def asDict(self) -> dict:
        return {"lowerLevel": round(self.lowerLevel, 1), "upperLevel": round(self.upperLevel, 1),
                "lowerName": self.lowerName, "upperName": self.upperName, "noise": round(self.noise, 1)}


def voxelPlaneFractions(slope: np.ndarray, offset: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """For planes through N points, the fraction of each of the 8 voxels around each point on the inside of its
    plane: (8, N), voxel o (in ``np.ndindex(2, 2, 2)`` order) being :func:`boxPlaneFraction` of
    ``(slope, 0.5 * slope.sum() - slope . (offset + o))``.

    The 8 voxels' 64 corners are 27 points, and the inclusion-exclusion over a voxel's corners is a difference
    along each axis in turn: 27 cubes and 38 differences per point instead of 64 of each. Axes along which the
    plane is nearly parallel are tilted by 1e-4 of the largest slope, as in :func:`boxPlaneFraction`, here
    before mirroring (a difference of 1e-4 of a voxel at most).

    :param slope: (N, 3) how far along the plane's normal one voxel step along each axis goes.
    :param offset: (N, 3) the first voxel's centre minus the point, in voxels (each within -1..0).
    """
    result = np.empty((8, len(slope)))
    steps = np.arange(3.0)
    for start in range(0, len(slope), chunk):
        s = slope[start:start + chunk]
        largest = np.abs(s).max(axis=1)
        flat = largest <= 0.0  # no plane (a zero gradient): nothing is inside, as boxPlaneFraction says
        m = np.maximum(np.abs(s), 1e-4 * np.where(flat, 1.0, largest)[:, None])
        negative = s < 0
        tilted = np.where(negative, -m, m)
        # mirrored along the axes of negative slope, voxel o + corner q is grid point a = o' + q, o' = o xor
        # negative; the plane's offset from grid point a is k - m . a
        k = 0.5 * tilted.sum(axis=1) - (tilted * offset[start:start + chunk]).sum(axis=1) \
            + 2.0 * np.where(negative, m, 0.0).sum(axis=1)
        cube = (k[None, None, None, :] - (steps[:, None] * m[:, 0])[:, None, None, :]
                - (steps[:, None] * m[:, 1])[None, :, None, :] - (steps[:, None] * m[:, 2])[None, None, :, :])
        np.maximum(cube, 0.0, out=cube)
        cube = cube * cube * cube
        total = cube[:-1] - cube[1:]
        total = total[:, :-1] - total[:, 1:]
        total = (total[:, :, :-1] - total[:, :, 1:]).reshape(8, -1)
        fraction = np.clip(total / (6.0 * m.prod(axis=1)), 0.0, 1.0)
        fraction[:, flat] = 0.0
        mirror = (negative * np.array([4, 2, 1])).sum(axis=1)
        result[:, start:start + chunk] = np.take_along_axis(fraction, np.arange(8)[:, None] ^ mirror[None, :], axis=0)
    return result


def _otsuSplit(values: np.ndarray) -> float:
    """Two-class Otsu threshold of the values (256 bins)."""
    otsu = sitk.OtsuThresholdImageFilter()
    otsu.SetNumberOfHistogramBins(256)
    otsu.SetInsideValue(0)
    otsu.SetOutsideValue(1)
    execute(otsu, sitk.GetImageFromArray(np.ascontiguousarray(values.reshape(-1, 1, 1), np.float32)))
    return float(otsu.GetThreshold())


def _ranks(ordered: np.ndarray, keys, side: str = "left") -> np.ndarray:
    """How many of the sorted ``ordered`` are below each of ``keys`` (side "left") or at most it ("right"), the
    values compared as float32 with the keys as float32 (as numpy compares a float32 array with a Python float).
    On whole numbers the keys become whole numbers of the array's own type (no float copy of the array)."""
    keys = np.asarray(keys, np.float32)
    if ordered.dtype.kind not in "iu":
        return np.searchsorted(ordered, keys, side)
    # a whole number v is below k when v < ceil(k), at most k when v < floor(k) + 1
    bound = np.ceil(keys) if side == "left" else np.floor(keys) + 1
    info = np.iinfo(ordered.dtype)
    ranks = np.searchsorted(ordered, np.clip(bound, info.min, info.max).astype(ordered.dtype), "left")
    return np.where(bound > info.max, len(ordered), ranks)


def _rank(ordered: np.ndarray, key: float, side: str = "left") -> int:
    return int(_ranks(ordered, [key], side)[0])


def _sortedMedian(ordered: np.ndarray, start: int, stop: int, level: float | None = None) -> float:
    """np.median of ``ordered[start:stop]`` (sorted) as float32 values, or of their distances from ``level`` where
    the range lies on one side of it (float32 differences keep the order, so the middle values are the same): the
    one or two middle values, averaged as np.median averages them."""
    count = stop - start
    middle = ordered[start + (count - 1) // 2:start + count // 2 + 1].astype(np.float32)
    return float(np.median(middle if level is None else np.abs(middle - level)))


def _robustNoise(ordered: np.ndarray, level: float, window: float) -> float:
    """Standard deviation of the noise around a peak: 1.4826 x the median absolute deviation from it, on each side
    separately (fat below soft tissue, partial volume above it, widen one side only), the smaller kept; the
    window is then narrowed to four of them and the estimate made again.

    :param ordered: the voxels, sorted.
    """
    sigma = window
    for _ in range(2):
        checkpoint()
        sides = []
        # below: level - window <= v < level; above: level < v <= level + window
        for start, stop in ((_rank(ordered, level - window), _rank(ordered, level)),
                            (_rank(ordered, level, "right"), _rank(ordered, level + window, "right"))):
            if stop > start:
                sides.append(1.4826 * _sortedMedian(ordered, start, stop, level))
        if not sides:
            return 0.0
        sigma = min(sides)
        window = max(4.0 * sigma, 10.0)
    return sigma


def sortedVoxels(values: np.ndarray) -> np.ndarray:
    """The voxels in one sorted array, for :func:`boneLevels`: 16-bit whole numbers (a CT as read) as they are,
    with numpy's radix sort (10 M voxels in 0.04 s); anything else as float32, the type the levels are found in."""
    flat = np.ravel(values)
    if flat.dtype.kind in "iu" and flat.dtype.itemsize <= 2:
        flat = flat.copy() if np.may_share_memory(flat, values) else flat  # never sort the caller's array
        flat.sort(kind="stable")
        return flat
    return np.sort(flat.astype(np.float32))


def boneLevels(values: np.ndarray, minimumVoxels: int = 1) -> ThresholdLevels:
    """Bone on a CT, as a patient's scan shows it: air and soft tissue fill most of the histogram, bone is a few
    percent of the voxels, so the classes are searched where bone lives.

    1. The soft-tissue level: the histogram's peak between -150 and 150 HU (where fat, muscle, brain and blood
       are); on a scan of bone in air (a dry specimen) with no such peak, the air's peak.
    2. Bone: the voxels more than five noise standard deviations (and at least 100 HU) above that level and
       below metal (2500 HU), split into two classes (Otsu): partial volume, cancellous bone and plastic below,
       cortical bone above; the cortical level is the median of the upper class.
    3. The threshold is halfway between the two levels (ISO-50): where a surface between soft tissue and
       cortical bone lies. Cancellous bone and marrow inside the bone fall below it; they are filled in later.

    Every count, class and median is a range of the sorted voxels (:func:`sortedVoxels`): the same numbers as
    histograms and medians of the voxels as float32 (the test suite checks it), in a tenth of the time.

    :param values: the volume's voxels in HU (any shape; a sample is enough).
    :param minimumVoxels: fewer bone-dense voxels than this is no bone.
    :raises NothingToPrint: when nothing is bone-dense, or bone does not stand out from the noise.
    """
    ordered = sortedVoxels(values)
    checkpoint()
    if not ordered.size or not float(ordered[-1]) > float(ordered[0]):
        raise NothingToPrint("the volume has a single intensity; there is no boundary to find")
    low = max(float(ordered[0]), -1100.0)
    bins = np.arange(np.floor(low), 3100.0, 4.0)
    # np.histogram's equal bins (its float32 edges, each bin closed below, the last also above)
    _, edges = np.histogram(np.zeros(0, np.float32), len(bins) - 1, (float(bins[0]), float(bins[-1])))
    below = _ranks(ordered, edges)
    below[-1] = _rank(ordered, float(edges[-1]), "right")
    counts = np.diff(below)
    smooth = np.convolve(counts, np.ones(5) / 5.0, mode="same")  # 20 HU: noise does not make false peaks
    centers = (edges[:-1] + edges[1:]) / 2.0
    tissue = (centers >= SOFT_TISSUE_HU[0]) & (centers <= SOFT_TISSUE_HU[1])
    if smooth[tissue].sum() >= 0.005 * ordered.size:
        lowerLevel, lowerName = float(centers[tissue][np.argmax(smooth[tissue])]), "soft tissue"
    else:
        air = centers < -500.0
        lowerLevel, lowerName = float(centers[air][np.argmax(smooth[air])]) if air.any() else low, "air"
    noise = _robustNoise(ordered, lowerLevel, 150.0)
    floor = lowerLevel + max(MINIMUM_CONTRAST_IN_NOISE * noise, BONE_MARGIN_HU)
    checkpoint()
    first, stop = _rank(ordered, floor, "right"), _rank(ordered, METAL_HU, "right")  # floor < v <= metal
    if stop - first < max(minimumVoxels, 2):
        raise NothingToPrint(f"nothing in this CT is as dense as bone: no part of it is denser than {lowerName} "
                             f"({lowerLevel:.0f} HU) by more than {floor - lowerLevel:.0f} HU (five times the "
                             f"noise, {noise:.0f} HU, and at least {BONE_MARGIN_HU:.0f} HU)")
    candidates = ordered[first:stop]
    split = _otsuSplit(candidates) if float(candidates[-1]) > float(candidates[0]) else float(candidates[0])
    checkpoint()
    middle = _rank(candidates, split, "right")  # lower: v <= split, upper: v > split
    upperLevel = _sortedMedian(candidates, middle, len(candidates)) if middle < len(candidates) else \
        _sortedMedian(candidates, 0, len(candidates))
    if not middle or upperLevel - _sortedMedian(candidates, 0, middle) < MINIMUM_CONTRAST_IN_NOISE * noise:
        upperLevel = _sortedMedian(candidates, 0, len(candidates))  # one class only (e.g. a phantom's bone)
    if upperLevel - lowerLevel < MINIMUM_CONTRAST_IN_NOISE * noise:
        raise NothingToPrint(f"bone does not stand out from the noise: {upperLevel:.0f} HU against {lowerName} at "
                             f"{lowerLevel:.0f} HU is less than five times the noise ({noise:.0f} HU)")
    return ThresholdLevels((lowerLevel + upperLevel) / 2.0, lowerLevel, upperLevel, noise, "Bone", lowerName,
                           "cortical bone", "HU")


def bodyLevels(values: np.ndarray) -> ThresholdLevels:
    """The body against the background around it, for series without Hounsfield units (MR): two classes (Otsu),
    their medians the background and tissue levels, the threshold halfway.

    :raises NothingToPrint: when the two classes are less than five noise standard deviations apart (a volume
        of noise, or a field of view with no background around the body).
    """
    values = np.asarray(values, np.float32).ravel()
    if not values.size or not float(values.max()) > float(values.min()):
        raise NothingToPrint("the volume has a single intensity; there is no boundary to find")
    split = _otsuSplit(values)
    lower, upper = values[values <= split], values[values > split]
    lowerLevel, upperLevel = float(np.median(lower)), float(np.median(upper))
    noise = 1.4826 * float(np.median(np.abs(lower - lowerLevel)))
    if upperLevel - lowerLevel < MINIMUM_CONTRAST_IN_NOISE * noise:
        raise NothingToPrint(f"nothing stands out from the noise: the brighter half of the volume ({upperLevel:.0f}) "
                             f"is only {(upperLevel - lowerLevel) / max(noise, 1e-12):.1f} noise standard deviations "
                             f"({noise:.0f}) above the darker ({lowerLevel:.0f}); five are needed")
    return ThresholdLevels((lowerLevel + upperLevel) / 2.0, lowerLevel, upperLevel, noise, "Skin",
                           "the background", "tissue")


def iso50Threshold(values: np.ndarray, modality: str = "CT", minimumVoxels: int = 1) -> ThresholdLevels:
    """The automatic ISO-50 threshold: bone on CT (:func:`boneLevels`), the body's surface on other modalities,
    which have no Hounsfield units (:func:`bodyLevels`)."""
    return boneLevels(values, minimumVoxels) if modality == "CT" else bodyLevels(values)


@dataclass
class FractionMap:
    """Fraction of each voxel inside the object, on a sub-grid (the object's bounding box plus a margin), stored
    as Slicer's fractional labelmap stores it (:data:`FRACTION_MIN` to :data:`FRACTION_MAX`): what the closed
    surface is contoured from, a quarter of the memory of float32 fractions."""

    #: the fractions (clipped to 0..1) on Slicer's signed-char scale, (k, j, i)
    levels: np.ndarray
    #: sum of the fractions barely clipped (-0.25..1.25): noise averages out, so it integrates to the volume
    unclippedSum: float
    #: (k, j, i) start of the sub-grid in the volume
    offset: tuple[int, int, int]
    insideLevel: float
    outsideLevel: float
    #: how the inside level was found: "interior" (measured in the object) or "plateau" (thin object)
    insideLevelSource: str

    @staticmethod
    def quantize(fractions: np.ndarray) -> np.ndarray:
        """Fractions (0..1, float32) on Slicer's signed-char scale, rounded to the nearest step."""
        return np.round(fractions * FRACTION_STEPS + FRACTION_MIN).astype(np.int8)

    @staticmethod
    def fractionTable() -> np.ndarray:
        """The fraction (float32) of each stored level, indexed by the level's byte as uint8."""
        table = np.zeros(256, np.float32)
        steps = np.arange(FRACTION_MIN, FRACTION_MAX + 1)
        table[steps.astype(np.int8).view(np.uint8)] = (steps - FRACTION_MIN) / np.float32(FRACTION_STEPS)
        return table

    @property
    def fraction(self) -> np.ndarray:
        """The fractions as float32 (a new array; the levels are what is kept)."""
        return np.take(self.fractionTable(), self.levels.view(np.uint8))


def boundingBox(mask: np.ndarray, margin: int = 0, evenStart: bool = False) -> tuple[slice, slice, slice] | None:
    """The (k, j, i) slices around the non-zero voxels of ``mask``, ``margin`` voxels wider on each side and
    clipped to the array (found with ``any`` along the axes, slab by slab: no index arrays of the voxels); None
    when it is empty.

    :param evenStart: start each slice on an even index (a step that samples every second voxel then samples the
        same voxels within the box as within the whole).
    """
    occupied = [np.zeros(n, bool) for n in mask.shape]  # along each axis, whether a slice holds any voxel
    for k in range(0, mask.shape[0], 32):  # slab by slab: a Cancel is answered between
        checkpoint()
        rows = mask[k:k + 32].any(axis=2)
        occupied[0][k:k + 32] = rows.any(axis=1)
        occupied[1] |= rows.any(axis=0)
        occupied[2] |= mask[k:k + 32].any(axis=1).any(axis=0)
    box = []
    for axis in range(3):
        index = np.flatnonzero(occupied[axis])
        if len(index) == 0:
            return None
        box.append(widened(int(index[0]), int(index[-1]), mask.shape[axis], margin, evenStart))
    return tuple(box)


def widened(first: int, last: int, size: int, margin: int = 0, evenStart: bool = False) -> slice:
    """The slice from index ``first`` to ``last`` (included) along an axis of ``size``, ``margin`` wider on each side,
    clipped to the axis, its start made even with ``evenStart`` (see :func:`boundingBox`)."""
    start = max(first - margin, 0)
    return slice(start - start % 2 if evenStart else start, min(last + margin + 1, size))


def _image(array: np.ndarray, spacing) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing([float(s) for s in spacing])
    return image


def _binnedShape(shape, shrink) -> tuple[int, int, int]:
    """(k, j, i) size of a grid of ``shape`` binned by ``shrink`` (i, j, k); trailing voxels that fill no whole
    bin are left out, as ITK's BinShrink does."""
    return tuple(n // f for n, f in zip(shape, shrink[::-1], strict=True))


def _binnedRing(ring: np.ndarray, values: np.ndarray, shrink,
                out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``values`` over the ring voxels' share (sum / bin size) and the ring's share, in bins of ``shrink``
    (i, j, k) voxels (:func:`_binnedShape`), slab by slab: no full-size floating-point copy of the volume is ever
    made.

    :param out: float32 array with 2 components (..., 2) to write them into: of the binned shape, or fewer bins
        (the first ones).
    """
    fi, fj, fk = shrink
    if out is None:
        out = np.empty((*_binnedShape(ring.shape, shrink), 2), np.float32)
    kc, jc, ic = out.shape[:3]
    total, count = out[..., 0], out[..., 1]

    def binned(slab):  # a bin's sum as the sum of its fk * fj * fi strided views (numpy's reductions over small
        # axes of a reshaped array are three times slower), exact for integers, then the mean
        exact = np.int32 if slab.dtype.kind in "biu" and slab.dtype.itemsize <= 2 else np.float64
        result = np.zeros((jc, ic), exact)
        for dk, dj, di in np.ndindex(fk, fj, fi):
            result += slab[dk, dj:jc * fj:fj, di:ic * fi:fi]
        return result / (fk * fj * fi)

    for c in range(kc):
        checkpoint()
        inRing = ring[c * fk:(c + 1) * fk]
        total[c] = binned(values[c * fk:(c + 1) * fk] * inRing)
        count[c] = binned(inRing.view(np.uint8))
    return total, count


def _smoothedAt(coarse: list[np.ndarray], spacing, shrink, sigmaMm: float, where, step=(1, 1, 1)) -> np.ndarray:
    """Gaussian of each component of the binned arrays in ``coarse`` (a list holding one (k, j, i, C) array,
    bins of ``shrink`` (i, j, k) voxels of ``spacing``; the list is emptied, so that the array is freed as soon
    as ITK has its copy), interpolated (trilinear) at the fine grid's voxels ``where`` (index arrays, k, j, i):
    an (N, C) array. The components are interpolated together, so the corners and weights are worked out once.

    :param step: (i, j, k): the bins hold every step-th voxel of the fine grid, from their first.
    """
    # one vector image: ITK smooths the components in one pass over the grid (the same numbers as one by one)
    image = sitk.GetImageFromArray(coarse.pop(), isVector=True)
    image.SetSpacing([float(s * f) for s, f in zip(spacing, shrink, strict=True)])
    smoother = sitk.SmoothingRecursiveGaussianImageFilter()
    smoother.SetSigma(sigmaMm)
    smoothedImage = execute(smoother, image)  # cancellable (the procedural call is one long wait)
    del image
    stacked = sitk.GetArrayViewFromImage(smoothedImage)  # valid while smoothedImage lives
    result = np.empty((len(where[0]), stacked.shape[3]), np.float32)
    # in chunks of points, two threads at a time (numpy lets go of Python's lock in these passes): each point's
    # value is its own, so the same numbers, and each chunk's index and weight arrays stay small
    inChunks(lambda start, stop: _interpolate(stacked, shrink, where, result, start, stop, step), len(result),
             1 << 19)
    return result


def _interpolate(stacked: np.ndarray, shrink, where, result: np.ndarray, start: int, stop: int,
                 step=(1, 1, 1)) -> None:
    """Trilinear interpolation of the binned grid ``stacked`` (k, j, i, C) at the fine voxels
    ``where[a][start:stop]``, into ``result[start:stop]`` (the bins of ``shrink`` voxels hold every ``step``-th
    one, from their first; both (i, j, k))."""
    shape = stacked.shape[:3]
    # fine voxel n lies at coarse coordinate (n - (f - s) / 2) / f: a bin's centre is the mean of the voxels it
    # holds
    lower, weights = [], []
    for axis, (f, s) in enumerate(zip(reversed(shrink), reversed(step), strict=True)):
        x = np.clip((where[axis][start:stop] - (f - s) / 2.0) / f, 0.0, shape[axis] - 1)
        i0 = np.minimum(np.floor(x).astype(np.intp), max(shape[axis] - 2, 0))
        lower.append(i0)
        weights.append((x - i0).astype(np.float32))
    flat = stacked.reshape(-1, stacked.shape[3])
    # linear index of the lower corner; a corner's neighbour along an axis is one stride on (none where the grid
    # is one bin thick: the lower corner is then also the upper)
    strides = (shape[1] * shape[2], shape[2], 1)
    base = lower[0] * strides[0]
    base += lower[1] * strides[1]
    base += lower[2]
    step = [strides[a] if shape[a] > 1 else 0 for a in range(3)]
    out = result[start:stop]
    out[...] = 0.0
    for corner in range(8):
        bits = [(corner >> axis) & 1 for axis in range(3)]
        weight = np.ones(len(base), np.float32)
        for a in range(3):
            weight *= weights[a] if bits[a] else 1.0 - weights[a]
        # (np.take: the same rows as flat[index], a fraction of the time)
        out += weight[:, None] * np.take(flat, base + sum(b * d for b, d in zip(bits, step, strict=True)), axis=0)


def _boundaryBand(inside: np.ndarray) -> np.ndarray:
    """Voxels with a voxel of the other side among their 26 neighbours: the partial-volume band on both sides of
    the boundary (a 3 x 3 x 3 maximum and minimum, each separable into three passes). The passes go back and forth
    between arrays made once: three fresh box-sized arrays, not six (each costs its first write)."""
    def extreme(operation, out, spare):
        source = inside
        for axis in range(3):
            lower, upper = [slice(None)] * 3, [slice(None)] * 3
            lower[axis], upper[axis] = slice(0, -1), slice(1, None)
            lower, upper = tuple(lower), tuple(upper)
            checkpoint()
            target = spare if axis == 1 else out  # inside -> out -> spare -> out
            np.copyto(target, source)
            operation(target[lower], source[upper], out=target[lower])  # in place: no temporaries
            operation(target[upper], source[lower], out=target[upper])
            source = target
        return out

    first, second = np.empty_like(inside), np.empty_like(inside)
    band = extreme(np.logical_or, first, second)
    interior = extreme(np.logical_and, second, np.empty_like(inside))
    np.logical_not(interior, out=interior)
    band &= interior
    return band


def fractionMargin(spacing) -> int:
    """Voxels around the object that :func:`fractionMap` looks at (its rings reach 3 voxels out, where the
    largest spacing is the voxel)."""
    return int(np.ceil(4 * float(max(spacing)) / min(spacing))) + 1


def fractionMap(values: np.ndarray, mask: np.ndarray, spacing, sigmaMm: float = 2.5,
                threshold: float | None = None, insideLevel: float | None = None,
                offset=(0, 0, 0), valuesRead=None) -> FractionMap:
    """Fraction of each voxel inside the object, from the intensity levels on both sides of its boundary.

    Only the voxels on either side of the object's boundary, one voxel deep, are partial: the rest of the object
    is 1 (also where it is cancellous bone or marrow, less dense than its boundary) and the rest of the outside 0
    (nothing the segmentation left out comes back).

    Memory: besides the volume, the 32-bit fraction map it returns, three masks of one byte per voxel, a 32-bit
    distance map of the sampled voxels (a quarter of them on a CT) and the few voxels near the boundary.

    :param values: the volume (k, j, i), or the part of it around the object (at least :func:`fractionMargin`
        voxels beyond it, or to the volume's edge).
    :param mask: the segmented object on the same grid (what the Threshold, Islands and Smoothing steps made).
    :param spacing: voxel size (i, j, k) in mm.
    :param sigmaMm: how far (Gaussian sigma) the levels are averaged along the boundary.
    :param threshold: the threshold that found the object: the level inside is measured on voxels at or above
        it (not on cancellous bone inside cortical bone), the level outside on voxels below it.
    :param insideLevel: the level inside, where it cannot be measured near the boundary: a body's surface lies
        between the background and a skin thinner than the ring the level would be measured on, over bright fat
        (on an MR head the measured level put the surface 1 mm inside the skin).
    :param offset: (k, j, i) index in the volume of ``values[0, 0, 0]``, where the arrays are a part of it.
    :param valuesRead: called with no arguments once ``values`` is no longer used (this function then holds no
        reference to it): a caller that holds none either can free the volume there.
    """
    h = float(max(spacing))
    box = boundingBox(mask, margin=fractionMargin(spacing))
    if box is None:
        raise ValueError("The segment is empty")
    hu = values[box]  # a view: the volume is never copied whole
    inside = mask[box].astype(bool, copy=False)  # not modified: the caller's own mask where it is bool
    checkpoint()
    # The partial-volume zone is within a voxel of the boundary; beyond it a voxel is one material (inside also
    # where it is less dense, as cancellous bone is). The levels are needed only in that band.
    band = _boundaryBand(inside)
    checkpoint()
    # The levels vary over centimetres: they are averaged on a grid of voxels binned to at most 3/4 sigma (a
    # bin's own blur, its width / sqrt(12), adds 2 % to sigma) and interpolated into the band. Where the voxels
    # are finer than the largest spacing (a CT's slices), they are measured on every step-th voxel along those
    # axes (every second in-plane on a CT of 0.45 x 0.45 x 0.8 mm): a ring of voxels 1.5 to 3 h from the
    # boundary holds as many of them either way per millimetre of the boundary, and the distance map, the rings,
    # the medians and the bins are a step^2 smaller. (Against every voxel and bins of sigma / 2: the surface
    # step 1.9 s shorter at 512 x 512 x 300; the phantoms' surface errors the same to 0.001 mm.)
    step, shrink = [], []
    for s, n in zip(spacing, hu.shape[::-1], strict=True):
        width = max(1, min(int(0.75 * sigmaMm // s), n // 2))
        every = max(1, int(1.15 * h // s))
        every = every if width >= every else 1
        step.append(every)
        shrink.append(width - width % every)
    sampled = tuple(slice(None, None, every) for every in reversed(step))
    sampledInside = inside[sampled]
    # signed distance (mm) from each sampled voxel's centre to the object's boundary on the sampled grid,
    # negative inside (a view of the image)
    distanceFilter = sitk.SignedMaurerDistanceMapImageFilter()
    distanceFilter.SetInsideIsPositive(False)
    distanceFilter.SetSquaredDistance(False)
    distanceFilter.SetUseImageSpacing(True)
    distanceImage = execute(distanceFilter, _image(sampledInside.view(np.uint8), np.multiply(spacing, step)))
    distance = sitk.GetArrayViewFromImage(distanceImage)
    checkpoint()
    # Voxels a voxel and a half or more from the boundary hold one material only (nearer ones may be partial
    # and would pull the levels towards each other; the sampled grid's boundary can lie a step off the true one,
    # so the band is left out too); three voxels is still "near". With a threshold: the object's own material
    # inside, not cancellous bone; nothing of it outside. (Slab by slab: no box-sized temporaries, a Cancel
    # answered between.)
    sampledHu, sampledBand = hu[sampled], band[sampled]
    innerRing, outerRing = np.empty(distance.shape, bool), np.empty(distance.shape, bool)
    for k in range(0, len(distance), 32):
        checkpoint()
        slab = slice(k, k + 32)
        np.logical_and(distance[slab] <= -1.5 * h, distance[slab] >= -3 * h, out=innerRing[slab])
        np.logical_and(distance[slab] >= 1.5 * h, distance[slab] <= 3 * h, out=outerRing[slab])
        innerRing[slab] &= ~sampledBand[slab]
        outerRing[slab] &= ~sampledBand[slab]
        if threshold is not None:
            innerRing[slab] &= sampledHu[slab] >= threshold
            outerRing[slab] &= sampledHu[slab] < threshold
    del distance, distanceImage, sampledBand
    checkpoint()
    outsideLevel = float(np.median(sampledHu[outerRing])) if outerRing.any() else float(np.median(hu[~inside]))
    checkpoint()
    if insideLevel is not None:
        source = "given"
        innerRing[...] = False
    elif np.count_nonzero(innerRing) * int(np.prod(step)) >= 200:
        insideLevel, source = float(np.median(sampledHu[innerRing])), "interior"
    else:
        # A thin object: its plateau is the upper end of its intensities, less the noise there.
        noise = 1.4826 * float(np.median(np.abs(sampledHu[outerRing] - outsideLevel))) if outerRing.any() else 0.0
        insideLevel, source = float(np.percentile(hu[inside], 95)) - 1.645 * noise, "plateau"
    # the band's voxels, slab by slab into arrays made once (np.nonzero on 2000 slices: one 0.9 s call)
    counts = [int(np.count_nonzero(band[k:k + 64])) for k in range(0, len(band), 64)]
    near = tuple(np.empty(sum(counts), np.intp) for _ in range(3))
    start = 0
    for k, count in zip(range(0, len(band), 64), counts, strict=True):
        checkpoint()
        for axis, index in enumerate(np.nonzero(band[k:k + 64])):
            near[axis][start:start + count] = index + k if axis == 0 else index
        start += count
    del band
    checkpoint()

    # normalized convolution: each ring's values averaged nearby, the global level where no ring is near. The
    # rings are binned (total and count, a two-component image each) while the values are here; then the values
    # are let go (valuesRead), and each ring's image is freed once ITK has copied it: with the volume, the binned
    # grids are the largest arrays of this step.
    binned = []  # a list, so that _smoothedAt takes each ring's only reference
    for ring in (innerRing, outerRing):
        binned.append(np.empty((*_binnedShape(hu.shape, shrink), 2), np.float32))
        _binnedRing(ring, sampledHu, [f // e for f, e in zip(shrink, step, strict=True)], out=binned[-1])
        checkpoint()
    del innerRing, outerRing, ring
    valuesNear = hu[near].astype(np.float32)
    del hu, values, sampledHu
    if valuesRead is not None:
        valuesRead()
    weight = 0.05
    outerBinned = [binned.pop()]
    inner = _smoothedAt(binned, spacing, shrink, sigmaMm, near, step)
    upper = (inner[:, 0] + weight * insideLevel) / (inner[:, 1] + weight)
    del inner
    checkpoint()
    outer = _smoothedAt(outerBinned, spacing, shrink, sigmaMm, near, step)
    lower = (outer[:, 0] + weight * outsideLevel) / (outer[:, 1] + weight)
    del outer
    contrast = upper - lower
    minimumContrast = 0.2 * abs(insideLevel - outsideLevel)
    reliable = np.abs(contrast) >= max(minimumContrast, 1e-6)
    unclipped = np.where(reliable, (valuesNear - lower) / np.where(reliable, contrast, 1.0),
                         inside[near].astype(np.float32))
    # made last (the volume and the binned rings are gone by now), slab by slab (a Cancel is answered between),
    # on Slicer's scale: the conversion takes it as it is, and a byte per voxel is a quarter of float32's first
    # writes (0.29 -> 0.07 s at 512 x 512 x 300 on a machine where fresh memory is slow)
    stored = np.empty(inside.shape, np.int8)
    insideVoxels = 0
    for k in range(0, len(stored), 16):
        checkpoint()
        stored[k:k + 16] = FRACTION_MIN
        np.copyto(stored[k:k + 16], np.int8(FRACTION_MAX), where=inside[k:k + 16])
        insideVoxels += int(np.count_nonzero(inside[k:k + 16]))
    stored[near] = FractionMap.quantize(np.clip(unclipped, 0.0, 1.0))
    # The partial-volume integral: noise averages out in the unclipped sum, but where the local levels are off
    # (three materials meeting) a voxel must not count for more than a little beyond pure. (Beyond the band the
    # fraction is exactly 0 or 1, clipped or not: those count as the inside voxels there.)
    integral = (float(insideVoxels - int(np.count_nonzero(inside[near])))
                + float(np.clip(unclipped, -0.25, 1.25).sum(dtype=np.float64)))
    return FractionMap(stored, integral, tuple(int(o) + s.start for o, s in zip(offset, box, strict=True)),
                       insideLevel, outsideLevel, source)


def volumePreservingFraction(enclosedVolume, targetVolume: float, start: float = 0.5, iterations: int = 4,
                             limits=(0.3, 0.7)) -> tuple[float, float]:
    """Contour value whose surface encloses ``targetVolume`` (secant search from ``start``).

    :param enclosedVolume: function of the contour value returning the enclosed volume.
    :return: (contour value, enclosed volume there).
    """
    t0, v0 = start, enclosedVolume(start)
    if targetVolume <= 0 or abs(v0 - targetVolume) <= 1e-4 * targetVolume:
        return t0, v0
    # a larger contour value encloses less: step in the direction that corrects the volume
    t1 = float(np.clip(t0 + (0.02 if v0 > targetVolume else -0.02), *limits))
    v1 = enclosedVolume(t1)
    for _ in range(iterations):
        if abs(v1 - targetVolume) <= 1e-4 * targetVolume or v1 == v0:
            break
        t2 = float(np.clip(t1 + (targetVolume - v1) * (t1 - t0) / (v1 - v0), *limits))
        t0, v0 = t1, v1
        t1, v1 = t2, enclosedVolume(t2)
    return t1, v1


INSIDE_SURFACE = "INSIDE_SURFACE"
MEDIAL_SURFACE = "MEDIAL_SURFACE"
OUTSIDE_SURFACE = "OUTSIDE_SURFACE"
SHELL_MODES = (INSIDE_SURFACE, MEDIAL_SURFACE, OUTSIDE_SURFACE)


@dataclass
class HollowInfo:
    mode: str
    wallMm: float
    drainHoles: int
    drainHoleDiameterMm: float
    solidVolumeMm3: float
    hollowVolumeMm3: float

    def asDict(self) -> dict:
        saved = self.solidVolumeMm3 - self.hollowVolumeMm3
        return {"mode": self.mode, "wallMm": self.wallMm, "drainHoles": self.drainHoles,
                "drainHoleDiameterMm": self.drainHoleDiameterMm, "solidVolumeCm3": round(self.solidVolumeMm3 / 1e3, 3),
                "hollowVolumeCm3": round(self.hollowVolumeMm3 / 1e3, 3), "materialSavedCm3": round(saved / 1e3, 3),
                "materialSavedPercent": round(100.0 * saved / max(self.solidVolumeMm3, 1e-9), 1)}


def surfaceDistance(fraction: np.ndarray, spacing, band: float) -> np.ndarray:
    """Signed distance (mm, negative inside) from every voxel centre to the surface where the fraction is one
    half: exact (to the contoured surface) within ``band`` mm of it, from a distance map further away.

    A distance map of the voxelized object alone is off by up to half a voxel diagonal, more on anisotropic
    voxels, which would make a hollow's wall uneven.
    """
    import vtk
    from vtk.util import numpy_support

    spacing = np.asarray(spacing, float)
    inside = fraction >= 0.5
    coarse = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(
        _image(inside.astype(np.uint8), spacing), insideIsPositive=False, squaredDistance=False,
        useImageSpacing=True)).astype(np.float32)
    image = vtk.vtkImageData()
    image.SetDimensions(fraction.shape[2], fraction.shape[1], fraction.shape[0])
    image.SetSpacing(*spacing)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(np.ascontiguousarray(fraction, np.float32).ravel(),
                                                               deep=True))
    contour = vtk.vtkFlyingEdges3D()
    contour.SetInputData(image)
    contour.SetValue(0, 0.5)
    contour.ComputeNormalsOff()
    contour.Update()
    near = np.nonzero(np.abs(coarse) <= band)
    if contour.GetOutput().GetNumberOfPolys() == 0 or len(near[0]) == 0:
        return coarse
    implicit = vtk.vtkImplicitPolyDataDistance()
    implicit.SetInput(contour.GetOutput())
    points = np.stack([near[2], near[1], near[0]], axis=1) * spacing
    values = vtk.vtkDoubleArray()
    implicit.FunctionValue(numpy_support.numpy_to_vtk(points, deep=True), values)
    exact = np.abs(numpy_support.vtk_to_numpy(values))
    distance = coarse.copy()
    distance[near] = np.where(inside[near], -exact, exact)
    return distance


def hollowFraction(fraction: FractionMap, spacing, ijkToRas, wallMm: float, mode: str = OUTSIDE_SURFACE,
                   drainHoleDiameterMm: float = 0.0) -> tuple[FractionMap, HollowInfo]:
    """Hollow the object to a wall of ``wallMm``, with the modes of Slicer's Hollow effect, on the fraction map.

    The modes say what the object's surface becomes ("use current segment as"): OUTSIDE_SURFACE, the outside
    of the wall (the shape is kept, the wall goes inwards: what hollowing a print needs); MEDIAL_SURFACE, its
    middle; INSIDE_SURFACE, its inside (the wall goes outwards). The wall's other side follows the signed
    distance from the object's surface, so it is smooth rather than a voxel staircase. With
    ``drainHoleDiameterMm``, every enclosed cavity gets a hole of that diameter straight down (patient
    inferior) from its lowest point through the wall, so resin or powder can drain.

    :param ijkToRas: (4, 4) voxel to RAS matrix of the volume the fraction map is on.
    """
    if mode not in SHELL_MODES:
        raise ValueError(f"Unknown shell mode '{mode}'; choose one of {', '.join(SHELL_MODES)}")
    spacing = np.asarray(spacing, float)
    inner, outer = {OUTSIDE_SURFACE: (wallMm, 0.0), MEDIAL_SURFACE: (wallMm / 2, wallMm / 2),
                    INSIDE_SURFACE: (0.0, wallMm)}[mode]  # how far the wall reaches in and out of the surface
    pad = int(np.ceil(outer / spacing.min())) + 2  # room for a wall that grows outwards
    solid = np.pad(fraction.fraction, pad)
    offset = tuple(o - pad for o in fraction.offset)
    ramp = float(spacing.min())  # a boundary's fraction goes from 0 to 1 over about one voxel
    distance = surfaceDistance(solid, spacing, band=max(inner, outer) + 2.0 * float(spacing.max()))
    outside = solid if outer == 0 else np.clip(0.5 + (outer - distance) / ramp, 0, 1)
    cavity = solid if inner == 0 else np.clip(0.5 + (-distance - inner) / ramp, 0, 1)
    hollow = np.minimum(outside, 1.0 - cavity).astype(np.float32)
    holes = 0
    if drainHoleDiameterMm > 0:
        radius = drainHoleDiameterMm / 2.0
        cavities = sitk.GetImageFromArray((cavity >= 0.5).astype(np.uint8))
        labels = sitk.GetArrayFromImage(sitk.ConnectedComponent(cavities))
        k, j, i = np.meshgrid(*(np.arange(n) for n in hollow.shape), indexing="ij")
        ijk = np.stack([i + offset[2], j + offset[1], k + offset[0]], axis=-1).reshape(-1, 3)
        ras = ijk @ ijkToRas[:3, :3].T + ijkToRas[:3, 3]
        superior = ras[:, 2].reshape(hollow.shape)
        for label in range(1, int(labels.max()) + 1):
            voxels = labels == label
            lowest = np.unravel_index(np.argmin(np.where(voxels, superior, np.inf)), hollow.shape)
            axis = ras.reshape(*hollow.shape, 3)[lowest]
            radial = np.linalg.norm((ras[:, :2] - axis[:2]), axis=1).reshape(hollow.shape)
            below = superior <= axis[2] + radius  # from just inside the cavity down through the wall
            drill = np.where(below, np.clip(0.5 + (radius - radial) / ramp, 0, 1), 0.0)
            hollow = np.minimum(hollow, 1.0 - drill).astype(np.float32)
            holes += 1
    voxelVolume = float(np.prod(spacing))
    info = HollowInfo(mode, wallMm, holes, drainHoleDiameterMm, float(solid.sum()) * voxelVolume,
                      float(hollow.sum()) * voxelVolume)
    result = FractionMap(FractionMap.quantize(hollow), float(hollow.sum(dtype=np.float64)), offset,
                         fraction.insideLevel, fraction.outsideLevel, fraction.insideLevelSource)
    return result, info
