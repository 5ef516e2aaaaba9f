"""Steps 1 and 2 of the pipeline: find the DICOM series in a folder, and load one into a volume node.

Finding reads headers only (pydicom; pixel data is skipped over, not read), so listing a folder of thousands
of files is quick. Damaged files (empty, truncated, unreadable) stop the run with the file named: a model made
from a series with a hole in it is worse than no model.

Loading sorts the slices by their position along the slice normal (ImagePositionPatient projected on the
normal of ImageOrientationPatient), because Slicer's archetype reader keeps the order it is given, and lets
Slicer's own reader (``vtkSlicerVolumesLogic``, with ITK's GDCM for compressed syntaxes) read the pixels and
apply the rescale. Enhanced multi-frame files are read frame by frame with SimpleITK (ITK's GDCM as well).

Where the acquisition is not a regular grid (gantry tilt shears the slices; uneven gaps; a missing slice),
the slices are resampled onto one, as Slicer's DICOM module regularizes such series, and the report says so.
The geometry is always checked against the headers.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pydicom
import SimpleITK as sitk
import slicer
import vtk
from pydicom.errors import InvalidDicomError
from vtk.util import numpy_support

from .runtime import (
    DicomToPrintError,
    SlicerContext,
    capturedVtkMessages,
    checkpoint,
    isSlicerApplication,
    reportProgress,
    updateAside,
)

#: Modalities DicomToPrint turns into models; others are listed but not picked by default.
VOLUME_MODALITIES = ("CT", "MR")
#: Positions closer than this (mm) along the slice normal count as the same slice.
_SAME_POSITION_MM = 1e-3
#: Patient and study identifiers; read only to keep them out of everything DicomToPrint writes or shows.
IDENTIFYING_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "AccessionNumber",
                        "InstitutionName", "InstitutionAddress", "ReferringPhysicianName", "PerformingPhysicianName",
                        "OperatorsName", "StudyID", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
INTERPOLATE = "INTERPOLATE"
REFUSE = "REFUSE"
MISSING_SLICES = (INTERPOLATE, REFUSE)
#: pydicom 3 (Slicer 5.11 and newer) or 2.4 (Slicer 5.10 ships 2.4.4): the few calls that differ go by this.
PYDICOM_3 = int(pydicom.__version__.split(".")[0]) >= 3


@dataclass
class DicomSlice:
    """One image plane: a single-frame file, or one frame of a multi-frame file (header facts, no pixels)."""

    path: str
    rows: int
    columns: int
    pixelSpacing: tuple[float, float]  # (row spacing, column spacing) as DICOM stores it
    position: np.ndarray | None
    orientation: np.ndarray | None  # row direction (3), column direction (3), LPS
    instanceNumber: int | None
    frame: int | None = None  # index in a multi-frame file


@dataclass
class DicomSeries:
    """One series: what a user needs to choose it, and the image planes to load it."""

    seriesInstanceUID: str
    modality: str
    seriesDescription: str
    seriesNumber: int | None
    slices: list[DicomSlice] = field(default_factory=list)
    #: the patient's identifiers found in the headers (never written anywhere; used to redact)
    identifiers: set[str] = field(default_factory=set, repr=False)
    transferSyntaxes: set[str] = field(default_factory=set)

    @property
    def files(self) -> list[str]:
        return list(dict.fromkeys(s.path for s in self.slices))

    @property
    def multiFrame(self) -> bool:
        return any(s.frame is not None for s in self.slices)

    @property
    def numberOfSlices(self) -> int:
        return len(self.slices)

    @property
    def isVolume(self) -> bool:
        """Several image planes with position and orientation: something that can become a volume."""
        return len(self.slices) >= 2 and all(s.position is not None and s.orientation is not None
                                             for s in self.slices)

    @property
    def size(self) -> tuple[int, int, int]:
        """(columns, rows, slices)."""
        first = self.slices[0]
        return (first.columns, first.rows, self.numberOfSlices)

    def sliceNormal(self) -> np.ndarray:
        orientation = self.slices[0].orientation
        normal = np.cross(orientation[:3], orientation[3:])
        return normal / np.linalg.norm(normal)

    def slicePositionsAlongNormal(self) -> np.ndarray:
        normal = self.sliceNormal()
        return np.array([float(s.position @ normal) for s in self.slices])

    @property
    def spacing(self) -> tuple[float, float, float | None]:
        """(column spacing, row spacing, slice spacing) in mm; slice spacing from the sorted positions."""
        rowSpacing, columnSpacing = self.slices[0].pixelSpacing
        sliceSpacing = None
        if self.isVolume:
            gaps = np.diff(np.sort(self.slicePositionsAlongNormal()))
            sliceSpacing = float(np.median(gaps)) if len(gaps) else None
        return (columnSpacing, rowSpacing, sliceSpacing)

    def redact(self, text: str) -> str:
        """The text with any of the patient's identifiers taken out."""
        for identifier in sorted(self.identifiers, key=len, reverse=True):
            for variant in {identifier, identifier.replace("^", " "), identifier.replace("^", ", ")}:
                if variant.strip():
                    text = text.replace(variant, "[removed]")
        return text

    def summary(self) -> dict:
        """What may be shown or reported about the series: no patient or study identifiers, no UIDs."""
        spacing = self.spacing
        return {
            "modality": self.modality,
            "description": self.redact(self.seriesDescription),
            "seriesNumber": self.seriesNumber,
            "slices": self.numberOfSlices,
            "multiFrame": self.multiFrame,
            "size": list(self.size),
            "spacingMm": [round(v, 4) if v is not None else None for v in spacing],
            "transferSyntaxes": sorted(self.transferSyntaxes),
        }


