"""Where the pipeline runs: a Slicer scene with the logics it needs, inside the Slicer app or on slicer-core.

This is the one place that knows the difference between the Slicer application (``slicer.app``,
``slicer.mrmlScene``, ``slicer.modules``) and PyPI's slicer-core wheel, which has Slicer's MRML and logic
libraries but no application: there the scene and the logics are set up here, in the order they need.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import time
from contextlib import contextmanager

import slicer
import vtk

#: DicomToPrint's version: the one place it is written (pyproject.toml reads it from here).
__version__ = "0.3.0"

logger = logging.getLogger("DicomToPrint")


class ProcessingCancelled(Exception):
    """Raised when a progress callback asks to stop."""


class DicomToPrintError(Exception):
    """An input or output problem the user can act on; the message names the file and the problem."""


def isSlicerApplication() -> bool:
    """True inside the Slicer desktop application (or its headless test runner)."""
    return getattr(slicer, "app", None) is not None and getattr(slicer, "mrmlScene", None) is not None


def slicerVersion() -> str:
    """Version of the Slicer libraries in use: the application's, or the slicer-core wheel's."""
    if isSlicerApplication():
        return f"Slicer {slicer.app.applicationVersion}"
    try:
        from importlib.metadata import version
        return f"slicer-core {version('slicer-core')}"
    except Exception:  # noqa: BLE001 - a missing distribution must not stop a run
        return "slicer-core (unknown version)"


def _distributionVersion(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def softwareVersions() -> dict:
    """Versions of everything that shapes the output, for the report (ISO 13485 traceability)."""
    import platform

    import numpy
    import pydicom
    import SimpleITK

    return {
        "dicomtoprint": __version__,
        "slicer": slicerVersion(),
        "vtk": vtk.vtkVersion.GetVTKVersion(),
        "itk (SimpleITK)": SimpleITK.Version.ITKVersionString(),
        "simpleitk": SimpleITK.Version.VersionString(),
        "pydicom": pydicom.__version__,
        "numpy": numpy.__version__,
        "fast-simplification": _distributionVersion("fast-simplification") or "not installed (VTK's decimation)",
        "embreex": _distributionVersion("embreex") or "not installed (VTK's ray casts)",
        "python": platform.python_version(),
    }


def setThreads(count: int) -> None:
    """Use ``count`` threads in VTK (its STDThread backend) and ITK (SimpleITK's now; the ITK inside Slicer's
    libraries reads ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS when it first starts threads). The output does not depend
    on it: the test suite compares the bytes of STLs made with 1 and 2 threads."""
    import os

    import SimpleITK

    if count < 1:
        raise ValueError(f"Thread count must be at least 1 (got {count})")
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(count)
    SimpleITK.ProcessObject.SetGlobalDefaultNumberOfThreads(count)
    smp = vtk.vtkSMPTools()
    smp.SetBackend("STDThread")
    smp.Initialize(count)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    # numpy's BLAS: one thread. The library's products are N x 3 by 3 x 3 (nothing to share out), and a BLAS
    # thread spins for a while after each (OpenBLAS): 0.6 s of a core at 300 slices that the pipeline's own
    # threads needed. Each row is computed as before: the same numbers.
    threadpool_limits(1, user_api="blas")


class SlicerContext:
    """A scene and the Slicer logics that the pipeline's steps use on it.

    Inside Slicer, :meth:`create` returns the application's scene and module logics. On slicer-core it builds
    them: the application logic, the Colors logic (without it every volume load complains), the Volumes logic
    and the Segmentations logic (whose ``SetMRMLScene`` registers the segmentation conversion rules; without
    them no segment can be created).
    """

    def __init__(self, scene, applicationLogic, volumesLogic, segmentationsLogic, ownsLogics: bool):
        self.scene = scene
        self.applicationLogic = applicationLogic
        self.volumesLogic = volumesLogic
        self.segmentationsLogic = segmentationsLogic
        self.ownsLogics = ownsLogics
        self._colorLogic = None

    @classmethod
    def create(cls, scene=None) -> SlicerContext:
        """Context for the given scene; default the application's scene, or a new one on slicer-core."""
        if isSlicerApplication() and (scene is None or scene is slicer.mrmlScene):
            return cls(slicer.mrmlScene, slicer.app.applicationLogic(), slicer.modules.volumes.logic(),
                       slicer.modules.segmentations.logic(), ownsLogics=False)
        scene = scene or slicer.vtkMRMLScene()
        with capturedVtkMessages():  # the wheel has no color files: the Colors logic says so, harmlessly
            applicationLogic = slicer.vtkSlicerApplicationLogic()
            applicationLogic.SetMRMLScene(scene)
            colorLogic = slicer.vtkSlicerColorLogic()
            colorLogic.SetMRMLApplicationLogic(applicationLogic)
            colorLogic.SetMRMLScene(scene)
            colorLogic.AddDefaultColorNodes()
            applicationLogic.SetModuleLogic("Colors", colorLogic)
            volumesLogic = slicer.vtkSlicerVolumesLogic()
            volumesLogic.SetMRMLScene(scene)
            volumesLogic.SetMRMLApplicationLogic(applicationLogic)
            segmentationsLogic = slicer.vtkSlicerSegmentationsModuleLogic()
            segmentationsLogic.SetMRMLScene(scene)
            segmentationsLogic.SetMRMLApplicationLogic(applicationLogic)
        context = cls(scene, applicationLogic, volumesLogic, segmentationsLogic, ownsLogics=True)
        context._colorLogic = colorLogic
        return context

    def removeNode(self, node) -> None:
        """Remove a node with the display and storage nodes that belong to it."""
        if node is None or not self.scene.IsNodePresent(node):
            return
        helpers = []
        if node.IsA("vtkMRMLDisplayableNode"):
            helpers += [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
        if node.IsA("vtkMRMLStorableNode"):
            helpers += [node.GetNthStorageNode(i) for i in range(node.GetNumberOfStorageNodes())]
        self.scene.RemoveNode(node)
        for helper in helpers:
            if helper is not None and self.scene.IsNodePresent(helper):
                self.scene.RemoveNode(helper)


class VtkMessages:
    """Warnings and errors that VTK, vtkITK and Slicer's logics printed while a block ran."""

    _pattern = re.compile(r"^(ERROR|Warning|Generic Warning|Debug): In (.*?), line \d+\n(.*)$", re.S)

    def __init__(self):
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def parse(self, text: str) -> None:
        for block in filter(None, (b.strip() for b in text.split("\n\n"))):
            match = self._pattern.match(block)
            kind, message = (match.group(1), match.group(3).strip()) if match else ("Warning", block)
            # drop the object address prefix "vtkClass (0x55...): " which means nothing to a user
            message = re.sub(r"^\w+ \(0x[0-9a-f]+\): ", "", message)
            (self.errors if kind == "ERROR" else self.warnings).append(message)


@contextmanager
def capturedVtkMessages():
    """Collect VTK's messages instead of printing them (slicer-core only).

    Inside the Slicer application the messages keep going to Slicer's error log, where users look for them.
    """
    messages = VtkMessages()
    if isSlicerApplication():
        yield messages
        return
    window = vtk.vtkStringOutputWindow()
    previousWindow = vtk.vtkOutputWindow.GetInstance()
    previousVerbosity = vtk.vtkLogger.GetCurrentVerbosityCutoff()
    vtk.vtkOutputWindow.SetInstance(window)
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_OFF)
    try:
        yield messages
    finally:
        vtk.vtkOutputWindow.SetInstance(previousWindow)
        vtk.vtkLogger.SetStderrVerbosity(previousVerbosity)
        messages.parse(window.GetOutput())


