"""The whole pipeline in one call, and each step on its own: DICOM folder -> validated, print-ready STL.

    from DicomToPrintLib import DicomToPrintLogic
    result = DicomToPrintLogic().run("/data/CT", "/tmp/skull.stl")
    print(result.validation.printable, result.validation.reasons, result.timings)

Inside Slicer the logic works on ``slicer.mrmlScene``; on slicer-core it sets up a scene of its own.
"""

from __future__ import annotations

import contextlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from . import dicom, display, export, levels, mesh, segment, surface
from .runtime import (
    DicomToPrintError,
    SlicerContext,
    cancellable,
    capturedVtkMessages,
    checkChoice,
    logger,
    releaseFreedMemory,
    reportProgress,
    softwareVersions,
)
from .validate import BUILD_VOLUME_MM, MeshStatistics, ValidationReport, meshStatistics, reportTableNode, validateMesh

ISO50 = "ISO50"
#: automatic threshold methods: DicomToPrint's ISO-50 and those of Slicer's Threshold effect
AUTO_THRESHOLD_METHODS = (ISO50, *segment.AUTO_THRESHOLD_METHODS)


@dataclass
class DicomToPrintParameters:
    """Every setting of the pipeline, with its default. Names follow Slicer's Segment Editor effects."""

    #: Series to convert: SeriesInstanceUID or number in the listing; empty for the largest CT/MR series.
    series: str = ""
    #: A missing slice (a gap of two or more spacings): INTERPOLATE from its neighbours, or REFUSE.
    missingSlices: str = dicom.INTERPOLATE
    #: Threshold: explicit range (either end; the other is the volume's) wins; then a fixed preset in HU
    #: (:data:`.segment.THRESHOLD_PRESETS`, CT only); then the automatic method (default ISO-50).
    minimumThreshold: float | None = None
    maximumThreshold: float | None = None
    preset: str = ""
    autoThresholdMethod: str = ISO50
    #: Islands effect: KEEP_LARGEST_ISLAND, REMOVE_SMALL_ISLANDS or NONE, and the minimum size in mm^3.
    islandsOperation: str = segment.KEEP_LARGEST_ISLAND
    islandsMinimumSizeMm3: float = 100.0
    #: Fill the sealed cavities inside the structure that belong to its solid: cancellous bone, diploe and marrow
    #: inside bone (a cavity holding what surrounds the bone, e.g. the inside of a hollow phantom, is kept); for a
    #: body's surface (MR, "CT skin"), everything inside it.
    fillCavities: bool = True
    #: Smoothing effect: method and kernel. 1 mm median removes single-voxel noise at the boundary without
    #: eating thin structures as Slicer's 3 mm default would.
    smoothingMethod: str = segment.MEDIAN
    kernelSizeMm: float = 1.0
    gaussianStandardDeviationMm: float = 1.0
    jointTaubinSmoothingFactor: float = 0.5
    #: Surface: SUBVOXEL (from the intensities, local ISO-50) or LABELMAP (Slicer's classic conversion).
    surfacePlacement: str = surface.SUBVOXEL
    #: LABELMAP conversion: FLYING_EDGES or SURFACE_NETS.
    conversionMethod: str = surface.FLYING_EDGES
    #: Surface smoothing factor 0-1; None: 0.2 for SUBVOXEL, Slicer's 0.5 for LABELMAP.
    surfaceSmoothingFactor: float | None = None
    #: Decimation: at most this many triangles (0: no limit) and/or this fraction removed (0: none).
    targetTriangles: int = 300_000
    targetReduction: float = 0.0
    #: Repair: surface shells enclosing less than this (crumbs, slivers, tiny sealed cavities) are removed.
    minimumShellVolumeMm3: float = 10.0
    #: Validation: printer build volume (mm) and the wall thickness below which walls are reported.
    buildVolumeXMm: float = BUILD_VOLUME_MM[0]
    buildVolumeYMm: float = BUILD_VOLUME_MM[1]
    buildVolumeZMm: float = BUILD_VOLUME_MM[2]
    wallThicknessLimitMm: float = 1.0
    #: Not printable when more than this much of the surface is thinner than the limit (else a warning).
    maximumThinAreaPercent: float = 10.0
    #: Several structures in one model: a list of {"name", and optionally "preset", "minimumThreshold",
    #: "maximumThreshold", "autoThresholdMethod", "color": [r, g, b] 0-1}. Each becomes a segment; where they
    #: overlap the later one wins (Slicer's overwrite mode), so printed parts do not intersect. Empty: one
    #: structure from the threshold settings above.
    structures: list = field(default_factory=list)
    #: Hollow prints: wall thickness in mm (0: solid); what the surface becomes (Slicer's Hollow effect modes:
    #: OUTSIDE_SURFACE keeps the shape and walls it inwards, MEDIAL_SURFACE, INSIDE_SURFACE walls it outwards);
    #: drain holes of this diameter (0: none).
    hollowWallMm: float = 0.0
    hollowMode: str = levels.OUTSIDE_SURFACE
    drainHoleDiameterMm: float = 0.0
    #: Export: STL, OBJ (with .mtl colours) or 3MF (names and colours); one file for all structures or one each.
    exportFormat: str = export.STL
    oneFilePerSegment: bool = False
    #: Export: coordinate system (LPS or RAS), unit scale (1 = mm), replace existing files, write the preview.
    coordinateSystem: str = export.LPS
    sizeScale: float = 1.0
    overwrite: bool = False
    writePreview: bool = True
    #: Name of the segment (shown in Slicer; not in any file name); empty: from the preset or "Bone" on CT.
    segmentName: str = ""

    def validate(self) -> None:
        """Raise ValueError naming the first setting that is out of range."""
        if self.preset:
            checkChoice("preset", self.preset, segment.THRESHOLD_PRESETS)
        if self.autoThresholdMethod:
            checkChoice("autoThresholdMethod", self.autoThresholdMethod, AUTO_THRESHOLD_METHODS)
        if (self.minimumThreshold is not None and self.maximumThreshold is not None
                and self.minimumThreshold > self.maximumThreshold):
            raise ValueError(f"minimumThreshold {self.minimumThreshold} is above "
                             f"maximumThreshold {self.maximumThreshold}")
        self.structureList()  # checks the structures
        if self.drainHoleDiameterMm > 0 and self.surfacePlacement != surface.SUBVOXEL:
            raise ValueError("drainHoleDiameterMm: drain holes are made on the SUBVOXEL surface only")
        choices = {"hollowMode": levels.SHELL_MODES, "exportFormat": export.FORMATS,
                   "missingSlices": dicom.MISSING_SLICES, "islandsOperation": segment.ISLANDS_OPERATIONS,
                   "smoothingMethod": segment.SMOOTHING_METHODS,
                   "surfacePlacement": surface.SURFACE_PLACEMENTS,
                   "conversionMethod": tuple(surface.CONVERSION_METHODS), "coordinateSystem": export.COORDINATE_SYSTEMS}
        for name, allowed in choices.items():
            checkChoice(name, getattr(self, name), allowed)
        ranges = {"islandsMinimumSizeMm3": (0, None), "kernelSizeMm": (0, None),
                  "gaussianStandardDeviationMm": (0, None), "jointTaubinSmoothingFactor": (0, 1),
                  "targetTriangles": (0, None), "targetReduction": (0, 0.999), "sizeScale": (1e-9, None),
                  "minimumShellVolumeMm3": (0, None), "buildVolumeXMm": (1e-9, None), "buildVolumeYMm": (1e-9, None),
                  "buildVolumeZMm": (1e-9, None), "wallThicknessLimitMm": (0, None),
                  "maximumThinAreaPercent": (0, 100), "hollowWallMm": (0, None), "drainHoleDiameterMm": (0, None)}
        if self.surfaceSmoothingFactor is not None:
            ranges["surfaceSmoothingFactor"] = (0, 1)
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if value < low or (high is not None and value > high):
                raise ValueError(f"{name}: {value} is out of range ({low:g} to {'any' if high is None else high})")

    def structureList(self) -> list[tuple[str, tuple | None, DicomToPrintParameters]]:
        """(name, colour or None, settings) of each structure to segment, in order (later ones win overlaps).

        :raises ValueError: on a structure without a name, a repeated name, or an unknown key.
        """
        if not self.structures:
            return [(self.segmentName, None, self)]
        allowed = {"name", "preset", "minimumThreshold", "maximumThreshold", "autoThresholdMethod", "color"}
        result, names = [], set()
        for index, structure in enumerate(self.structures):
            if not isinstance(structure, dict) or not str(structure.get("name", "")).strip():
                raise ValueError(f"structures[{index}]: needs a name")
            unknown = set(structure) - allowed
            if unknown:
                raise ValueError(f"structures[{index}]: unknown key(s) {', '.join(sorted(unknown))}")
            name = str(structure["name"]).strip()
            if name.lower() in names:
                raise ValueError(f"structures[{index}]: the name '{name}' is used twice")
            names.add(name.lower())
            thresholds = {key: structure.get(key) for key in ("minimumThreshold", "maximumThreshold")}
            settings = replace(self, structures=[], segmentName=name, preset=structure.get("preset", ""),
                               autoThresholdMethod=structure.get("autoThresholdMethod", ISO50), **thresholds)
            settings.validate()
            color = structure.get("color")
            if color is not None and (len(color) != 3 or not all(0 <= c <= 1 for c in color)):
                raise ValueError(f"structures[{index}]: color must be three numbers from 0 to 1")
            result.append((name, tuple(color) if color is not None else None, settings))
        return result

    @property
    def buildVolumeMm(self) -> tuple[float, float, float]:
        return (self.buildVolumeXMm, self.buildVolumeYMm, self.buildVolumeZMm)

    @property
    def smoothingFactor(self) -> float:
        """The surface smoothing factor in effect."""
        if self.surfaceSmoothingFactor is not None:
            return self.surfaceSmoothingFactor
        return surface.DEFAULT_SMOOTHING[self.surfacePlacement]

    def asDict(self) -> dict:
        return asdict(self)

    @classmethod
    def fromDict(cls, values: dict) -> DicomToPrintParameters:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"Unknown parameter(s): {', '.join(sorted(unknown))}")
        return cls(**values)


