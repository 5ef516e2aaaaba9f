"""The jobs this package runs in a process of its own (started by :func:`.runtime.helperCommand`; each job
imports only what it needs, so that it starts fast):

- ``simplify``: fast-simplification, for :class:`.mesh.Simplification`.
- ``convert``: Slicer's "Fractional labelmap to closed surface" conversion, for :class:`.surface.SurfaceConversion`.

Why a process: each is one long call that holds Python's lock, so a Cancel cannot be answered while it runs
(fast-simplification 2 to 10 s on a full-size scan; ``vtkSegmentation.CreateRepresentation`` 4 s on a 512 x 512 x
1000 scan, 12 s on 2000 slices). A process can be stopped at once, and gives all its memory back when it ends
(fast-simplification keeps its largest working arrays, 470 MB after a 1.6-million-triangle surface). The
conversion's process is started before the fraction map is made, so that its imports are done by the time the
labelmap comes.

The exchanges, on the standard streams, in this machine's byte order. Any failure: a message on stderr and a
non-zero exit.

- ``simplify``: in, six int64 (points, triangles, the part's triangles, target triangle count, aggressiveness,
  measure), the guard (three float64: axis, limit, side; see :class:`.mesh.SimplificationPart`), the points
  (float64, 3 per point), the triangles (int32, 3 per triangle; the part to simplify first, then the other part's
  near the cut). Out, in frames (an int64 byte count, then the bytes): two int64 (points, triangles) and the part's
  simplified arrays the same way; with ``measure``, then each simplified point's squared distance to the surface
  (float64; NaN where the triangles sent do not prove it, see :func:`unproven`).
- ``convert``: in, one int64 (the length of a header), the header (UTF-8 JSON: "extent", "imageToWorld" (16
  numbers, row by row), "scalarRange", "parameters" (the conversion parameters, names and values as text),
  "threads" (VTK's)), the labelmap's voxels (int8, i fastest); out, one int64 (the length of a header), the header
  (JSON: "pointType", "indexType" (numpy's names), "points", "offsets" (0 where all polygons are triangles),
  "connectivity", "sentIndexType"), the points (3 per point), the polygons' offsets (int64) and connectivity
  (sentIndexType: 32-bit where the indices fit; stored as indexType).
"""

import sys

#: How much the ``simplify`` helpers give way to the caller (Unix niceness).
NICENESS = 10


def _readInto(stream, array) -> None:
    view, done = memoryview(array).cast("B"), 0
    while done < len(view):
        count = stream.readinto(view[done:])
        if not count:
            raise EOFError(f"the input ended after {done} of {len(view)} bytes")
        done += count


def simplifyPart(vertices, faces, part: int, target: int, aggressiveness: float):
    """fast-simplification of the first ``part`` of ``faces``; where that is not all of them, its cut across the
    surface (its open border) stays where it is, so that the parts fit together again. Returns (points, faces)."""
    import fast_simplification
    import numpy as np

    used = np.zeros(len(vertices), bool)
    used[faces[:part].ravel()] = True
    index = (np.cumsum(used) - 1).astype(np.int32)
    # the part's own points, in their order, in writable arrays (the library does not take read-only ones)
    points, triangles = fast_simplification.simplify(
        np.array(vertices[used], np.float64), index[faces[:part]], target_count=target, agg=aggressiveness,
        preserve_border=part < len(faces))
    return np.ascontiguousarray(points, np.float64), np.ascontiguousarray(triangles, np.int32)


def closestSquaredDistances(locator, points, between=None):
    """The squared distance from each of ``points`` to the nearest point of a VTK cell ``locator``'s triangles
    (:func:`.meshdata.surfaceDeviation` measures with it too); ``between()`` is called every 8192 points."""
    import numpy as np
    from vtkmodules.vtkCommonCore import reference

    closest, cellId, subId, squared = [0.0, 0.0, 0.0], reference(0), reference(0), reference(0.0)
    result = np.empty(len(points))
    for i, point in enumerate(np.asarray(points, np.float64).tolist()):
        if between is not None and i % 8192 == 0:
            between()
        locator.FindClosestPoint(point, closest, cellId, subId, squared)
        result[i] = squared.get()
    return result


def squaredDistancesTo(vertices, faces, points):
    """The squared distance from each of ``points`` to the nearest point of the triangles (``faces`` into
    ``vertices``), with VTK's static cell locator."""
    import numpy as np
    from vtkmodules.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData, vtkStaticCellLocator

    mesh = vtkPolyData()
    corners = vtkPoints()
    corners.SetData(numpy_to_vtk(np.ascontiguousarray(vertices, np.float64), deep=True))
    mesh.SetPoints(corners)
    cells = vtkCellArray()
    cells.SetData(numpy_to_vtkIdTypeArray(np.arange(0, 3 * len(faces) + 1, 3, dtype=np.int64), deep=True),
                  numpy_to_vtkIdTypeArray(np.asarray(faces, np.int64).ravel(), deep=True))
    mesh.SetPolys(cells)
    locator = vtkStaticCellLocator()
    locator.SetDataSet(mesh)
    locator.BuildLocator()
    return closestSquaredDistances(locator, points)


def unproven(points, squared, guard):
    """Which of the distances measured on a part of the surface may be longer than to the whole: those of the
    points nearer to the guard's limit than to the part (every triangle left out lies at the limit or beyond, on
    the guard's side). ``guard``: (axis, limit, side), side 0 when nothing was left out."""
    import numpy as np

    axis, limit, side = guard
    if side == 0:
        return np.zeros(len(points), bool)
    room = side * (limit - points[:, int(axis)])  # how far the nearest triangle left out can be, at least
    return (room < 0) | (squared > room * room)


