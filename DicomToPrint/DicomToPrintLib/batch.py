"""Many studies: every image series under a folder through the same settings, one STL per series.

    dicomtoprint batch INPUT_ROOT OUTPUT_ROOT --config settings.json [--workers N | --scheduler tcp://host:8786]

The series are found once, in this process, by reading headers (:func:`.dicom.findSeries` on INPUT_ROOT). Each
series is one job: :func:`convertSeries` runs :meth:`.DicomToPrintLogic.run` on the deepest folder that holds
all of its files, with ``series`` set to its SeriesInstanceUID. The jobs run in a local process pool, or on a
Dask distributed cluster when a scheduler address is given; both run the same worker function.

Outputs are named by a neutral id made from the SeriesInstanceUID (``series-<16 hex digits>.stl``, with its
``.json`` report and ``.png`` preview), never from input paths, whose folder names often carry the patient's
name, ID or birth date. ``OUTPUT_ROOT/summary.csv`` has one row per series; it is rewritten (atomically) as
results come in, so an interrupted batch leaves a valid summary, and running the batch again skips the series
that were finished and retries the ones that failed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import closing
from dataclasses import dataclass, field, fields

from . import dicom
from .logic import DicomToPrintLogic, DicomToPrintParameters
from .runtime import DicomToPrintError, setThreads

SUMMARY_NAME = "summary.csv"
SUMMARY_COLUMNS = ("series", "modality", "description", "slices", "status", "triangles", "printable", "reasons",
                   "time_s", "error")
DONE, SKIPPED, FAILED = "done", "skipped", "failed"
#: what error messages say instead of the paths, which may carry patient data
SERIES_FOLDER_PLACEHOLDER = "<series folder>"
INPUT_PLACEHOLDER = "<input>"
#: settings that the batch chooses itself, and why they cannot be in the settings file
BATCH_CHOSEN_SETTINGS = {
    "series": "the batch converts every series, each by its SeriesInstanceUID",
    "overwrite": "finished series are skipped and unfinished outputs are replaced",
}
#: the summary is rewritten at most this often (seconds) while results come in, and always at the end
_SUMMARY_INTERVAL_S = 1.0


def seriesId(seriesInstanceUID: str) -> str:
    """A stable, neutral name for a series' outputs: nothing of the patient, the study or the input paths.

    :param seriesInstanceUID: the series' SeriesInstanceUID.
    """
    return "series-" + hashlib.sha256(seriesInstanceUID.encode("utf-8")).hexdigest()[:16]


# -- settings --------------------------------------------------------------------------------------------------
_TYPE_NAMES = {"bool": "true or false", "int": "a whole number", "float": "a number", "str": "a text"}


def _typeProblem(value, annotation: str) -> str | None:
    """Why a JSON value does not fit a parameter's annotation ("float | None", "int", ...), or None."""
    base = annotation.replace("| None", "").strip()
    if value is None:
        return None if "None" in annotation else f"must be {_TYPE_NAMES.get(base, base)}, not null"
    # bool is an int in Python, but true is never meant as a triangle count
    fits = {"bool": isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "str": isinstance(value, str)}.get(base, True)
    return None if fits else f"must be {_TYPE_NAMES.get(base, base)} (got {json.dumps(value)})"