#: Colours of common structures (Slicer's GenericAnatomyColors), then a palette for the rest.
STRUCTURE_COLORS = {"bone": (241, 214, 145), "skin": (177, 122, 101), "soft tissue": (216, 132, 105),
                    "muscle": (192, 104, 88), "vessel": (216, 101, 79), "segment": (128, 174, 128)}
PALETTE = [(128, 174, 128), (111, 184, 210), (221, 130, 101), (144, 238, 144), (220, 245, 20), (78, 63, 0)]


def structureColor(name: str, index: int) -> tuple[float, float, float]:
    rgb = STRUCTURE_COLORS.get(name.strip().lower(), PALETTE[index % len(PALETTE)])
    return tuple(c / 255.0 for c in rgb)


@dataclass
class SegmentResult:
    """What one structure went through."""

    name: str
    color: tuple
    segmentId: str
    threshold: dict
    islands: dict
    surface: dict
    decimation: dict
    repair: dict
    triangles: int

    def summaryLines(self) -> list[str]:
        """What was done and why, in words (the command line prints them; the report has them as "summary")."""
        lines = [f"{self.name}: {self.threshold.get('reason', '')}"]
        islands = self.islands
        if islands.get("islands"):
            if islands.get("kept") == 1 and islands["islands"] > 1:
                lines.append(f"kept the largest of {islands['islands']} connected pieces (the rest, e.g. a head "
                             "holder, a table or noise, is not in the model)")
            elif islands["islands"] > islands.get("kept", 0):
                lines.append(f"kept {islands['kept']} of {islands['islands']} connected pieces, removed those "
                             f"smaller than {islands['minimumSizeVoxels']} voxels")
        cavities = islands.get("cavities") or {}
        if cavities.get("voxelsFilled"):
            what = "everything inside the body's surface" if self.threshold.get("structure") == "Skin" else \
                "cancellous bone, diploe or marrow inside the bone, which is less dense than its cortex"
            kept = cavities["cavities"] - cavities["filled"]
            lines.append(f"filled in {cavities['volumeFilledCm3']:.1f} cm^3: {what}"
                         + (f"; {kept} sealed cavities holding what surrounds it kept" if kept else ""))
        if self.surface.get("partsRemoved"):
            lines.append(f"{self.surface['partsRemoved']} crumbs of removed islands left out of the surface")
        decimation = self.decimation
        if decimation.get("decimated"):
            deviation = decimation["deviation"]
            lines.append(f"decimated from {self.surface.get('triangles', 0)} to {decimation['triangles']} triangles "
                         f"({decimation['method']}); the file lies within {deviation['maximumMm']:.2f} mm of the "
                         f"undecimated surface (mean {deviation['meanMm']:.3f} mm, 95th percentile "
                         f"{deviation['p95Mm']:.3f} mm)")
        elif decimation.get("attempts"):
            lines.append(f"not decimated ({'; '.join(decimation['rejected'])}): the undecimated surface was written")
        return lines

    def asDict(self) -> dict:
        return {"name": self.name, "color": [round(c, 4) for c in self.color], "summary": self.summaryLines(),
                "threshold": self.threshold, "islands": self.islands, "surface": self.surface,
                "decimation": self.decimation, "repair": self.repair, "triangles": self.triangles}