def _cLibrary():
    """glibc through ctypes, or False (another C library, or none found)."""
    global _libc
    if _libc is None:
        _libc = False
        try:
            import ctypes
            import ctypes.util

            name = ctypes.util.find_library("c")
            library = ctypes.CDLL(name) if name else None
            if library is not None and hasattr(library, "malloc_trim") and hasattr(library, "mallopt"):
                _libc = library
        except (OSError, AttributeError):
            pass
    return _libc


_libc = None
_oneHeapAsked = False


def useOneHeap() -> None:
    """Let every thread of this process allocate from the main heap (glibc's M_ARENA_MAX = 1); done once, when
    this module is imported, before the library starts any thread. By default glibc gives each thread a heap
    (an arena) of its own and keeps what a thread frees there, out of the main heap's reach: with the numpy
    passes run in threads (:func:`threadMap`, :func:`execute`) and the helper processes' pipe readers, the
    300-slice run's peak went from 940 to about 1110 MiB. These threads allocate a few large arrays each, so
    sharing one heap costs no measurable time. Not inside the Slicer application, whose process this library
    does not own."""
    global _oneHeapAsked
    if _oneHeapAsked:
        return
    _oneHeapAsked = True
    library = _cLibrary()
    if library and not isSlicerApplication():
        library.mallopt(-8, 1)  # M_ARENA_MAX