@dataclass
class DicomScan:
    """The result of scanning a folder: the series found, what was skipped, and damaged files."""

    folder: str
    series: list[DicomSeries]
    skipped: Counter = field(default_factory=Counter)  # reason -> number of files
    #: (path, problem) of files that look like DICOM but cannot be used
    damaged: list[tuple[str, str]] = field(default_factory=list)

    @property
    def skippedFiles(self) -> int:
        return sum(self.skipped.values())

    def volumeSeries(self) -> list[DicomSeries]:
        return [s for s in self.series if s.isVolume]

    def selectSeries(self, selector: str | int | None = None) -> DicomSeries:
        """Pick a series: by SeriesInstanceUID, by its number in the listing (1-based), or by default
        the largest CT or MR series that can become a volume (:meth:`selectionRule` says which applied).

        :raises DicomToPrintError: on damaged files, or when nothing matches, naming the folder and what was found.
        """
        if self.damaged:
            path, problem = self.damaged[0]
            more = f" (and {len(self.damaged) - 1} more damaged files)" if len(self.damaged) > 1 else ""
            raise DicomToPrintError(f"{path}: {problem}{more}; remove it or export the series again")
        if not self.series:
            raise DicomToPrintError(f"{self.folder}: no DICOM image series found "
                                    f"({self.skippedFiles} files skipped: {self._skippedText()})")
        if selector is not None and str(selector).strip():
            text = str(selector).strip()
            for series in self.series:
                if series.seriesInstanceUID == text:
                    return series
            if text.isdigit() and 1 <= int(text) <= len(self.series):
                return self.series[int(text) - 1]
            raise DicomToPrintError(f"{self.folder}: no series '{text}'; give a SeriesInstanceUID or a number "
                                    f"from 1 to {len(self.series)} (see --list-series)")
        candidates = [s for s in self.volumeSeries() if s.modality in VOLUME_MODALITIES]
        if not candidates:
            found = ", ".join(sorted({s.modality for s in self.series}))
            raise DicomToPrintError(f"{self.folder}: no CT or MR volume series found (found: {found}); "
                                    "choose a series explicitly with --series")
        return max(candidates, key=lambda s: (s.numberOfSlices * s.size[0] * s.size[1], -self.series.index(s)))

    def selectionRule(self, selector: str | int | None = None) -> str:
        """Why :meth:`selectSeries` picks what it picks, for the report."""
        if selector is not None and str(selector).strip():
            return f"chosen by the user ('{str(selector).strip()}') from {len(self.series)} series"
        if len(self.series) == 1:
            return "the only series in the folder"
        return f"the largest CT or MR series of the {len(self.series)} in the folder"

    def _skippedText(self) -> str:
        return ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items())) or "none"

    def listing(self) -> list[dict]:
        """One entry per series, numbered as :meth:`selectSeries` expects."""
        return [{"number": n + 1, "seriesInstanceUID": s.seriesInstanceUID, **s.summary()}
                for n, s in enumerate(self.series)]


def _floats(value, count: int) -> np.ndarray | None:
    try:
        array = np.array([float(v) for v in value], float)
    except (TypeError, ValueError):
        return None
    return array if array.shape == (count,) and np.all(np.isfinite(array)) else None


