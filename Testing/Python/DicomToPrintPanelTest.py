"""The module panel on Slicer's own code, with each supported Slicer release's parameter node wrapper.

DicomToPrint.py is imported with the ``slicer.parameterNodeWrapper`` that Slicer 5.10.0 and 5.12.3 ship
(``../shared/slicer``), Slicer's ScriptedLoadableModule, slicer-core's MRML, logics and ``slicer.util``, and
stand-ins for the Qt side only (DicomToPrintPanelHarness says which). The real ``connectGui`` binds the .ui's
widgets; the Widget is set up, entered, left, survives a scene close, runs a step that is cancelled half-way
(no file left) and Run all to a printable STL, as Slicer's application would drive it.
"""

import enum
import os
import sys
import typing
import unittest

import numpy as np

import DicomToPrintPanelHarness as harness
import DicomToPrintTesting as testing
from DicomToPrintLib import DicomToPrintParameters, dicom, export, levels, runtime, segment, surface
from DicomToPrintLib.logic import AUTO_THRESHOLD_METHODS

#: Which of Slicer's GUI connectors binds each setting (the module's own for the path line edits).
CONNECTORS = {
    "QComboBox": "QComboBoxToEnumConnector", "QCheckBox": "QCheckBoxToBoolConnector",
    "ctkDoubleSpinBox": "QDoubleSpinBoxCtkSliderWidgetToFloatIntConnector",
    "ctkSliderWidget": "QDoubleSpinBoxCtkSliderWidgetToFloatIntConnector",
    "QSpinBox": "QSliderOrSpinBoxToIntConnector", "QLineEdit": "QLineEditToStrConnector",
    "ctkPathLineEdit": "PathLineEditToStrConnector", "ctkRangeWidget": "ctkRangeWidgetToRangeConnector",
    "qMRMLNodeComboBox": "qMRMLNodeComboBoxToNodeConnector",
}
#: Parameter node fields that hold results or are set by the panel itself, not bound to a widget.
NOT_BOUND = {"pipelineSegmentId": "the segment the Segmentation step made (a result)",
             "printModel": "the model the Mesh step made (a result)",
             "series": "the series list is filled from the folder at run time; onSeriesSelected writes it",
             "writePreview": "the panel writes the model only: the 3D view is the preview"}


def phantomFolder():
    """The hollow sphere (radius 24 to 30 mm), whole in a coarse 96 x 96 x 60 grid."""
    return testing.phantomSeries("shell", shape=(96, 96, 60), spacing=(1.0, 1.0, 1.5))