def loadSettings(settingsPath: str) -> DicomToPrintParameters:
    """The parameters of a settings file: a JSON object of :class:`.DicomToPrintParameters` fields.

    :param settingsPath: the JSON file, e.g. ``{"targetTriangles": 100000, "preset": "CT bone"}``.
    :raises DicomToPrintError: naming the file and the problem: unreadable, not a JSON object, unknown or
        batch-chosen keys, values of the wrong type or out of range.
    """
    try:
        with open(settingsPath, encoding="utf-8") as f:
            values = json.load(f)
    except OSError as error:
        raise DicomToPrintError(f"{settingsPath}: cannot be read ({error.strerror})") from error
    except ValueError as error:
        raise DicomToPrintError(f"{settingsPath}: not valid JSON ({error})") from error
    if not isinstance(values, dict):
        raise DicomToPrintError(f"{settingsPath}: must be a JSON object of settings, e.g. "
                                '{"targetTriangles": 100000, "preset": "CT bone"}')
    annotations = {f.name: str(f.type) for f in fields(DicomToPrintParameters)}
    unknown = sorted(set(values) - set(annotations))
    if unknown:
        raise DicomToPrintError(f"{settingsPath}: unknown setting(s) {', '.join(unknown)}; known settings: "
                                f"{', '.join(sorted(set(annotations) - set(BATCH_CHOSEN_SETTINGS)))}")
    for name in sorted(set(values) & set(BATCH_CHOSEN_SETTINGS)):
        raise DicomToPrintError(f"{settingsPath}: '{name}' cannot be set for a batch "
                                f"({BATCH_CHOSEN_SETTINGS[name]})")
    for name, value in values.items():
        problem = _typeProblem(value, annotations[name])
        if problem:
            raise DicomToPrintError(f"{settingsPath}: {name} {problem}")
        if annotations[name].startswith("float") and value is not None:
            values[name] = float(value)  # so that the reports say 1.0 whether the file says 1 or 1.0
    parameters = DicomToPrintParameters.fromDict(values)
    try:
        parameters.validate()
    except ValueError as error:
        raise DicomToPrintError(f"{settingsPath}: {error}") from error
    return parameters


# -- the worker ------------------------------------------------------------------------------------------------
_workerLogic = None
# One pipeline at a time per process: a Slicer scene is not thread-safe, and a Dask worker may run several
# tasks in threads of one process (give it --nthreads 1; VTK and ITK use the cores within a series).
_pipelineLock = threading.Lock()


def _errorText(error: BaseException) -> str:
    """One line for the summary: the library's own messages as they are, anything else with its type."""
    if isinstance(error, MemoryError):
        return "out of memory; the series is too large for this worker"
    text = " ".join(str(error).split())
    if not isinstance(error, (DicomToPrintError, ValueError)):
        text = f"{type(error).__name__}: {text}"
    return text[:1000]


def convertSeries(job: dict) -> dict:
    """Convert one series; the worker function of the process pool and of a Dask cluster alike.

    Never raises: whatever goes wrong is returned in the record, so that one series never stops the others.

    :param job: ``{"id", "folder", "seriesInstanceUID", "outputStl", "parameters" (a parameters dict),
        "threads" (VTK/ITK threads, or None for their own choice)}``, as made by :func:`planBatch` (other keys
        are ignored).
    :return: ``{"id", "status" (done or failed), "triangles", "printable", "reasons", "time_s", "error"}``; the
        error is the library's message, which names input files by path (the caller takes the paths out).
    """
    global _workerLogic
    record = {"id": job["id"], "status": FAILED, "triangles": None, "printable": None, "reasons": [],
              "time_s": 0.0, "error": ""}
    started = time.perf_counter()
    try:
        with _pipelineLock:
            started = time.perf_counter()  # time the conversion, not the wait for the lock
            if job.get("threads"):
                setThreads(job["threads"])
            if _workerLogic is None:  # each worker process makes its own scene, once
                _workerLogic = DicomToPrintLogic()
            parameters = DicomToPrintParameters.fromDict({**job["parameters"], "series": job["seriesInstanceUID"]})
            result = _workerLogic.run(job["folder"], job["outputStl"], parameters)
        record.update(status=DONE, triangles=int(result.mesh.triangles), printable=bool(result.validation.printable),
                      reasons=list(result.validation.reasons))
    except Exception as error:  # noqa: BLE001 - reported in the record; the batch goes on with the others
        record["error"] = _errorText(error)
    record["time_s"] = round(time.perf_counter() - started, 3)
    return record


