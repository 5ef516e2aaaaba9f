"""The whole pipeline in one call, and each step on its own: DICOM folder -> validated, print-ready STL.

    from DicomToPrintLib import DicomToPrintLogic
    result = DicomToPrintLogic().run("/data/CT", "/tmp/skull.stl", preset="CT bone")
    print(result.mesh.triangles, result.timings)

Inside Slicer the logic works on ``slicer.mrmlScene``; on slicer-core it sets up a scene of its own.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields

from . import dicom, export, mesh, segment, surface
from .runtime import (
    DicomToPrintError,
    SlicerContext,
    capturedVtkMessages,
    checkChoice,
    logger,
    reportProgress,
    slicerVersion,
)
from .validate import MeshStatistics, meshStatistics

__version__ = "0.1.0"


@dataclass
class DicomToPrintParameters:
    """Every setting of the pipeline, with its default. Names follow Slicer's Segment Editor effects."""

    #: Series to convert: SeriesInstanceUID or number in the listing; empty for the largest CT/MR series.
    series: str = ""
    #: Threshold preset (see :data:`.segment.THRESHOLD_PRESETS`); used when no explicit or automatic threshold.
    preset: str = "CT bone"
    #: Explicit threshold range; when either is set it wins over the preset (the other end: the volume's range).
    minimumThreshold: float | None = None
    maximumThreshold: float | None = None
    #: Automatic threshold method of the Threshold effect (e.g. "OTSU"); empty for none.
    autoThresholdMethod: str = ""
    #: Islands effect: KEEP_LARGEST_ISLAND, REMOVE_SMALL_ISLANDS or NONE, and the minimum size in mm^3.
    islandsOperation: str = segment.KEEP_LARGEST_ISLAND
    islandsMinimumSizeMm3: float = 100.0
    #: Smoothing effect: method and kernel. 1 mm median removes single-voxel noise at the boundary without
    #: eating structures thinner than Slicer's 3 mm default would.
    smoothingMethod: str = segment.MEDIAN
    kernelSizeMm: float = 1.0
    gaussianStandardDeviationMm: float = 1.0
    jointTaubinSmoothingFactor: float = 0.5
    #: Closed surface conversion: FLYING_EDGES or SURFACE_NETS, and the smoothing factor (0-1).
    conversionMethod: str = surface.FLYING_EDGES
    surfaceSmoothingFactor: float = 0.5
    #: Decimation: at most this many triangles (0: no limit) and/or this fraction removed (0: none).
    targetTriangles: int = 300_000
    targetReduction: float = 0.0
    #: Repair: surface shells enclosing less than this (crumbs, slivers, tiny sealed cavities) are removed.
    minimumShellVolumeMm3: float = 10.0
    #: Export: coordinate system (LPS or RAS), unit scale (1 = mm), replace an existing file.
    coordinateSystem: str = export.LPS
    sizeScale: float = 1.0
    overwrite: bool = False
    #: Name of the segment (shown in Slicer; not in the file name).
    segmentName: str = "Bone"

    def validate(self) -> None:
        """Raise ValueError naming the first setting that is out of range."""
        checkChoice("preset", self.preset, segment.THRESHOLD_PRESETS)
        if self.autoThresholdMethod:
            checkChoice("autoThresholdMethod", self.autoThresholdMethod, segment.AUTO_THRESHOLD_METHODS)
        if (self.minimumThreshold is not None and self.maximumThreshold is not None
                and self.minimumThreshold > self.maximumThreshold):
            raise ValueError(f"minimumThreshold {self.minimumThreshold} is above "
                             f"maximumThreshold {self.maximumThreshold}")
        choices = {"islandsOperation": segment.ISLANDS_OPERATIONS, "smoothingMethod": segment.SMOOTHING_METHODS,
                   "conversionMethod": tuple(surface.CONVERSION_METHODS), "coordinateSystem": export.COORDINATE_SYSTEMS}
        for name, allowed in choices.items():
            checkChoice(name, getattr(self, name), allowed)
        ranges = {"islandsMinimumSizeMm3": (0, None), "kernelSizeMm": (0, None),
                  "gaussianStandardDeviationMm": (0, None), "jointTaubinSmoothingFactor": (0, 1),
                  "surfaceSmoothingFactor": (0, 1), "targetTriangles": (0, None), "targetReduction": (0, 0.999),
                  "sizeScale": (0, None), "minimumShellVolumeMm3": (0, None)}
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if value < low or (high is not None and value > high):
                raise ValueError(f"{name}: {value} is out of range ({low} to {'any' if high is None else high})")
        if self.sizeScale == 0:
            raise ValueError("sizeScale: must be positive")

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
    series: dict
    threshold: dict
    islands: dict
    surfaceTriangles: int
    decimation: dict
    mesh: MeshStatistics
    timings: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    parameters: dict = field(default_factory=dict)
    volumeNode: object = None
    segmentationNode: object = None
    segmentId: str = ""

    def asDict(self) -> dict:
        """JSON-ready summary (no nodes, no patient data)."""
        return {
            "software": {"dicomtoprint": __version__, "slicer": slicerVersion()},
            "output": {"stl": self.outputPath, "report": self.reportPath,
                       "coordinateSystem": self.parameters.get("coordinateSystem")},
            "series": self.series,
            "threshold": self.threshold,
            "islands": self.islands,
            "surfaceTriangles": self.surfaceTriangles,
            "decimation": self.decimation,
            "mesh": self.mesh.asDict(),
            "timingsSeconds": {k: round(v, 3) for k, v in self.timings.items()},
            "warnings": list(self.warnings),
            "parameters": self.parameters,
        }


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

    def loadSeries(self, series: dicom.DicomSeries, progressCallback=None) -> dicom.LoadedVolume:
        """Load a series into a volume node. See :func:`.dicom.loadSeries`."""
        return dicom.loadSeries(series, self.context, progressCallback=progressCallback)

    def thresholdRange(self, volumeNode, parameters: DicomToPrintParameters, modality: str = "CT") -> dict:
        """The threshold range the parameters ask for on this volume, and where it came from."""
        low, high = volumeNode.GetImageData().GetScalarRange()
        if parameters.minimumThreshold is not None or parameters.maximumThreshold is not None:
            minimum = low if parameters.minimumThreshold is None else parameters.minimumThreshold
            maximum = high if parameters.maximumThreshold is None else parameters.maximumThreshold
            source = "manual"
        elif parameters.autoThresholdMethod:
            minimum, maximum = segment.autoThreshold(volumeNode, parameters.autoThresholdMethod)
            source = f"automatic ({parameters.autoThresholdMethod})"
        else:
            if modality not in segment.CT_PRESET_MODALITIES:
                raise DicomToPrintError(f"The preset '{parameters.preset}' is in Hounsfield units and the series is "
                                        f"{modality}, which has none; give a threshold range or an automatic method")
            minimum, maximum = segment.presetRange(parameters.preset, volumeNode)
            source = f"preset '{parameters.preset}'"
        if minimum > maximum:
            raise ValueError(f"Threshold minimum {minimum} is above maximum {maximum}")
        return {"minimum": float(minimum), "maximum": float(maximum), "source": source}

    def segment(self, volumeNode, parameters: DicomToPrintParameters, threshold: dict, segmentationNode=None):
        """Threshold, islands and smoothing into a segment. Returns (segmentationNode, segmentId, islandsInfo)."""
        segmentationNode = segmentationNode or segment.createSegmentation(self.context, volumeNode)
        with segment.SegmentEditor(self.context, segmentationNode, volumeNode) as editor:
            segmentId = editor.addSegment(parameters.segmentName)
            editor.threshold(segmentId, threshold["minimum"], threshold["maximum"])
            segment.requireNonEmpty(segmentationNode, segmentId,
                                    f"thresholding at {threshold['minimum']:g} to {threshold['maximum']:g}")
            islands = editor.islands(segmentId, parameters.islandsOperation,
                                     minimumSizeMm3=parameters.islandsMinimumSizeMm3)
            segment.requireNonEmpty(segmentationNode, segmentId, "removing islands smaller than "
                                    f"{parameters.islandsMinimumSizeMm3:g} mm^3")
            editor.smoothing(segmentId, parameters.smoothingMethod, parameters.kernelSizeMm,
                             parameters.gaussianStandardDeviationMm, parameters.jointTaubinSmoothingFactor)
            islands["voxels"] = segment.requireNonEmpty(segmentationNode, segmentId, "smoothing")
        return segmentationNode, segmentId, islands

    def createSurface(self, segmentationNode, segmentId: str, parameters: DicomToPrintParameters):
        """Closed surface by Slicer's conversion, then repaired. Returns a vtkPolyData (RAS)."""
        surface.createClosedSurface(segmentationNode, parameters.conversionMethod, parameters.surfaceSmoothingFactor)
        return mesh.repair(surface.closedSurface(segmentationNode, segmentId), parameters.minimumShellVolumeMm3)

    def decimate(self, polyData, parameters: DicomToPrintParameters):
        """Decimate to the target (count and/or reduction), keeping the mesh closed.

        :return: (mesh, info) - see :func:`.mesh.decimateClosed`; the mesh is unchanged if already small enough.
        """
        target = polyData.GetNumberOfPolys()
        if parameters.targetReduction > 0:
            target = int(round(target * (1.0 - parameters.targetReduction)))
        if parameters.targetTriangles > 0:
            target = min(target, parameters.targetTriangles)
        return mesh.decimateClosed(polyData, max(target, 4), parameters.minimumShellVolumeMm3)

    def validate(self, polyData) -> MeshStatistics:
        """Mesh statistics (watertight, manifold, shells, volume...). See :func:`.validate.meshStatistics`."""
        return meshStatistics(polyData)

    def exportStl(self, segmentationNode, segmentIds: list[str], outputStlPath: str,
                  parameters: DicomToPrintParameters) -> str:
        """Write the segments' closed surfaces to exactly ``outputStlPath``. See :func:`.export.exportStl`."""
        return export.exportStl(self.context.segmentationsLogic, segmentationNode, segmentIds, outputStlPath,
                                parameters.coordinateSystem, parameters.sizeScale, parameters.overwrite)

    # -- everything ------------------------------------------------------------------------------------------
    def run(self, inputDicomFolder: str, outputStlPath: str, parameters: DicomToPrintParameters | None = None,
            reportPath: str | None = None, progressCallback=None, keepNodes: bool = False,
            **parameterValues) -> DicomToPrintResult:
        """DICOM folder to STL in one call.

        :param inputDicomFolder: folder with the series (searched recursively; any file names).
        :param outputStlPath: the STL to write (exactly this path).
        :param parameters: settings; keyword arguments override single ones, e.g. ``preset="CT bone"``.
        :param reportPath: also write the result summary as JSON here.
        :param progressCallback: ``callback(text, percent)``; returning True cancels (ProcessingCancelled).
        :param keepNodes: leave the volume and segmentation nodes in the scene (to look at them in Slicer).
        """
        parameters = DicomToPrintParameters.fromDict({**(parameters or DicomToPrintParameters()).asDict(),
                                                      **parameterValues})
        parameters.validate()
        export.checkOutputPath(outputStlPath, parameters.overwrite)
        timings, warnings = {}, []
        nodes = []
        stages = [("find", 0, 5), ("load", 5, 25), ("segment", 25, 55), ("surface", 55, 70), ("decimate", 70, 88),
                  ("validate", 88, 92), ("export", 92, 100)]
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
                timings["find"] = time.perf_counter() - t
                logger.info("Series: %s (%d files skipped)", series.summary(), scan.skippedFiles)

                t = begin("load", f"Loading {series.numberOfSlices} slices")
                loaded = self.loadSeries(series, progress("load"))
                nodes.append(loaded.volumeNode)
                warnings.extend(loaded.warnings)
                timings["load"] = time.perf_counter() - t

                t = begin("segment", "Segmenting")
                threshold = self.thresholdRange(loaded.volumeNode, parameters, series.modality)
                segmentationNode, segmentId, islands = self.segment(loaded.volumeNode, parameters, threshold)
                nodes.append(segmentationNode)
                timings["segment"] = time.perf_counter() - t

                t = begin("surface", "Creating the closed surface")
                polyData = self.createSurface(segmentationNode, segmentId, parameters)
                surfaceTriangles = polyData.GetNumberOfPolys()
                timings["surface"] = time.perf_counter() - t

                t = begin("decimate", f"Decimating {surfaceTriangles} triangles")
                polyData, decimation = self.decimate(polyData, parameters)
                if decimation["attempts"] and decimation["triangles"] > decimation["requestedTriangles"]:
                    warnings.append(f"decimation kept {decimation['triangles']} triangles (asked for "
                                    f"{decimation['requestedTriangles']}) to keep the mesh closed")
                surface.setClosedSurface(segmentationNode, segmentId, polyData)
                timings["decimate"] = time.perf_counter() - t

                t = begin("validate", "Validating the mesh")
                statistics = self.validate(polyData)
                if not statistics.watertight:
                    warnings.append(f"the mesh is not watertight ({statistics.boundaryEdges} boundary edges, "
                                    f"{statistics.nonManifoldEdges} non-manifold edges)")
                timings["validate"] = time.perf_counter() - t

                t = begin("export", "Writing the STL")
                outputPath = self.exportStl(segmentationNode, [segmentId], outputStlPath, parameters)
                timings["export"] = time.perf_counter() - t
            warnings.extend(messages.warnings)
            result = DicomToPrintResult(
                outputPath=outputPath, reportPath=None, series=series.summary(), threshold=threshold,
                islands=islands, surfaceTriangles=surfaceTriangles, decimation=decimation, mesh=statistics,
                timings=timings,
                warnings=warnings, parameters=parameters.asDict(), segmentId=segmentId)
            result.timings["total"] = sum(timings.values())
            if reportPath:
                result.reportPath = export.writeJson(result.asDict(), reportPath, overwrite=True)
            reportProgress(progressCallback, "Done", 100.0)
            if keepNodes:
                result.volumeNode, result.segmentationNode = nodes
            succeeded = True
            return result
        finally:
            if not (keepNodes and succeeded):
                for node in nodes:
                    self.context.removeNode(node)
