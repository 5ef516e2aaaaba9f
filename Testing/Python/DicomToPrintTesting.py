"""Shared helpers of the test suite: generated phantom series, the real CT, and measuring a mesh against the
exact surface. Plain Python, used by unittest cases that pytest runs here and Slicer's runner runs in the app."""

import atexit
import contextlib
import io
import os
import shutil
import tempfile
import unittest

import numpy as np
import vtk

from DicomToPrintLib import cli, sampledata
from DicomToPrintLib.meshdata import pointsArray, trianglesArray

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = None
_PHANTOMS = {}


def _temporaryRoot() -> str:
    global _ROOT
    if _ROOT is None:
        _ROOT = tempfile.mkdtemp(prefix="dicomtoprint-tests-")
        atexit.register(shutil.rmtree, _ROOT, True)
    return _ROOT


def temporaryFolder(testCase: unittest.TestCase) -> str:
    """A new empty folder, removed when the test ends."""
    folder = tempfile.mkdtemp(prefix="case-", dir=_temporaryRoot())
    testCase.addCleanup(shutil.rmtree, folder, True)
    return folder


def phantomSeries(name: str, **options) -> str:
    """Folder with the named phantom written as a DICOM series (generated once per test run and options)."""
    key = (name, tuple(sorted((k, repr(v)) for k, v in options.items())))
    if key not in _PHANTOMS:
        folder = tempfile.mkdtemp(prefix=f"{name}-", dir=_temporaryRoot())
        sampledata.writePhantomSeries(name, folder, **options)
        _PHANTOMS[key] = folder
    return _PHANTOMS[key]


def sharedDataFolder(name: str) -> str:
    """A data set from the project's shared data (../shared/data beside the checkout, or $DICOMTOPRINT_TEST_DATA).

    :raises unittest.SkipTest: with a message saying where it was looked for, when it is absent (a user's clone).
    """
    candidates = [os.environ.get("DICOMTOPRINT_TEST_DATA", ""),
                  os.path.join(_HERE, os.pardir, os.pardir, os.pardir, "shared", "data"),
                  os.path.join(_HERE, os.pardir, os.pardir, "shared", "data")]
    for base in filter(None, candidates):
        folder = os.path.normpath(os.path.join(base, name))
        if os.path.isdir(folder):
            return folder
    raise unittest.SkipTest(f"test data '{name}' not found (looked in $DICOMTOPRINT_TEST_DATA and ../shared/data "
                            "beside the checkout); CI has it")


def readStl(path: str) -> vtk.vtkPolyData:
    """An STL as a mesh with shared points (STL stores each triangle's corners separately)."""
    reader = vtk.vtkSTLReader()
    reader.SetFileName(path)
    reader.MergingOn()
    reader.Update()
    clean = vtk.vtkCleanPolyData()
    clean.SetInputConnection(reader.GetOutputPort())
    clean.Update()
    return clean.GetOutput()