def releaseFreedMemory() -> None:
    """Give the memory freed since the last call back to the system, where the C library keeps it (glibc on
    Linux: the many mid-sized arrays of a step are freed into its heap, which it returns only from the top;
    malloc_trim returns the rest). Between the pipeline's steps this keeps the next step's peak from being
    stacked on the last one's leftovers. Elsewhere nothing is done."""
    library = _cLibrary()
    if library:
        library.malloc_trim(0)


def pythonExecutable() -> str | None:
    """The Python interpreter to run a helper script with, in the same environment: the application's
    PythonSlicer inside Slicer (its own executable is the application; Slicer's pip_install finds it the same
    way), else this interpreter. None where there is none."""
    import shutil

    if isSlicerApplication():
        return shutil.which("PythonSlicer")
    return sys.executable or None


def helperCommand(job: str) -> list[str] | None:
    """The command that runs ``job`` of :mod:`.helperworker` in a process of its own (with
    :func:`pythonExecutable`), or None where no interpreter can be started."""
    import os

    python = pythonExecutable()
    if python is None:
        return None
    worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helperworker.py")
    # from -c, not as a script: a script's folder (this package's) would go first on the child's path, as would
    # the working folder ('') with -c
    return [python, "-c", "import sys; sys.path[:] = [p for p in sys.path if p]; import runpy; "
            f"runpy.run_path({worker!r}, run_name='__main__')", job]