# -- finding the series ----------------------------------------------------------------------------------------
@dataclass
class BatchSeries:
    """One series of the batch: where its files are, what it is, and its outputs' neutral id."""

    id: str
    folder: str  # the deepest folder holding all of its files
    series: dicom.DicomSeries
    #: (path, problem) of its damaged files, attributed by the SeriesInstanceUID still readable in their header
    damaged: list[tuple[str, str]] = field(default_factory=list)

    def sanitize(self, text: str, inputRoot: str) -> str:
        """The text with the series folder, the input root and the patient's identifiers taken out.

        :param text: an error message, which names files by their absolute input path.
        :param inputRoot: the batch's input folder (absolute).
        """
        text = text.replace(self.folder, SERIES_FOLDER_PLACEHOLDER)  # first: it lies inside the input root
        return self.series.redact(text.replace(inputRoot, INPUT_PLACEHOLDER))


@dataclass
class Discovery:
    """The series under an input root, and damaged files that no series could be named for."""

    inputRoot: str
    series: list[BatchSeries]
    unattributed: list[tuple[str, str]]  # (path, problem)
    filesSkipped: int


def _damagedFileHeader(path: str) -> dict | None:
    """SeriesInstanceUID, modality, description and the patient's identifiers from what is left of a damaged
    file's header; None when no SeriesInstanceUID can be read."""
    import pydicom  # the header reader the library uses; only needed for damaged files

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        header = {"uid": uid, "modality": str(ds.get("Modality", "") or "OT"),
                  "description": str(ds.get("SeriesDescription", "") or ""),
                  "identifiers": {str(ds.get(k)) for k in dicom.IDENTIFYING_KEYWORDS if ds.get(k) not in (None, "")}}
    except Exception:  # noqa: BLE001 - whatever the damage, the file just cannot be attributed
        return None
    return header if uid else None


def _commonFolder(paths: list[str]) -> str:
    return os.path.commonpath([os.path.dirname(path) for path in paths])


def discoverSeries(inputRoot: str) -> Discovery:
    """Every image series under the input root (headers only), each with its folder and neutral id.

    Damaged files are attributed to their series by the SeriesInstanceUID in what is left of their header (a
    series whose files are all damaged is still listed, without slices); the others are returned apart.

    :param inputRoot: the folder to search (recursively).
    :raises DicomToPrintError: when it is not a folder.
    """
    inputRoot = os.path.abspath(inputRoot)
    if not os.path.isdir(inputRoot):
        raise DicomToPrintError(f"{inputRoot}: not a folder")
    scan = dicom.findSeries(inputRoot)
    damagedBySeries, unattributed, headers = defaultdict(list), [], {}
    for path, problem in scan.damaged:
        header = _damagedFileHeader(path)
        if header is None:
            unattributed.append((path, problem))
            continue
        damagedBySeries[header["uid"]].append((path, problem))
        headers.setdefault(header["uid"], header)
    found = []
    for series in scan.series:
        damaged = damagedBySeries.pop(series.seriesInstanceUID, [])
        folder = _commonFolder(series.files + [path for path, _ in damaged])
        found.append(BatchSeries(seriesId(series.seriesInstanceUID), folder, series, damaged))
    for uid, damaged in damagedBySeries.items():  # series of which no file can be read
        header = headers[uid]
        series = dicom.DicomSeries(uid, header["modality"], header["description"], None,
                                   identifiers=header["identifiers"])
        found.append(BatchSeries(seriesId(uid), _commonFolder([path for path, _ in damaged]), series, damaged))
    return Discovery(inputRoot, found, unattributed, scan.skippedFiles)


# -- resuming --------------------------------------------------------------------------------------------------
def outputPaths(outputRoot: str, identifier: str) -> tuple[str, str]:
    """(STL, JSON report) of a series in the output root.

    :param outputRoot: the batch's output folder.
    :param identifier: the series' id (:func:`seriesId`).
    """
    stem = os.path.join(outputRoot, identifier)
    return stem + ".stl", stem + ".json"


def finishedReport(outputRoot: str, identifier: str) -> dict | None:
    """The JSON report of a series converted by an earlier run, or None when it was not finished (no STL, no
    report, or a report that cannot be read: the library writes the report last, so it marks a finished run).

    :param outputRoot: the batch's output folder.
    :param identifier: the series' id (:func:`seriesId`).
    """
    stl, report = outputPaths(outputRoot, identifier)
    if not (os.path.isfile(stl) and os.path.isfile(report)):
        return None
    try:
        with open(report, encoding="utf-8") as f:
            recorded = json.load(f)
        recorded["validation"]["triangles"]  # noqa: B018 - a report without its numbers is no finished run
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return recorded


