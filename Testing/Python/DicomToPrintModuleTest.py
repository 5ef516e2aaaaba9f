"""The module panel, checked without the Slicer application: its .ui, its parameter node against the library's
settings (DicomToPrint.py is read, not imported: it needs Qt), the GUI-free display helpers on a real MRML
scene, and the README's console example. The panel itself is driven inside Slicer by DicomToPrintTest."""

import ast
import contextlib
import dataclasses
import io
import os
import re
import sys
import types
import typing
import unittest
import xml.etree.ElementTree as ET

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

import DicomToPrintTesting as testing
from DicomToPrintLib import DicomToPrintParameters, SlicerContext, dicom, display, export, levels, segment, surface
from DicomToPrintLib.logic import AUTO_THRESHOLD_METHODS

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir))
MODULE_FILE = os.path.join(ROOT, "DicomToPrint", "DicomToPrint.py")
UI_FILE = os.path.join(ROOT, "Resources", "UI", "DicomToPrint.ui")
LIBRARY = os.path.join(ROOT, "DicomToPrint", "DicomToPrintLib")

#: Modules that exist only inside the Slicer application (Qt and the scripted-module framework).
QT_ONLY_MODULES = ("qt", "ctk", "slicer.util", "slicer.ScriptedLoadableModule", "slicer.parameterNodeWrapper")

#: Library settings the panel shows in a widget it fills itself rather than through SlicerParameterName.
BOUND_IN_CODE = {
    # The series list is filled from the folder at run time (a Choice annotation is fixed when the class is
    # made); onSeriesSelected writes the chosen SeriesInstanceUID into the parameter node.
    "series": "seriesComboBox",
}
#: Library settings the panel does not show, and why.
NOT_SHOWN = {
    "writePreview": "the PNG preview is the command line's picture of the model; in Slicer the 3D view shows the "
                    "model coloured by wall thickness, and the panel's export writes only the STL",
}
#: Library settings the parameter node holds in another form (see parametersFromParameterNode).
MAPPED = {
    "minimumThreshold": ("useExplicitThreshold", "thresholdRange"),
    "maximumThreshold": ("useExplicitThreshold", "thresholdRange"),
    "surfaceSmoothingFactor": ("automaticSurfaceSmoothing", "surfaceSmoothingFactor"),
    # the panel's structures are the segmentation's segments, made and coloured in the embedded Segment Editor
    "structures": (),
}
#: Parameter node fields that hold results, not settings: no widget edits them.
RESULT_FIELDS = {"pipelineSegmentId", "printModel"}
#: What each choice setting must offer: everything the library accepts.
LIBRARY_CHOICES = {
    "missingSlices": dicom.MISSING_SLICES,
    "preset": ("", *segment.THRESHOLD_PRESETS),
    "autoThresholdMethod": AUTO_THRESHOLD_METHODS,
    "islandsOperation": segment.ISLANDS_OPERATIONS,
    "smoothingMethod": segment.SMOOTHING_METHODS,
    "surfacePlacement": surface.SURFACE_PLACEMENTS,
    "conversionMethod": tuple(surface.CONVERSION_METHODS),
    "coordinateSystem": export.COORDINATE_SYSTEMS,
    "hollowMode": levels.SHELL_MODES,
    "exportFormat": export.FORMATS,
}


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


# -- DicomToPrint.py, read without the application -------------------------------------------------------------
class WithinRange:
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum


class RangeBounds:
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum


class Choice:
    def __init__(self, choices):
        self.choices = choices


class FloatRange:
    def __init__(self, minimum=0.0, maximum=0.0):
        self.minimum, self.maximum = minimum, maximum


@dataclasses.dataclass
class Field:
    name: str
    type: type
    annotations: tuple
    default: object

    def annotation(self, kind):
        return next((a for a in self.annotations if isinstance(a, kind)), None)


MISSING = object()