class HelperProcess:
    """A helper process, started at once: ``data`` goes to its standard input while this one goes on; its
    standard output comes back from :meth:`result`, which waits cancellably. A cancel (or any error) while
    waiting stops it at once.

    :param data: bytes (or buffers, written one after the other) for its standard input; None to send them
        later with :meth:`send` (the process starts, and imports what it needs, meanwhile).
    :param what: what the process does, for the error message.
    :param toFile: its standard output goes to a temporary file, which :meth:`result` returns (at its start)
        instead of bytes: a large output is then read where and as the caller wants (a pipe read whole grows
        its buffer in a thread, whose memory the C library keeps).
    :param frames: its standard output is a series of frames (an int64 byte count, then the bytes), each taken
        by :meth:`frame` as soon as it has come, while the process goes on.
    :raises OSError: when the process cannot be started.
    """

    def __init__(self, command: list[str], data, what: str, toFile: bool = False, frames: bool = False):
        import os
        import subprocess
        import tempfile
        import threading

        self.what = what
        self.output = tempfile.TemporaryFile() if toFile else None
        # (no BLAS threads: the jobs use none, and OpenBLAS's spin at start-up while this process works)
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                                        stdout=self.output if toFile else subprocess.PIPE,
                                        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        self.received, self.frames, self.arrived, self.ended = {}, [], threading.Condition(), False
        # one thread per stream: a process that writes while it reads must never wait on this one
        self.threads = [threading.Thread(target=self._receive, args=("errors", self.process.stderr), daemon=True)]
        if not toFile:
            self.threads.append(threading.Thread(target=self._receiveFrames if frames else self._receive,
                                                 args=("output", self.process.stdout), daemon=True))
        for thread in self.threads:
            thread.start()
        if data is not None:
            self.send(*(data if isinstance(data, (list, tuple)) else [data]))

    def send(self, *buffers) -> None:
        """Write ``buffers`` to its standard input, in a thread, then close it (once only)."""
        import threading

        sender = threading.Thread(target=self._send, args=(buffers,), daemon=True)
        self.threads.append(sender)
        sender.start()

    def _send(self, buffers) -> None:
        try:
            for data in buffers:
                self.process.stdin.write(data)
        except (BrokenPipeError, ValueError, OSError):  # it ended or was stopped: its exit code says why
            pass
        finally:
            try:
                self.process.stdin.close()
            except OSError:
                pass

    def _receive(self, name: str, stream) -> None:
        self.received[name] = stream.read()

    def _receiveFrames(self, name: str, stream) -> None:
        try:
            while True:
                size = stream.read(8)
                if len(size) < 8:
                    break
                count = int.from_bytes(size, sys.byteorder, signed=True)
                data = stream.read(count)
                if len(data) < count:
                    break
                with self.arrived:
                    self.frames.append(data)
                    self.arrived.notify_all()
        finally:
            with self.arrived:
                self.ended = True
                self.arrived.notify_all()

    def frame(self, index: int) -> bytes:
        """Frame ``index`` (0 first) of its output, as soon as it has come; waits cancellably.

        :raises RuntimeError: when the process ended without it (with the last line it wrote on its standard
            error).
        """
        try:
            while True:
                with self.arrived:
                    if len(self.frames) > index:
                        return self.frames[index]
                    if self.ended:
                        break
                    self.arrived.wait(CHECKPOINT_INTERVAL / 2)
                checkpoint()
            self.process.wait()
            for thread in self.threads:
                thread.join()
        except BaseException:
            self.stop()
            raise
        self._raiseFailure()
        raise RuntimeError(f"{self.what} ended without its output")

    def stop(self) -> None:
        """Stop the process if it still runs (its pipes close, the threads end)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for thread in self.threads:
            thread.join()

    def _raiseFailure(self) -> None:
        if self.process.returncode != 0:
            lines = self.received.get("errors", b"").decode(errors="replace").strip().splitlines()
            raise RuntimeError(f"{self.what} failed (exit code {self.process.returncode}): "
                               f"{lines[-1] if lines else 'no message'}")

    def result(self):
        """Its standard output (bytes, or the file with ``toFile``), once it has ended; within
        :func:`cancellable` the progress callback is asked every :data:`CHECKPOINT_INTERVAL` seconds meanwhile.

        :raises RuntimeError: when it failed (with the last line it wrote on its standard error).
        """
        try:
            for thread in self.threads:
                _joinCancellably(thread)
            self.process.wait()
        finally:
            self.stop()
        self._raiseFailure()
        if self.output is not None:
            self.output.seek(0)
            return self.output
        return self.received["output"]


def checkChoice(what: str, value, choices) -> None:
    """Raise ValueError naming the setting, the value and the allowed choices."""
    if value not in choices:
        raise ValueError(f"Unknown {what} '{value}'; choose one of {', '.join(str(c) for c in choices)}")


def reportProgress(progressCallback, text: str, percent: float) -> None:
    """Call a DICOMUtils-style progress callback ``callback(text, percent)``; a True return cancels."""
    logger.info("%3d%% %s", round(percent), text)
    if progressCallback is not None and progressCallback(text, percent):
        raise ProcessingCancelled(f"Cancelled at: {text}")


#: How often, at most, :func:`checkpoint` calls the progress callback again (seconds). Often enough for a
#: Cancel button (and the panel's redraws) to answer within a second, rarely enough to cost nothing.
CHECKPOINT_INTERVAL = 0.2


class _ProgressState:
    def __init__(self, progressCallback):
        self.progressCallback = progressCallback
        self.text, self.percent, self.lastCall = "", 0.0, time.monotonic()

    def __call__(self, text: str, percent: float) -> bool:
        self.text, self.percent, self.lastCall = text, percent, time.monotonic()
        return bool(self.progressCallback(text, percent))


# a context variable, not a global: batch workers on Dask may run two series in two threads of one process
_activeProgress: contextvars.ContextVar[_ProgressState | None] = contextvars.ContextVar("dicomtoprint_progress",
                                                                                         default=None)


@contextmanager
def cancellable(progressCallback):
    """Let the steps inside this block be cancelled, not only between them.

    Yields the callback to pass on (it remembers the last text and percentage). Inside the block,
    :func:`checkpoint` and :func:`update` - called within the long steps, in the library's loops and on VTK's
    progress events - call the callback again with the last text every :data:`CHECKPOINT_INTERVAL` seconds, so
    a True return (Cancel) stops the run within a second even in the middle of a step. Outside such a block
    (or with no callback) they cost nothing.
    """
    if progressCallback is None:
        yield None
        return
    state = _ProgressState(progressCallback)
    token = _activeProgress.set(state)
    try:
        yield state
    finally:
        _activeProgress.reset(token)


def checkpoint() -> None:
    """Within :func:`cancellable`: ask the progress callback again if it has not been asked for a while.

    :raises ProcessingCancelled: when it answers True.
    """
    state = _activeProgress.get()
    if state is not None and time.monotonic() - state.lastCall >= CHECKPOINT_INTERVAL:
        if state(state.text, state.percent):
            raise ProcessingCancelled(f"Cancelled at: {state.text}")


def _cancellingObserver(abort):
    """A progress observer that runs :func:`checkpoint` and, on a cancel, calls ``abort()`` and records why.

    Python exceptions cannot cross VTK's or ITK's observer calls (and a Ctrl-C inside a VTK observer makes VTK
    exit the process), so the observer only records; the caller raises once the filter has returned.
    """
    stopped = []

    def onProgress(*_):
        try:
            if not stopped:
                checkpoint()
        except (ProcessingCancelled, KeyboardInterrupt) as reason:
            stopped.append(reason)
            abort()

    return onProgress, stopped


def update(algorithm) -> None:
    """``algorithm.Update()``, cancellable within :func:`cancellable` through the filter's progress events.

    A cancel sets the filter's AbortExecute flag (VTK's filters stop their loops on it) and raises
    ProcessingCancelled once it has returned.
    """
    if _activeProgress.get() is None:
        algorithm.Update()
        return
    onProgress, stopped = _cancellingObserver(lambda: algorithm.SetAbortExecute(1))
    tag = algorithm.AddObserver(vtk.vtkCommand.ProgressEvent, onProgress)
    try:
        algorithm.Update()
    finally:
        algorithm.RemoveObserver(tag)
    if stopped:
        algorithm.SetAbortExecute(0)
        raise stopped[0]


def _joinCancellably(thread) -> None:
    """Wait for a thread to end, asking the progress callback (:func:`checkpoint`) every half interval."""
    while thread.is_alive():
        thread.join(CHECKPOINT_INTERVAL / 2)
        checkpoint()


def updateAside(algorithm) -> None:
    """``algorithm.Update()`` in a thread of its own while this one asks the progress callback, within
    :func:`cancellable`: for a filter that cannot be stopped from its progress events (Slicer's ITK series
    reader reports progress but does not look at AbortExecute, so a cancel would wait for the whole read).

    VTK's Update gives Python's lock up while it runs, so the callback is asked every
    :data:`CHECKPOINT_INTERVAL` seconds. On a cancel the filter is asked to abort and left to finish in its
    thread; the caller does not use its output.
    """
    import threading

    if _activeProgress.get() is None:
        algorithm.Update()
        return
    worker = threading.Thread(target=algorithm.Update, name=f"{algorithm.GetClassName()}.Update", daemon=True)
    worker.start()
    try:
        _joinCancellably(worker)
    except BaseException:  # a cancel, Ctrl-C included
        algorithm.SetAbortExecute(1)
        raise


def threadMap(function, items, workers: int = 2) -> list:
    """``[function(item) for item in items]``, ``workers`` threads at a time, asking the progress callback
    (:func:`checkpoint`) from this thread meanwhile. For numpy passes over independent items (numpy lets go of
    Python's lock in them). A failure or a cancel drops the items not begun and waits for those running.
    """
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures import TimeoutError as FutureTimeout

    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        pending = [pool.submit(function, item) for item in items]
        results = []
        for future in pending:
            while True:
                try:
                    results.append(future.result(timeout=CHECKPOINT_INTERVAL / 2))
                    break
                except FutureTimeout:
                    checkpoint()
            checkpoint()
        return results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class Aside:
    """``function(*args)`` started now on a thread of its own, while this one goes on with other work: for a pass
    that lets go of Python's lock (VTK's filters, numpy) and that the work here does not change. Used as a context
    manager: on leaving, a result not asked for is waited for (the thread cannot be stopped) and dropped.
    """

    def __init__(self, function, *args):
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=1)
        self.future = self.pool.submit(function, *args)

    def result(self):
        """The function's result (or its exception), asking the progress callback from this thread meanwhile."""
        from concurrent.futures import TimeoutError as FutureTimeout

        while True:
            try:
                return self.future.result(timeout=CHECKPOINT_INTERVAL / 2)
            except FutureTimeout:
                checkpoint()

    def __enter__(self) -> Aside:
        return self

    def __exit__(self, *_) -> None:
        self.pool.shutdown(wait=True)