def settingsDifferences(recorded: dict, parameters: DicomToPrintParameters) -> list[str]:
    """The settings in which an earlier report differs from this batch's ("name earlier -> now").

    :param recorded: the earlier JSON report.
    :param parameters: this batch's settings.
    """
    earlier, now = recorded.get("parameters") or {}, parameters.asDict()
    return [f"{name} {json.dumps(earlier[name])} -> {json.dumps(now[name])}" for name in sorted(now)
            if name in earlier and name not in BATCH_CHOSEN_SETTINGS and earlier[name] != now[name]]


# -- the summary -----------------------------------------------------------------------------------------------
def summaryRow(entry: BatchSeries, status: str, record: dict | None = None, error: str = "") -> dict:
    """A row of the summary, in :data:`SUMMARY_COLUMNS`.

    :param entry: the series.
    :param status: done, skipped or failed.
    :param record: the numbers: ``triangles``, ``printable``, ``reasons``, ``time_s`` (a worker's record).
    :param error: why it failed or was skipped, already sanitized.
    """
    record = record or {}
    printable = record.get("printable")
    time_s = record.get("time_s")
    return {"series": entry.id, "modality": entry.series.modality,
            "description": entry.series.redact(entry.series.seriesDescription),
            "slices": entry.series.numberOfSlices, "status": status,
            "triangles": "" if record.get("triangles") is None else int(record["triangles"]),
            "printable": "" if printable is None else ("yes" if printable else "no"),
            "reasons": entry.series.redact("; ".join(record.get("reasons") or [])),
            "time_s": "" if time_s is None else f"{float(time_s):.1f}", "error": error}


def writeSummary(outputRoot: str, rows: list[dict]) -> str:
    """Write the summary CSV atomically: a temporary file in the output root, then renamed over the old one,
    so that a reader (or an interrupted batch) never sees half a file.

    :param outputRoot: the batch's output folder.
    :param rows: rows as made by :func:`summaryRow`.
    :return: the summary's path.
    """
    target = os.path.join(outputRoot, SUMMARY_NAME)
    handle, temporary = tempfile.mkstemp(prefix=".summary-", suffix=".csv.tmp", dir=outputRoot)
    try:
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes it private; the summary is as shareable as the models
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return target


# -- planning and running --------------------------------------------------------------------------------------
@dataclass
class BatchPlan:
    """What a batch does: rows already decided (skipped, failed before converting) and the jobs to run."""

    rows: dict[str, dict]  # by series id
    jobs: list[dict]


def planBatch(discovery: Discovery, outputRoot: str, parameters: DicomToPrintParameters) -> BatchPlan:
    """Decide for each series: skip it (finished earlier, or not a volume), fail it (damaged files, or finished
    earlier with other settings), or convert it (a job for :func:`convertSeries`).

    :param discovery: from :func:`discoverSeries`.
    :param outputRoot: the batch's output folder (absolute).
    :param parameters: the batch's settings.
    """
    rows, jobs = {}, []
    # Unfinished outputs (an interrupted run writes the STL before its report) are replaced, not refused.
    jobParameters = {**parameters.asDict(), "overwrite": True}
    for entry in discovery.series:
        recorded = finishedReport(outputRoot, entry.id)
        if recorded is not None:
            differences = settingsDifferences(recorded, parameters)
            numbers = {**recorded["validation"], "time_s": recorded.get("timingsSeconds", {}).get("total")}
            if differences:
                rows[entry.id] = summaryRow(entry, FAILED, numbers, error=(
                    f"finished earlier with other settings ({', '.join(differences)}); use a new output folder, "
                    f"or remove {entry.id}.* to convert it again"))
            else:
                rows[entry.id] = summaryRow(entry, SKIPPED, numbers)
        elif entry.damaged:
            path, problem = entry.damaged[0]
            more = f" (and {len(entry.damaged) - 1} more damaged files)" if len(entry.damaged) > 1 else ""
            rows[entry.id] = summaryRow(entry, FAILED, error=entry.sanitize(
                f"{path}: {problem}{more}; remove it or export the series again", discovery.inputRoot))
        elif not entry.series.isVolume:
            rows[entry.id] = summaryRow(entry, SKIPPED, error=(
                f"not a volume ({entry.series.numberOfSlices} image(s) without two or more slice positions and "
                "an orientation); nothing to convert"))
        else:
            stl, _ = outputPaths(outputRoot, entry.id)
            size = entry.series.size
            jobs.append({"id": entry.id, "folder": entry.folder, "seriesInstanceUID": entry.series.seriesInstanceUID,
                         "outputStl": stl, "parameters": jobParameters, "threads": None,
                         "voxels": size[0] * size[1] * size[2]})
    # The largest first: a big series started last would leave the other workers idle at the end.
    jobs.sort(key=lambda job: -job["voxels"])
    return BatchPlan(rows, jobs)


