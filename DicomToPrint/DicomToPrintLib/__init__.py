"""DicomToPrint's GUI-free library: a DICOM series to a validated, print-ready STL on Slicer's own libraries.

Imports only slicer (MRML and logic classes), vtk, numpy, SimpleITK and pydicom, so it runs unchanged inside
the Slicer application and on PyPI's slicer-core. The modules read as the pipeline:
:mod:`.dicom` -> :mod:`.segment` -> :mod:`.surface` -> :mod:`.mesh` -> :mod:`.validate` -> :mod:`.export`,
with :mod:`.logic` running them in one call.
"""

from .logic import DicomToPrintLogic, DicomToPrintParameters, DicomToPrintResult
from .runtime import DicomToPrintError, ProcessingCancelled, SlicerContext, __version__

__all__ = [
    "DicomToPrintError",
    "DicomToPrintLogic",
    "DicomToPrintParameters",
    "DicomToPrintResult",
    "ProcessingCancelled",
    "SlicerContext",
    "__version__",
]
