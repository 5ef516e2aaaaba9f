"""Step 1 and 2 of the pipeline: find the DICOM series in a folder, and load one into a volume node.

Finding reads headers only (pydicom, no pixels), so listing a folder of thousands of files is quick. Loading
sorts the slices by their position along the slice normal (ImagePositionPatient projected on the normal of
ImageOrientationPatient), because Slicer's archetype reader keeps the order it is given, and then lets
Slicer's own reader (``vtkSlicerVolumesLogic``, with ITK's GDCM for compressed syntaxes) read the pixels and
apply the rescale to Hounsfield units. The geometry it produces is checked against the headers.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pydicom
import vtk
from pydicom.errors import InvalidDicomError

from .runtime import DicomToPrintError, SlicerContext, capturedVtkMessages, reportProgress

#: Header elements read when scanning; everything else (pixels included) is skipped.
_SCAN_TAGS = [
    "SOPClassUID", "Modality", "SeriesInstanceUID", "SeriesDescription", "SeriesNumber", "InstanceNumber",
    "Rows", "Columns", "PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient", "NumberOfFrames",
    "BitsAllocated", "SamplesPerPixel", "RescaleSlope", "RescaleIntercept", "SliceThickness",
]
#: Modalities DicomToPrint turns into models; others are listed but not picked by default.
VOLUME_MODALITIES = ("CT", "MR")
#: Positions closer than this (mm) along the slice normal count as the same slice.
_SAME_POSITION_MM = 1e-3


@dataclass
class DicomSlice:
    """Header facts of one image file (no pixels)."""

    path: str
    rows: int
    columns: int
    pixelSpacing: tuple[float, float]  # (row spacing, column spacing) as DICOM stores it
    position: np.ndarray | None
    orientation: np.ndarray | None  # row direction (3), column direction (3), LPS
    instanceNumber: int | None
    numberOfFrames: int = 1


@dataclass
class DicomSeries:
    """One series: what a user needs to choose it, and the slices to load it."""

    seriesInstanceUID: str
    modality: str
    seriesDescription: str
    seriesNumber: int | None
    slices: list[DicomSlice] = field(default_factory=list)

    @property
    def files(self) -> list[str]:
        return [s.path for s in self.slices]

    @property
    def numberOfSlices(self) -> int:
        return sum(s.numberOfFrames for s in self.slices)

    @property
    def isVolume(self) -> bool:
        """Several single-frame slices with position and orientation: something that can become a volume."""
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

    def summary(self) -> dict:
        """What may be shown or reported about the series: no patient or study identifiers."""
        spacing = self.spacing
        return {
            "modality": self.modality,
            "description": self.seriesDescription,
            "seriesNumber": self.seriesNumber,
            "slices": self.numberOfSlices,
            "size": list(self.size),
            "spacingMm": [round(v, 4) if v is not None else None for v in spacing],
        }


@dataclass
class DicomScan:
    """The result of scanning a folder: the series found and what was skipped."""

    folder: str
    series: list[DicomSeries]
    skipped: Counter = field(default_factory=Counter)  # reason -> number of files

    @property
    def skippedFiles(self) -> int:
        return sum(self.skipped.values())

    def volumeSeries(self) -> list[DicomSeries]:
        return [s for s in self.series if s.isVolume]

    def selectSeries(self, selector: str | int | None = None) -> DicomSeries:
        """Pick a series: by SeriesInstanceUID, by its number in the listing (1-based), or by default
        the largest CT or MR series that can become a volume.

        :raises DicomToPrintError: when nothing matches, naming the folder and what was found.
        """
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

    def _skippedText(self) -> str:
        return ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items())) or "none"

    def listing(self) -> list[dict]:
        """One entry per series, numbered as :meth:`selectSeries` expects."""
        return [{"number": n + 1, "seriesInstanceUID": s.seriesInstanceUID, **s.summary()}
                for n, s in enumerate(self.series)]


def _readHeader(path: str):
    """Header of a DICOM file, or (None, reason) when it is not one DicomToPrint can use."""
    try:
        if os.path.getsize(path) == 0:
            return None, "empty files"
        try:
            return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_SCAN_TAGS), None
        except InvalidDicomError:
            # Files without the 128-byte preamble and "DICM" (old exports) start directly with a group 0008
            # element; anything else is not DICOM.
            with open(path, "rb") as f:
                start = f.read(4)
            if start[:2] != b"\x08\x00":
                return None, "non-DICOM files"
            return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_SCAN_TAGS, force=True), None
    except (OSError, ValueError, TypeError, AttributeError, KeyError, InvalidDicomError, EOFError):
        return None, "unreadable files"


def _floats(value, count: int) -> np.ndarray | None:
    try:
        array = np.array([float(v) for v in value], float)
    except (TypeError, ValueError):
        return None
    return array if array.shape == (count,) and np.all(np.isfinite(array)) else None


def findSeries(folder: str, progressCallback=None) -> DicomScan:
    """Scan a folder recursively for DICOM image series, reading headers only.

    Any file names work (no ``.dcm`` needed). Files that are not DICOM, DICOM files without an image (DICOMDIR,
    structured reports, RT structure sets, presentation states) and unreadable files are skipped and counted.

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
    seriesByUid: dict[str, DicomSeries] = {}
    for index, path in enumerate(paths):
        if index % 50 == 0:
            reportProgress(progressCallback, f"Reading DICOM headers ({index}/{len(paths)})",
                           100.0 * index / max(len(paths), 1))
        ds, reason = _readHeader(path)
        if ds is None:
            skipped[reason] += 1
            continue
        if "Rows" not in ds or "Columns" not in ds or "SeriesInstanceUID" not in ds:
            skipped["DICOM files without an image"] += 1
            continue
        uid = str(ds.SeriesInstanceUID)
        series = seriesByUid.get(uid)
        if series is None:
            number = ds.get("SeriesNumber")
            series = seriesByUid[uid] = DicomSeries(
                uid, str(ds.get("Modality", "") or "OT"), str(ds.get("SeriesDescription", "") or ""),
                int(number) if number not in (None, "") else None)
        pixelSpacing = _floats(ds.get("PixelSpacing"), 2)
        instance = ds.get("InstanceNumber")
        frames = ds.get("NumberOfFrames")
        series.slices.append(DicomSlice(
            path, int(ds.Rows), int(ds.Columns),
            tuple(pixelSpacing) if pixelSpacing is not None else (1.0, 1.0),
            _floats(ds.get("ImagePositionPatient"), 3), _floats(ds.get("ImageOrientationPatient"), 6),
            int(instance) if instance not in (None, "") else None,
            int(frames) if frames not in (None, "") else 1))
    reportProgress(progressCallback, f"Found {len(seriesByUid)} series in {len(paths)} files", 100.0)
    ordered = sorted(seriesByUid.values(), key=lambda s: (s.seriesNumber is None, s.seriesNumber or 0,
                                                          s.seriesInstanceUID))
    return DicomScan(folder, ordered, skipped)


