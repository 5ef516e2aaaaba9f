"""DicomToPrint: a CT or MR DICOM series to a validated, print-ready STL, as a Slicer scripted module.

The work is done by the GUI-free library DicomToPrintLib (beside this file), which also runs on a plain Python
install with slicer-core. This file is the Slicer-facing layer: the module description, a Logic that works on
``slicer.mrmlScene``, and a Test that runs the project's whole test suite inside Slicer.
"""

import os
import unittest

import qt
import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
)

import DicomToPrintLib

#
# DicomToPrint
#


class DicomToPrint(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "DICOM to Print"
        self.parent.categories = ["Segmentation", "Surface Models"]
        self.parent.dependencies = ["Segmentations", "Volumes"]
        self.parent.contributors = ["DicomToPrint developers"]
        self.parent.helpText = """
Turns a CT or MR DICOM series into a validated, watertight, print-ready STL: find and load the series, threshold
(presets or automatic), keep the largest island, smooth - with the algorithms of Slicer's Segment Editor
effects - then Slicer's closed-surface conversion, a decimation that keeps the mesh closed, a validation of the
mesh, and Slicer's STL export in LPS millimetres.
<br><br>
From the Python console:
<pre>
import DicomToPrintLib
result = DicomToPrintLib.DicomToPrintLogic().run("/path/to/dicom", "/tmp/model.stl", preset="CT bone")
</pre>
See the <a href="https://github.com/dicomtoprint/SlicerDicomToPrint#readme">documentation</a>.
"""
        # The icon is found beside the module (built extension) or at the top of a source checkout.
        self.parent.icon = qt.QIcon(resourcePath("Icons/DicomToPrint.png"))
        self.parent.acknowledgementText = """
Built on 3D Slicer's Segmentations module (segment editor logic, segmentation conversion and export) by
Csaba Pinter, Andras Lasso (PerkLab, Queen's University) and the Slicer community, and on VTK, ITK and pydicom.
"""

    def resourcePath(self, filename):
        """Path of a resource: beside the module when built or installed, at the extension's top level in a
        source checkout added through Application Settings > Modules."""
        return resourcePath(filename)


def resourcePath(filename: str) -> str:
    moduleDir = os.path.dirname(os.path.abspath(__file__))
    for base in (os.path.join(moduleDir, "Resources"), os.path.join(moduleDir, os.pardir, "Resources")):
        candidate = os.path.normpath(os.path.join(base, filename))
        if os.path.exists(candidate):
            return candidate
    return os.path.join(moduleDir, "Resources", filename)


def testSuiteFolder() -> str:
    """The Testing/Python suite: copied beside the module by the build, or the source checkout's own."""
    moduleDir = os.path.dirname(os.path.abspath(__file__))
    for folder in (os.path.join(moduleDir, "DicomToPrintTests"),
                   os.path.join(moduleDir, os.pardir, "Testing", "Python")):
        if os.path.isdir(folder):
            return os.path.normpath(folder)
    raise FileNotFoundError(f"DicomToPrint's test suite was not found beside {moduleDir}")


#
# DicomToPrintLogic
#


class DicomToPrintLogic(ScriptedLoadableModuleLogic, DicomToPrintLib.DicomToPrintLogic):
    """The library's logic on Slicer's scene: ``run()`` for the whole pipeline, and each step on its own.

    Everything is implemented in :class:`DicomToPrintLib.DicomToPrintLogic` so that it works without the
    application too; this class adds what a Slicer module logic has (its parameter node).
    """

    def __init__(self):
        # ScriptedLoadableModuleLogic calls super().__init__(), which is the library logic's: with no scene given,
        # inside Slicer it works on slicer.mrmlScene with the application's module logics.
        ScriptedLoadableModuleLogic.__init__(self)


#
# DicomToPrintTest
#


class DicomToPrintTest(ScriptedLoadableModuleTest):
    """Runs the project's test suite (Testing/Python, plain unittest cases) inside Slicer."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_DicomToPrintSuite()

    def test_DicomToPrintSuite(self):
        self.delayDisplay("Running the DicomToPrint test suite")
        suite = unittest.defaultTestLoader.discover(testSuiteFolder(), pattern="*Test.py")
        result = unittest.TextTestRunner(verbosity=2).run(suite)
        self.assertTrue(result.wasSuccessful(), f"{len(result.failures)} failures, {len(result.errors)} errors")
        self.delayDisplay("DicomToPrint test suite passed")
