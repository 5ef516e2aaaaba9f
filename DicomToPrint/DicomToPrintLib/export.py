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

from .meshdata import pointsArray, polyDataFromArrays, trianglesArray
from .runtime import DicomToPrintError, checkChoice, checkpoint, isSlicerApplication

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
    checkpoint()
    window.Render()
    checkpoint()
    capture = vtk.vtkWindowToImageFilter()
    capture.SetInput(window)
    capture.ShouldRerenderOff()  # the frame just rendered: rendering it again took as long as the first time
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


STL, OBJ, THREE_MF = "STL", "OBJ", "3MF"
FORMATS = (STL, OBJ, THREE_MF)
EXTENSIONS = {STL: ".stl", OBJ: ".obj", THREE_MF: ".3mf"}


def _fileCoordinates(points, coordinateSystem: str, sizeScale: float):
    """RAS points (Slicer's world) to the file's coordinate system and unit, as Slicer's STL export does."""
    import numpy as np

    flip = np.array([-1.0, -1.0, 1.0]) if coordinateSystem == LPS else np.ones(3)
    return points * flip * sizeScale


def exportObj(parts, outputPath: str, coordinateSystem: str = LPS, sizeScale: float = 1.0,
              overwrite: bool = False) -> list[str]:
    """Write named, coloured parts as one Wavefront OBJ with its material file (.mtl) beside it.

    :param parts: (name, (r, g, b) 0-1, closed triangle mesh in RAS) for each part.
    :return: the OBJ and MTL paths written.
    """

    checkChoice("coordinate system", coordinateSystem, COORDINATE_SYSTEMS)
    materialPath = os.path.splitext(os.path.abspath(outputPath))[0] + ".mtl"
    checkOutputPath(materialPath, overwrite)
    with AtomicOutput(outputPath, overwrite) as output:
        obj = os.path.join(output.folder, "model.obj")
        mtl = os.path.join(output.folder, "model.mtl")
        with open(obj, "w", encoding="utf-8") as f, open(mtl, "w", encoding="utf-8") as m:
            f.write(f"# DicomToPrint, {coordinateSystem} coordinates, millimetres x {sizeScale:g}\n")
            f.write(f"mtllib {os.path.basename(materialPath)}\n")
            offset = 1
            for index, (name, color, polyData) in enumerate(parts):
                material = f"material{index + 1}"
                m.write(f"newmtl {material}\nKd {color[0]:.4f} {color[1]:.4f} {color[2]:.4f}\n\n")
                f.write(f"o {name}\nusemtl {material}\n")
                points = _fileCoordinates(pointsArray(polyData), coordinateSystem, sizeScale)
                f.writelines(f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in points)
                triangles = trianglesArray(polyData) + offset  # mirroring x and y (LPS) keeps the winding
                f.writelines(f"f {a} {b} {c}\n" for a, b, c in triangles)
                offset += len(points)
        os.replace(mtl, os.path.join(output.folder, os.path.basename(materialPath)))
        written = os.path.join(output.folder, os.path.basename(materialPath))
        if os.path.exists(materialPath) and not overwrite:
            raise DicomToPrintError(f"{materialPath}: file exists; it is kept (use overwrite to replace it)")
        os.replace(written, materialPath)
        return [output.commit(obj), materialPath]


def export3mf(parts, outputPath: str, coordinateSystem: str = LPS, sizeScale: float = 1.0,
              overwrite: bool = False) -> str:
    """Write named, coloured parts as one 3MF file with lib3mf (the 3MF Consortium's library).

    Each part is a mesh object with its name and a base material of its colour; units are millimetres.

    :param parts: (name, (r, g, b) 0-1, closed triangle mesh in RAS) for each part.
    """

    checkChoice("coordinate system", coordinateSystem, COORDINATE_SYSTEMS)
    lib3mf = _lib3mf()
    wrapper = lib3mf.get_wrapper()
    model = wrapper.CreateModel()
    model.SetUnit(lib3mf.ModelUnit.MilliMeter)
    materials = model.AddBaseMaterialGroup()
    for name, color, polyData in parts:
        points = _fileCoordinates(pointsArray(polyData), coordinateSystem, sizeScale)
        vertices = [lib3mf.Position(ctypesFloat3(p)) for p in points]
        triangles = [lib3mf.Triangle(ctypesInt3(t)) for t in trianglesArray(polyData)]
        mesh = model.AddMeshObject()
        mesh.SetName(name)
        mesh.SetGeometry(vertices, triangles)
        rgba = wrapper.RGBAToColor(*(int(round(255 * c)) for c in color), 255)
        materialId = materials.AddMaterial(name, rgba)
        mesh.SetObjectLevelProperty(materials.GetUniqueResourceID(), materialId)
        model.AddBuildItem(mesh, wrapper.GetIdentityTransform())
    with AtomicOutput(outputPath, overwrite) as output:
        temporary = os.path.join(output.folder, "model.3mf")
        model.QueryWriter("3mf").WriteToFile(temporary)
        return output.commit(temporary)


def _lib3mf():
    try:
        import lib3mf
    except ImportError as error:
        raise DicomToPrintError("3MF export needs the lib3mf package: pip install lib3mf (in Slicer: "
                                "slicer.util.pip_install('lib3mf'))") from error
    return lib3mf


def ctypesFloat3(values):
    import ctypes

    return (ctypes.c_float * 3)(*(float(v) for v in values))


def ctypesInt3(values):
    import ctypes

    return (ctypes.c_uint32 * 3)(*(int(v) for v in values))


def read3mf(path: str) -> list[tuple[str, tuple[int, int, int], vtk.vtkPolyData]]:
    """The parts of a 3MF file: (name, (r, g, b) 0-255, mesh), read back with lib3mf."""
    import numpy as np


    wrapper = _lib3mf().get_wrapper()
    model = wrapper.CreateModel()
    model.QueryReader("3mf").ReadFromFile(path)
    parts = []
    objects = model.GetMeshObjects()
    while objects.MoveNext():
        mesh = objects.GetCurrentMeshObject()
        points = np.array([list(v.Coordinates) for v in mesh.GetVertices()], float)
        triangles = np.array([list(t.Indices) for t in mesh.GetTriangleIndices()], np.int64)
        color = (0, 0, 0)
        resourceId, propertyId, has = mesh.GetObjectLevelProperty()
        groups = model.GetBaseMaterialGroups()
        while has and groups.MoveNext():
            group = groups.GetCurrentBaseMaterialGroup()
            if resourceId in (group.GetUniqueResourceID(), group.GetModelResourceID()):
                rgba = group.GetDisplayColor(propertyId)
                color = (rgba.Red, rgba.Green, rgba.Blue)
        parts.append((mesh.GetName(), color, polyDataFromArrays(points, triangles)))
    return parts


def readObj(path: str) -> vtk.vtkPolyData:
    """An OBJ file's triangles as one mesh (all parts)."""
    reader = vtk.vtkOBJReader()
    reader.SetFileName(path)
    reader.Update()
    output = vtk.vtkPolyData()
    output.ShallowCopy(reader.GetOutput())
    return output