def simplify() -> int:
    import os

    if hasattr(os, "nice"):  # started early, it imports while the caller makes the surface, which goes first
        os.nice(NICENESS)
    import fast_simplification  # noqa: F401 (imported before the input comes)
    import numpy as np
    import vtkmodules.vtkCommonDataModel  # noqa: F401

    source, sink = sys.stdin.buffer, sys.stdout.buffer

    def frame(*arrays) -> None:
        data = b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)
        sink.write(np.array([len(data)], np.int64).tobytes())
        sink.write(data)
        sink.flush()

    header = np.empty(6, np.int64)
    _readInto(source, header)
    points, triangles, part, target, aggressiveness, measure = header.tolist()
    guard = np.empty(3, np.float64)
    _readInto(source, guard)
    vertices, faces = np.empty((points, 3), np.float64), np.empty((triangles, 3), np.int32)
    _readInto(source, vertices)
    _readInto(source, faces)
    outPoints, outFaces = simplifyPart(vertices, faces, part, target, aggressiveness)
    frame(np.array([len(outPoints), len(outFaces)], np.int64), outPoints, outFaces)
    if measure:  # while the caller repairs the joined mesh
        squared = squaredDistancesTo(vertices, faces, outPoints)
        squared[unproven(outPoints, squared, guard.tolist())] = np.nan  # the caller measures those
        frame(squared)
    return 0


def convert() -> int:
    import json

    import numpy as np
    import slicer
    import vtk
    from vtk.util import numpy_support

    source, sink = sys.stdin.buffer, sys.stdout.buffer
    length = np.empty(1, np.int64)
    _readInto(source, length)
    header = json.loads(source.read(int(length[0])).decode("utf-8"))
    extent = [int(v) for v in header["extent"]]
    size = [extent[2 * a + 1] - extent[2 * a] + 1 for a in range(3)]
    voxels = np.empty(int(np.prod(size)), np.int8)
    _readInto(source, voxels)

    if header.get("threads"):  # the caller's: the surface is the same with any number
        smp = vtk.vtkSMPTools()
        smp.SetBackend("STDThread")
        smp.Initialize(int(header["threads"]))
    image = slicer.vtkOrientedImageData()
    image.SetExtent(extent)
    matrix = vtk.vtkMatrix4x4()
    matrix.DeepCopy(header["imageToWorld"])
    image.SetImageToWorldMatrix(matrix)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(voxels, deep=False, array_type=vtk.VTK_SIGNED_CHAR))
    scalarRange = vtk.vtkDoubleArray()
    scalarRange.SetName(slicer.vtkSegmentationConverter.GetScalarRangeFieldName())
    for value in header["scalarRange"]:
        scalarRange.InsertNextValue(value)
    image.GetFieldData().AddArray(scalarRange)

    # the rule, as Slicer's Segmentations logic registers it (its other rules are not needed here)
    slicer.vtkSegmentationConverterFactory.GetInstance().RegisterConverterRule(
        slicer.vtkFractionalLabelmapToClosedSurfaceConversionRule())
    fractional, closed = "Fractional labelmap", "Closed surface"
    segmentation = slicer.vtkSegmentation()
    segmentation.SetSourceRepresentationName(fractional)
    segment = slicer.vtkSegment()
    segment.AddRepresentation(fractional, image)
    segmentation.AddSegment(segment, "surface")
    for name, value in header["parameters"].items():
        segmentation.SetConversionParameter(name, value)
    if not segmentation.CreateRepresentation(closed, True):
        raise RuntimeError("Slicer could not convert the fractional labelmap to a closed surface")
    polyData = segmentation.GetSegment("surface").GetRepresentation(closed)

    points = numpy_support.vtk_to_numpy(polyData.GetPoints().GetData()) if polyData.GetPoints() else \
        np.zeros((0, 3), np.float32)
    polys = polyData.GetPolys()
    # the connectivity in the cell array's own width; the offsets only where the cells are not all triangles
    # (VTK then stores none: triangles are every third index)
    connectivity = numpy_support.vtk_to_numpy(polys.GetConnectivityArray())
    offsets = np.zeros(0, np.int64) if polys.IsHomogeneous() == 3 else \
        numpy_support.vtk_to_numpy(polys.GetOffsetsArray()).astype(np.int64)
    # sent as 32-bit indices where they fit (half the bytes to write and read), stored as they were
    sent = connectivity.astype(np.int32) if connectivity.dtype.itemsize > 4 and len(points) < 2**31 else connectivity
    reply = json.dumps({"pointType": points.dtype.name, "points": len(points), "offsets": len(offsets),
                        "indexType": connectivity.dtype.name, "sentIndexType": sent.dtype.name,
                        "connectivity": len(connectivity)}).encode("utf-8")
    sink.write(np.array([len(reply)], np.int64).tobytes())
    sink.write(reply)
    for array in (points, offsets, sent):
        sink.write(np.ascontiguousarray(array).data)  # the array's own bytes, not a copy of them
    sink.flush()
    return 0



JOBS = {"simplify": simplify, "convert": convert}

if __name__ == "__main__":
    code = JOBS[sys.argv[1]]()
    # Its output is written and flushed: the process ends at once, without the interpreter's clean-up (freeing
    # every object and module one by one: 0.13 s after a conversion, which the caller waited for).
    sys.stdout.flush()
    sys.stderr.flush()
    import os

    os._exit(code)
