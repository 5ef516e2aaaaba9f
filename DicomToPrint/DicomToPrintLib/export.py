"""Step 7 of the pipeline: write the files, atomically.

The STL is written by Slicer's own exporter (``vtkSlicerSegmentationsModuleLogic``): LPS millimetres by
default, as DICOM and most planning software expect, RAS on request, with Slicer's header
("3D Slicer output. SPACE=LPS;SCALE=1"). Slicer names the file after the node and segment; it is written into
a hidden temporary folder beside the target and renamed to the exact path the user gave only when complete, so
a failed or interrupted run never leaves a half-written file, and never replaces an existing one unless asked.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import vtk

from .runtime import DicomToPrintError, checkChoice, isSlicerApplication

LPS = "LPS"
RAS = "RAS"
COORDINATE_SYSTEMS = (LPS, RAS)


def checkOutputPath(outputPath: str, overwrite: bool = False) -> str:
    """The absolute output path, after checking that it can be written.

    :raises DicomToPrintError: when the folder does not exist or is not writable, the path is a folder, or the
        file exists and ``overwrite`` is False.
    """
    outputPath = os.path.abspath(outputPath)
    folder = os.path.dirname(outputPath)
    if os.path.isdir(outputPath):
        raise DicomToPrintError(f"{outputPath}: is a folder; give a file name for the output")
    if not os.path.isdir(folder):
        raise DicomToPrintError(f"{folder}: output folder does not exist")
    try:  # really try: permissions alone do not tell (read-only file systems, administrators)
        probe = tempfile.NamedTemporaryFile(prefix=".dicomtoprint-probe-", dir=folder)
        probe.close()
    except OSError as error:
        raise DicomToPrintError(f"{folder}: output folder is not writable ({error.strerror})") from error
    if os.path.exists(outputPath) and not overwrite:
        raise DicomToPrintError(f"{outputPath}: file exists; it is kept (use overwrite to replace it)")
    return outputPath


class AtomicOutput:
    """A temporary folder beside the target, removed on exit; :meth:`commit` renames a finished file into place."""

    def __init__(self, outputPath: str, overwrite: bool = False):
        self.outputPath = checkOutputPath(outputPath, overwrite)
        self.overwrite = overwrite
        self.folder = None

    def __enter__(self) -> AtomicOutput:
        self.folder = tempfile.mkdtemp(prefix=".dicomtoprint-", dir=os.path.dirname(self.outputPath))
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def commit(self, finishedPath: str) -> str:
        if os.path.exists(self.outputPath) and not self.overwrite:
            raise DicomToPrintError(f"{self.outputPath}: file appeared while writing; it is kept")
        os.replace(finishedPath, self.outputPath)
        return self.outputPath


def exportStl(segmentationsLogic, segmentationNode, segmentIds: list[str], outputPath: str,
              coordinateSystem: str = LPS, sizeScale: float = 1.0, overwrite: bool = False) -> str:
    """Write the segments' closed surfaces as one binary STL at exactly ``outputPath``.

    :param segmentationsLogic: ``vtkSlicerSegmentationsModuleLogic`` of the scene.
    :param segmentationNode: node holding the closed surfaces (set by :func:`.surface.setClosedSurface`).
    :param segmentIds: segments to write; several are merged into one file.
    :param outputPath: the file to write.
    :param coordinateSystem: "LPS" (DICOM patient coordinates, default) or "RAS" (Slicer's world).
    :param sizeScale: unit scale (1 = millimetres, 0.1 = centimetres, 0.001 = metres).
    :param overwrite: replace an existing file.
    :return: the absolute path written.
    """
    checkChoice("coordinate system", coordinateSystem, COORDINATE_SYSTEMS)
    if not sizeScale > 0:
        raise ValueError(f"Size scale must be positive (got {sizeScale})")
    if not segmentIds:
        raise ValueError("No segment to export")
    ids = vtk.vtkStringArray()
    for segmentId in segmentIds:
        ids.InsertNextValue(segmentId)
    with AtomicOutput(outputPath, overwrite) as output:
        ok = segmentationsLogic.ExportSegmentsClosedSurfaceRepresentationToFiles(
            output.folder, segmentationNode, ids, "STL", coordinateSystem == LPS, sizeScale, len(segmentIds) > 1)
        written = [os.path.join(output.folder, name) for name in os.listdir(output.folder)]
        if not ok or len(written) != 1 or os.path.getsize(written[0]) == 0:
            raise DicomToPrintError(f"{output.outputPath}: Slicer's STL export failed")
        return output.commit(written[0])


def writeJson(data: dict, outputPath: str, overwrite: bool = True) -> str:
    """Write a JSON file atomically (temporary name, then rename)."""
    with AtomicOutput(outputPath, overwrite) as output:
        temporary = os.path.join(output.folder, "report.json")
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
        return output.commit(temporary)


def _lookupTable(limitMm: float) -> vtk.vtkLookupTable:
    """Thickness colours: red below the limit, orange to bone white up to twice the limit; bone beyond."""
    table = vtk.vtkLookupTable()
    table.SetNumberOfTableValues(256)
    table.SetRange(0.0, 2.0 * limitMm)
    bone = (0.93, 0.89, 0.80)
    for i in range(256):
        value = 2.0 * limitMm * i / 255.0
        if value < limitMm:
            color = (0.85, 0.1, 0.1)
        else:
            f = (value - limitMm) / limitMm
            color = tuple((1 - f) * o + f * b for o, b in zip((1.0, 0.55, 0.1), bone, strict=True))
        table.SetTableValue(i, *color, 1.0)
    table.SetNanColor(*bone, 1.0)
    table.SetAboveRangeColor(*bone, 1.0)
    table.UseAboveRangeColorOn()
    table.Build()
    return table


def writePreview(polyData, outputPath: str, thickness=None, limitMm: float = 1.0, coordinateSystem: str = LPS,
                 title: str = "", size=(1000, 500), overwrite: bool = True) -> str:
    """A PNG of the model from the front and from the left, walls thinner than ``limitMm`` in red.

    Rendered offscreen (EGL on a machine without a display), written atomically.

    :param polyData: the model, in ``coordinateSystem`` millimetres.
    :param thickness: per-point wall thickness (mm, NaN = thick), e.g. :attr:`.validate.ValidationReport.thickness`.
    """
    from vtk.util import numpy_support

    if not isSlicerApplication() and not os.environ.get("DISPLAY"):
        # no screen: go straight to EGL instead of trying X first (which only logs a warning)
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    model = vtk.vtkPolyData()
    model.ShallowCopy(polyData)
    mapper = vtk.vtkPolyDataMapper()
    mapper.SetInputData(model)
    if thickness is not None and len(thickness) == model.GetNumberOfPoints():
        scalars = numpy_support.numpy_to_vtk(thickness.astype("float32"), deep=True)
        scalars.SetName("WallThickness")
        model.GetPointData().SetScalars(scalars)
        mapper.SetLookupTable(_lookupTable(limitMm))
        mapper.SetScalarRange(0.0, 2.0 * limitMm)
        mapper.ScalarVisibilityOn()
    else:
        mapper.ScalarVisibilityOff()
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(*size)
    bounds = model.GetBounds()
    center = [(bounds[2 * i] + bounds[2 * i + 1]) / 2.0 for i in range(3)]
    # patient front (anterior) and left, whichever way the file's axes point
    anterior = (0.0, -1.0, 0.0) if coordinateSystem == LPS else (0.0, 1.0, 0.0)
    left = (1.0, 0.0, 0.0) if coordinateSystem == LPS else (-1.0, 0.0, 0.0)
    for index, direction in enumerate((anterior, left)):
        renderer = vtk.vtkRenderer()
        renderer.SetViewport(index / 2.0, 0.0, (index + 1) / 2.0, 1.0)
        renderer.SetBackground(0.12, 0.14, 0.18)
        actor = vtk.vtkActor()
        actor.SetMapper(mapper)
        if thickness is None:
            actor.GetProperty().SetColor(0.93, 0.89, 0.80)
        renderer.AddActor(actor)
        camera = renderer.GetActiveCamera()
        camera.SetFocalPoint(*center)
        camera.SetPosition(*(c + 1000.0 * d for c, d in zip(center, direction, strict=True)))
        camera.SetViewUp(0.0, 0.0, 1.0)
        renderer.ResetCamera()
        window.AddRenderer(renderer)
    if title:
        text = vtk.vtkTextActor()
        text.SetInput(title)
        text.GetTextProperty().SetFontSize(16)
        text.GetTextProperty().SetColor(1.0, 1.0, 1.0)
        text.SetPosition(10, 10)
        window.GetRenderers().GetFirstRenderer().AddViewProp(text)
    window.Render()
    capture = vtk.vtkWindowToImageFilter()
    capture.SetInput(window)
    capture.Update()
    with AtomicOutput(outputPath, overwrite) as output:
        temporary = os.path.join(output.folder, "preview.png")
        writer = vtk.vtkPNGWriter()
        writer.SetFileName(temporary)
        writer.SetInputConnection(capture.GetOutputPort())
        writer.Write()
        window.Finalize()
        return output.commit(temporary)


def readStl(path: str) -> vtk.vtkPolyData:
    """An STL as a slicer sees it: corners at the same coordinates are one vertex."""
    reader = vtk.vtkSTLReader()
    reader.SetFileName(path)
    reader.MergingOn()
    reader.Update()
    output = vtk.vtkPolyData()
    output.ShallowCopy(reader.GetOutput())
    return output


def sha256(path: str) -> str:
    """SHA-256 of a file's bytes."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