def stlHeader(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(80)


def surfaceError(polyData, sdf, mirrorX: bool = False) -> dict:
    """Distance (mm) from the mesh's vertices and triangle centres to the exact surface (zero of ``sdf``).

    :param mirrorX: measure the mesh mirrored left-right, to show that a mirrored model fails.
    """
    points = pointsArray(polyData)
    triangles = trianglesArray(polyData)
    samples = np.vstack([points, points[triangles].mean(axis=1)])
    if mirrorX:
        samples = samples * np.array([-1.0, 1.0, 1.0])
    distance = np.abs(sdf(samples))
    return {"mean": float(distance.mean()), "p95": float(np.percentile(distance, 95)), "max": float(distance.max())}


def fileContains(path: str, texts) -> list[str]:
    """Which of the texts occur in the file's bytes (ASCII, and DICOM's '^' name separators as spaces)."""
    with open(path, "rb") as f:
        data = f.read()
    found = []
    for text in texts:
        variants = {text, text.replace("^", " "), text.replace("^", ", ")}
        if any(v.encode("utf-8") in data for v in variants if v):
            found.append(text)
    return found


def segmentArray(segmentationNode, segmentId: str, volumeNode) -> np.ndarray:
    """The segment as a 0/1 array on the volume's grid (k, j, i); the segmentation shares the volume's geometry."""
    from vtk.util import numpy_support

    labelmap = segmentationNode.GetBinaryLabelmapInternalRepresentation(segmentId)
    dims = volumeNode.GetImageData().GetDimensions()
    full = np.zeros(dims[::-1], np.uint8)
    extent = labelmap.GetExtent()
    if extent[1] < extent[0]:
        return full
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    values = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(shape)
    labelValue = segmentationNode.GetSegmentation().GetSegment(segmentId).GetLabelValue()
    full[extent[4]:extent[5] + 1, extent[2]:extent[3] + 1, extent[0]:extent[1] + 1] = values == labelValue
    return full


def transcode(sourceFolder: str, targetFolder: str, transferSyntax) -> list[str]:
    """Copy a single-frame series into a compressed transfer syntax (lossless: the pixels stay the same).

    RLE, JPEG-LS and JPEG 2000 through pydicom's encoders (pylibjpeg, pyjpegls); JPEG Lossless (process 14), which
    pydicom cannot write, through ITK's GDCM (SimpleITK), keeping the original header.
    """
    import pydicom
    import SimpleITK as sitk
    from pydicom.uid import JPEGLosslessSV1

    os.makedirs(targetFolder, exist_ok=True)
    written = []
    for name in sorted(os.listdir(sourceFolder)):
        source, target = os.path.join(sourceFolder, name), os.path.join(targetFolder, name)
        ds = pydicom.dcmread(source)
        if transferSyntax == JPEGLosslessSV1:
            reader = sitk.ImageFileReader()
            reader.SetFileName(source)
            reader.LoadPrivateTagsOn()
            reader.ReadImageInformation()
            # ITK writes (value - intercept) / slope: give it the rescaled values so the stored ones come back
            rescaled = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
            image = sitk.GetImageFromArray(rescaled[None].astype(np.int16))
            for key in reader.GetMetaDataKeys():
                image.SetMetaData(key, reader.GetMetaData(key))
            image.SetSpacing(reader.GetSpacing())
            image.SetOrigin(reader.GetOrigin())
            image.SetDirection(reader.GetDirection())
            writer = sitk.ImageFileWriter()
            writer.SetImageIO("GDCMImageIO")  # the file names have no extension to tell it
            writer.KeepOriginalImageUIDOn()
            writer.SetUseCompression(True)
            writer.SetCompressor("JPEG")
            writer.SetFileName(target)
            writer.Execute(image)
        else:
            ds.compress(transferSyntax)
            ds.save_as(target)
        written.append(target)
    return written


#: What PrusaSlicer's --info lists when it had to mend a mesh (only then): any of these above 0 is a repair.
PRUSA_REPAIRS = ("open_edges", "edges_fixed", "degenerate_facets", "facets_removed", "facets_added",
                 "facets_reversed", "backwards_edges")


def prusaSlicer() -> str:
    """The PrusaSlicer command, the real client that judges an STL.

    :raises unittest.SkipTest: with a message, where it is not installed (.ci/run installs Debian's prusa-slicer).
    """
    command = shutil.which("prusa-slicer")
    if command is None:
        raise unittest.SkipTest("PrusaSlicer is not installed (Debian package prusa-slicer; .ci/run installs it)")
    return command


def prusaSlicerInfo(path: str) -> dict:
    """What ``prusa-slicer --info`` says of a model: its "key = value" lines (manifold, number_of_parts, volume,
    and any repair it had to make, see :data:`PRUSA_REPAIRS`)."""
    import subprocess

    completed = subprocess.run([prusaSlicer(), "--info", path], capture_output=True, text=True, timeout=600,
                               check=False)
    info = {}
    for line in completed.stdout.splitlines():
        key, separator, value = line.partition("=")
        if separator:
            info[key.strip()] = value.strip()
    info["exitStatus"] = completed.returncode
    return info


def prusaSlicerRepairs(info: dict) -> dict:
    """The repairs PrusaSlicer reported (empty: it took the mesh as it is)."""
    return {key: info[key] for key in PRUSA_REPAIRS if key in info and float(info[key]) != 0}


def prusaSlicerSlice(path: str, folder: str) -> dict:
    """Slice a model with PrusaSlicer's default print settings; returns the G-code header's estimate (printing
    time, filament) and the exit status."""
    import subprocess

    gcode = os.path.join(folder, os.path.splitext(os.path.basename(path))[0] + ".gcode")
    completed = subprocess.run([prusaSlicer(), "--export-gcode", "--center", "100,100", "-o", gcode, path],
                               capture_output=True, text=True, timeout=1800, check=False)
    result = {"exitStatus": completed.returncode, "gcode": os.path.isfile(gcode)}
    if result["gcode"]:
        with open(gcode, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("; estimated printing time (normal mode)"):
                    result["printingTime"] = line.split("=", 1)[1].strip()
                elif line.startswith("; filament used [cm3]"):
                    result["filamentCm3"] = float(line.split("=", 1)[1])
    return result


def runCli(*argv) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of the ``dicomtoprint`` command run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in argv])
        except SystemExit as exit_:  # argparse usage errors
            code = exit_.code
    return code, out.getvalue(), err.getvalue()