def inChunks(function, count: int, chunk: int, workers: int = 2) -> None:
    """``function(start, stop)`` for consecutive chunks of ``range(count)``, as :func:`threadMap` runs them: each
    chunk writes its own part of the output."""
    threadMap(lambda start: function(start, min(start + chunk, count)), range(0, count, chunk), workers)


def execute(itkFilter, *images):
    """``itkFilter.Execute(*images)`` for a SimpleITK filter object, cancellable like :func:`update`.

    SimpleITK lets go of Python's lock while a filter runs, but some filters report progress only at their start
    and end (a fill-hole on 2000 slices: 2.3 s between). So the filter runs in a thread of its own while this one
    asks the progress callback every half :data:`CHECKPOINT_INTERVAL` (from this thread: a panel's callback must
    not be called from another). A cancel calls the filter's Abort() and raises at once; the thread ends when ITK
    next looks at its abort flag, and its result is dropped.
    """
    if _activeProgress.get() is None:
        return itkFilter.Execute(*images)
    import threading

    outcome = []

    def run():
        try:
            outcome.append((True, itkFilter.Execute(*images)))
        except BaseException as error:  # raised again in the caller's thread
            outcome.append((False, error))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        checkpoint()  # at least once, however fast the filter
        _joinCancellably(worker)
    except BaseException:
        itkFilter.Abort()
        raise
    succeeded, value = outcome[0]
    if not succeeded:
        raise value
    return value


useOneHeap()