def _outcome(future, job: dict) -> dict:
    """A worker's record; a record of the failure when the worker itself died (killed, crashed)."""
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001 - convertSeries never raises; this is the process or the cluster
        return {"id": job["id"], "status": FAILED, "triangles": None, "printable": None, "reasons": [],
                "time_s": None, "error": f"the worker stopped ({_errorText(error)})"}


def poolResults(jobs: list[dict], workers: int):
    """Run the jobs in a local process pool; yield the workers' records as they finish.

    :param jobs: from :func:`planBatch`.
    :param workers: number of worker processes.
    """
    # "spawn": a fresh interpreter per worker. Forking a process in which VTK or ITK threads have run (a Python
    # session, a test run) can leave a child waiting forever on a lock that a thread held at the fork.
    threads = max(1, (os.cpu_count() or 1) // workers)  # share the cores instead of each worker taking all
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {pool.submit(convertSeries, {**job, "threads": threads}): job for job in jobs}
        for future in as_completed(futures):
            yield _outcome(future, futures[future])
    finally:
        # When interrupted: jobs not started are dropped, running ones end (Ctrl-C in a terminal reaches the
        # workers too), so that no worker goes on writing after the command has returned.
        pool.shutdown(wait=True, cancel_futures=True)


def daskResults(jobs: list[dict], schedulerAddress: str):
    """Run the jobs on a Dask distributed cluster; yield the workers' records as they finish.

    The workers need this package installed (``pip install ".[batch]"``) and the input and output folders at
    the same paths (a shared file system).

    :param jobs: from :func:`planBatch`.
    :param schedulerAddress: the scheduler, e.g. ``tcp://host:8786``.
    :raises DicomToPrintError: when dask or distributed is missing or the scheduler cannot be reached.
    """
    try:
        from distributed import Client
        from distributed import as_completed as completedFutures
    except ImportError as error:
        raise DicomToPrintError("running on a Dask cluster needs dask and distributed: "
                                "pip install \"dicomtoprint[batch]\"") from error
    try:
        client = Client(schedulerAddress, timeout=30)
    except (OSError, TimeoutError, ValueError) as error:
        raise DicomToPrintError(f"{schedulerAddress}: cannot connect to the Dask scheduler ({error})") from error
    run = uuid.uuid4().hex[:8]  # task keys unique per run: the scheduler may still hold an earlier run's results
    with client:
        futures = {client.submit(convertSeries, job, key=f"dicomtoprint-{job['id']}-{run}", pure=False): job
                   for job in jobs}
        finished = False
        try:
            for future in completedFutures(list(futures)):
                yield _outcome(future, futures[future])
            finished = True
        finally:
            if not finished:
                client.cancel(list(futures))


def _printLine(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class BatchSummary:
    """What a batch did: the summary rows (in the order the series were found) and where they are."""

    rows: list[dict]
    summaryPath: str
    unattributedDamaged: int = 0

    @property
    def counts(self) -> Counter:
        return Counter(row["status"] for row in self.rows)

    @property
    def failed(self) -> bool:
        return self.counts[FAILED] > 0


def runBatch(inputRoot: str, outputRoot: str, parameters: DicomToPrintParameters | None = None,
             workers: int | None = None, schedulerAddress: str | None = None, log=_printLine) -> BatchSummary:
    """Convert every image series under ``inputRoot`` into ``outputRoot`` with the same settings.

    :param inputRoot: folder searched recursively for DICOM series.
    :param outputRoot: folder for ``series-<id>.stl/.json/.png`` and ``summary.csv`` (created if missing).
    :param parameters: the settings (default :class:`.DicomToPrintParameters`); ``series`` must be empty.
    :param workers: local worker processes (default: min(cores, jobs)); ignored with a scheduler.
    :param schedulerAddress: run on this Dask scheduler (``tcp://host:8786``) instead of a local pool.
    :param log: called with one line per finished series, and about damaged files (default: stderr).
    :raises DicomToPrintError: when the input root is not a folder, the output root cannot be made, or the Dask
        scheduler cannot be reached (what finished before is in the summary).

    The local workers are fresh interpreters ("spawn"), which import the main module: call this from a script
    under ``if __name__ == "__main__":``.
    """
    parameters = parameters or DicomToPrintParameters()
    if parameters.series:
        raise DicomToPrintError(f"series '{parameters.series}': {BATCH_CHOSEN_SETTINGS['series']}")
    if not os.path.isdir(inputRoot):  # before making the output folder: a typo should leave nothing behind
        raise DicomToPrintError(f"{inputRoot}: not a folder")
    outputRoot = os.path.abspath(outputRoot)
    try:
        os.makedirs(outputRoot, exist_ok=True)
    except OSError as error:
        raise DicomToPrintError(f"{outputRoot}: the output folder cannot be made ({error.strerror})") from error
    discovery = discoverSeries(inputRoot)
    if discovery.unattributed:
        problems = Counter(problem.split(":")[0].split(" (")[0] for _, problem in discovery.unattributed)
        log(f"{len(discovery.unattributed)} damaged file(s) under {INPUT_PLACEHOLDER} could not be attributed to "
            f"any series and were left out ({', '.join(f'{n} {p}' for p, n in sorted(problems.items()))}); "
            "their paths are not shown, as folder names may carry patient data")
    plan = planBatch(discovery, outputRoot, parameters)
    entries = {entry.id: entry for entry in discovery.series}
    rows: dict[str, dict] = {}

    def finished(identifier: str, row: dict, note: str = "") -> None:
        rows[identifier] = row
        detail = f": {row['error']}" if row["error"] else ""
        log(f"[{len(rows)}/{len(entries)}] {identifier} {row['status']} {note or (row['time_s'] or '0.0') + ' s'}"
            f"{detail}")

    def ordered() -> list[dict]:  # in the order the series were found, whatever order they finish in
        return [rows[entry.id] for entry in discovery.series if entry.id in rows]

    lastWritten = time.monotonic()
    try:
        for entry in discovery.series:
            row = plan.rows.get(entry.id)
            if row is not None:
                note = "(finished earlier)" if row["status"] == SKIPPED and not row["error"] else "0.0 s"
                finished(entry.id, row, note)
        writeSummary(outputRoot, ordered())
        if plan.jobs:
            count = max(1, min(workers or os.cpu_count() or 1, len(plan.jobs)))
            results = daskResults(plan.jobs, schedulerAddress) if schedulerAddress else poolResults(plan.jobs, count)
            with closing(results):  # when interrupted here: stop the workers now, not when garbage-collected
                for result in results:
                    entry = entries[result["id"]]
                    finished(entry.id, summaryRow(entry, result["status"], result,
                                                  entry.sanitize(result["error"], discovery.inputRoot)))
                    if time.monotonic() - lastWritten >= _SUMMARY_INTERVAL_S:
                        writeSummary(outputRoot, ordered())
                        lastWritten = time.monotonic()
    finally:  # also when interrupted: the summary lists what finished
        summaryPath = writeSummary(outputRoot, ordered())
    return BatchSummary(ordered(), summaryPath, len(discovery.unattributed))