@dataclass
class DicomToPrintResult:
    """What a run produced: files, counts, timings in seconds, and what was noticed."""

    outputPaths: list[str]
    reportPath: str | None
    previewPath: str | None
    series: dict
    segments: list[SegmentResult]
    #: the model as it will be printed: every file written, read back, together
    validation: ValidationReport
    timings: dict[str, float]
    #: path -> validation of that file, when one file was written per segment
    fileValidations: dict = field(default_factory=dict)
    #: several structures: how their touching surfaces were kept from crossing (:func:`.mesh.separateParts`)
    partsSeparation: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    parameters: dict = field(default_factory=dict)
    inputFingerprint: str = ""
    outputSha256: dict = field(default_factory=dict)
    volumeNode: object = None
    segmentationNode: object = None
    reportTableNode: object = None

    # the first (for a single structure: the only) structure's steps
    @property
    def outputPath(self) -> str:
        return self.outputPaths[0]

    @property
    def threshold(self) -> dict:
        return self.segments[0].threshold

    @property
    def islands(self) -> dict:
        return self.segments[0].islands

    @property
    def surface(self) -> dict:
        return self.segments[0].surface

    @property
    def decimation(self) -> dict:
        return self.segments[0].decimation

    @property
    def segmentId(self) -> str:
        return self.segments[0].segmentId

    @property
    def mesh(self) -> MeshStatistics:
        return self.validation.statistics

    def asDict(self) -> dict:
        """JSON-ready report (no nodes, no patient data)."""
        return {
            "software": softwareVersions(),
            "provenance": {
                "inputFingerprint": self.inputFingerprint,
                "inputFingerprintMethod": "SHA-256 of the loaded voxel values (as stored in the volume), their type "
                                          "and dimensions, and the voxel-to-LPS matrix rounded to 1e-6 mm",
                "outputSha256": dict(self.outputSha256),
            },
            "output": {"files": list(self.outputPaths), "format": self.parameters.get("exportFormat"),
                       "report": self.reportPath, "preview": self.previewPath,
                       "coordinateSystem": self.parameters.get("coordinateSystem"),
                       "units": "mm" if self.parameters.get("sizeScale", 1.0) == 1.0 else
                       f"mm x {self.parameters.get('sizeScale')}"},
            "validation": self.validation.asDict(),
            "fileValidations": {os.path.basename(path): report.asDict()
                                for path, report in self.fileValidations.items()},
            "series": self.series,
            "segments": [segmentResult.asDict() for segmentResult in self.segments],
            "partsSeparation": self.partsSeparation,
            "timingsSeconds": {k: round(v, 3) for k, v in self.timings.items()},
            "warnings": list(self.warnings),
            "parameters": self.parameters,
        }