@dataclass
class LoadedVolume:
    """A series loaded into the scene, with what was noticed on the way."""

    volumeNode: object  # vtkMRMLScalarVolumeNode
    series: DicomSeries
    warnings: list[str]


def sortSlices(series: DicomSeries) -> list[DicomSlice]:
    """Slices ordered by position along the slice normal, checked to form one volume.

    :raises DicomToPrintError: on mixed sizes or orientations, missing positions, or duplicate positions.
    """
    if not series.isVolume:
        raise DicomToPrintError(f"{_where(series)}: the series has {len(series.slices)} image(s) without a "
                                "usable slice position and orientation; it cannot be loaded as a volume")
    # Compare each slice with what most slices have, so that the message names the odd one out.
    checks = [("image size", lambda s: (s.columns, s.rows), lambda v: f"{v[0]}x{v[1]}"),
              ("image orientation", lambda s: tuple(np.round(s.orientation, 4)), lambda v: str(list(v))),
              ("pixel spacing", lambda s: tuple(np.round(s.pixelSpacing, 4)), lambda v: str(list(v)))]
    for what, key, text in checks:
        common, _ = Counter(key(s) for s in series.slices).most_common(1)[0]
        odd = next((s for s in series.slices if key(s) != common), None)
        if odd is not None:
            raise DicomToPrintError(f"{odd.path}: {what} {text(key(odd))} differs from {text(common)} of the other "
                                    "slices in the same series")
    positions = series.slicePositionsAlongNormal()
    order = np.argsort(positions, kind="stable")
    ordered = [series.slices[i] for i in order]
    gaps = np.diff(positions[order])
    if np.any(gaps < _SAME_POSITION_MM):
        k = int(np.argmax(gaps < _SAME_POSITION_MM))
        raise DicomToPrintError(f"{ordered[k + 1].path}: same slice position as {ordered[k].path}; "
                                "the series has duplicate slices")
    return ordered


