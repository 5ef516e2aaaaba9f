"""The ``dicomtoprint`` command: a DICOM folder to a print-ready STL, on a plain Python install.

    dicomtoprint INPUT_DIR -o OUT.stl [options]     convert (progress on stderr, summary on stdout)
    dicomtoprint INPUT_DIR --list-series             list the series found, numbered for --series
    dicomtoprint sample OUTPUT_DIR [--phantom NAME]  write a synthetic CT series to try it on
    dicomtoprint reproduce REPORT.json INPUT_DIR -o OUT.stl
                                                     make a model again from its report, and check that the
                                                     input and the STL are the same as recorded

Exit status: 0 only when the STL was written (for reproduce: and it matches the recorded one); 1 for a problem
with the input, the settings or the output (the message names the file and the problem); 2 for a usage error;
4 when reproduce made an STL that differs from the recorded one, or from different input; 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

from . import export, sampledata, segment, surface
from .logic import AUTO_THRESHOLD_METHODS, DicomToPrintLogic, DicomToPrintParameters
from .runtime import DicomToPrintError, ProcessingCancelled, __version__, setThreads

_ISLANDS = {"keep-largest": segment.KEEP_LARGEST_ISLAND, "remove-small": segment.REMOVE_SMALL_ISLANDS,
            "none": segment.ISLANDS_NONE}
_SMOOTHING = {"median": segment.MEDIAN, "opening": segment.MORPHOLOGICAL_OPENING,
              "closing": segment.MORPHOLOGICAL_CLOSING, "gaussian": segment.GAUSSIAN, "joint": segment.JOINT_TAUBIN,
              "none": segment.SMOOTHING_NONE}
_SURFACE = {"flying-edges": surface.FLYING_EDGES, "surface-nets": surface.SURFACE_NETS}
_PLACEMENT = {"subvoxel": surface.SUBVOXEL, "labelmap": surface.LABELMAP}


def _convertParser() -> argparse.ArgumentParser:
    defaults = DicomToPrintParameters()
    parser = argparse.ArgumentParser(
        prog="dicomtoprint",
        description="Turn a CT or MR DICOM series into a watertight, print-ready STL with 3D Slicer's libraries.",
        epilog="Other commands: 'dicomtoprint sample OUTPUT_DIR' writes a synthetic CT series to try; "
               "'dicomtoprint reproduce REPORT.json INPUT_DIR -o OUT.stl' makes a model again from its report.")
    parser.add_argument("input", metavar="INPUT_DIR", help="folder with the DICOM files (searched recursively)")
    parser.add_argument("-o", "--output", metavar="OUT.stl", help="model file to write (.stl, .obj or .3mf)")
    parser.add_argument("--version", action="version", version=f"dicomtoprint {__version__}")
    group = parser.add_argument_group("input")
    group.add_argument("--list-series", action="store_true", help="list the series found and exit")
    group.add_argument("--series", metavar="UID|N", default="",
                       help="series to convert: SeriesInstanceUID or number from --list-series "
                            "(default: the largest CT or MR series)")
    group.add_argument("--missing-slices", choices=["interpolate", "refuse"], default="interpolate",
                       help="a missing slice (a gap of two or more spacings): interpolate it from its neighbours, "
                            "with a warning (default), or refuse the series")
    group = parser.add_argument_group("segmentation (Slicer's Segment Editor effects)")
    group.add_argument("--threshold", nargs=2, type=float, metavar=("MIN", "MAX"),
                       help="explicit threshold range (wins over everything else)")
    group.add_argument("--preset", choices=list(segment.THRESHOLD_PRESETS),
                       help="fixed Hounsfield range: " + ", ".join(
                           f"{name} {low:g} to {'max' if high is None else f'{high:g}'}"
                           for name, (low, high) in segment.THRESHOLD_PRESETS.items()))
    group.add_argument("--auto-threshold", choices=list(AUTO_THRESHOLD_METHODS), metavar="METHOD",
                       default=defaults.autoThresholdMethod,
                       help="automatic threshold when no range or preset is given: ISO50 (default; CT: bone, "
                            "halfway between soft tissue and cortical bone; MR: the body's surface) or one of "
                            "Slicer's: "
                            + ", ".join(AUTO_THRESHOLD_METHODS[1:]))
    group.add_argument("--no-fill", action="store_true",
                       help="leave cancellous bone, diploe, marrow and sealed cavities as the threshold left them "
                            "(default: filled in, so that bone prints solid and a body's surface whole)")
    group.add_argument("--islands", choices=list(_ISLANDS), default="keep-largest",
                       help="keep the largest island, remove small islands, or none (default: keep-largest)")
    group.add_argument("--min-island-mm3", type=float, default=defaults.islandsMinimumSizeMm3, metavar="MM3",
                       help=f"minimum island size in mm^3 (default: {defaults.islandsMinimumSizeMm3:g})")
    group.add_argument("--smoothing", choices=list(_SMOOTHING), default="median",
                       help="labelmap smoothing method (default: median)")
    group.add_argument("--kernel-mm", type=float, default=defaults.kernelSizeMm, metavar="MM",
                       help=f"smoothing kernel size, or Gaussian sigma, in mm (default: {defaults.kernelSizeMm:g})")
    group = parser.add_argument_group("surface and mesh")
    group.add_argument("--surface", choices=list(_PLACEMENT), default="subvoxel",
                       help="subvoxel (default): surface placed from the intensities, a fraction of a voxel from the "
                            "true boundary; labelmap: Slicer's classic labelmap conversion")
    group.add_argument("--surface-method", choices=list(_SURFACE), default="flying-edges",
                       help="labelmap conversion method (default: flying-edges)")
    group.add_argument("--surface-smoothing", type=float, metavar="F",
                       help="surface smoothing factor 0-1 (default: 0.2 subvoxel, 0.5 labelmap)")
    group.add_argument("--target-triangles", type=int, default=defaults.targetTriangles, metavar="N",
                       help=f"decimate to at most N triangles, 0 for no limit (default: {defaults.targetTriangles})")
    group.add_argument("--reduction", type=float, default=defaults.targetReduction, metavar="F",
                       help="also remove this fraction of the triangles, 0-0.999 (default: 0)")
    group.add_argument("--structure", action="append", metavar="NAME[=RANGE|PRESET]", default=[],
                       help="segment several structures (repeat, in order; a later one takes shared voxels): NAME "
                            "alone is ISO-50, NAME=MIN:MAX a range, NAME=PRESET a preset, e.g. --structure "
                            "'Skin=CT skin' --structure Bone")
    group.add_argument("--hollow", type=float, default=0.0, metavar="MM",
                       help="hollow the model to this wall thickness (default: solid)")
    group.add_argument("--hollow-mode", choices=["outside", "medial", "inside"], default="outside",
                       help="what the surface becomes, as in Slicer's Hollow effect: the outside of the wall (default: "
                            "the shape is kept), its middle, or its inside (the wall grows outwards)")
    group.add_argument("--drain-holes", type=float, default=0.0, metavar="MM",
                       help="drain hole diameter for each cavity of a hollow model (default: none)")
    group = parser.add_argument_group("validation")
    group.add_argument("--build-volume", nargs=3, type=float, metavar=("X", "Y", "Z"),
                       default=list(defaults.buildVolumeMm),
                       help="printer build volume in mm (default: " + " ".join(f"{v:g}" for v in defaults.buildVolumeMm)
                       + ")")
    group.add_argument("--wall-limit", type=float, default=defaults.wallThicknessLimitMm, metavar="MM",
                       help=f"report walls thinner than this (default: {defaults.wallThicknessLimitMm:g} mm)")
    group = parser.add_argument_group("output")
    group.add_argument("--format", choices=["stl", "obj", "3mf"],
                       help="file format (default: from the output's extension, else STL); OBJ and 3MF carry the "
                            "structures' names and colours")
    group.add_argument("--one-file-per-structure", action="store_true",
                       help="with several structures, write OUT_<name>.<ext> for each instead of one file")
    group.add_argument("--ras", action="store_true", help="write RAS coordinates (Slicer's) instead of LPS (DICOM's)")
    group.add_argument("--scale", type=float, default=1.0, help="unit scale: 1 = mm (default), 0.001 = m")
    group.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    group.add_argument("--report", metavar="OUT.json",
                       help="the JSON report (default: beside the STL, same name with .json)")
    group.add_argument("--no-preview", action="store_true", help="do not write the PNG preview beside the STL")
    group.add_argument("--threads", type=int, metavar="N", default=os.cpu_count() or 1,
                       help="threads for VTK and ITK (default: one per core, here %(default)s); the "
                            "output does not depend on it")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    group.add_argument("-v", "--verbose", action="store_true", help="log details on stderr")
    return parser


def _parameters(args) -> DicomToPrintParameters:
    values = dict(
        series=args.series, missingSlices=args.missing_slices.upper(), preset=args.preset or "",
        autoThresholdMethod=args.auto_threshold, fillCavities=not args.no_fill,
        islandsOperation=_ISLANDS[args.islands], islandsMinimumSizeMm3=args.min_island_mm3,
        smoothingMethod=_SMOOTHING[args.smoothing], kernelSizeMm=args.kernel_mm,
        gaussianStandardDeviationMm=args.kernel_mm, surfacePlacement=_PLACEMENT[args.surface],
        conversionMethod=_SURFACE[args.surface_method], surfaceSmoothingFactor=args.surface_smoothing,
        targetTriangles=args.target_triangles, targetReduction=args.reduction,
        buildVolumeXMm=args.build_volume[0], buildVolumeYMm=args.build_volume[1], buildVolumeZMm=args.build_volume[2],
        wallThicknessLimitMm=args.wall_limit, coordinateSystem=export.RAS if args.ras else export.LPS,
        sizeScale=args.scale, overwrite=args.overwrite, writePreview=not args.no_preview,
        structures=[_structure(text) for text in args.structure], hollowWallMm=args.hollow,
        hollowMode={"inside": "INSIDE_SURFACE", "medial": "MEDIAL_SURFACE", "outside": "OUTSIDE_SURFACE"}[
            args.hollow_mode], drainHoleDiameterMm=args.drain_holes, oneFilePerSegment=args.one_file_per_structure,
        exportFormat=_format(args))
    if args.threshold:
        values.update(minimumThreshold=args.threshold[0], maximumThreshold=args.threshold[1])
    parameters = DicomToPrintParameters(**values)
    parameters.validate()
    return parameters


def _structure(text: str) -> dict:
    """'Bone' (ISO-50), 'Skin=CT skin' (a preset) or 'Vessel=200:600' (a range) as a structure entry."""
    name, _, how = text.partition("=")
    structure = {"name": name.strip()}
    how = how.strip()
    if how in segment.THRESHOLD_PRESETS:
        structure["preset"] = how
    elif how:
        low, separator, high = how.partition(":")
        try:
            structure.update(minimumThreshold=float(low), maximumThreshold=float(high))
        except ValueError:
            raise ValueError(f"--structure '{text}': give NAME, NAME=MIN:MAX or NAME=PRESET "
                             f"({', '.join(segment.THRESHOLD_PRESETS)})") from None
        if not separator:
            raise ValueError(f"--structure '{text}': a range is MIN:MAX")
    return structure


def _format(args) -> str:
    if args.format:
        return args.format.upper()
    extension = os.path.splitext(args.output or "")[1].lower()
    return {".obj": export.OBJ, ".3mf": export.THREE_MF}.get(extension, export.STL)


class _Progress:
    """One line per step on stderr (a terminal shows them updating in place), and Ctrl-C as a Cancel.

    Used as a context manager it takes over Ctrl-C: the first one asks the run to stop, which it does at its
    next checkpoint (within a second or so), cleanly, with no output left; a second one stops at once. (A
    KeyboardInterrupt raised inside VTK's progress observers would make VTK exit the process on the spot.)
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.inPlace = enabled and sys.stderr.isatty()
        self.last = None
        self.interrupted = False
        self._previousHandler = None

    def __call__(self, text: str, percent: float) -> bool:
        if self.enabled and text != self.last:
            self.last = text
            end = "\r" if self.inPlace else "\n"
            sys.stderr.write(f"[{percent:5.1f}%] {text:<60}{end}")
            sys.stderr.flush()
        return self.interrupted

    def _onInterrupt(self, signum, frame) -> None:
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True

    def __enter__(self) -> _Progress:
        if threading.current_thread() is threading.main_thread():
            self._previousHandler = signal.signal(signal.SIGINT, self._onInterrupt)
        return self

    def __exit__(self, *exc) -> None:
        if self._previousHandler is not None:
            signal.signal(signal.SIGINT, self._previousHandler)
        if self.inPlace:
            sys.stderr.write("\n")


def _listSeries(args) -> int:
    scan = DicomToPrintLogic().findSeries(args.input)
    if not scan.series:
        raise DicomToPrintError(f"{args.input}: no DICOM image series found ({scan.skippedFiles} files skipped)")
    default = None
    try:
        default = scan.selectSeries()
    except DicomToPrintError:
        pass
    print(f"{'#':>3}  {'modality':8} {'slices':>6}  {'size':>13}  {'spacing (mm)':>22}  description")
    for entry, series in zip(scan.listing(), scan.series, strict=True):
        size = "x".join(str(v) for v in entry["size"])
        spacing = " x ".join("?" if v is None else f"{v:g}" for v in entry["spacingMm"])
        mark = "*" if series is default else " "
        print(f"{entry['number']:>3}{mark} {entry['modality']:8} {entry['slices']:>6}  {size:>13}  {spacing:>22}  "
              f"{entry['description']}")
        print(f"      {entry['seriesInstanceUID']}")
    print(f"(* = converted by default; {scan.skippedFiles} other files skipped)")
    return 0


def _convert(argv) -> int:
    parser = _convertParser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    if args.list_series:
        return _listSeries(args)
    if not args.output:
        parser.error("the output file is required: -o OUT.stl")
    parameters = _parameters(args)
    setThreads(args.threads)
    with _Progress(not args.quiet) as progress:
        result = DicomToPrintLogic().run(args.input, args.output, parameters, reportPath=args.report,
                                         progressCallback=progress)
    _printResult(result)
    return 0


def _printResult(result) -> None:
    print(f"Wrote {', '.join(result.outputPaths)} ({result.mesh.triangles} triangles, "
          f"{result.timings['total']:.1f} s)")
    for segmentResult in result.segments:
        threshold = segmentResult.threshold
        name = f"{segmentResult.name}: " if len(result.segments) > 1 else ""
        print(f"{name}Threshold {threshold['minimum']:g} to {threshold['maximum']:g}: "
              f"{threshold['source']}, {threshold['reason']}")
        for line in segmentResult.summaryLines()[1:]:
            print(f"{name or segmentResult.name + ': '}{line}")
        if "hollow" in segmentResult.surface:
            hollow = segmentResult.surface["hollow"]
            print(f"{name}Hollow: {hollow['wallMm']:g} mm wall ({hollow['mode']}), {hollow['drainHoles']} drain "
                  f"hole(s), {hollow['materialSavedCm3']:.2f} cm^3 ({hollow['materialSavedPercent']:.0f} %) of "
                  "material saved")
    for line in result.validation.summaryLines():
        print(line)
    for warning in result.warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    print(f"Report: {result.reportPath}" + (f", preview: {result.previewPath}" if result.previewPath else ""))


def _reproduce(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="dicomtoprint reproduce",
        description="Make a model again from the JSON report of an earlier run: the same settings, then check that "
                    "the input is the same data (fingerprint) and the new STL the same bytes (SHA-256).")
    parser.add_argument("report", metavar="REPORT.json", help="the report written beside the earlier STL")
    parser.add_argument("input", metavar="INPUT_DIR", help="folder with the DICOM files")
    parser.add_argument("-o", "--output", metavar="OUT.stl", required=True, help="STL file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--threads", type=int, metavar="N", default=os.cpu_count() or 1,
                        help="threads for VTK and ITK (default: one per core)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    try:
        with open(args.report, encoding="utf-8") as f:
            recorded = json.load(f)
        provenance, values = recorded["provenance"], dict(recorded["parameters"])
        recordedModel = [provenance["outputSha256"][os.path.basename(path)] for path in recorded["output"]["files"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DicomToPrintError(f"{args.report}: not a DicomToPrint report "
                                f"({type(error).__name__}: {error})") from error
    values["overwrite"] = args.overwrite
    parameters = DicomToPrintParameters.fromDict(values)
    setThreads(args.threads)
    with _Progress(not args.quiet) as progress:
        result = DicomToPrintLogic().run(args.input, args.output, parameters, progressCallback=progress)
    _printResult(result)
    recordedVersion = recorded.get("software", {}).get("dicomtoprint")
    if recordedVersion != __version__:
        print(f"Note: the report was made by dicomtoprint {recordedVersion}; this is {__version__}")
    sameInput = result.inputFingerprint == provenance["inputFingerprint"]
    sameStl = [result.outputSha256[os.path.basename(path)] for path in result.outputPaths] == recordedModel
    print("Input: " + ("the same data as recorded (fingerprint matches)" if sameInput else
                       "DIFFERENT data from the recorded input (fingerprint differs)"))
    print("Model: " + ("identical to the recorded one (SHA-256 matches)" if sameStl else
                       "DIFFERS from the recorded one (SHA-256 differs)"))
    return 0 if sameInput and sameStl else 4


def _sample(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="dicomtoprint sample",
        description="Write a synthetic CT series (an analytic phantom) to try DicomToPrint on.")
    parser.add_argument("output", metavar="OUTPUT_DIR", help="folder to write the DICOM files into (created)")
    parser.add_argument("--phantom", choices=sorted(sampledata.PHANTOMS), default="shell",
                        help="which phantom (default: shell, a hollow sphere)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a sample series written there before (nothing else is ever removed)")
    args = parser.parse_args(argv)
    if os.path.isdir(args.output) and os.listdir(args.output):
        if not args.overwrite:
            raise DicomToPrintError(f"{args.output}: folder is not empty; choose a new folder for the sample series")
        sampledata.removeSampleSeries(args.output)
    paths = sampledata.writePhantomSeries(args.phantom, args.output)
    print(json.dumps({"phantom": args.phantom, "folder": os.path.abspath(args.output), "files": len(paths),
                      "description": sampledata.PHANTOMS[args.phantom].description}))
    return 0


def _batch(argv) -> int:
    from . import batch  # only this command needs it

    parser = argparse.ArgumentParser(
        prog="dicomtoprint batch",
        description="Convert every image series under INPUT_ROOT with the same settings: one STL (with its JSON "
                    "report and PNG preview) per series in OUTPUT_ROOT, named series-<id> (no patient data), and "
                    "OUTPUT_ROOT/summary.csv. Run it again to convert what failed or was not reached; finished "
                    "series are skipped.",
        epilog="Exit status: 0 when every series is done or skipped, 1 when any failed (the summary says which), "
               "2 for a usage error, 130 when interrupted (the summary lists what finished).")
    parser.add_argument("input", metavar="INPUT_ROOT", help="folder searched recursively for DICOM series")
    parser.add_argument("output", metavar="OUTPUT_ROOT", help="folder for the models and summary.csv (created)")
    parser.add_argument("--config", metavar="SETTINGS.json",
                        help='settings for every series, e.g. {"targetTriangles": 100000, "preset": "CT bone"} '
                             "(names as in DicomToPrintParameters; default: the defaults)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N",
                       help="local worker processes (default: one per core, at most one per series)")
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="run on this Dask distributed scheduler instead (needs pip install \".[batch]\")")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    parameters = batch.loadSettings(args.config) if args.config else DicomToPrintParameters()
    try:
        summary = batch.runBatch(args.input, args.output, parameters, workers=args.workers,
                                 schedulerAddress=args.scheduler)
    except KeyboardInterrupt:
        print(f"dicomtoprint batch: interrupted; {os.path.join(args.output, batch.SUMMARY_NAME)} lists the series "
              "that finished; run the same command again to go on", file=sys.stderr)
        return 130
    counts = summary.counts
    print(f"{len(summary.rows)} series: {counts[batch.DONE]} done, {counts[batch.SKIPPED]} skipped, "
          f"{counts[batch.FAILED]} failed; summary: {summary.summaryPath}")
    return 1 if summary.failed else 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["sample"]:
            status = _sample(argv[1:])
        elif argv[:1] == ["reproduce"]:
            status = _reproduce(argv[1:])
        elif argv[:1] == ["batch"]:
            status = _batch(argv[1:])
        else:
            status = _convert(argv)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at the interpreter's exit
        return status
    except BrokenPipeError:
        # whoever read the output stopped reading (`| head -1`): what was written stays; say nothing more, as
        # other command-line tools do, and end as one stopped by SIGPIPE would (128 + 13)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except (DicomToPrintError, ValueError) as error:
        print(f"dicomtoprint: error: {error}", file=sys.stderr)
        return 1
    except MemoryError:
        print("dicomtoprint: error: out of memory; the series is too large for this machine", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, ProcessingCancelled):
        print("dicomtoprint: interrupted; no output was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