def moduleNamespace(tree: ast.Module) -> dict:
    """DicomToPrint.py's constants, parameter node and GUI-free functions, run with stand-ins for Slicer's
    parameter node wrapper: its imports of the library, the standard library and slicer's MRML classes (all
    present on slicer-core), its upper-case constants, and the definitions the tests need."""
    namespace = {"parameterNodeWrapper": lambda classtype: classtype, "WithinRange": WithinRange,
                 "RangeBounds": RangeBounds, "Choice": Choice, "FloatRange": FloatRange, "__name__": "DicomToPrint"}
    wanted = {"DicomToPrintParameterNode", "parametersFromParameterNode", "missingRequirement", "outputPathProblem"}
    for node in tree.body:
        if isinstance(node, ast.Import):
            runs = all(a.name.split(".")[0] in sys.stdlib_module_names | {"DicomToPrintLib", "numpy"}
                       for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            top = (node.module or "").split(".")[0]
            runs = node.level == 0 and (node.module == "slicer" or top in sys.stdlib_module_names
                                        or top == "DicomToPrintLib")
        elif isinstance(node, ast.Assign):
            runs = all(isinstance(t, ast.Name) and t.id.isupper() for t in node.targets)
        else:
            runs = isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name in wanted
        if runs:
            exec(compile(ast.Module([node], type_ignores=[]), MODULE_FILE, "exec"), namespace)  # noqa: S102
    return namespace


def parameterNodeFields(namespace: dict) -> dict[str, Field]:
    cls = namespace["DicomToPrintParameterNode"]
    fields = {}
    for name, hint in typing.get_type_hints(cls, include_extras=True).items():
        base, annotations = hint, ()
        if typing.get_origin(hint) is typing.Annotated:
            base, *annotations = typing.get_args(hint)
        fields[name] = Field(name, base, tuple(annotations), cls.__dict__.get(name, MISSING))
    return fields


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


def boundWidgets(root) -> dict[str, ET.Element]:
    """SlicerParameterName -> the widget bound to it."""
    bound = {}
    for widget in uiWidgets(root):
        name = widgetProperty(widget, "SlicerParameterName")
        if name:
            bound.setdefault(name, [])
            bound[name].append(widget)
    return bound


class DicomToPrintModuleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.isfile(MODULE_FILE) or not os.path.isfile(UI_FILE):
            raise unittest.SkipTest("runs in a source checkout (the module's sources are not installed here)")
        cls.source = read(MODULE_FILE)
        cls.tree = ast.parse(cls.source)
        cls.namespace = moduleNamespace(cls.tree)
        cls.fields = parameterNodeFields(cls.namespace)
        cls.ui = ET.parse(UI_FILE).getroot()
        cls.bound = boundWidgets(cls.ui)
        cls.libraryFields = {f.name: f for f in dataclasses.fields(DicomToPrintParameters)}
        cls.libraryTypes = typing.get_type_hints(DicomToPrintParameters)

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
        resources = re.search(r"set\(MODULE_RESOURCES(.*?)\)", cmake, re.S).group(1).split()
        self.assertIn("UI/${MODULE_NAME}.ui", resources)
        loads = [node for node in ast.walk(self.tree) if isinstance(node, ast.Call)
                 and ast.unparse(node.func) == "slicer.util.loadUI"]
        self.assertEqual([ast.unparse(node.args[0]) for node in loads], ["resourcePath('UI/DicomToPrint.ui')"])

    # -- the parameter node against the .ui ------------------------------------------------------------------------
    def test_everyParameterNameIsAFieldWithAWidgetThatCanShowIt(self):
        for name, widgets in self.bound.items():
            with self.subTest(parameter=name):
                self.assertIn(name, self.fields, f"SlicerParameterName {name} is not a parameter node field")
                self.assertEqual(len(widgets), 1, "one widget per setting")
                field, widgetClass = self.fields[name], widgets[0].get("class")
                # what Slicer's parameter node wrapper connectors accept (guiConnectors.py), and this module's
                # ctkPathLineEdit <-> str connector
                if isinstance(field.type, type) and issubclass(field.type, slicer.vtkMRMLNode):
                    self.assertEqual(widgetClass, "qMRMLNodeComboBox")
                    self.assertEqual(widgetProperty(widgets[0], "nodeTypes"), [field.type.__name__])
                elif field.type is bool:
                    self.assertIn(widgetClass, ("QCheckBox", "ctkCheckBox"))
                elif field.annotation(Choice) is not None:
                    self.assertIn(widgetClass, ("QComboBox", "ctkComboBox"))
                elif field.type is str:
                    self.assertIn(widgetClass, ("QLineEdit", "ctkPathLineEdit"))
                elif field.type is FloatRange:
                    self.assertEqual(widgetClass, "ctkRangeWidget")
                    self.assertIsNotNone(field.annotation(RangeBounds), "a range widget needs RangeBounds")
                elif field.type is int:
                    self.assertIn(widgetClass, ("QSpinBox", "QSlider"))
                else:
                    self.assertIs(field.type, float)
                    self.assertIn(widgetClass, ("QDoubleSpinBox", "ctkDoubleSpinBox", "ctkSliderWidget"))
                if widgetClass in ("ctkSliderWidget", "QSlider"):
                    self.assertIsNotNone(field.annotation(WithinRange), "a slider needs a bounded value")

    def test_everyLibrarySettingIsShown(self):
        shown = set(self.bound)
        for name in self.libraryFields:
            with self.subTest(setting=name):
                if name in NOT_SHOWN:
                    self.assertNotIn(name, shown)
                    self.assertGreater(len(NOT_SHOWN[name]), 20, "say why")
                elif name in BOUND_IN_CODE:
                    self.assertNotIn(name, shown)
                    self.assertIn(BOUND_IN_CODE[name], {w.get("name") for w in uiWidgets(self.ui)})
                elif name in MAPPED:
                    self.assertTrue(set(MAPPED[name]) <= shown, f"{MAPPED[name]} shown for {name}")
                else:
                    self.assertIn(name, shown, f"the library's setting {name} has no widget in the panel")
                    self.assertIn(name, self.fields)
        # and the parameter node has nothing the panel does not show, except results
        self.assertEqual(set(self.fields) - shown, set(BOUND_IN_CODE) | set(NOT_SHOWN) | RESULT_FIELDS)
        self.assertTrue(set(NOT_SHOWN) | set(BOUND_IN_CODE) | set(MAPPED) <= set(self.libraryFields),
                        "the lists name only settings the library has")

    def test_seriesListWritesTheParameterNode(self):
        widget = next(n for n in self.tree.body if isinstance(n, ast.ClassDef) and n.name == "DicomToPrintWidget")
        methods = {f.name: f for f in widget.body if isinstance(f, ast.FunctionDef)}
        assigned = {ast.unparse(t) for n in ast.walk(methods["onSeriesSelected"]) if isinstance(n, ast.Assign)
                    for t in n.targets}
        self.assertEqual(assigned, {"self._parameterNode.series"})
        connections = {ast.unparse(n) for n in ast.walk(methods["setup"]) if isinstance(n, ast.Call)
                       and isinstance(n.func, ast.Attribute) and n.func.attr == "connect"}
        self.assertIn("self.ui.seriesComboBox.connect('currentIndexChanged(int)', self.onSeriesSelected)",
                      connections)

    def test_parameterNodeDefaultsAreTheLibrarys(self):
        library = DicomToPrintParameters()
        for name in self.libraryFields:
            if name in MAPPED:
                continue
            with self.subTest(setting=name):
                self.assertIn(name, self.fields, f"the parameter node lacks the library's setting {name}")
                node = self.fields[name]
                self.assertEqual(node.default, getattr(library, name))
                self.assertIs(node.type, self.libraryTypes[name], "same type as the library's")
        # the optional settings: off / automatic by default, as the library's None
        self.assertIsNone(library.minimumThreshold)
        self.assertIsNone(library.maximumThreshold)
        self.assertIs(self.fields["useExplicitThreshold"].default, False)
        self.assertIsNone(library.surfaceSmoothingFactor)
        self.assertIs(self.fields["automaticSurfaceSmoothing"].default, True)
        self.assertEqual(self.fields["surfaceSmoothingFactor"].default, library.smoothingFactor)
        self.assertEqual(self.fields["surfaceSmoothingFactor"].default,
                         surface.DEFAULT_SMOOTHING[library.surfacePlacement])

    def nodeWithDefaults(self, **changes):
        values = {name: field.default for name, field in self.fields.items() if field.default is not MISSING}
        values["thresholdRange"] = FloatRange()
        values.update(changes)
        return types.SimpleNamespace(**values)

    def test_conversionToTheLibrarysParameters(self):
        convert = self.namespace["parametersFromParameterNode"]
        self.assertEqual(convert(self.nodeWithDefaults()), DicomToPrintParameters())
        # the automatic threshold shown in thresholdRange is not an explicit range until asked for
        self.assertEqual(convert(self.nodeWithDefaults(thresholdRange=FloatRange(500.0, 900.0))),
                         DicomToPrintParameters())
        explicit = convert(self.nodeWithDefaults(useExplicitThreshold=True, thresholdRange=FloatRange(300.0, 2000.0)))
        self.assertEqual((explicit.minimumThreshold, explicit.maximumThreshold), (300.0, 2000.0))
        smoothing = convert(self.nodeWithDefaults(automaticSurfaceSmoothing=False, surfaceSmoothingFactor=0.35))
        self.assertEqual(smoothing.surfaceSmoothingFactor, 0.35)
        self.assertEqual(convert(self.nodeWithDefaults(surfaceSmoothingFactor=0.35)).surfaceSmoothingFactor, None)
        others = convert(self.nodeWithDefaults(targetTriangles=1234, preset="CT bone", coordinateSystem="RAS",
                                               series="1.2.3", overwrite=True))
        self.assertEqual((others.targetTriangles, others.preset, others.coordinateSystem, others.series,
                          others.overwrite), (1234, "CT bone", "RAS", "1.2.3", True))
        missing = self.nodeWithDefaults()
        del missing.kernelSizeMm
        with self.assertRaises(AttributeError):  # a setting the node lacks is not silently defaulted
            convert(missing)

    def test_rangesAndChoicesAreTheLibrarys(self):
        for name, field in self.fields.items():
            within, choice = field.annotation(WithinRange), field.annotation(Choice)
            librarySetting = name if name in self.libraryFields else None
            with self.subTest(field=name):
                if choice is not None:
                    self.assertIn(name, LIBRARY_CHOICES, "a choice the test does not know")
                    self.assertEqual(tuple(choice.choices), tuple(LIBRARY_CHOICES[name]))
                    self.assertIn(field.default, choice.choices)
                    for value in choice.choices:
                        DicomToPrintParameters(**{name: value}).validate()
                if within is not None:
                    self.assertLessEqual(within.minimum, field.default)
                    self.assertLessEqual(field.default, within.maximum)
                    self.assertIsNotNone(librarySetting, f"{name} has a range but is no library setting")
                    # every value the widget allows is one the library accepts
                    for value in (within.minimum, within.maximum):
                        DicomToPrintParameters(**{name: field.type(value)}).validate()
        bounds = self.fields["thresholdRange"].annotation(RangeBounds)
        self.assertLessEqual(bounds.minimum, -1024.0)
        self.assertGreaterEqual(bounds.maximum, 65535.0, "any CT or 16-bit MR value can be a threshold")

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
        self.assertIn("presetComboBox", quoted)
        self.assertEqual(quoted - names - {"missingRequirementLabel"}, set())
        for name in self.namespace["LABELLED_COMBO_BOXES"]:
            comboBox = next(w for w in uiWidgets(self.ui) if w.get("name") == name)
            self.assertIsNotNone(self.fields[widgetProperty(comboBox, "SlicerParameterName")].annotation(Choice))

    # -- the Slicer version and the library ------------------------------------------------------------------------
    def test_olderSlicerGetsAMessageInsteadOfAnImportError(self):
        guarded = [node for node in self.tree.body if isinstance(node, ast.Try)
                   and any(isinstance(n, ast.ImportFrom) and n.module == "slicer.parameterNodeWrapper"
                           for n in node.body)]
        self.assertEqual(len(guarded), 1)
        unguarded = [node for node in self.tree.body if isinstance(node, ast.ImportFrom)
                     and (node.module or "").startswith("slicer.parameterNodeWrapper")]
        self.assertEqual(unguarded, [])
        block = guarded[0]
        self.assertEqual([ast.unparse(h.type) for h in block.handlers], ["ImportError"])
        imported = {alias.asname or alias.name for n in block.body if isinstance(n, ast.ImportFrom)
                    for alias in n.names}
        defined = set()
        for node in ast.walk(ast.Module(block.handlers[0].body, type_ignores=[])):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
        self.assertEqual(imported - defined, set(), "everything the module uses is defined on an older Slicer too")

        missingRequirement = self.namespace["missingRequirement"]
        oldSlicer = types.SimpleNamespace(app=types.SimpleNamespace(applicationVersion="5.8.1"))
        newSlicer = types.SimpleNamespace(app=types.SimpleNamespace(applicationVersion="5.10.0"),
                                          vtkSlicerSegmentEditorLogic=object)
        try:
            self.namespace["slicer"] = oldSlicer
            message = missingRequirement()
            self.assertIn("5.10", message)
            self.assertIn("5.8.1", message)
            self.namespace["slicer"] = newSlicer
            self.namespace["PARAMETER_NODE_WRAPPER_PROBLEM"] = ""
            self.assertEqual(missingRequirement(), "")
            self.namespace["PARAMETER_NODE_WRAPPER_PROBLEM"] = "no FloatRange"
            self.assertIn("no FloatRange", missingRequirement())
        finally:
            self.namespace["slicer"] = slicer
            self.namespace.pop("PARAMETER_NODE_WRAPPER_PROBLEM")
        # the panel asks before it loads the .ui
        widget = next(n for n in self.tree.body if isinstance(n, ast.ClassDef) and n.name == "DicomToPrintWidget")
        setup = next(f for f in widget.body if isinstance(f, ast.FunctionDef) and f.name == "setup")
        calls = [ast.unparse(n.func) for n in ast.walk(setup) if isinstance(n, ast.Call)]
        self.assertLess(calls.index("missingRequirement"), calls.index("slicer.util.loadUI"))

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

    def test_outputPathProblems(self):
        problem = self.namespace["outputPathProblem"]
        folder = testing.temporaryFolder(self)
        self.assertEqual(problem(os.path.join(folder, "model.STL")), "")
        self.assertIn("Choose", problem(""))
        self.assertIn(".stl", problem(os.path.join(folder, "model.obj")))
        self.assertEqual(problem(os.path.join(folder, "model.3mf"), "3MF"), "")
        self.assertEqual(problem(os.path.join(folder, "model.stl"), "OBJ"),
                         "The output file name must end with .obj (the format is OBJ)")
        self.assertIn("does not exist", problem(os.path.join(folder, "missing", "model.stl")))

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