def _int(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _readHeader(path: str):
    """(dataset, None) for a DICOM file (pixel data skipped over), (None, skip reason) for other files, or
    (None, "damaged: ...") for files that look like DICOM but cannot be used."""
    try:
        size = os.path.getsize(path)
    except OSError as error:
        return None, f"damaged: cannot be read ({error.strerror})"
    if size == 0:
        return None, "damaged: empty file (0 bytes)"
    with open(path, "rb") as f:
        start = f.read(132)
    isPart10 = start[128:132] == b"DICM"
    if not isPart10 and start[:2] not in (b"\x08\x00", b"\x02\x00"):
        return None, "non-DICOM files"
    try:
        with warnings.catch_warnings():  # pydicom 2.4 warns about DICOMDIR files, which are skipped anyway
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = pydicom.dcmread(path, defer_size=1024, force=not isPart10)
        ds.get("Rows")  # parse the header now: a damaged header fails here
    except (InvalidDicomError, OSError, ValueError, TypeError, AttributeError, KeyError, EOFError,
            NotImplementedError) as error:
        if not isPart10:
            return None, "non-DICOM files"
        return None, f"damaged: not readable as DICOM ({type(error).__name__}: {str(error)[:120]})"
    return ds, None


def _unreadElement(ds, tag: int):
    """The element as the header gave it (length, value_tell), its deferred value left unread."""
    if PYDICOM_3:
        return ds.get_item(tag, keep_deferred=True)
    # pydicom 2.4's get_item reads a deferred value (the whole pixel data); its raw element is in _dict
    return ds._dict.get(pydicom.tag.Tag(tag))


def _pixelDataProblem(ds, path: str) -> str | None:
    """Why the file's pixel data cannot be all there (truncated file, header claiming more than it has)."""
    if "PixelData" not in ds:
        return "has an image header but no pixel data (truncated?)"
    element = _unreadElement(ds, 0x7FE00010)  # the element's length and place, without its value
    length = getattr(element, "length", None)
    offset = getattr(element, "value_tell", None)
    size = os.path.getsize(path)
    if length is not None and length != 0xFFFFFFFF and offset is not None and offset + length > size:
        return f"truncated: the pixel data should end at byte {offset + length} but the file has {size} bytes"
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    compressed = syntax is not None and syntax.is_compressed
    if not compressed and length not in (None, 0xFFFFFFFF):
        frames = _int(ds.get("NumberOfFrames")) or 1
        expected = (int(ds.Rows) * int(ds.Columns) * frames * (_int(ds.get("BitsAllocated")) or 16) // 8
                    * (_int(ds.get("SamplesPerPixel")) or 1))
        if length < expected:
            return (f"the header describes {int(ds.Columns)}x{int(ds.Rows)} pixels x {frames} frames "
                    f"({expected} bytes) but the file holds {length} bytes of pixel data")
    return None


def _framePlanes(ds, path: str) -> list[DicomSlice]:
    """Image planes of a file: one for a single-frame file, one per frame for a multi-frame file."""
    rows, columns = int(ds.Rows), int(ds.Columns)
    frames = _int(ds.get("NumberOfFrames")) or 1
    spacing = _floats(ds.get("PixelSpacing"), 2)
    orientation = _floats(ds.get("ImageOrientationPatient"), 6)
    position = _floats(ds.get("ImagePositionPatient"), 3)
    instance = _int(ds.get("InstanceNumber"))
    if frames == 1:
        return [DicomSlice(path, rows, columns, tuple(spacing) if spacing is not None else (1.0, 1.0), position,
                           orientation, instance)]
    shared = ds.get("SharedFunctionalGroupsSequence")
    perFrame = ds.get("PerFrameFunctionalGroupsSequence")

    def functional(group, sequence, keyword):
        items = group.get(sequence) if group is not None else None
        return items[0].get(keyword) if items else None

    planes = []
    if perFrame is not None and len(perFrame) == frames:  # enhanced multi-frame (CT, MR)
        sharedGroup = shared[0] if shared else None
        for index, group in enumerate(perFrame):
            frameSpacing = _floats(functional(group, "PixelMeasuresSequence", "PixelSpacing")
                                   or functional(sharedGroup, "PixelMeasuresSequence", "PixelSpacing"), 2)
            frameOrientation = _floats(functional(group, "PlaneOrientationSequence", "ImageOrientationPatient")
                                       or functional(sharedGroup, "PlaneOrientationSequence",
                                                     "ImageOrientationPatient"), 6)
            framePosition = _floats(functional(group, "PlanePositionSequence", "ImagePositionPatient"), 3)
            planes.append(DicomSlice(path, rows, columns,
                                     tuple(frameSpacing) if frameSpacing is not None else (1.0, 1.0),
                                     framePosition, frameOrientation, instance, index))
        return planes
    offsets = _floats(ds.get("GridFrameOffsetVector"), frames)  # classic multi-frame: offsets along the normal
    for index in range(frames):
        framePosition = None
        if position is not None and orientation is not None and offsets is not None:
            normal = np.cross(orientation[:3], orientation[3:])
            framePosition = position + offsets[index] * normal
        planes.append(DicomSlice(path, rows, columns, tuple(spacing) if spacing is not None else (1.0, 1.0),
                                 framePosition, orientation, instance, index))
    return planes


def findSeries(folder: str, progressCallback=None) -> DicomScan:
    """Scan a folder recursively for DICOM image series, reading headers only.

    Any file names work (no ``.dcm`` needed). Files that are not DICOM and DICOM files without an image
    (DICOMDIR, structured reports, RT structure sets, presentation states) are skipped and counted; files that
    look like DICOM but are empty, truncated or unreadable are listed as damaged.

    :param folder: the folder to scan.
    :param progressCallback: ``callback(text, percent)``; returning True cancels.
    :raises DicomToPrintError: when the folder does not exist.
    """
    if not os.path.isdir(folder):
        raise DicomToPrintError(f"{folder}: not a folder")
    paths = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        paths.extend(os.path.join(root, name) for name in sorted(files))
    skipped: Counter = Counter()
    damaged: list[tuple[str, str]] = []
    seriesByUid: dict[str, DicomSeries] = {}
    for index, path in enumerate(paths):
        if index % 50 == 0:
            reportProgress(progressCallback, f"Reading DICOM headers ({index}/{len(paths)})",
                           100.0 * index / max(len(paths), 1))
        ds, reason = _readHeader(path)
        if ds is None:
            if reason.startswith("damaged: "):
                damaged.append((path, reason[len("damaged: "):]))
            else:
                skipped[reason] += 1
            continue
        if "Rows" not in ds or "Columns" not in ds or "SeriesInstanceUID" not in ds:
            skipped["DICOM files without an image"] += 1
            continue
        problem = _pixelDataProblem(ds, path)
        if problem:
            damaged.append((path, problem))
            continue
        uid = str(ds.SeriesInstanceUID)
        series = seriesByUid.get(uid)
        if series is None:
            series = seriesByUid[uid] = DicomSeries(
                uid, str(ds.get("Modality", "") or "OT"), str(ds.get("SeriesDescription", "") or ""),
                _int(ds.get("SeriesNumber")))
        series.identifiers.update(str(ds.get(keyword)) for keyword in IDENTIFYING_KEYWORDS
                                  if ds.get(keyword) not in (None, ""))
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        series.transferSyntaxes.add(syntax.name if syntax is not None else "implicit (no file meta)")
        series.slices.extend(_framePlanes(ds, path))
    reportProgress(progressCallback, f"Found {len(seriesByUid)} series in {len(paths)} files", 100.0)
    # a stable, readable order: series number, then modality and description (UIDs are random)
    ordered = sorted(seriesByUid.values(), key=lambda s: (s.seriesNumber is None, s.seriesNumber or 0, s.modality,
                                                          s.seriesDescription, -len(s.slices), s.seriesInstanceUID))
    return DicomScan(folder, ordered, skipped, damaged)


@dataclass
class LoadedVolume:
    """A series loaded into the scene, with what was noticed on the way."""

    volumeNode: object  # vtkMRMLScalarVolumeNode
    series: DicomSeries
    warnings: list[str]
    #: how the voxels were placed: "as acquired", or what regularization did
    geometry: str = "as acquired"


def _pixelBytes(path: str) -> bytes:
    return bytes(pydicom.dcmread(path).PixelData)


def sortSlices(series: DicomSeries) -> tuple[list[DicomSlice], list[str]]:
    """Image planes ordered by position along the slice normal, checked to form one volume.

    Files repeated with identical pixels (copied twice) are dropped with a warning.

    :return: (ordered planes, warnings).
    :raises DicomToPrintError: on mixed sizes, orientations or pixel spacings, missing positions, or planes at the
        same position with different pixels.
    """
    if not series.isVolume:
        raise DicomToPrintError(f"{_where(series)}: the series has {len(series.slices)} image(s) without a "
                                "usable slice position and orientation; it cannot be loaded as a volume")
    # Compare each plane with what most planes have, so that the message names the odd one out.
    checks = [("image size", lambda s: (s.columns, s.rows), lambda v: f"{v[0]}x{v[1]}"),
              ("image orientation", lambda s: tuple(np.round(s.orientation, 4)), lambda v: str(list(v))),
              ("pixel spacing", lambda s: tuple(np.round(s.pixelSpacing, 4)), lambda v: str(list(v)))]
    for what, key, text in checks:
        common, _ = Counter(key(s) for s in series.slices).most_common(1)[0]
        odd = next((s for s in series.slices if key(s) != common), None)
        if odd is not None:
            raise DicomToPrintError(f"{_name(odd)}: {what} {text(key(odd))} differs from {text(common)} of the "
                                    "other slices in the same series")
    positions = series.slicePositionsAlongNormal()
    order = np.argsort(positions, kind="stable")
    ordered, warnings = [], []
    for index in order:
        plane = series.slices[index]
        if ordered and abs(float(plane.position @ series.sliceNormal())
                           - float(ordered[-1].position @ series.sliceNormal())) < _SAME_POSITION_MM:
            previous = ordered[-1]
            if plane.frame is None and previous.frame is None and _pixelBytes(plane.path) == _pixelBytes(
                    previous.path):
                # no file names in warnings: they go into reports, and file names can carry patient names
                at = float(plane.position @ series.sliceNormal())
                warnings.append(f"a slice file repeats another (same position {at:.2f} mm, same pixels); used once")
                continue
            raise DicomToPrintError(f"{_name(plane)}: same slice position as {_name(previous)} but different pixels; "
                                    "the series has conflicting duplicate slices")
        ordered.append(plane)
    if len(ordered) < 2:
        raise DicomToPrintError(f"{_where(series)}: fewer than two distinct slice positions; not a volume")
    return ordered, warnings


def _name(plane: DicomSlice) -> str:
    return plane.path if plane.frame is None else f"{plane.path} (frame {plane.frame + 1})"


def _where(series: DicomSeries) -> str:
    return os.path.dirname(series.slices[0].path) if series.slices else "(empty series)"


def expectedIjkToLps(ordered: list[DicomSlice]) -> np.ndarray:
    """The voxel-to-patient (LPS) matrix the headers describe, slice axis taken from the first and last
    positions (sheared when the gantry was tilted)."""
    first, last = ordered[0], ordered[-1]
    rowSpacing, columnSpacing = first.pixelSpacing
    matrix = np.eye(4)
    matrix[:3, 0] = first.orientation[:3] * columnSpacing
    matrix[:3, 1] = first.orientation[3:] * rowSpacing
    matrix[:3, 2] = (last.position - first.position) / (len(ordered) - 1)
    matrix[:3, 3] = first.position
    return matrix


def ijkToLpsMatrix(volumeNode) -> np.ndarray:
    """The node's IJK-to-RAS matrix turned into IJK-to-LPS."""
    m = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(m)
    matrix = np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ matrix


@dataclass
class AcquisitionGrid:
    """How the planes sit: their positions along the normal and their in-plane shifts."""

    normal: np.ndarray
    positions: np.ndarray  # along the normal, mm, ascending
    shifts: np.ndarray  # (n, 2) in-plane offsets from the first plane, in pixels (column, row)
    sliceSpacing: float  # the regular spacing to use (median gap)
    tiltDegrees: float
    uneven: bool
    missing: list[tuple[float, int]]  # (position mm, planes missing after it)

    @property
    def regular(self) -> bool:
        return self.tiltDegrees < 0.01 and not self.uneven and not self.missing


def acquisitionGrid(ordered: list[DicomSlice]) -> AcquisitionGrid:
    """Describe the acquisition geometry of ordered planes (see :class:`AcquisitionGrid`)."""
    first = ordered[0]
    row, column = first.orientation[:3], first.orientation[3:]
    normal = np.cross(row, column)
    normal /= np.linalg.norm(normal)
    rowSpacing, columnSpacing = first.pixelSpacing
    offsets = np.array([s.position - first.position for s in ordered])
    positions = np.array([float(s.position @ normal) for s in ordered])
    shifts = np.stack([offsets @ row / columnSpacing, offsets @ column / rowSpacing], axis=1)
    gaps = np.diff(positions)
    spacing = float(np.median(gaps))
    inPlane = np.linalg.norm(offsets - np.outer(offsets @ normal, normal), axis=1)
    tilt = float(np.degrees(np.arctan2(inPlane[-1], positions[-1] - positions[0]))) if len(ordered) > 1 else 0.0
    # a gap of about k spacings (k >= 2) is k-1 missing planes; other irregularity is unevenness
    steps = gaps / spacing
    whole = np.round(steps)
    missing = [(float(positions[i]), int(whole[i]) - 1) for i in range(len(gaps))
               if whole[i] >= 2 and abs(steps[i] - whole[i]) < 0.1]
    isMissing = np.zeros(len(gaps), bool)
    for position, _ in missing:
        isMissing[np.argmin(np.abs(positions[:-1] - position))] = True
    uneven = bool(np.any(np.abs(gaps[~isMissing] - spacing) > max(0.01, 0.01 * spacing)))
    return AcquisitionGrid(normal, positions, shifts, spacing, abs(tilt), uneven, missing)


def _bilinear(plane: np.ndarray, columns: np.ndarray, rows: np.ndarray, fill: float) -> np.ndarray:
    """Sample a 2D array at the outer product of fractional column and row coordinates (separable)."""
    def axis(coordinates, size):
        low = np.floor(coordinates).astype(np.int64)
        weight = coordinates - low
        inside = (coordinates >= 0) & (coordinates <= size - 1)
        return np.clip(low, 0, size - 1), np.clip(low + 1, 0, size - 1), weight, inside

    c0, c1, wc, insideC = axis(columns, plane.shape[1])
    r0, r1, wr, insideR = axis(rows, plane.shape[0])
    top = plane[r0][:, c0] * (1 - wc) + plane[r0][:, c1] * wc
    bottom = plane[r1][:, c0] * (1 - wc) + plane[r1][:, c1] * wc
    values = top * (1 - wr)[:, None] + bottom * wr[:, None]
    return np.where(insideR[:, None] & insideC[None, :], values, fill)


def regularize(stack: np.ndarray, ordered: list[DicomSlice], grid: AcquisitionGrid) -> tuple[np.ndarray, np.ndarray]:
    """Resample planes onto a regular grid along their normal: linear between the two nearest planes, bilinear
    within a plane (which undoes a gantry tilt's shear). Voxels no plane covers get the lowest value.

    :param stack: (planes, rows, columns) in the order of ``ordered``.
    :return: (regular volume (k, j, i) float32, its IJK-to-LPS matrix).
    """
    first = ordered[0]
    rowSpacing, columnSpacing = first.pixelSpacing
    low = np.floor(grid.shifts.min(axis=0) + 1e-6).astype(int)
    high = np.ceil(grid.shifts.max(axis=0) - 1e-6).astype(int)
    columns = np.arange(low[0], high[0] + first.columns)
    rows = np.arange(low[1], high[1] + first.rows)
    count = int(np.floor((grid.positions[-1] - grid.positions[0]) / grid.sliceSpacing + 1e-6)) + 1
    fill = float(stack.min())
    volume = np.empty((count, len(rows), len(columns)), np.float32)
    for k in range(count):
        z = grid.positions[0] + k * grid.sliceSpacing
        upper = int(np.clip(np.searchsorted(grid.positions, z, side="right"), 1, len(ordered) - 1))
        lower = upper - 1
        weight = (z - grid.positions[lower]) / (grid.positions[upper] - grid.positions[lower])
        sampleLower = _bilinear(stack[lower], columns - grid.shifts[lower, 0], rows - grid.shifts[lower, 1], fill)
        if weight <= 1e-9:
            volume[k] = sampleLower
            continue
        sampleUpper = _bilinear(stack[upper], columns - grid.shifts[upper, 0], rows - grid.shifts[upper, 1], fill)
        volume[k] = (1 - weight) * sampleLower + weight * sampleUpper
    row, column = first.orientation[:3], first.orientation[3:]
    matrix = np.eye(4)
    matrix[:3, 0] = row * columnSpacing
    matrix[:3, 1] = column * rowSpacing
    matrix[:3, 2] = grid.normal * grid.sliceSpacing
    matrix[:3, 3] = first.position + low[0] * columnSpacing * row + low[1] * rowSpacing * column
    return volume, matrix


def _readFrames(series: DicomSeries, ordered: list[DicomSlice]) -> np.ndarray:
    """Pixels of multi-frame files (rescaled), (planes, rows, columns) in the order of ``ordered``."""
    cache = {}
    planes = []
    for plane in ordered:
        if plane.path not in cache:
            cache[plane.path] = sitk.GetArrayFromImage(sitk.ReadImage(plane.path))
        frames = cache[plane.path]
        planes.append(frames[plane.frame] if frames.ndim == 3 else frames)
    return np.stack(planes)


def _setVolume(volumeNode, voxels: np.ndarray, ijkToLps: np.ndarray) -> None:
    """Put a (k, j, i) array and its geometry into a scalar volume node."""
    values = np.ascontiguousarray(voxels)
    if values.itemsize > 2 and values.size and np.abs(values).max() < 32767:
        values = np.round(values).astype(np.int16)  # Hounsfield units are integers; int16 holds them
    image = vtk.vtkImageData()
    image.SetDimensions(values.shape[2], values.shape[1], values.shape[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(values.ravel(), deep=True))
    volumeNode.SetAndObserveImageData(image)
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ijkToLps
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, ras[r, c])
    volumeNode.SetIJKToRASMatrix(matrix)


#: Node attribute: the voxel type Slicer's reader produced, where the values are stored in a narrower one.
READ_AS_ATTRIBUTE = "DicomToPrint.ReadAs"


def _narrowToInt16(volumeNode) -> None:
    """Store the voxels as 16-bit integers where Slicer's reader made them 32-bit but they fit in 16.

    ITK widens unsigned 16-bit pixels with a negative rescale intercept (how most CT scanners write Hounsfield
    units) to 32-bit, although the values span a few thousand: half the memory of the largest array of the run,
    the same values. Copied a slab at a time, asking the progress callback between slabs (a 1000-slice volume:
    half a second, where one vtkImageCast call took 2.5 s). The reader's type is kept as a node attribute, for
    :func:`fingerprint`.
    """
    image = volumeNode.GetImageData()
    scalars = image.GetPointData().GetScalars()
    if scalars.GetDataType() not in (vtk.VTK_INT, vtk.VTK_UNSIGNED_INT, vtk.VTK_LONG_LONG, vtk.VTK_LONG):
        return
    low, high = scalars.GetRange()
    if low < np.iinfo(np.int16).min or high > np.iinfo(np.int16).max:
        return
    values = numpy_support.vtk_to_numpy(scalars)
    narrowScalars = vtk.vtkShortArray()
    narrowScalars.SetName(scalars.GetName())
    narrowScalars.SetNumberOfComponents(1)
    narrowScalars.SetNumberOfTuples(len(values))
    narrow = numpy_support.vtk_to_numpy(narrowScalars)  # a view: filled in place
    slab = 1 << 22
    for start in range(0, len(values), slab):
        narrow[start:start + slab] = values[start:start + slab]
        checkpoint()
    narrowImage = vtk.vtkImageData()
    narrowImage.CopyStructure(image)
    narrowImage.GetPointData().SetScalars(narrowScalars)
    readAs = values.dtype.str
    del values, narrow, image, scalars
    volumeNode.SetAndObserveImageData(narrowImage)
    volumeNode.SetAttribute(READ_AS_ATTRIBUTE, readAs)


def _readSlices(ordered: list) -> tuple:
    """The slices' voxels and RAS-to-IJK matrix as Slicer's volume storage node reads a DICOM series (its
    vtkITKArchetypeImageSeriesScalarReader with the same settings, the image moved to origin 0, spacing 1 and
    the geometry into the matrix), read aside so that a Cancel is answered while it reads (one call of 1.5 s at
    300 slices, 4 s at 1000). (None, None) when nothing could be read.
    """
    reader = slicer.vtkITKArchetypeImageSeriesScalarReader()
    reader.SetArchetype(ordered[0].path)
    for plane in ordered:
        reader.AddFileName(plane.path)
    reader.SetSingleFile(0)
    reader.SetUseOrientationFromFile(1)
    reader.SetOutputScalarTypeToNative()
    reader.SetDesiredCoordinateOrientationToNative()
    reader.SetUseNativeOriginOn()
    updateAside(reader)
    output = reader.GetOutput()
    if output is None or output.GetPointData().GetScalars() is None or output.GetNumberOfPoints() == 0:
        return None, None
    image = vtk.vtkImageData()
    image.ShallowCopy(output)
    image.SetOrigin(0.0, 0.0, 0.0)
    image.SetSpacing(1.0, 1.0, 1.0)
    rasToIjk = vtk.vtkMatrix4x4()
    rasToIjk.DeepCopy(reader.GetRasToIjkMatrix())
    return image, rasToIjk


def fingerprint(volumeNode) -> str:
    """SHA-256 of the loaded voxels and their geometry: identifies the data, says nothing of the patient (no
    UIDs, names or dates go in), and is the same however the files were named or ordered on disk.

    The values are hashed in the type Slicer's reader made them (see :func:`_narrowToInt16`), so a fingerprint
    does not change with how they are kept in memory."""
    import hashlib

    image = volumeNode.GetImageData()
    values = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    readAs = np.dtype(volumeNode.GetAttribute(READ_AS_ATTRIBUTE) or values.dtype)
    digest = hashlib.sha256()
    digest.update(f"{image.GetDimensions()}|{readAs.str}|".encode())
    digest.update(np.round(ijkToLpsMatrix(volumeNode), 6).astype("<f8").tobytes())
    if readAs == values.dtype:
        digest.update(memoryview(np.ascontiguousarray(values)))  # no copy of the volume
    else:  # widened a slab at a time
        slab = 1 << 22
        for start in range(0, len(values), slab):
            digest.update(memoryview(values[start:start + slab].astype(readAs)))
    return digest.hexdigest()


def memoryLimitBytes() -> int:
    """The most memory a volume may need: 60 % of this machine's physical memory."""
    try:
        return int(0.6 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16 * 1024**3


def loadSeries(series: DicomSeries, context: SlicerContext, volumeName: str = "DicomToPrint volume",
               progressCallback=None, missingSlices: str = INTERPOLATE,
               maximumBytes: int | None = None) -> LoadedVolume:
    """Load a series into a scalar volume node, on a regular grid.

    :param series: from :func:`findSeries`.
    :param context: scene and logics (:meth:`SlicerContext.create`).
    :param volumeName: node name; the default carries no patient information.
    :param progressCallback: ``callback(text, percent)``; returning True cancels.
    :param missingSlices: INTERPOLATE (default: fill a missing slice from its neighbours, with a warning) or
        REFUSE (stop with an error naming the gap).
    :param maximumBytes: refuse volumes that need more memory than this (default :func:`memoryLimitBytes`),
        checked before anything is allocated.
    :raises DicomToPrintError: when the planes do not form a volume, a slice is missing and ``REFUSE`` was
        asked, the volume is too large, or the loaded geometry disagrees with the headers.
    """
    if missingSlices not in MISSING_SLICES:
        raise ValueError(f"Unknown missingSlices '{missingSlices}'; choose one of {', '.join(MISSING_SLICES)}")
    ordered, warnings = sortSlices(series)
    grid = acquisitionGrid(ordered)
    first = ordered[0]
    if grid.missing:
        gaps = ", ".join(f"{count} after {position:.2f} mm" for position, count in grid.missing)
        if missingSlices == REFUSE:
            raise DicomToPrintError(f"{_where(series)}: slices are missing ({gaps} along the slice normal)")
        warnings.append(f"slices missing ({gaps}): filled in by interpolating their neighbours")
    planes = len(ordered) if grid.regular else int(round((grid.positions[-1] - grid.positions[0])
                                                         / grid.sliceSpacing)) + 1
    needed = first.rows * first.columns * planes * (4 if series.multiFrame or not grid.regular else 2) * 2
    limit = maximumBytes or memoryLimitBytes()
    if needed > limit:
        raise DicomToPrintError(f"{first.path}: the series would need {needed / 1024**3:.1f} GiB "
                                f"({first.columns}x{first.rows}x{planes}); more than the {limit / 1024**3:.1f} GiB "
                                "this machine allows")
    reportProgress(progressCallback, f"Loading {len(ordered)} slices", 0.0)
    if series.multiFrame:
        volumeNode = context.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", volumeName)
        try:
            stack = _readFrames(series, ordered)
        except RuntimeError as error:
            context.removeNode(volumeNode)
            raise DicomToPrintError(f"{first.path}: the frames could not be read "
                                    f"({str(error).splitlines()[-1]})") from error
        voxels, ijkToLps = (stack, expectedIjkToLps(ordered)) if grid.regular else regularize(stack, ordered, grid)
        _setVolume(volumeNode, voxels, ijkToLps)
        if isSlicerApplication():
            volumeNode.CreateDefaultDisplayNodes()
    else:
        with capturedVtkMessages() as messages:
            image, rasToIjk = _readSlices(ordered)
        if image is None:
            detail = "; ".join(messages.errors) or "Slicer's reader returned no image"
            raise DicomToPrintError(f"{_where(series)}: the series could not be read ({detail})")
        volumeNode = context.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", volumeName)
        volumeNode.SetRASToIJKMatrix(rasToIjk)
        volumeNode.SetAndObserveImageData(image)
        del image
        dims = volumeNode.GetImageData().GetDimensions()
        if dims != (first.columns, first.rows, len(ordered)):
            context.removeNode(volumeNode)
            raise DicomToPrintError(f"{_where(series)}: Slicer's reader made a {dims} volume from {len(ordered)} "
                                    f"slices of {first.columns}x{first.rows}; the series is inconsistent")
        if grid.regular:
            if not np.allclose(ijkToLpsMatrix(volumeNode)[:3], expectedIjkToLps(ordered)[:3], atol=1e-3, rtol=1e-4):
                context.removeNode(volumeNode)
                raise DicomToPrintError(f"{_where(series)}: the loaded volume's geometry does not match the DICOM "
                                        "headers; the series may be inconsistent")
            try:
                _narrowToInt16(volumeNode)
            except BaseException:  # a cancel: no half-made node stays
                context.removeNode(volumeNode)
                raise
        else:
            scalars = volumeNode.GetImageData().GetPointData().GetScalars()
            stack = numpy_support.vtk_to_numpy(scalars).reshape(dims[::-1]).astype(np.float32)
            voxels, ijkToLps = regularize(stack, ordered, grid)
            _setVolume(volumeNode, voxels, ijkToLps)
        if isSlicerApplication():  # where the volume is shown: its display node computes a window and level
            volumeNode.CreateDefaultDisplayNodes()  # from the voxels' histogram (1.3 s at 1000 slices, one call)
        warnings.extend(w for w in messages.warnings if "Non uniform sampling" not in w)
    geometry = "as acquired"
    if not grid.regular:
        done = []
        if grid.tiltDegrees >= 0.01:
            done.append(f"gantry tilt of {grid.tiltDegrees:.1f} degrees (sheared slices)")
        if grid.uneven:
            gaps = np.diff(grid.positions)
            done.append(f"uneven slice spacing ({gaps.min():.3f} to {gaps.max():.3f} mm)")
        if grid.missing:
            done.append("missing slices")
        geometry = (f"resampled onto a regular {grid.sliceSpacing:.3f} mm grid along the slice normal because of "
                    + ", ".join(done))
        warnings.append(geometry)
    reportProgress(progressCallback, "Loaded", 100.0)
    return LoadedVolume(volumeNode, series, warnings, geometry)