def defaultSegmentName(parameters: DicomToPrintParameters, modality: str) -> str:
    if parameters.segmentName:
        return parameters.segmentName
    if parameters.preset:
        return parameters.preset.replace("CT ", "").capitalize()
    if parameters.autoThresholdMethod == ISO50:  # what the automatic threshold finds (see levels.iso50Threshold)
        return "Bone" if modality == "CT" else "Skin"
    return "Segment"


class DicomToPrintLogic:
    """The pipeline on a Slicer scene: find -> load -> segment -> surface -> mesh -> validate -> export.

    :param scene: the MRML scene to work in; default ``slicer.mrmlScene`` inside Slicer, a new scene otherwise.
    """

    def __init__(self, scene=None):
        self.context = SlicerContext.create(scene)

    # -- the steps -------------------------------------------------------------------------------------------
    def findSeries(self, inputDicomFolder: str, progressCallback=None) -> dicom.DicomScan:
        """Scan a folder for DICOM series (headers only). See :func:`.dicom.findSeries`."""
        return dicom.findSeries(inputDicomFolder, progressCallback)

    def loadSeries(self, series: dicom.DicomSeries, progressCallback=None,
                   missingSlices: str = dicom.INTERPOLATE) -> dicom.LoadedVolume:
        """Load a series into a volume node, regularized if needed. See :func:`.dicom.loadSeries`."""
        return dicom.loadSeries(series, self.context, progressCallback=progressCallback, missingSlices=missingSlices)

    def thresholdRange(self, volumeNode, parameters: DicomToPrintParameters, modality: str = "CT") -> dict:
        """The threshold range the parameters ask for on this volume, where it came from and why."""
        low, high = segment.scalarRange(volumeNode)
        if parameters.minimumThreshold is not None or parameters.maximumThreshold is not None:
            minimum = low if parameters.minimumThreshold is None else parameters.minimumThreshold
            maximum = high if parameters.maximumThreshold is None else parameters.maximumThreshold
            source, reason = "manual", "threshold range given"
        elif parameters.preset:
            if modality not in segment.CT_PRESET_MODALITIES:
                raise DicomToPrintError(f"The preset '{parameters.preset}' is in Hounsfield units and the series is "
                                        f"{modality}, which has none; use the automatic threshold (ISO-50) or give "
                                        "a threshold range")
            minimum, maximum = segment.presetRange(parameters.preset, volumeNode)
            source, reason = f"preset '{parameters.preset}'", "fixed Hounsfield range of the preset"
            if parameters.preset == "CT skin":
                return {"minimum": float(minimum), "maximum": float(maximum), "source": source, "reason": reason,
                        "structure": "Skin"}
        elif parameters.autoThresholdMethod == ISO50:
            values, sampled = segment.volumeArray(volumeNode), 1
            if values.size > 8_000_000:  # the levels are medians: every 8th voxel gives the same numbers
                values, sampled = values[::2, ::2, ::2], 8
            # bone smaller than an island that would be kept is no bone
            voxelVolume = float(np.prod(volumeNode.GetSpacing())) * sampled
            iso = levels.iso50Threshold(values, modality, int(parameters.islandsMinimumSizeMm3 // voxelVolume) + 1)
            return {"minimum": float(iso.threshold), "maximum": float(high), "source": "automatic (ISO-50)",
                    "reason": iso.describe(), "structure": iso.structure, "levels": iso.asDict(),
                    "cavityTolerance": max(levels.MINIMUM_CONTRAST_IN_NOISE * iso.noise,
                                           0.05 * (iso.upperLevel - iso.lowerLevel))}
        elif parameters.autoThresholdMethod:
            minimum, maximum = segment.autoThreshold(volumeNode, parameters.autoThresholdMethod)
            source = f"automatic ({parameters.autoThresholdMethod})"
            reason = f"{parameters.autoThresholdMethod} method of Slicer's Threshold effect"
        else:
            raise ValueError("No threshold: give a range, a preset or an automatic method")
        if minimum > maximum:
            raise ValueError(f"Threshold minimum {minimum} is above maximum {maximum}")
        return {"minimum": float(minimum), "maximum": float(maximum), "source": source, "reason": reason}

    def segment(self, volumeNode, parameters: DicomToPrintParameters, threshold: dict, segmentationNode=None,
                segmentName: str = "Bone"):
        """Threshold, islands and smoothing into a new segment. Returns (segmentationNode, segmentId, islandsInfo).

        :raises DicomToPrintError: when the threshold selects nothing or the whole volume, or a step empties it.
        """
        segmentationNode = segmentationNode or segment.createSegmentation(self.context, volumeNode)
        with segment.SegmentEditor(self.context, segmentationNode, volumeNode) as editor:
            segmentId = editor.addSegment(segmentName)
            editor.threshold(segmentId, threshold["minimum"], threshold["maximum"])
            self._checkSelection(segmentationNode, segmentId, volumeNode, threshold)
            islands = self._cleanSegment(editor, segmentationNode, segmentId, parameters, threshold)
        return segmentationNode, segmentId, islands

    def createSurface(self, segmentationNode, segmentId: str, volumeNode, parameters: DicomToPrintParameters,
                      threshold: dict | None = None, intensitiesRead=None, conversion=None):
        """Closed surface (RAS), repaired, with the parts the Islands setting keeps. Returns (vtkPolyData, surface
        info, repair log).

        :param threshold: how the segment was thresholded (:meth:`thresholdRange`); the sub-voxel surface measures
            the level inside on voxels above its minimum.
        :param intensitiesRead: called once the volume's voxels are no longer needed (see
            :func:`.surface.createSubvoxelSurface`).
        :param conversion: a :class:`.surface.SurfaceConversion` started earlier, for the sub-voxel surface.
        """
        if parameters.surfacePlacement == surface.SUBVOXEL:
            placed = surface.createSubvoxelSurface(
                segmentationNode, segmentId, volumeNode, smoothingFactor=parameters.smoothingFactor,
                hollowWallMm=parameters.hollowWallMm, hollowMode=parameters.hollowMode,
                drainHoleDiameterMm=parameters.drainHoleDiameterMm,
                threshold=threshold["minimum"] if threshold and threshold.get("levels") else None,
                # a body's surface: halfway between the background and the tissue's level (see levels.fractionMap)
                insideLevel=threshold["levels"]["upperLevel"] if threshold and threshold.get("levels")
                and threshold.get("structure") == "Skin" else None, intensitiesRead=intensitiesRead,
                conversion=conversion)
            polyData = placed.polyData
            info = {"placement": surface.SUBVOXEL, "insideLevel": round(placed.insideLevel, 1),
                    "outsideLevel": round(placed.outsideLevel, 1), "insideLevelSource": placed.insideLevelSource,
                    "contourFraction": round(placed.contourFraction, 4), "description": placed.describe()}
            if placed.hollow:
                info["hollow"] = placed.hollow
        else:
            surface.createClosedSurface(segmentationNode, parameters.conversionMethod, parameters.smoothingFactor)
            polyData = surface.closedSurface(segmentationNode, segmentId)
            info = {"placement": surface.LABELMAP, "conversionMethod": parameters.conversionMethod,
                    "description": "Slicer's binary labelmap to closed surface conversion"}
        info["smoothingFactor"] = parameters.smoothingFactor
        # the surface holds what the Islands step kept, and no crumb of what it removed (crumbs and parts go in
        # one labelling of the shells)
        if parameters.islandsOperation != segment.ISLANDS_NONE:
            polyData, info["partsRemoved"], log = mesh.repairKeepingParts(
                polyData, parameters.islandsOperation == segment.KEEP_LARGEST_ISLAND,
                parameters.islandsMinimumSizeMm3, parameters.minimumShellVolumeMm3)
        else:
            polyData, log = mesh.repair(polyData, parameters.minimumShellVolumeMm3)
        return polyData, info, log

    def decimate(self, polyData, parameters: DicomToPrintParameters, helpers: list | None = None):
        """Decimate to the target (count and/or reduction), keeping the mesh closed and free of crossings.

        :param helpers: helper processes started before (:meth:`.mesh.Simplification.startHelpers`).
        :return: (mesh, info, repair log) - see :func:`.mesh.decimateClosed`; info["deviation"] says how far the
            decimated mesh lies from the surface it was made from.
        """
        target = polyData.GetNumberOfPolys()
        if parameters.targetReduction > 0:
            target = int(round(target * (1.0 - parameters.targetReduction)))
        if parameters.targetTriangles > 0:
            target = min(target, parameters.targetTriangles)
        return mesh.decimateClosed(polyData, max(target, 4), parameters.minimumShellVolumeMm3, helpers=helpers)

    def validate(self, polyData, parameters: DicomToPrintParameters | None = None) -> ValidationReport:
        """Check the mesh for printing. See :func:`.validate.validateMesh`."""
        parameters = parameters or DicomToPrintParameters()
        return validateMesh(polyData, parameters.buildVolumeMm, parameters.wallThicknessLimitMm,
                            parameters.maximumThinAreaPercent)

    def statistics(self, polyData) -> MeshStatistics:
        return meshStatistics(polyData)

    def reportTable(self, report: ValidationReport, name: str = "DicomToPrint validation",
                    result: DicomToPrintResult | None = None):
        """The validation report as a vtkMRMLTableNode in the scene; with a run's result, its provenance too
        (software, input fingerprint, threshold, output hashes), so that it is saved with the scene."""
        provenance = {}
        if result is not None:
            provenance = {"Threshold": f"{result.threshold['minimum']:g} to {result.threshold['maximum']:g} "
                                       f"({result.threshold['source']})",
                          "Input fingerprint (SHA-256)": result.inputFingerprint}
            provenance.update({f"SHA-256 {name_}": value for name_, value in result.outputSha256.items()})
            provenance.update({f"Software: {k}": v for k, v in softwareVersions().items()})
        return reportTableNode(report, self.context.scene, name, provenance)

    def exportStl(self, segmentationNode, segmentIds: list[str], outputStlPath: str,
                  parameters: DicomToPrintParameters) -> str:
        """Write the segments' closed surfaces to exactly ``outputStlPath``. See :func:`.export.exportStl`."""
        return export.exportStl(self.context.segmentationsLogic, segmentationNode, segmentIds, outputStlPath,
                                parameters.coordinateSystem, parameters.sizeScale, parameters.overwrite)

    # -- everything ------------------------------------------------------------------------------------------
    def run(self, inputDicomFolder: str, outputStlPath: str, parameters: DicomToPrintParameters | None = None,
            reportPath: str | None = None, progressCallback=None, keepNodes: bool = False,
            **parameterValues) -> DicomToPrintResult:
        """DICOM folder to a validated model in one call, with its report (JSON) and preview (PNG) beside it.

        :param inputDicomFolder: folder with the series (searched recursively; any file names).
        :param outputStlPath: the file to write (exactly this path; with several structures and
            ``oneFilePerSegment``, ``<stem>_<structure>.<ext>`` beside it). Its format is ``exportFormat``.
        :param parameters: settings; keyword arguments override single ones, e.g. ``preset="CT bone"``.
        :param reportPath: where the JSON report goes; default beside the model (same name, .json).
        :param progressCallback: ``callback(text, percent)``; returning True cancels (ProcessingCancelled).
        :param keepNodes: leave the volume, segmentation and report table nodes in the scene (to look at them).
        """
        parameters = DicomToPrintParameters.fromDict({**(parameters or DicomToPrintParameters()).asDict(),
                                                      **parameterValues})
        parameters.validate()
        structures = parameters.structureList()
        outputPath = export.checkOutputPath(outputStlPath, parameters.overwrite)
        stem = os.path.splitext(outputPath)[0]
        reportPath = os.path.abspath(reportPath) if reportPath else stem + ".json"
        previewPath = stem + ".png" if parameters.writePreview else None
        for sidecar in filter(None, (reportPath, previewPath)):
            export.checkOutputPath(sidecar, parameters.overwrite)
        timings, warnings, nodes = {}, [], []
        stages = [("find", 0, 4), ("load", 4, 16), ("segment", 16, 36), ("surface", 36, 56), ("decimate", 56, 78),
                  ("export", 78, 82), ("validate", 82, 96), ("report", 96, 100)]
        bounds = {name: (start, end) for name, start, end in stages}

        def progress(stage):
            start, end = bounds[stage]
            return lambda text, percent: progressCallback and progressCallback(
                text, start + (end - start) * percent / 100.0)

        def begin(stage, text):
            reportProgress(progressCallback, text, bounds[stage][0])
            started = time.perf_counter()
            releaseFreedMemory()  # what the last step freed, before this one allocates (counted in this step)
            return started

        succeeded, created = False, []  # files this run has written, removed again if it fails
        conversion = None  # Slicer's surface conversion in a helper process, started early
        simplifying = []  # and fast-simplification's
        with cancellable(progressCallback) as progressCallback:
            try:
                with capturedVtkMessages() as messages:
                    t = begin("find", "Finding DICOM series")
                    scan = self.findSeries(inputDicomFolder, progress("find"))
                    series = scan.selectSeries(parameters.series or None)
                    seriesReport = {**series.summary(), "selection": scan.selectionRule(parameters.series or None),
                                    "filesSkipped": dict(scan.skipped)}
                    timings["find"] = time.perf_counter() - t
                    logger.info("Series: %s", seriesReport)

                    t = begin("load", f"Loading {series.numberOfSlices} slices")
                    # Slicer's surface conversion gets a helper process now: it imports while this one loads and
                    # segments (see surface.SurfaceConversion)
                    if parameters.surfacePlacement == surface.SUBVOXEL:
                        conversion = surface.SurfaceConversion()
                    loaded = self.loadSeries(series, progress("load"), parameters.missingSlices)
                    volume = loaded.volumeNode
                    nodes.append(volume)
                    warnings.extend(loaded.warnings)
                    seriesReport["geometry"] = loaded.geometry
                    # hashing releases Python's lock: the fingerprint is made beside the segmentation
                    fingerprinting = ThreadPoolExecutor(max_workers=1)
                    inputFingerprint = fingerprinting.submit(dicom.fingerprint, volume)
                    fingerprinting.shutdown(wait=False)
                    timings["load"] = time.perf_counter() - t

                    t = begin("segment", "Segmenting")
                    try:
                        segmentationNode, segments = self._segmentStructures(volume, parameters, structures,
                                                                             series.modality)
                    except levels.NothingToPrint as error:  # say which series, and what else to try
                        raise levels.NothingToPrint(
                            f"{inputDicomFolder}: {error}; there is nothing to print with the automatic "
                            "threshold (give a threshold range or a preset to print another structure)") from None
                    nodes.append(segmentationNode)
                    timings["segment"] = time.perf_counter() - t

                    t = begin("surface", "Creating the closed surface" + ("s" if len(segments) > 1 else ""))
                    meshes = {}
                    if parameters.targetTriangles > 0 or parameters.targetReduction > 0:  # they import meanwhile
                        simplifying = mesh.Simplification.startHelpers()

                    def releaseVoxels():  # the largest array, freed before the last surface is made
                        inputFingerprint.result()
                        image = volume.GetImageData()
                        volume.SetAndObserveImageData(None)
                        image.ReleaseData()  # the display node's pipeline holds the image itself too

                    for segmentResult in segments:
                        last = segmentResult is segments[-1] and not keepNodes
                        polyData, segmentResult.surface, log = self.createSurface(
                            segmentationNode, segmentResult.segmentId, volume, parameters, segmentResult.threshold,
                            intensitiesRead=releaseVoxels if last else None, conversion=conversion)
                        conversion = None  # used (and stopped) by the first surface; the others start their own
                        segmentResult.surface["triangles"] = polyData.GetNumberOfPolys()
                        segmentResult.repair = {"surface": log.asDict()}
                        meshes[segmentResult.segmentId] = polyData
                    if not keepNodes:  # the node too (its voxels went once the last fraction map was made)
                        inputFingerprint.result()
                        nodes.remove(volume)
                        self.context.removeNode(volume)
                        del volume, loaded
                    timings["surface"] = time.perf_counter() - t

                    total = sum(m.GetNumberOfPolys() for m in meshes.values())
                    t = begin("decimate", f"Decimating and repairing {total} triangles")
                    for segmentResult in segments:
                        polyData = meshes[segmentResult.segmentId]
                        share = parameters
                        if parameters.targetTriangles > 0 and len(segments) > 1:  # the budget, shared by size
                            share = replace(parameters, targetTriangles=max(
                                4, int(parameters.targetTriangles * polyData.GetNumberOfPolys() / max(total, 1))))
                        polyData, decimation, log = self.decimate(polyData, share, simplifying)
                        simplifying = []  # used (or stopped) by the first
                        if decimation["attempts"] and not decimation["decimated"]:
                            warnings.append(f"{segmentResult.name}: the decimated mesh was not kept ("
                                            f"{'; '.join(decimation['rejected'])}); the undecimated surface "
                                            f"({decimation['triangles']} triangles) was written instead")
                        elif decimation["triangles"] > 1.01 * decimation["requestedTriangles"]:
                            warnings.append(f"{segmentResult.name}: decimation kept {decimation['triangles']} "
                                            f"triangles (asked for {decimation['requestedTriangles']}) to keep the "
                                            "mesh closed and within "
                                            f"{mesh.MAXIMUM_DEVIATION_MM:g} mm of the surface")
                        if log.defectsLeft:
                            warnings.append(f"{segmentResult.name}: {log.defectsLeft} triangles could not be repaired "
                                            f"in {log.rounds} rounds")
                        segmentResult.decimation, segmentResult.repair["decimated"] = decimation, log.asDict()
                        segmentResult.triangles = polyData.GetNumberOfPolys()
                        meshes[segmentResult.segmentId] = polyData
                    partsSeparation = {}
                    if len(segments) > 1:  # neighbouring structures must not cross where they touch
                        separated, separation = mesh.separateParts([meshes[s.segmentId] for s in segments])
                        meshes = {s.segmentId: m for s, m in zip(segments, separated, strict=True)}
                        partsSeparation = separation
                        if separation["crossingsLeft"]:
                            warnings.append(f"{separation['crossingsLeft']} triangle pairs of different structures "
                                            "still cross after separating them")
                    for segmentResult in segments:
                        surface.setClosedSurface(segmentationNode, segmentResult.segmentId,
                                                 meshes[segmentResult.segmentId])
                    timings["decimate"] = time.perf_counter() - t

                    t = begin("export", f"Writing the {parameters.exportFormat}")
                    toWrite = [(s.segmentId, s.name, s.color) for s in segments]
                    outputPaths = self.exportModel(segmentationNode, toWrite, meshes, outputPath, parameters)
                    materials = [os.path.splitext(outputPaths[0])[0] + ".mtl"] \
                        if parameters.exportFormat == export.OBJ else []
                    created += outputPaths + materials
                    timings["export"] = time.perf_counter() - t

                    t = begin("validate", "Validating the exported model")
                    exported = [self.readModel(path, parameters.exportFormat) for path in outputPaths]
                    model = display.appendMeshes(exported) if len(exported) > 1 else exported[0]
                    report = self.validate(model, parameters)
                    fileValidations = {}
                    if len(exported) > 1:
                        fileValidations = {path: self.validate(part, parameters)
                                           for path, part in zip(outputPaths, exported, strict=True)}
                    timings["validate"] = time.perf_counter() - t

                    t = begin("report", "Writing the report")
                    if previewPath:
                        status = "printable" if report.printable else "NOT printable"
                        previewPath = export.writePreview(
                            model, previewPath, report.thickness, parameters.wallThicknessLimitMm,
                            parameters.coordinateSystem, title=f"DicomToPrint: {status}; red: walls thinner than "
                            f"{parameters.wallThicknessLimitMm:g} mm", overwrite=parameters.overwrite)
                        created.append(previewPath)
                warnings.extend(messages.warnings)
                timings["report"] = time.perf_counter() - t
                timings["total"] = sum(timings.values())
                written = [*outputPaths, previewPath, *materials]
                result = DicomToPrintResult(
                    outputPaths=outputPaths, reportPath=None, previewPath=previewPath, series=seriesReport,
                    segments=segments, validation=report, fileValidations=fileValidations, timings=timings,
                    warnings=warnings, parameters=parameters.asDict(),
                    partsSeparation=partsSeparation, inputFingerprint=inputFingerprint.result(),
                    outputSha256={os.path.basename(path): export.sha256(path) for path in written if path})
                result.reportPath = export.writeJson(result.asDict(), reportPath, overwrite=parameters.overwrite)
                created.append(result.reportPath)
                reportProgress(progressCallback, "Done", 100.0)
                if keepNodes:
                    result.volumeNode, result.segmentationNode = nodes
                    result.reportTableNode = self.reportTable(report, result=result)
                succeeded = True
                return result
            finally:
                if conversion is not None:  # started, not used (a failure or a cancel before the surface)
                    conversion.stop()
                for helper in simplifying:  # the same, before the decimation
                    helper.stop()
                if not succeeded:  # cancelled or failed after writing: no model without its report
                    for path in created:
                        with contextlib.suppress(OSError):
                            os.remove(path)
                if not (keepNodes and succeeded):
                    for node in nodes:
                        self.context.removeNode(node)

    def _segmentStructures(self, volumeNode, parameters: DicomToPrintParameters, structures, modality: str):
        """Every structure into one segmentation: all thresholds first, in order (a later structure takes the
        voxels it shares with an earlier one, Slicer's overwrite mode), then islands, smoothing and, for the
        labelmap route, hollowing, per segment. Returns (segmentationNode, [SegmentResult])."""
        segmentationNode = segment.createSegmentation(self.context, volumeNode)
        try:
            results = self._segmentInto(segmentationNode, volumeNode, parameters, structures, modality)
        except BaseException:
            self.context.removeNode(segmentationNode)
            raise
        return segmentationNode, results

    def _segmentInto(self, segmentationNode, volumeNode, parameters, structures, modality) -> list[SegmentResult]:
        results = []
        with segment.SegmentEditor(self.context, segmentationNode, volumeNode) as editor:
            for index, (name, color, settings) in enumerate(structures):
                name = name or defaultSegmentName(settings, modality)
                color = color or structureColor(name, index)
                threshold = self.thresholdRange(volumeNode, settings, modality)
                segmentId = editor.addSegment(name, color)
                editor.threshold(segmentId, threshold["minimum"], threshold["maximum"])
                self._checkSelection(segmentationNode, segmentId, volumeNode, threshold)
                results.append(SegmentResult(name, color, segmentId, threshold, {}, {}, {}, {}, 0))
            for segmentResult in results:
                segmentResult.islands = self._cleanSegment(editor, segmentationNode, segmentResult.segmentId,
                                                           parameters, segmentResult.threshold)
        return results

    def _checkSelection(self, segmentationNode, segmentId, volumeNode, threshold) -> None:
        selected = segment.requireNonEmpty(segmentationNode, segmentId,
                                           f"thresholding at {threshold['minimum']:g} to "
                                           f"{threshold['maximum']:g} (the threshold selects nothing)")
        dims = volumeNode.GetImageData().GetDimensions()
        if selected >= 0.98 * dims[0] * dims[1] * dims[2]:
            raise DicomToPrintError(f"The threshold {threshold['minimum']:g} to {threshold['maximum']:g} selects "
                                    f"{100.0 * selected / (dims[0] * dims[1] * dims[2]):.0f} % of the volume: "
                                    "the model would be the scan's box; give a narrower threshold")

    def _cleanSegment(self, editor, segmentationNode, segmentId, parameters: DicomToPrintParameters,
                      threshold: dict | None = None) -> dict:
        """Islands, cavities, smoothing and (labelmap route) hollowing of one segment; returns the islands and
        cavities counts.

        :raises DicomToPrintError: when a step leaves the segment empty."""
        threshold = threshold or {}
        fill = None
        if parameters.fillCavities:
            fill = {"everything": threshold.get("structure") == "Skin",
                    "outsideLevel": threshold.get("levels", {}).get("lowerLevel"),
                    "tolerance": threshold.get("cavityTolerance")}
        # the median of a labelmap of zeros and ones is counted in the same pass; other smoothing is its effect's
        median = parameters.smoothingMethod == segment.MEDIAN
        islands = editor.clean(segmentId, parameters.islandsOperation, parameters.islandsMinimumSizeMm3, fill,
                               parameters.kernelSizeMm if median else None)
        if not median:
            editor.smoothing(segmentId, parameters.smoothingMethod, parameters.kernelSizeMm,
                             parameters.gaussianStandardDeviationMm, parameters.jointTaubinSmoothingFactor)
        if parameters.hollowWallMm > 0 and parameters.surfacePlacement == surface.LABELMAP:
            editor.hollow(segmentId, parameters.hollowMode, parameters.hollowWallMm)
        islands["voxels"] = segment.requireNonEmpty(segmentationNode, segmentId, "smoothing")
        return islands

    def exportModel(self, segmentationNode, segments, meshes, outputPath: str,
                    parameters: DicomToPrintParameters) -> list[str]:
        """Write the segments' surfaces in ``exportFormat``: one file, or one per segment. Returns the paths.

        :param segments: (segment ID, name, colour r, g, b 0-1) of each segment to write, in order.
        :param meshes: segment ID -> its closed surface (RAS); STL is written from the segmentation node's closed
            surfaces by Slicer's exporter, OBJ and 3MF from these meshes.
        """
        segments = list(segments)
        targets = display.exportTargets(outputPath, [(segmentId, name) for segmentId, name, _ in segments],
                                        parameters.oneFilePerSegment)
        byId = {segmentId: (name, color) for segmentId, name, color in segments}
        written = []
        for _, segmentIds, path in targets:
            if parameters.exportFormat == export.STL:
                written.append(self.exportStl(segmentationNode, segmentIds, path, parameters))
                continue
            parts = [(*byId[i], meshes[i]) for i in segmentIds]
            if parameters.exportFormat == export.OBJ:
                written.append(export.exportObj(parts, path, parameters.coordinateSystem, parameters.sizeScale,
                                                parameters.overwrite)[0])
            else:
                written.append(export.export3mf(parts, path, parameters.coordinateSystem, parameters.sizeScale,
                                                parameters.overwrite))
        return written

    @staticmethod
    def readModel(path: str, exportFormat: str):
        """A written model read back as one mesh, as a slicer would read it."""
        if exportFormat == export.STL:
            return export.readStl(path)
        if exportFormat == export.OBJ:
            return export.readObj(path)
        parts = [polyData for _, _, polyData in export.read3mf(path)]
        return display.appendMeshes(parts) if len(parts) > 1 else parts[0]
