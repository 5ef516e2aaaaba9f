"""The module panel's static parts, checked without the Slicer application: its .ui against Slicer's conventions,
where the module finds it, that the library imports nothing Qt-only, the GUI-free display helpers on a real MRML
scene, and the README's console example. The panel itself runs in DicomToPrintPanelTest (through Slicer's own
parameter node wrapper) and, inside Slicer, in DicomToPrintTest."""

import ast
import contextlib
import io
import os
import re
import unittest
import xml.etree.ElementTree as ET

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

import DicomToPrintTesting as testing
from DicomToPrintLib import SlicerContext, display

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir))
MODULE_FILE = os.path.join(ROOT, "DicomToPrint", "DicomToPrint.py")
UI_FILE = os.path.join(ROOT, "DicomToPrint", "Resources", "UI", "DicomToPrint.ui")
LIBRARY = os.path.join(ROOT, "DicomToPrint", "DicomToPrintLib")

#: Modules that exist only inside the Slicer application (Qt and the scripted-module framework).
QT_ONLY_MODULES = ("qt", "ctk", "slicer.util", "slicer.ScriptedLoadableModule", "slicer.parameterNodeWrapper")


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def uiWidgets(root) -> list:
    return list(root.iter("widget"))


def widgetProperty(widget, name):
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            value = list(prop)[0]
            if value.tag == "stringlist":
                return [s.text for s in value.findall("string")]
            if value.tag == "bool":
                return value.text == "true"
            return value.text
    return None


class DicomToPrintModuleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.isfile(MODULE_FILE) or not os.path.isfile(UI_FILE):
            raise unittest.SkipTest("runs in a source checkout (the module's sources are not installed here)")
        cls.source = read(MODULE_FILE)
        cls.tree = ast.parse(cls.source)
        cls.ui = ET.parse(UI_FILE).getroot()

    # -- the .ui -------------------------------------------------------------------------------------------------
    def test_uiIsAWellFormedSlicerPanel(self):
        self.assertEqual(self.ui.tag, "ui")
        self.assertEqual(self.ui.findtext("class"), "DicomToPrint")
        top = self.ui.find("widget")
        self.assertEqual((top.get("class"), top.get("name")), ("qMRMLWidget", "DicomToPrint"))
        names = [w.get("name") for w in uiWidgets(self.ui)]
        self.assertEqual(len(names), len(set(names)), "widget names are unique")
        declared = {c.findtext("class"): c for c in self.ui.iter("customwidget")}
        used = {w.get("class") for w in uiWidgets(self.ui)}
        for cls in used:
            with self.subTest(widgetClass=cls):
                self.assertTrue(cls in declared or re.fullmatch(r"Q[A-Z]\w+", cls), f"{cls} is not declared")
        self.assertEqual(set(declared) - used, set(), "no stale custom widget declarations")
        for cls, element in declared.items():
            self.assertEqual(element.findtext("header"), f"{cls}.h")
        # Every MRML widget gets the scene from the top widget, as in Slicer's module template.
        connected = {(c.findtext("sender"), c.findtext("signal"), c.findtext("receiver"), c.findtext("slot"))
                     for c in self.ui.iter("connection")}
        for widget in uiWidgets(self.ui):
            if widget.get("class").startswith("qMRML") and widget is not top:
                self.assertIn(("DicomToPrint", "mrmlSceneChanged(vtkMRMLScene*)", widget.get("name"),
                               "setMRMLScene(vtkMRMLScene*)"), connected)

    def test_sectionsFollowThePipeline(self):
        layout = self.ui.find("widget").find("layout")
        topLevel = [item.find("widget") for item in layout.findall("item") if item.find("widget") is not None]
        sections = [(w.get("name"), widgetProperty(w, "text")) for w in topLevel
                    if w.get("class") == "ctkCollapsibleButton"]
        self.assertEqual(sections, [("inputCollapsibleButton", "1. Input"),
                                    ("segmentationCollapsibleButton", "2. Segmentation"),
                                    ("meshCollapsibleButton", "3. Mesh"),
                                    ("validationCollapsibleButton", "4. Validation"),
                                    ("exportCollapsibleButton", "5. Export")])
        byName = {w.get("name"): w for w in uiWidgets(self.ui)}

        def inside(section):
            return {w.get("name") for w in byName[section].iter("widget")}

        # one apply per section, Run all and the progress bar with Cancel below them
        self.assertTrue({"findSeriesButton", "loadSeriesButton", "seriesComboBox"} <= inside("inputCollapsibleButton"))
        self.assertIn("segmentButton", inside("segmentationCollapsibleButton"))
        self.assertIn("meshButton", inside("meshCollapsibleButton"))
        self.assertTrue({"validateButton", "reportTableView", "printableLabel"}
                        <= inside("validationCollapsibleButton"))
        self.assertIn("exportButton", inside("exportCollapsibleButton"))
        self.assertEqual([w.get("name") for w in topLevel[len(sections):]],
                         ["runAllButton", "progressLayoutWidget", "statusLabel"])
        self.assertTrue({"progressBar", "cancelButton"} <= {w.get("name") for w in byName["progressLayoutWidget"]
                                                            .iter("widget")})
        # action buttons start disabled: the widget enables them when their inputs are valid
        for name in ("findSeriesButton", "loadSeriesButton", "segmentButton", "meshButton", "validateButton",
                     "exportButton", "runAllButton"):
            self.assertIs(widgetProperty(byName[name], "enabled"), False, name)
        # the Segment Editor is embedded in the Segmentation section, collapsed, without its own node selectors
        editorSection = byName["segmentEditorCollapsibleButton"]
        self.assertIn("segmentEditorCollapsibleButton", inside("segmentationCollapsibleButton"))
        self.assertIs(widgetProperty(editorSection, "collapsed"), True)
        editor = byName["segmentEditorWidget"]
        self.assertEqual(editor.get("class"), "qMRMLSegmentEditorWidget")
        self.assertIn("segmentEditorWidget", {w.get("name") for w in editorSection.iter("widget")})
        self.assertIs(widgetProperty(editor, "segmentationNodeSelectorVisible"), False)
        self.assertIs(widgetProperty(editor, "sourceVolumeNodeSelectorVisible"), False)
        # the folder is picked as a folder, the STL with a save dialog
        self.assertIn("ctkPathLineEdit::Dirs", widgetProperty(byName["inputDicomFolderPathLineEdit"], "filters"))
        self.assertNotIn("ctkPathLineEdit::Files", widgetProperty(byName["inputDicomFolderPathLineEdit"], "filters"))
        outputFilters = widgetProperty(byName["outputStlPathLineEdit"], "filters").split("|")
        self.assertTrue({"ctkPathLineEdit::Files", "ctkPathLineEdit::Writable"} <= set(outputFilters))
        self.assertTrue(any("*.stl" in f for f in widgetProperty(byName["outputStlPathLineEdit"], "nameFilters")))
        self.assertEqual(byName["thresholdRangeWidget"].get("class"), "ctkRangeWidget")
        self.assertEqual(byName["reportTableView"].get("class"), "qMRMLTableView")

    def test_uiIsInTheModuleResourcesAndLoadedThroughResourcePath(self):
        cmake = read(os.path.join(ROOT, "DicomToPrint", "CMakeLists.txt"))
        resources = re.search(r"set\(MODULE_PYTHON_RESOURCES(.*?)\)", cmake, re.S).group(1).split()
        self.assertEqual(resources, ["Resources/Icons/${MODULE_NAME}.png", "Resources/UI/${MODULE_NAME}.ui"])
        # Slicer's macro copies them beside the module (build tree and package), where resourcePath looks
        self.assertIn("RESOURCES ${MODULE_PYTHON_RESOURCES}", cmake)
        self.assertNotIn("configure_file(${PROJECT_SOURCE_DIR}/Resources", cmake)
        loads = [node for node in ast.walk(self.tree) if isinstance(node, ast.Call)
                 and ast.unparse(node.func) == "slicer.util.loadUI"]
        self.assertEqual([ast.unparse(node.args[0]) for node in loads], ["self.resourcePath('UI/DicomToPrint.ui')"])

    def test_panelUsesOnlyWidgetsOfTheUi(self):
        names = {w.get("name") for w in uiWidgets(self.ui)}
        widget = next(n for n in self.tree.body if isinstance(n, ast.ClassDef) and n.name == "DicomToPrintWidget")
        used = {node.attr for node in ast.walk(widget)
                if isinstance(node, ast.Attribute) and ast.unparse(node.value) == "self.ui"}
        self.assertTrue({"segmentEditorWidget", "seriesComboBox", "progressBar", "printableLabel"} <= used)
        self.assertEqual(used - names, set())
        # widget names given as strings (getattr(self.ui, name)) exist too
        suffixes = ("Button", "ComboBox", "SpinBox", "Slider", "Label", "Selector", "LineEdit", "CheckBox", "View")
        quoted = {node.value for node in ast.walk(self.tree) if isinstance(node, ast.Constant)
                  and isinstance(node.value, str) and re.fullmatch(r"[a-z]\w+", node.value)
                  and node.value.endswith(suffixes)}
        self.assertTrue({"segmentButton", "exportInfoLabel", "inputCollapsibleButton"} <= quoted)
        self.assertEqual(quoted - names - {"missingRequirementLabel"}, set())

    def test_moduleImportsTheLibraryOnlyWhenUsed(self):
        """Slicer imports every module's file at startup: the library (pydicom, SimpleITK...) waits until the
        panel or the logic is first used."""
        topLevel = [node for node in self.tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        imported = {alias.name for node in topLevel if isinstance(node, ast.Import) for alias in node.names} | \
            {node.module for node in topLevel if isinstance(node, ast.ImportFrom)}
        self.assertEqual({name for name in imported if name.split(".")[0] in ("DicomToPrintLib", "numpy")}, set())
        self.assertIn("slicer.parameterNodeWrapper", imported)

    def test_libraryImportsNothingQtOnly(self):
        names = sorted(n for n in os.listdir(LIBRARY) if n.endswith(".py"))
        self.assertIn("display.py", names)
        found = []
        for name in names:
            tree = ast.parse(read(os.path.join(LIBRARY, name)))
            for node in ast.walk(tree):
                modules = []
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
                elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                    modules = [f"{node.value.id}.{node.attr}"]  # e.g. slicer.util.arrayFromVolume without import
                found += [f"{name}:{node.lineno} {module}" for module in modules
                          if any(module == m or module.startswith(m + ".") for m in QT_ONLY_MODULES)]
        self.assertEqual(found, [])

    # -- display.py on a real scene --------------------------------------------------------------------------------
    def setUpScene(self):
        self.context = SlicerContext.create()
        return self.context.scene

    @staticmethod
    def sphere(center=(0.0, 0.0, 0.0), radius=10.0):
        source = vtk.vtkSphereSource()
        source.SetCenter(*center)
        source.SetRadius(radius)
        source.SetThetaResolution(24)
        source.SetPhiResolution(12)
        source.Update()
        return source.GetOutput()

    def test_thicknessColors(self):
        self.assertEqual(display.thicknessColor(0.5, 1.0), display.THIN_COLOR)
        self.assertEqual(display.thicknessColor(1.0, 1.0), display.NEAR_LIMIT_COLOR)
        self.assertEqual(display.thicknessColor(2.0, 1.0), display.BONE_COLOR)
        self.assertEqual(display.thicknessColor(float("nan"), 1.0), display.BONE_COLOR)
        middle = display.thicknessColor(3.0, 2.0)  # halfway from the limit to twice the limit
        np.testing.assert_allclose(middle, (np.array(display.NEAR_LIMIT_COLOR) + display.BONE_COLOR) / 2)

    def test_meshModelColouredByWallThickness(self):
        scene = self.setUpScene()
        first, second = self.sphere(), self.sphere((40.0, 0.0, 0.0), 5.0)
        n1, n2 = first.GetNumberOfPoints(), second.GetNumberOfPoints()
        thickness = [np.linspace(0.0, 3.0, n1), np.full(n2, np.nan)]
        model = display.showMeshModel(scene, [first, second], "Print model", thickness=thickness, limitMm=1.5)
        self.assertTrue(scene.IsNodePresent(model))
        polyData = model.GetPolyData()
        points = numpy_support.vtk_to_numpy(polyData.GetPoints().GetData())
        expected = np.vstack([numpy_support.vtk_to_numpy(m.GetPoints().GetData()) for m in (first, second)])
        np.testing.assert_allclose(points, expected)  # the points keep their order: thickness belongs to them
        self.assertEqual(polyData.GetNumberOfPolys(), first.GetNumberOfPolys() + second.GetNumberOfPolys())
        values = numpy_support.vtk_to_numpy(polyData.GetPointData().GetArray(display.THICKNESS_ARRAY_NAME))
        np.testing.assert_allclose(values[:n1], thickness[0], rtol=1e-6)
        self.assertTrue(np.all(values[n1:] >= 2 * 1.5), "no opposite wall: shown as thick")
        displayNode = model.GetDisplayNode()
        self.assertEqual(displayNode.GetActiveScalarName(), display.THICKNESS_ARRAY_NAME)
        self.assertTrue(displayNode.GetScalarVisibility())
        self.assertEqual(displayNode.GetScalarRangeFlag(), slicer.vtkMRMLDisplayNode.UseManualScalarRange)
        self.assertEqual(tuple(displayNode.GetScalarRange()), (0.0, 3.0))
        self.assertTrue(displayNode.GetVisibility2D())
        colorNode = displayNode.GetColorNode()
        self.assertEqual(colorNode.GetNumberOfColors(), display.THICKNESS_COLORS)
        rgba = [0.0] * 4
        for index in (0, 100, 127, 128, 200, 255):
            colorNode.GetColor(index, rgba)
            value = 2.0 * index / (display.THICKNESS_COLORS - 1)  # in units of the limit
            np.testing.assert_allclose(rgba[:3], display.thicknessColor(value, 1.0), atol=1 / 255 + 1e-9)
        colorNode.GetColor(0, rgba)
        np.testing.assert_allclose(rgba[:3], display.THIN_COLOR, atol=1 / 255 + 1e-9)

        # showing again updates the same node, reuses the one colour table, and can show a plain model
        again = display.showMeshModel(scene, [first], modelNode=model)
        self.assertIs(again, model)
        self.assertEqual(again.GetPolyData().GetNumberOfPoints(), n1)
        self.assertFalse(again.GetDisplayNode().GetScalarVisibility())
        self.assertIs(display.thicknessColorNode(scene), colorNode)
        self.assertEqual(scene.GetNumberOfNodesByClass("vtkMRMLModelNode"), 1)
        with self.assertRaisesRegex(ValueError, "wall thickness values"):
            display.showMeshModel(scene, [first], modelNode=model, thickness=[np.zeros(3)])
        display.setModelVisible(model, False)
        self.assertFalse(model.GetDisplayNode().GetVisibility())

    def test_segmentationShownIn3D(self):
        scene = self.setUpScene()
        segmentationNode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        labelmap = slicer.vtkOrientedImageData()
        labelmap.SetDimensions(20, 20, 20)
        labelmap.SetSpacing(1.0, 1.0, 1.0)
        k, j, i = np.mgrid[0:20, 0:20, 0:20]
        ball = ((i - 10) ** 2 + (j - 10) ** 2 + (k - 10) ** 2 <= 36).astype(np.uint8)
        labelmap.GetPointData().SetScalars(numpy_support.numpy_to_vtk(ball.ravel(), deep=True))
        segmentId = segmentationNode.AddSegmentFromBinaryLabelmapRepresentation(labelmap, "Ball")
        display.showSegmentation(segmentationNode)
        closedSurface = vtk.vtkPolyData()
        self.assertTrue(segmentationNode.GetClosedSurfaceRepresentation(segmentId, closedSurface))
        self.assertGreater(closedSurface.GetNumberOfPolys(), 100)
        self.assertTrue(segmentationNode.GetDisplayNode().GetVisibility3D())
        display.showSegmentation(segmentationNode, show3D=False)
        self.assertFalse(segmentationNode.GetDisplayNode().GetVisibility3D())
        self.assertTrue(segmentationNode.GetDisplayNode().GetVisibility2D())

    def test_volumeModality(self):
        scene = self.setUpScene()
        volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
        self.assertEqual(display.volumeModality(volume), "")
        volume.SetAttribute("DICOM.instanceUIDs", "1.2.3")  # Slicer's DICOM browser; no database on slicer-core
        self.assertEqual(display.volumeModality(volume), "")
        display.setVolumeModality(volume, "MR")
        self.assertEqual(display.volumeModality(volume), "MR")
        self.assertEqual(volume.GetAttribute(display.MODALITY_ATTRIBUTE), "MR")

    def test_exportTargets(self):
        path = os.path.join("out", "skull.stl")
        segments = [("s1", "Bone"), ("s2", "Teeth / crowns"), ("s3", "bone")]
        self.assertEqual(display.exportTargets(path, segments, False), [("all segments", ["s1", "s2", "s3"], path)])
        self.assertEqual(display.exportTargets(path, segments[:1], False), [("Bone", ["s1"], path)])
        self.assertEqual(display.exportTargets(path, segments[:1], True), [("Bone", ["s1"], path)])
        self.assertEqual(display.exportTargets(path, segments, True), [
            ("Bone", ["s1"], os.path.join("out", "skull_Bone.stl")),
            ("Teeth / crowns", ["s2"], os.path.join("out", "skull_Teeth_crowns.stl")),
            ("bone", ["s3"], os.path.join("out", "skull_bone_3.stl")),  # not the first one's file on Windows/macOS
        ])
        with self.assertRaises(ValueError):
            display.exportTargets(path, [], True)

    def test_seriesLabel(self):
        entry = {"number": 2, "seriesInstanceUID": "1.2.3", "modality": "CT", "description": "Head 0.6 mm",
                 "seriesNumber": 4, "slices": 212, "size": [512, 512, 212], "spacingMm": [0.45, 0.45, None]}
        self.assertEqual(display.seriesLabel(entry), "2: CT Head 0.6 mm (212 slices, 512 x 512 x 212, "
                                                     "0.45 x 0.45 x ? mm)")
        self.assertEqual(display.seriesLabel({"number": 1, "modality": "MR", "slices": 1}), "1: MR (1 slices)")

    # -- the README --------------------------------------------------------------------------------------------------
    def test_readmeConsoleExampleRuns(self):
        readme = read(os.path.join(ROOT, "README.md"))
        section = re.search(r"^## In Slicer\n(.*?)(?=^## )", readme, re.S | re.M).group(1)
        blocks = re.findall(r"```python\n(.*?)\n```", section, re.S)
        self.assertEqual(len(blocks), 1, "one console example in the In Slicer section")
        code = blocks[0]
        self.assertIn('"/data/CT"', code)
        self.assertIn('"/tmp/model.stl"', code)
        folder = testing.phantomSeries("shell", shape=(60, 60, 30), spacing=(1.2, 1.2, 2.0))
        outputPath = os.path.join(testing.temporaryFolder(self), "model.stl")
        code = code.replace('"/data/CT"', repr(folder)).replace('"/tmp/model.stl"', repr(outputPath))
        printed = io.StringIO()
        namespace = {}
        with contextlib.redirect_stdout(printed):
            exec(compile(code, "README.md (In Slicer)", "exec"), namespace)  # noqa: S102
        self.assertTrue(os.path.isfile(outputPath))
        self.assertEqual(testing.stlHeader(outputPath).rstrip(b"\0"), b"3D Slicer output. SPACE=LPS")
        result = namespace["result"]
        self.assertTrue(result.validation.printable, result.validation.reasons)
        self.assertLessEqual(result.mesh.triangles, 20000)
        self.assertIsNotNone(result.segmentationNode, "keepNodes leaves the nodes in the scene")
        lines = printed.getvalue().splitlines()
        self.assertEqual(lines[0], "1 CT DicomToPrint phantom shell 30 slices")
        self.assertEqual(lines[-1], f"printable {result.mesh.triangles}")


if __name__ == "__main__":
    unittest.main()
