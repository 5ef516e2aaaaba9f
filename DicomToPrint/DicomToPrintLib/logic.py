"""The whole pipeline in one call, and each step on its own: DICOM folder -> validated, print-ready STL.

    from DicomToPrintLib import DicomToPrintLogic
    result = DicomToPrintLogic().run("/data/CT", "/tmp/skull.stl")
    print(result.validation.printable, result.validation.reasons, result.timings)

Inside Slicer the logic works on ``slicer.mrmlScene``; on slicer-core it sets up a scene of its own.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, fields

from . import dicom, export, levels, mesh, segment, surface
from .runtime import (
    DicomToPrintError,
    SlicerContext,
    capturedVtkMessages,
    checkChoice,
    logger,
    reportProgress,
    softwareVersions,
)
from .validate import BUILD_VOLUME_MM, MeshStatistics, ValidationReport, meshStatistics, reportTableNode, validateMesh

__version__ = "0.2.0"

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
        choices = {"missingSlices": dicom.MISSING_SLICES, "islandsOperation": segment.ISLANDS_OPERATIONS,
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
                  "maximumThinAreaPercent": (0, 100)}
        if self.surfaceSmoothingFactor is not None:
            ranges["surfaceSmoothingFactor"] = (0, 1)
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if value < low or (high is not None and value > high):
                raise ValueError(f"{name}: {value} is out of range ({low:g} to {'any' if high is None else high})")

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


@dataclass
class DicomToPrintResult:
    """What a run produced: files, counts, timings in seconds, and what was noticed."""

    outputPath: str
    reportPath: str | None
    previewPath: str | None
    series: dict
    threshold: dict
    islands: dict
    surface: dict
    decimation: dict
    repair: dict
    mesh: MeshStatistics
    validation: ValidationReport
    timings: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    parameters: dict = field(default_factory=dict)
    inputFingerprint: str = ""
    outputSha256: dict = field(default_factory=dict)
    volumeNode: object = None
    segmentationNode: object = None
    reportTableNode: object = None
    segmentId: str = ""

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
            "output": {"stl": self.outputPath, "report": self.reportPath, "preview": self.previewPath,
                       "coordinateSystem": self.parameters.get("coordinateSystem"),
                       "units": "mm" if self.parameters.get("sizeScale", 1.0) == 1.0 else
                       f"mm x {self.parameters.get('sizeScale')}"},
            "validation": self.validation.asDict(),
            "series": self.series,
            "threshold": self.threshold,
            "islands": self.islands,
            "surface": self.surface,
            "decimation": self.decimation,
            "repair": self.repair,
            "timingsSeconds": {k: round(v, 3) for k, v in self.timings.items()},
            "warnings": list(self.warnings),
            "parameters": self.parameters,
        }


def defaultSegmentName(parameters: DicomToPrintParameters, modality: str) -> str:
    if parameters.segmentName:
        return parameters.segmentName
    if parameters.preset:
        return parameters.preset.replace("CT ", "").capitalize()
    return "Bone" if modality == "CT" and parameters.autoThresholdMethod == ISO50 else "Segment"


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
        low, high = volumeNode.GetImageData().GetScalarRange()
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
        elif parameters.autoThresholdMethod == ISO50:
            values = segment.volumeArray(volumeNode)
            if values.size > 8_000_000:  # the levels are medians: every 8th voxel gives the same numbers
                values = values[::2, ::2, ::2]
            iso = levels.iso50Threshold(values)
            minimum, maximum = iso.threshold, high
            source, reason = "automatic (ISO-50)", iso.describe(" HU" if modality == "CT" else "")
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
        """Threshold, islands and smoothing into a segment. Returns (segmentationNode, segmentId, islandsInfo)."""
        segmentationNode = segmentationNode or segment.createSegmentation(self.context, volumeNode)
        with segment.SegmentEditor(self.context, segmentationNode, volumeNode) as editor:
            segmentId = editor.addSegment(segmentName)
            editor.threshold(segmentId, threshold["minimum"], threshold["maximum"])
            selected = segment.requireNonEmpty(segmentationNode, segmentId,
                                               f"thresholding at {threshold['minimum']:g} to "
                                               f"{threshold['maximum']:g} (the threshold selects nothing)")
            dims = volumeNode.GetImageData().GetDimensions()
            if selected >= 0.98 * dims[0] * dims[1] * dims[2]:
                raise DicomToPrintError(f"The threshold {threshold['minimum']:g} to {threshold['maximum']:g} selects "
                                        f"{100.0 * selected / (dims[0] * dims[1] * dims[2]):.0f} % of the volume: "
                                        "the model would be the scan's box; give a narrower threshold")
            islands = editor.islands(segmentId, parameters.islandsOperation,
                                     minimumSizeMm3=parameters.islandsMinimumSizeMm3)
            segment.requireNonEmpty(segmentationNode, segmentId, "removing islands smaller than "
                                    f"{parameters.islandsMinimumSizeMm3:g} mm^3")
            editor.smoothing(segmentId, parameters.smoothingMethod, parameters.kernelSizeMm,
                             parameters.gaussianStandardDeviationMm, parameters.jointTaubinSmoothingFactor)
            islands["voxels"] = segment.requireNonEmpty(segmentationNode, segmentId, "smoothing")
        return segmentationNode, segmentId, islands

    def createSurface(self, segmentationNode, segmentId: str, volumeNode, parameters: DicomToPrintParameters):
        """Closed surface (RAS), repaired. Returns (vtkPolyData, surface info, repair log)."""
        if parameters.surfacePlacement == surface.SUBVOXEL:
            placed = surface.createSubvoxelSurface(segmentationNode, segmentId, volumeNode,
                                                   smoothingFactor=parameters.smoothingFactor)
            polyData = placed.polyData
            info = {"placement": surface.SUBVOXEL, "insideLevel": round(placed.insideLevel, 1),
                    "outsideLevel": round(placed.outsideLevel, 1), "insideLevelSource": placed.insideLevelSource,
                    "contourFraction": round(placed.contourFraction, 4), "description": placed.describe()}
        else:
            surface.createClosedSurface(segmentationNode, parameters.conversionMethod, parameters.smoothingFactor)
            polyData = surface.closedSurface(segmentationNode, segmentId)
            info = {"placement": surface.LABELMAP, "conversionMethod": parameters.conversionMethod,
                    "description": "Slicer's binary labelmap to closed surface conversion"}
        info["smoothingFactor"] = parameters.smoothingFactor
        polyData, log = mesh.repair(polyData, parameters.minimumShellVolumeMm3)
        return polyData, info, log

    def decimate(self, polyData, parameters: DicomToPrintParameters):
        """Decimate to the target (count and/or reduction), keeping the mesh closed and free of crossings.

        :return: (mesh, info, repair log) - see :func:`.mesh.decimateClosed`.
        """
        target = polyData.GetNumberOfPolys()
        if parameters.targetReduction > 0:
            target = int(round(target * (1.0 - parameters.targetReduction)))
        if parameters.targetTriangles > 0:
            target = min(target, parameters.targetTriangles)
        return mesh.decimateClosed(polyData, max(target, 4), parameters.minimumShellVolumeMm3)

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
        """DICOM folder to a validated STL in one call, with its report (JSON) and preview (PNG) beside it.

        :param inputDicomFolder: folder with the series (searched recursively; any file names).
        :param outputStlPath: the STL to write (exactly this path).
        :param parameters: settings; keyword arguments override single ones, e.g. ``preset="CT bone"``.
        :param reportPath: where the JSON report goes; default beside the STL (same name, .json).
        :param progressCallback: ``callback(text, percent)``; returning True cancels (ProcessingCancelled).
        :param keepNodes: leave the volume, segmentation and report table nodes in the scene (to look at them).
        """
        parameters = DicomToPrintParameters.fromDict({**(parameters or DicomToPrintParameters()).asDict(),
                                                      **parameterValues})
        parameters.validate()
        outputStlPath = export.checkOutputPath(outputStlPath, parameters.overwrite)
        stem = os.path.splitext(outputStlPath)[0]
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
            return time.perf_counter()

        succeeded = False
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
                loaded = self.loadSeries(series, progress("load"), parameters.missingSlices)
                seriesReport["geometry"] = loaded.geometry
                inputFingerprint = dicom.fingerprint(loaded.volumeNode)
                nodes.append(loaded.volumeNode)
                warnings.extend(loaded.warnings)
                timings["load"] = time.perf_counter() - t

                t = begin("segment", "Segmenting")
                threshold = self.thresholdRange(loaded.volumeNode, parameters, series.modality)
                segmentationNode, segmentId, islands = self.segment(
                    loaded.volumeNode, parameters, threshold, segmentName=defaultSegmentName(parameters,
                                                                                             series.modality))
                nodes.append(segmentationNode)
                timings["segment"] = time.perf_counter() - t

                t = begin("surface", "Creating the closed surface")
                polyData, surfaceInfo, repairLog = self.createSurface(segmentationNode, segmentId,
                                                                      loaded.volumeNode, parameters)
                surfaceTriangles = polyData.GetNumberOfPolys()
                surfaceInfo["triangles"] = surfaceTriangles
                timings["surface"] = time.perf_counter() - t

                t = begin("decimate", f"Decimating and repairing {surfaceTriangles} triangles")
                polyData, decimation, decimationLog = self.decimate(polyData, parameters)
                if decimation["attempts"] and decimation["triangles"] > decimation["requestedTriangles"]:
                    warnings.append(f"decimation kept {decimation['triangles']} triangles (asked for "
                                    f"{decimation['requestedTriangles']}) to keep the mesh closed")
                surface.setClosedSurface(segmentationNode, segmentId, polyData)
                timings["decimate"] = time.perf_counter() - t

                t = begin("export", "Writing the STL")
                outputPath = self.exportStl(segmentationNode, [segmentId], outputStlPath, parameters)
                timings["export"] = time.perf_counter() - t

                t = begin("validate", "Validating the exported mesh")
                exported = export.readStl(outputPath)
                report = self.validate(exported, parameters)
                timings["validate"] = time.perf_counter() - t

                t = begin("report", "Writing the report")
                if previewPath:
                    status = "printable" if report.printable else "NOT printable"
                    previewPath = export.writePreview(
                        exported, previewPath, report.thickness, parameters.wallThicknessLimitMm,
                        parameters.coordinateSystem, title=f"DicomToPrint: {status}; red: walls thinner than "
                        f"{parameters.wallThicknessLimitMm:g} mm", overwrite=parameters.overwrite)
            warnings.extend(messages.warnings)
            timings["report"] = time.perf_counter() - t
            timings["total"] = sum(timings.values())
            result = DicomToPrintResult(
                outputPath=outputPath, reportPath=None, previewPath=previewPath, series=seriesReport,
                threshold=threshold, islands=islands, surface=surfaceInfo, decimation=decimation,
                repair={"surface": repairLog.asDict(), "decimated": decimationLog.asDict()},
                mesh=report.statistics, validation=report, timings=timings, warnings=warnings,
                parameters=parameters.asDict(), segmentId=segmentId, inputFingerprint=inputFingerprint,
                outputSha256={os.path.basename(path): export.sha256(path) for path in (outputPath, previewPath)
                              if path})
            result.reportPath = export.writeJson(result.asDict(), reportPath, overwrite=parameters.overwrite)
            reportProgress(progressCallback, "Done", 100.0)
            if keepNodes:
                result.volumeNode, result.segmentationNode = nodes
                result.reportTableNode = self.reportTable(report, result=result)
            succeeded = True
            return result
        finally:
            if not (keepNodes and succeeded):
                for node in nodes:
                    self.context.removeNode(node)