class PanelTests:
    """The same tests for each Slicer release's wrapper (subclasses set VERSION)."""

    VERSION = ""

    @classmethod
    def setUpClass(cls):
        cls.environment = harness.SlicerEnvironment(cls.VERSION)
        cls.env = cls.environment.__enter__()
        cls.module = cls.env.module

    @classmethod
    def tearDownClass(cls):
        cls.environment.__exit__(None, None, None)

    def setUp(self):
        del harness.ERRORS[:]
        self.env.closeScene()
        self.env.removeParameterNode()
        self.widget = self.env.createWidget()
        self.env.enter(self.widget)
        self.ui, self.node = self.widget.ui, self.widget._parameterNode
        self.addCleanup(self.env.unload, self.widget)

    # -- binding ---------------------------------------------------------------------------------------------------
    def test_everyWidgetOfTheUiIsBound(self):
        connectors = self.node._parameterGUIs[self.widget._parameterNodeGuiTag]
        expected = harness.uiParameterWidgets()
        self.assertEqual(len(expected), 39)
        self.assertEqual(set(connectors), set(expected))
        for name, widgetName in expected.items():
            with self.subTest(parameter=name):
                widget = getattr(self.ui, widgetName)
                self.assertIs(connectors[name].widget(), widget)
                self.assertEqual(type(connectors[name]).__name__, CONNECTORS[type(widget).__name__])
        fields = set(self.module.DicomToPrintParameterNode.allParameters)
        self.assertEqual({name: why for name, why in NOT_BOUND.items() if name in fields}, NOT_BOUND)
        self.assertEqual(fields - set(expected), set(NOT_BOUND))

    def test_aRangeWithoutDefaultDoesNotConnect(self):
        """What broke the panel before (issue 14): Slicer's range connector checks the integer 0 against
        RangeBounds when no Default is given, and the AttributeError escapes connectGui."""
        from typing import Annotated

        from slicer.parameterNodeWrapper import FloatRange, RangeBounds, parameterNodeWrapper

        @parameterNodeWrapper
        class WithoutDefault:
            thresholdRange: Annotated[FloatRange, RangeBounds(-100000.0, 100000.0)]

        node = WithoutDefault(self.env.scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode"))
        gui = type("Gui", (), {})()
        gui.thresholdRangeWidget = harness.ctkRangeWidget()
        gui.thresholdRangeWidget.setProperty("SlicerParameterName", "thresholdRange")
        with self.assertRaisesRegex(AttributeError, "'int' object has no attribute 'minimum'"):
            node.connectGui(gui)

    def test_valuesGoBothWays(self):
        """Every bound setting: written on the parameter node, the widget shows it; set in the widget (as a user
        would), the parameter node has it."""
        from slicer.parameterNodeWrapper import FloatRange
        from slicer.parameterNodeWrapper.util import splitAnnotations

        scene = self.env.scene
        volumes = [scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"volume {i}") for i in range(2)]
        nodes = {"inputVolume": volumes, "segmentation": [scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
                                                          for _ in range(2)],
                 "reportTable": [scene.AddNewNodeByClass("vtkMRMLTableNode") for _ in range(2)]}
        folders = [testing.temporaryFolder(self) for _ in range(2)]
        for name, widgetName in harness.uiParameterWidgets().items():
            widget = getattr(self.ui, widgetName)
            kind, annotations = splitAnnotations(self.node.dataType(name))
            with self.subTest(parameter=name), harness.noErrors(self):
                if name in nodes:
                    first, second = nodes[name]
                    setattr(self.node, name, first)
                    self.assertIs(widget.currentNode(), first)
                    widget.setCurrentNode(second)
                    self.assertIs(getattr(self.node, name), second)
                    scene.RemoveNode(second)  # the node goes: the selector and the parameter both say None
                    self.assertIsNone(widget.currentNode())
                    self.assertIsNone(getattr(self.node, name))
                elif isinstance(kind, type) and issubclass(kind, enum.Enum):
                    members = list(kind)
                    self.assertEqual([widget.itemText(i) for i in range(widget.count)], [m.label() for m in members])
                    setattr(self.node, name, members[-1])
                    self.assertEqual((widget.currentIndex, widget.currentText), (len(members) - 1,
                                                                                  members[-1].label()))
                    widget.currentIndex = 0
                    self.assertIs(getattr(self.node, name), members[0])
                elif kind is bool:
                    default = getattr(self.node, name)
                    setattr(self.node, name, not default)
                    self.assertIs(widget.checked, not default)
                    widget.click()
                    self.assertIs(getattr(self.node, name), default)
                elif kind is str:
                    values = folders if widgetName.endswith("PathLineEdit") else ["Skull", "Teeth"]
                    setattr(self.node, name, values[0])
                    self.assertEqual(widget.currentPath if hasattr(widget, "currentPath") else widget.text, values[0])
                    if hasattr(widget, "currentPath"):
                        widget.currentPath = values[1]
                    else:
                        widget.text = values[1]
                    self.assertEqual(getattr(self.node, name), values[1])
                elif kind is FloatRange:
                    self.node.useExplicitThreshold = True
                    self.node.thresholdRange = FloatRange(300.0, 1500.0)
                    self.assertEqual((widget.minimumValue, widget.maximumValue), (300.0, 1500.0))
                    widget.setValues(250.5, 2000.26)  # rounded to the widget's one decimal
                    self.assertEqual((self.node.thresholdRange.minimum, self.node.thresholdRange.maximum),
                                     (250.5, 2000.3))
                else:
                    within = next(a for a in annotations if type(a).__name__ == "WithinRange")
                    self.assertEqual((widget.minimum, widget.maximum), (within.minimum, within.maximum))
                    low, high = within.minimum, min(within.maximum, within.minimum + 10)
                    first, second = (kind(low + (high - low) * f) for f in (0.25, 0.75))
                    first, second = (round(v, widget.decimals) if kind is float else v for v in (first, second))
                    if name == "surfaceSmoothingFactor":
                        self.node.automaticSurfaceSmoothing = False  # else the placement's default is shown
                    setattr(self.node, name, first)
                    self.assertEqual(widget.value, first)
                    widget.value = second
                    self.assertEqual(getattr(self.node, name), second)

    def test_parameterNodeIsTheLibrarysSettings(self):
        """Defaults, choices and ranges are the library's, and the node converts to its settings."""
        from slicer.parameterNodeWrapper import FloatRange
        from slicer.parameterNodeWrapper.util import splitAnnotations

        module, node = self.module, self.node
        self.assertEqual(module.parametersFromParameterNode(node), DicomToPrintParameters(writePreview=False))
        choices = {"inputSource": ("DICOM_FOLDER", "SCENE_VOLUME"), "missingSlices": dicom.MISSING_SLICES,
                   "preset": ("", *segment.THRESHOLD_PRESETS), "autoThresholdMethod": AUTO_THRESHOLD_METHODS,
                   "islandsOperation": segment.ISLANDS_OPERATIONS, "smoothingMethod": segment.SMOOTHING_METHODS,
                   "surfacePlacement": surface.SURFACE_PLACEMENTS,
                   "conversionMethod": tuple(surface.CONVERSION_METHODS),
                   "hollowMode": levels.SHELL_MODES, "exportFormat": export.FORMATS,
                   "coordinateSystem": export.COORDINATE_SYSTEMS}
        enums = {name: kind for name in module.DicomToPrintParameterNode.allParameters
                 if isinstance(kind := splitAnnotations(node.dataType(name))[0], type) and issubclass(kind, enum.Enum)}
        self.assertEqual(set(enums), set(choices))
        for name, kind in enums.items():
            with self.subTest(choice=name):
                self.assertEqual(sorted(m.value for m in kind), sorted(choices[name]))
                self.assertTrue(all(m.label() for m in kind))
                if name != "inputSource":
                    for member in kind:
                        DicomToPrintParameters(**{name: member.value}).validate()
        self.assertEqual({k.value: v for k, v in module.AUTOMATIC_SURFACE_SMOOTHING.items()}, surface.DEFAULT_SMOOTHING)
        self.assertEqual({k.value: v for k, v in module.EXTENSIONS.items()}, export.EXTENSIONS)
        library = typing.get_type_hints(DicomToPrintParameters)
        for name in module.DicomToPrintParameterNode.allParameters:
            kind, annotations = splitAnnotations(node.dataType(name))
            within = next((a for a in annotations if type(a).__name__ == "WithinRange"), None)
            if within is not None:
                with self.subTest(range=name):  # every value the widget allows is one the library accepts
                    self.assertIn(kind, (library[name], *typing.get_args(library[name])))
                    for value in (within.minimum, within.maximum):
                        DicomToPrintParameters(**{name: kind(value)}).validate()
        # the optional settings
        node.thresholdRange = FloatRange(500.0, 900.0)
        self.assertIsNone(module.parametersFromParameterNode(node).minimumThreshold, "shown, not chosen")
        node.useExplicitThreshold = True
        explicit = module.parametersFromParameterNode(node)
        self.assertEqual((explicit.minimumThreshold, explicit.maximumThreshold), (500.0, 900.0))
        node.automaticSurfaceSmoothing, node.surfaceSmoothingFactor = False, 0.35
        self.assertEqual(module.parametersFromParameterNode(node).surfaceSmoothingFactor, 0.35)
        node.automaticSurfaceSmoothing = True
        self.assertEqual(node.surfaceSmoothingFactor, 0.2, "the sub-voxel placement's own factor is shown")
        self.assertIsNone(module.parametersFromParameterNode(node).surfaceSmoothingFactor)
        node.surfacePlacement = module.SurfacePlacement.LABELMAP
        self.assertEqual(node.surfaceSmoothingFactor, 0.5)

    def test_outputPathProblems(self):
        problem, formats = self.module.outputPathProblem, self.module.ExportFormat
        folder = testing.temporaryFolder(self)
        self.assertEqual(problem(os.path.join(folder, "model.STL")), "")
        self.assertEqual(problem(""), "Choose the output STL file")
        self.assertEqual(problem(os.path.join(folder, "model.3mf"), formats.THREE_MF), "")
        self.assertEqual(problem(os.path.join(folder, "model.stl"), formats.OBJ),
                         "The output file name must end with .obj (the format is OBJ)")
        self.assertEqual(problem(os.path.join(folder, "missing", "model.stl")),
                         f"The output folder {os.path.join(folder, 'missing')} does not exist")

    # -- the widget's life -----------------------------------------------------------------------------------------
    def test_enterExitSceneCloseAndCleanup(self):
        """Connected once: entering, leaving and closing the scene neither reconnect (Slicer 5.10's wrapper would
        leak an observer each time) nor lose the binding; the embedded Segment Editor follows SegmentEditor.py."""
        env, widget, ui, node = self.env, self.widget, self.ui, self.node
        editor = ui.segmentEditorWidget
        with harness.noErrors(self):
            self.assertTrue(editor.shortcutsInstalled)
            self.assertEqual(editor.maximumNumberOfUndoStates, 10)
            self.assertEqual(editor.mrmlSegmentEditorNode().GetSingletonTag(), "DicomToPrint")
            parameterNode, tag = node.parameterNode, widget._parameterNodeGuiTag
            observers = harness.vtkObserverCount(parameterNode)
            editor.setActiveEffectByName("Paint")
            env.exit(widget)
            self.assertEqual((editor.shortcutsInstalled, editor.activeEffect()), (False, None))
            self.assertEqual(editor.viewObservationsRemoved, 1)
            for _ in range(3):
                env.enter(widget)
                env.exit(widget)
            env.closeScene()
            env.enter(widget)
            self.assertIs(widget._parameterNode.parameterNode, parameterNode, "the singleton node survives a close")
            self.assertEqual(widget._parameterNodeGuiTag, tag, "not connected again")
            self.assertEqual(harness.vtkObserverCount(parameterNode), observers)
            self.assertTrue(editor.shortcutsInstalled)
            node.targetTriangles = 1234
            self.assertEqual(ui.targetTrianglesSpinBox.value, 1234)
            ui.wallThicknessLimitSpinBox.value = 1.75
            self.assertEqual(node.wallThicknessLimitMm, 1.75)
            # an effect that another extension registers later shows up
            updates = editor.effectListUpdates
            harness.qSlicerSegmentEditorEffectFactory.instance().effectRegistered.emit("Wrap Solidify")
            self.assertEqual(editor.effectListUpdates, updates + 1)

            # the application closes: everything is let go
            editor.setActiveEffectByName("Paint")
            env.unload(widget)
            self.assertEqual((editor.shortcutsInstalled, editor.activeEffect()), (False, None))
            # the widget's observer goes; the wrapper's own goes too from Slicer 5.12 (5.10 never removes it)
            self.assertEqual(harness.vtkObserverCount(parameterNode), observers - (1 if self.VERSION == "v5.10.0"
                                                                                   else 2))
            node.targetTriangles = 4321
            self.assertEqual(ui.targetTrianglesSpinBox.value, 1234, "disconnected")
            harness.qSlicerSegmentEditorEffectFactory.instance().effectRegistered.emit("Another")
            self.assertEqual(editor.effectListUpdates, updates + 1)

    def test_connectingAgainLeaksOnlyOnSlicer510(self):
        """Why the panel connects once: one more connect and disconnect leaves an observer behind on 5.10."""
        parameterNode = self.node.parameterNode
        before = harness.vtkObserverCount(parameterNode)
        self.node.disconnectGui(self.node.connectGui(self.ui))
        leaked = harness.vtkObserverCount(parameterNode) - before
        self.assertEqual(leaked, 1 if self.VERSION == "v5.10.0" else 0)

    def test_reloadReadsTheLibraryAgain(self):
        """Slicer's Reload (slicer.util.reloadScriptedModule) with the module's onReload: DicomToPrintLib is
        imported afresh too, and a new widget is set up in the panel."""
        import sys

        import DicomToPrintLib.logic

        saved = {name: module for name, module in sys.modules.items() if name.startswith("DicomToPrintLib")}
        try:
            with harness.noErrors(self):
                self.widget.onReload()
                newWidget = sys.modules["slicer"].modules.DicomToPrintWidget
                self.assertIsNot(newWidget, self.widget)
                self.assertIsNot(sys.modules["DicomToPrintLib.logic"], DicomToPrintLib.logic)
                self.assertIsNot(newWidget.logic.pipeline.__class__, DicomToPrintLib.logic.DicomToPrintLogic)
                newWidget.cleanup()
        finally:
            for name in [n for n in sys.modules if n.startswith("DicomToPrintLib")]:
                del sys.modules[name]
            sys.modules.update(saved)
            sys.modules["DicomToPrint"] = self.module
            self.env.module = self.module

    # -- running ---------------------------------------------------------------------------------------------------
    def chooseInput(self, outputPath):
        """As a user would: the input from a DICOM folder, the folder, a target, the output file."""
        ui = self.ui
        ui.inputSourceComboBox.currentIndex = list(self.module.InputSource).index(
            self.module.InputSource.DICOM_FOLDER)
        ui.inputDicomFolderPathLineEdit.currentPath = phantomFolder()
        ui.targetTrianglesSpinBox.value = 8000
        ui.outputStlPathLineEdit.currentPath = outputPath

    def test_runAllWritesAPrintableStl(self):
        ui, node, logic = self.ui, self.node, self.widget.logic
        outputPath = os.path.join(testing.temporaryFolder(self), "shell.stl")
        other = self.env.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "another volume")
        node.inputVolume = other  # a volume in the scene does not win over the chosen DICOM folder
        with harness.noErrors(self):
            self.assertFalse(ui.runAllButton.enabled)
            self.assertEqual(ui.runAllButton.toolTip, "Choose an existing DICOM folder")
            self.chooseInput(outputPath)
            self.assertTrue(ui.runAllButton.enabled, ui.runAllButton.toolTip)
            ui.runAllButton.click()

        volume = node.inputVolume
        self.assertNotEqual(volume.GetID(), other.GetID())
        self.assertEqual(volume.GetImageData().GetDimensions(), (96, 96, 60))
        self.assertEqual(ui.seriesComboBox.count, 1)
        self.assertTrue(os.path.isfile(outputPath))
        self.assertEqual(testing.stlHeader(outputPath).rstrip(b"\0"), b"3D Slicer output. SPACE=LPS")
        report = logic.pipeline.validate(export.readStl(outputPath), self.module.parametersFromParameterNode(node))
        self.assertTrue(report.printable, report.reasons)
        self.assertEqual((report.statistics.watertight, report.statistics.nonManifoldEdges), (True, 0))
        self.assertEqual((report.statistics.shells, report.statistics.parts), (2, 1), "a sphere and its cavity")
        exact = 4.0 / 3.0 * np.pi * (30.0**3 - 24.0**3)
        self.assertLess(abs(report.statistics.volumeMm3 / exact - 1.0), 0.02)
        self.assertLessEqual(report.statistics.triangles, 8000)
        self.assertEqual(ui.printableLabel.text, "PRINTABLE")
        self.assertEqual(ui.statusLabel.text, f"Done: Wrote {outputPath} (LPS, mm).")
        self.assertEqual(ui.reportTableView.mrmlTableNode().GetID(), node.reportTable.GetID())
        table = node.reportTable
        self.assertEqual((table.GetCellText(0, 0), table.GetCellText(0, 2)), ("Printable", "pass"))
        self.assertEqual(node.printModel.GetDisplayNode().GetActiveScalarName(), "WallThickness")
        self.assertEqual(ui.segmentEditorWidget.sourceVolumeNode().GetID(), volume.GetID())
        self.assertEqual(self.env.app.overrideCursors, 0, "the wait cursor is restored")
        self.assertTrue(all(getattr(ui, name).enabled for name in self.module.SECTIONS))
        self.assertTrue(ui.exportButton.enabled)
        self.assertFalse(ui.progressBar.visible)

        # again: the series is loaded already, and the file exists (overwrite is off): refused, file kept
        volumes = self.env.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
        modified = os.path.getmtime(outputPath)
        ui.runAllButton.click()
        self.assertEqual(len(harness.ERRORS), 1)
        self.assertIn("file exists; it is kept", harness.ERRORS.pop())
        self.assertEqual(self.env.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"), volumes)
        self.assertEqual(os.path.getmtime(outputPath), modified)
        # an edit of the segmentation makes the mesh out of date
        node.segmentation.GetSegmentation().AddEmptySegment("", "Edit")
        self.assertFalse(ui.exportButton.enabled)
        self.assertEqual(ui.meshInfoLabel.text, "The segmentation changed: create the mesh again.")

    def test_fastSimplificationIsOfferedOnceWhenMissing(self):
        # installed (as on slicer-core): nothing is asked
        with self.assertNoLogs(level="INFO"):
            self.widget.offerFastSimplification()
        self.assertEqual(self.widget.logic.decimationMethod(), "fast-simplification")
        # missing (as in Slicer until it is installed): asked once, the first time a mesh is made; in testing mode
        # Slicer's confirmOkCancelDisplay logs the question and answers Cancel, so VTK's decimation is used
        saved = sys.modules.get("fast_simplification")
        sys.modules["fast_simplification"] = None  # an import of it now fails, as where it is not installed
        self.addCleanup(sys.modules.__setitem__, "fast_simplification", saved)
        self.assertEqual(self.widget.logic.decimationMethod(), "vtkQuadricDecimation")
        with self.assertLogs(level="INFO") as logged:
            self.widget.offerFastSimplification()
        asked = [line for line in logged.output if "faster with the fast-simplification package" in line]
        self.assertEqual(len(asked), 1)
        self.assertTrue(any("Testing mode is enabled: Returning True" in line for line in logged.output))
        with self.assertNoLogs(level="INFO"):
            self.widget.offerFastSimplification()

    def test_aBusyStepCanBeCancelledAndLeavesNoFile(self):
        """While a step runs the sections are disabled and the Segment Editor read-only; Cancel, leaving the
        module or closing the scene stops it inside the long library step, and nothing is written."""
        ui, app = self.ui, self.env.app
        outputPath = os.path.join(testing.temporaryFolder(self), "cancelled.stl")
        self.chooseInput(outputPath)
        seen, busyStates = {}, []

        def userAction(stepText, action):
            def whileRunning():
                text = ui.statusLabel.text
                seen[text] = seen.get(text, 0) + 1
                # the second call with the same text comes from a checkpoint inside the library's step
                if text.startswith(stepText) and seen[text] == 2:
                    busyStates.append((tuple(getattr(ui, n).enabled for n in self.module.SECTIONS),
                                       ui.kernelSizeSpinBox.enabled, ui.segmentEditorWidget.readOnly,
                                       ui.runAllButton.enabled, ui.cancelButton.enabled, ui.cancelButton.visible,
                                       ui.progressBar.visible))
                    action()
                    return True
                return False
            return whileRunning

        interval = runtime.CHECKPOINT_INTERVAL
        runtime.CHECKPOINT_INTERVAL = 0.0  # every checkpoint asks the panel: the step is surely interrupted
        self.addCleanup(setattr, runtime, "CHECKPOINT_INTERVAL", interval)
        for stepText, action, message in (
                ("Decimating and repairing", ui.cancelButton.click, "Cancelled at: Decimating and repairing"),
                ("Creating the surface", lambda: self.env.exit(self.widget), "Cancelled at: Creating the surface"),
                ("Threshold", self.env.closeScene, "Cancelled at: Threshold")):
            with self.subTest(step=stepText), harness.noErrors(self):
                seen.clear()
                self.env.enter(self.widget)
                if not ui.inputDicomFolderPathLineEdit.currentPath:
                    self.chooseInput(outputPath)  # the scene close of the last round reset the settings
                app.whileProcessingEvents(userAction(stepText, action))
                ui.runAllButton.click()
                self.assertEqual(busyStates.pop(), ((False,) * 5, False, True, False, True, True, True))
                self.assertTrue(ui.statusLabel.text.startswith(message), ui.statusLabel.text)
                self.assertFalse(os.path.exists(outputPath))
                self.assertEqual(os.listdir(os.path.dirname(outputPath)), [])
                self.assertEqual(self.widget.logic.meshes, {})
                self.assertEqual(app.overrideCursors, 0)
                self.assertFalse(ui.segmentEditorWidget.readOnly)
                self.assertTrue(all(getattr(ui, n).enabled for n in self.module.SECTIONS))
        # after the scene close the panel is still bound to the (reset) parameter node
        self.node.targetTriangles = 777
        self.assertEqual(ui.targetTrianglesSpinBox.value, 777)

    def test_samplePhantom(self):
        """Sample Data's download button for the module's phantom: the series is written locally and chosen."""
        folder = self.module.loadSamplePhantom()
        self.assertEqual(folder, os.path.join(self.env.app.temporaryPath, "DicomToPrint", "PhantomCT"))
        self.assertEqual(self.node.inputDicomFolder, folder)
        self.assertEqual(self.ui.inputDicomFolderPathLineEdit.currentPath, folder)
        self.assertEqual(len(os.listdir(folder)), 80)
        module = self.env.createModule()
        self.assertEqual(self.env.moduleObject.title, "DICOM to Print")
        self.assertEqual(self.env.moduleObject.contributors, ["DicomToPrint developers (SlicerDicomToPrint project)"])
        self.assertIn(self.module.registerSampleData, self.env.app.startupCompleted.slots)
        self.assertEqual(module.moduleName, "DicomToPrint")
        self.assertTrue(os.path.isfile(self.env.moduleObject.icon.path))


class DicomToPrintPanel510Test(PanelTests, unittest.TestCase):
    """Slicer 5.10.0's parameter node wrapper (the oldest Slicer the module supports)."""

    VERSION = "v5.10.0"


class DicomToPrintPanel512Test(PanelTests, unittest.TestCase):
    """Slicer 5.12.3's parameter node wrapper (the current stable release)."""

    VERSION = "v5.12.3"


if __name__ == "__main__":
    unittest.main()