def _where(series: DicomSeries) -> str:
    return os.path.dirname(series.slices[0].path) if series.slices else "(empty series)"


def expectedIjkToLps(ordered: list[DicomSlice]) -> np.ndarray:
    """The voxel-to-patient (LPS) matrix the headers describe, slice axis taken from the positions."""
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


def loadSeries(series: DicomSeries, context: SlicerContext, volumeName: str = "DicomToPrint volume",
               progressCallback=None) -> LoadedVolume:
    """Load a series into a scalar volume node with Slicer's reader.

    :param series: from :func:`findSeries`.
    :param context: scene and logics (:meth:`SlicerContext.create`).
    :param volumeName: node name; the default carries no patient information.
    :param progressCallback: ``callback(text, percent)``; returning True cancels.
    :raises DicomToPrintError: when the slices do not form a volume or the loaded geometry disagrees with the
        headers.
    """
    ordered = sortSlices(series)
    warnings = []
    positions = np.array([s.position @ series.sliceNormal() for s in ordered])
    gaps = np.diff(positions)
    if gaps.max() - gaps.min() > max(0.01, 0.01 * np.median(gaps)):
        warnings.append(f"slice spacing is uneven ({gaps.min():.3f} to {gaps.max():.3f} mm); the volume uses "
                        f"{np.mean(gaps):.3f} mm")
    reportProgress(progressCallback, f"Loading {len(ordered)} slices", 0.0)
    fileList = vtk.vtkStringArray()
    for s in ordered:
        fileList.InsertNextValue(s.path)
    with capturedVtkMessages() as messages:
        volumeNode = context.volumesLogic.AddArchetypeVolume(ordered[0].path, volumeName, 0, fileList)
    if volumeNode is None or volumeNode.GetImageData() is None:
        detail = "; ".join(messages.errors) or "Slicer's reader returned no image"
        raise DicomToPrintError(f"{_where(series)}: the series could not be read ({detail})")
    expected = expectedIjkToLps(ordered)
    loaded = ijkToLpsMatrix(volumeNode)
    dims = volumeNode.GetImageData().GetDimensions()
    if dims != (ordered[0].columns, ordered[0].rows, len(ordered)) or not np.allclose(
            loaded[:3], expected[:3], atol=1e-3, rtol=1e-4):
        context.removeNode(volumeNode)
        raise DicomToPrintError(f"{_where(series)}: the loaded volume's geometry does not match the DICOM headers "
                                f"(dimensions {dims}); the series may be inconsistent")
    warnings.extend(messages.warnings)
    reportProgress(progressCallback, "Loaded", 100.0)
    return LoadedVolume(volumeNode, series, warnings)
