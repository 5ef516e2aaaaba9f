"""fast-simplification in a process of its own (run by :func:`.mesh.simplify`; imports numpy and
fast_simplification only, so that it starts in a tenth of a second).

Why a process: the simplification is one long call that holds Python's lock (nothing else can run, a Cancel
cannot be answered, for 2 to 10 s on a full-size scan), and its library keeps its largest working arrays
allocated after it returns (470 MB after a 1.6-million-triangle surface). A process can be stopped at once, and
gives all its memory back when it ends.

The exchange, on the standard streams, in this machine's byte order: in, four int64 (points, triangles, target
triangle count, aggressiveness), the points (float64, 3 per point), the triangles (int32, 3 per triangle); out,
two int64 (points, triangles) and the simplified arrays the same way. Any failure: a message on stderr and a
non-zero exit.
"""

import sys


def _readInto(stream, array) -> None:
    view, done = memoryview(array).cast("B"), 0
    while done < len(view):
        count = stream.readinto(view[done:])
        if not count:
            raise EOFError(f"the input ended after {done} of {len(view)} bytes")
        done += count


def main() -> int:
    import fast_simplification
    import numpy as np

    source, sink = sys.stdin.buffer, sys.stdout.buffer
    header = np.empty(4, np.int64)
    _readInto(source, header)
    points, triangles, target, aggressiveness = header.tolist()
    vertices, faces = np.empty((points, 3), np.float64), np.empty((triangles, 3), np.int32)
    _readInto(source, vertices)  # read into writable arrays: the library does not take read-only ones
    _readInto(source, faces)
    outPoints, outFaces = fast_simplification.simplify(vertices, faces, target_count=target, agg=aggressiveness)
    outPoints = np.ascontiguousarray(outPoints, np.float64)
    outFaces = np.ascontiguousarray(outFaces, np.int32)
    sink.write(np.array([len(outPoints), len(outFaces)], np.int64).tobytes())
    sink.write(outPoints.tobytes())
    sink.write(outFaces.tobytes())
    sink.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
