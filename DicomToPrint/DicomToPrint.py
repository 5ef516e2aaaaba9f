"""DicomToPrint: a CT or MR DICOM series to a validated, print-ready STL, as a Slicer scripted module.

The work is done by the GUI-free library DicomToPrintLib (beside this file), which also runs on a plain Python
install with slicer-core. This file is the Slicer-facing layer, as in Slicer's scripted module template: the
module description, the parameter node (every setting, saved with the scene), a thin panel that binds the
parameter node to the .ui and shows progress, a Logic that runs each step on the parameter node and the scene's
nodes, and a Test that runs inside Slicer.

The library is imported when the panel or the logic is first used, not when Slicer starts (Slicer imports every
module's file at startup; the library brings pydicom, SimpleITK and the rest).
"""

import contextlib
import dataclasses
import enum
import logging
import os
import sys
import unittest
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLModelNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import (
    Default,
    FloatRange,
    GuiConnector,
    RangeBounds,
    WithinRange,
    parameterNodeGuiConnector,
    parameterNodeWrapper,
)
from slicer.parameterNodeWrapper.util import unannotatedType
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

#: The panel segments with vtkSlicerSegmentEditorLogic, which Slicer has since this version.
MINIMUM_SLICER_VERSION = "5.10"
#: The phantom the Sample Data module offers (written on the user's computer; nothing is downloaded).
SAMPLE_PHANTOM = "shell"


def missingRequirement() -> str:
    """Why this Slicer cannot run the panel, or "" when it can."""
    if hasattr(slicer, "vtkSlicerSegmentEditorLogic"):
        return ""
    version = getattr(getattr(slicer, "app", None), "applicationVersion", "")
    return _("DICOM to Print needs Slicer {minimum} or newer: it segments with Slicer's vtkSlicerSegmentEditorLogic, "
             "which Slicer {version} does not have. Please install a newer Slicer from "
             "https://download.slicer.org.").format(minimum=MINIMUM_SLICER_VERSION, version=version)


#
# DicomToPrint
#


class DicomToPrint(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DICOM to Print")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation"),
                                  translate("qSlicerAbstractCoreModule", "Surface Models")]
        self.parent.dependencies = ["Segmentations", "Volumes"]
        self.parent.contributors = ["DicomToPrint developers (SlicerDicomToPrint project)"]
        self.parent.helpText = _("""
Turns a CT or MR DICOM series into a validated, watertight, print-ready STL: find and load the series, threshold
(presets or automatic), keep the largest island, smooth - with the algorithms of Slicer's Segment Editor
effects - then a closed surface, a decimation that keeps the mesh closed, a validation of the mesh, and Slicer's
STL export in LPS millimetres.
<br><br>
The panel runs the steps one by one (each section's button) or all at once (Run all); the Segment Editor in the
Segmentation section touches up the segmentation with any of Slicer's effects before the mesh is made.
Sample Data has a CT phantom to try it on.
<br><br>
See the <a href="https://github.com/dicomtoprint/SlicerDicomToPrint#readme">documentation</a>.
""")
        self.parent.acknowledgementText = _("""
Built on 3D Slicer's Segmentations module (segment editor logic, segmentation conversion and export) by
Csaba Pinter, Andras Lasso (PerkLab, Queen's University) and the Slicer community, and on VTK, ITK and pydicom.
""")
        # (the icon is Resources/Icons/DicomToPrint.png, which ScriptedLoadableModule finds by the module's name)
        # Sample Data is set up after the modules: register the phantom once the application has started.
        slicer.app.connect("startupCompleted()", registerSampleData)


def resourcePath(filename: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "Resources", filename)


def registerSampleData():
    """The built-in CT phantom in the Sample Data module: written on this computer, so it works offline."""
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataCategory("DicomToPrint", title=_("DICOM to Print"))
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="DicomToPrint",
        sampleName="DicomToPrintPhantomCT",
        # never downloaded: customDownloader writes the series; Sample Data needs some URI and file name
        uris="https://github.com/dicomtoprint/SlicerDicomToPrint#try-it",
        fileNames="DicomToPrintPhantomCT",
        thumbnailFileName=resourcePath("Icons/DicomToPrint.png"),
        customDownloader=loadSamplePhantom,
    )


def loadSamplePhantom(source=None) -> str:
    """Write the CT phantom (made-up patient data) as a DICOM series in Slicer's temporary folder and set the
    panel to convert it. Returns the folder."""
    from DicomToPrintLib import sampledata

    folder = os.path.join(slicer.app.temporaryPath, "DicomToPrint", "PhantomCT")
    if not os.path.isdir(folder) or not os.listdir(folder):
        os.makedirs(folder, exist_ok=True)
        sampledata.writePhantomSeries(SAMPLE_PHANTOM, folder)
    node = DicomToPrintLogic().getParameterNode()
    node.inputSource = InputSource.DICOM_FOLDER
    node.inputDicomFolder = folder
    return folder


#
# Choices: the library's values, and what the panel shows for them (Slicer's enum combo box connector calls label)
#


class InputSource(enum.Enum):
    DICOM_FOLDER = "DICOM_FOLDER"
    SCENE_VOLUME = "SCENE_VOLUME"

    def label(self):
        return {InputSource.DICOM_FOLDER: _("A DICOM folder (the series chosen below)"),
                InputSource.SCENE_VOLUME: _("A volume in the scene")}[self]


class MissingSlices(enum.Enum):
    INTERPOLATE = "INTERPOLATE"
    REFUSE = "REFUSE"

    def label(self):
        return {MissingSlices.INTERPOLATE: _("Interpolate from the neighbours"),
                MissingSlices.REFUSE: _("Refuse the series")}[self]


class ThresholdPreset(enum.Enum):
    NONE = ""
    CT_BONE = "CT bone"
    CT_SKIN = "CT skin"
    CT_SOFT_TISSUE = "CT soft tissue"

    def label(self):
        return {ThresholdPreset.NONE: _("None (automatic threshold)"), ThresholdPreset.CT_BONE: _("CT bone"),
                ThresholdPreset.CT_SKIN: _("CT skin"), ThresholdPreset.CT_SOFT_TISSUE: _("CT soft tissue")}[self]


class AutoThresholdMethod(enum.Enum):
    ISO50 = "ISO50"
    HUANG = "HUANG"
    INTERMODES = "INTERMODES"
    ISO_DATA = "ISO_DATA"
    KITTLER_ILLINGWORTH = "KITTLER_ILLINGWORTH"
    LI = "LI"
    MAXIMUM_ENTROPY = "MAXIMUM_ENTROPY"
    MOMENTS = "MOMENTS"
    OTSU = "OTSU"
    RENYI_ENTROPY = "RENYI_ENTROPY"
    SHANBHAG = "SHANBHAG"
    TRIANGLE = "TRIANGLE"
    YEN = "YEN"

    def label(self):
        if self is AutoThresholdMethod.ISO50:
            return _("ISO-50 (CT: bone, halfway between soft tissue and cortical bone; MR: the body's surface)")
        # the names of Slicer's Threshold effect methods
        return {"ISO_DATA": "IsoData", "KITTLER_ILLINGWORTH": "Kittler-Illingworth",
                "MAXIMUM_ENTROPY": _("Maximum entropy"), "RENYI_ENTROPY": _("Renyi entropy")}.get(
            self.value, self.value.capitalize())


class IslandsOperation(enum.Enum):
    KEEP_LARGEST_ISLAND = "KEEP_LARGEST_ISLAND"
    REMOVE_SMALL_ISLANDS = "REMOVE_SMALL_ISLANDS"
    NONE = "NONE"

    def label(self):
        return {IslandsOperation.KEEP_LARGEST_ISLAND: _("Keep the largest island"),
                IslandsOperation.REMOVE_SMALL_ISLANDS: _("Remove small islands"),
                IslandsOperation.NONE: _("Keep all")}[self]


class SmoothingMethod(enum.Enum):
    MEDIAN = "MEDIAN"
    MORPHOLOGICAL_OPENING = "MORPHOLOGICAL_OPENING"
    MORPHOLOGICAL_CLOSING = "MORPHOLOGICAL_CLOSING"
    GAUSSIAN = "GAUSSIAN"
    JOINT_TAUBIN = "JOINT_TAUBIN"
    NONE = "NONE"

    def label(self):
        return {SmoothingMethod.MEDIAN: _("Median"), SmoothingMethod.MORPHOLOGICAL_OPENING: _("Opening (removes "
                "extrusions)"), SmoothingMethod.MORPHOLOGICAL_CLOSING: _("Closing (fills holes)"),
                SmoothingMethod.GAUSSIAN: _("Gaussian"), SmoothingMethod.JOINT_TAUBIN: _("Joint smoothing"),
                SmoothingMethod.NONE: _("No smoothing")}[self]


class SurfacePlacement(enum.Enum):
    SUBVOXEL = "SUBVOXEL"
    LABELMAP = "LABELMAP"

    def label(self):
        return {SurfacePlacement.SUBVOXEL: _("Sub-voxel (from the intensities)"),
                SurfacePlacement.LABELMAP: _("Labelmap (Slicer's classic conversion)")}[self]


class ConversionMethod(enum.Enum):
    FLYING_EDGES = "FLYING_EDGES"
    SURFACE_NETS = "SURFACE_NETS"

    def label(self):
        return {ConversionMethod.FLYING_EDGES: _("Flying edges"),
                ConversionMethod.SURFACE_NETS: _("Surface nets")}[self]


class HollowMode(enum.Enum):
    OUTSIDE_SURFACE = "OUTSIDE_SURFACE"
    MEDIAL_SURFACE = "MEDIAL_SURFACE"
    INSIDE_SURFACE = "INSIDE_SURFACE"

    def label(self):
        return {HollowMode.OUTSIDE_SURFACE: _("Outside surface (keeps the outer shape)"),
                HollowMode.MEDIAL_SURFACE: _("Medial surface"),
                HollowMode.INSIDE_SURFACE: _("Inside surface (wall grows outwards)")}[self]


class ExportFormat(enum.Enum):
    STL = "STL"
    OBJ = "OBJ"
    THREE_MF = "3MF"

    def label(self):
        return {ExportFormat.STL: _("STL"), ExportFormat.OBJ: _("OBJ (with colours)"),
                ExportFormat.THREE_MF: _("3MF (named, coloured parts)")}[self]


class CoordinateSystem(enum.Enum):
    LPS = "LPS"
    RAS = "RAS"

    def label(self):
        return {CoordinateSystem.LPS: _("LPS (DICOM patient coordinates)"),
                CoordinateSystem.RAS: _("RAS (Slicer's world coordinates)")}[self]


#: File name extension of each export format.
EXTENSIONS = {ExportFormat.STL: ".stl", ExportFormat.OBJ: ".obj", ExportFormat.THREE_MF: ".3mf"}
#: The placement's surface smoothing factor when it is automatic (the library's surface.DEFAULT_SMOOTHING).
AUTOMATIC_SURFACE_SMOOTHING = {SurfacePlacement.SUBVOXEL: 0.2, SurfacePlacement.LABELMAP: 0.5}


#
# DicomToPrintParameterNode
#


@parameterNodeWrapper
class DicomToPrintParameterNode:
    """Everything the panel shows, saved with the scene.

    The settings have the names, meanings and defaults of :class:`DicomToPrintLib.DicomToPrintParameters` (a test
    checks they are the same), except for the library's optional values (None), which a parameter node cannot
    hold; see :func:`parametersFromParameterNode` for how they map. The rest are the nodes and files the panel
    works on.
    """

    # -- nodes and files
    inputSource: InputSource = InputSource.DICOM_FOLDER
    inputVolume: vtkMRMLScalarVolumeNode
    inputDicomFolder: str = ""
    segmentation: vtkMRMLSegmentationNode
    #: the segment the Segmentation step made; replaced when the step runs again (other segments are kept)
    pipelineSegmentId: str = ""
    printModel: vtkMRMLModelNode
    reportTable: vtkMRMLTableNode
    outputStlPath: str = ""
    oneFilePerSegment: bool = False

    # -- 1. Input
    series: str = ""
    missingSlices: MissingSlices = MissingSlices.INTERPOLATE

    # -- 2. Segmentation
    preset: ThresholdPreset = ThresholdPreset.NONE
    autoThresholdMethod: AutoThresholdMethod = AutoThresholdMethod.ISO50
    #: False: minimumThreshold and maximumThreshold are None (preset or automatic method); thresholdRange then
    #: shows the automatic value, which is where an explicit range starts from
    useExplicitThreshold: bool = False
    # Slicer's range connector needs a Default when the bounds are given (it checks 0 against them otherwise)
    thresholdRange: Annotated[FloatRange, RangeBounds(-100000.0, 100000.0), Default(FloatRange(226.0, 3071.0))]
    islandsOperation: IslandsOperation = IslandsOperation.KEEP_LARGEST_ISLAND
    islandsMinimumSizeMm3: Annotated[float, WithinRange(0.0, 1000000.0)] = 100.0
    fillCavities: bool = True
    smoothingMethod: SmoothingMethod = SmoothingMethod.MEDIAN
    kernelSizeMm: Annotated[float, WithinRange(0.1, 50.0)] = 1.0
    gaussianStandardDeviationMm: Annotated[float, WithinRange(0.1, 50.0)] = 1.0
    jointTaubinSmoothingFactor: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    segmentName: str = ""

    # -- 3. Mesh
    surfacePlacement: SurfacePlacement = SurfacePlacement.SUBVOXEL
    conversionMethod: ConversionMethod = ConversionMethod.FLYING_EDGES
    #: True: surfaceSmoothingFactor is None (the placement's default); the factor then shows that default
    automaticSurfaceSmoothing: bool = True
    surfaceSmoothingFactor: Annotated[float, WithinRange(0.0, 1.0)] = 0.2
    targetTriangles: Annotated[int, WithinRange(0, 100000000)] = 300000
    targetReduction: Annotated[float, WithinRange(0.0, 0.999)] = 0.0
    minimumShellVolumeMm3: Annotated[float, WithinRange(0.0, 1000000.0)] = 10.0
    hollowWallMm: Annotated[float, WithinRange(0.0, 100.0)] = 0.0
    hollowMode: HollowMode = HollowMode.OUTSIDE_SURFACE
    drainHoleDiameterMm: Annotated[float, WithinRange(0.0, 50.0)] = 0.0

    # -- 4. Validation
    buildVolumeXMm: Annotated[float, WithinRange(1.0, 10000.0)] = 250.0
    buildVolumeYMm: Annotated[float, WithinRange(1.0, 10000.0)] = 210.0
    buildVolumeZMm: Annotated[float, WithinRange(1.0, 10000.0)] = 210.0
    wallThicknessLimitMm: Annotated[float, WithinRange(0.0, 100.0)] = 1.0
    maximumThinAreaPercent: Annotated[float, WithinRange(0.0, 100.0)] = 10.0

    # -- 5. Export
    exportFormat: ExportFormat = ExportFormat.STL
    coordinateSystem: CoordinateSystem = CoordinateSystem.LPS
    sizeScale: Annotated[float, WithinRange(0.0001, 1000.0)] = 1.0
    overwrite: bool = False
    #: the panel writes the model only: the 3D view is the preview, the report is the table node
    writePreview: bool = False


#: Library settings whose value the parameter node holds in another form (see parametersFromParameterNode).
MAPPED_SETTINGS = ("minimumThreshold", "maximumThreshold", "surfaceSmoothingFactor", "structures")


def parametersFromParameterNode(parameterNode):
    """The library's settings (:class:`DicomToPrintLib.DicomToPrintParameters`) from the panel's parameter node.

    Every setting has the same name and meaning in both (a choice is its enum's value), except the library's
    optional values:

    - ``minimumThreshold``, ``maximumThreshold``: ``thresholdRange.minimum`` and ``.maximum`` when
      ``useExplicitThreshold`` is on; None when it is off (then the preset, else the automatic method, decides).
    - ``surfaceSmoothingFactor``: None when ``automaticSurfaceSmoothing`` is on (the placement's default: 0.2
      sub-voxel, 0.5 labelmap); the node's ``surfaceSmoothingFactor`` when it is off.
    - ``structures``: always empty. In the panel the structures are the segmentation's segments: the
      Segmentation step makes one, the embedded Segment Editor adds, edits and colours the others, and the Mesh
      and Export steps take every non-empty segment.

    A setting the library gains and the node lacks raises AttributeError, so the two cannot drift apart quietly.
    """
    from DicomToPrintLib import DicomToPrintParameters

    values = {}
    for field in dataclasses.fields(DicomToPrintParameters):
        if field.name not in MAPPED_SETTINGS:
            value = getattr(parameterNode, field.name)
            values[field.name] = value.value if isinstance(value, enum.Enum) else value
    explicit = parameterNode.useExplicitThreshold
    values["minimumThreshold"] = float(parameterNode.thresholdRange.minimum) if explicit else None
    values["maximumThreshold"] = float(parameterNode.thresholdRange.maximum) if explicit else None
    values["surfaceSmoothingFactor"] = (None if parameterNode.automaticSurfaceSmoothing
                                        else float(parameterNode.surfaceSmoothingFactor))
    values["structures"] = []
    return DicomToPrintParameters(**values)


def outputPathProblem(path: str, exportFormat: ExportFormat = ExportFormat.STL) -> str:
    """Why the model cannot be written there ("" when it can, as far as can be told before writing)."""
    extension = EXTENSIONS[exportFormat]
    if not path:
        return _("Choose the output {format} file").format(format=exportFormat.value)
    if not path.lower().endswith(extension):
        return _("The output file name must end with {extension} (the format is {format})").format(
            extension=extension, format=exportFormat.value)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return _("The output folder {folder} does not exist").format(folder=folder)
    return ""


@parameterNodeGuiConnector
class PathLineEditToStrConnector(GuiConnector):
    """Binds a ctkPathLineEdit to a str parameter.

    Slicer binds ctkPathLineEdit only to pathlib.Path, whose empty value is "." - a real folder, which would
    make an unset input folder look set. Paths are plain str here, as in the library, "" meaning unset.
    """

    @staticmethod
    def canRepresent(widget, datatype) -> bool:
        import ctk

        return type(widget) is ctk.ctkPathLineEdit and unannotatedType(datatype) is str

    @staticmethod
    def create(widget, datatype):
        if PathLineEditToStrConnector.canRepresent(widget, datatype):
            return PathLineEditToStrConnector(widget)
        return None

    def __init__(self, widget):
        super().__init__()
        self._widget = widget

    def _connect(self):
        self._widget.currentPathChanged.connect(self.changed)

    def _disconnect(self):
        self._widget.currentPathChanged.disconnect(self.changed)

    def widget(self):
        return self._widget

    def read(self) -> str:
        return self._widget.currentPath

    def write(self, value: str) -> None:
        if value != self._widget.currentPath:  # rewriting the text would move the cursor while typing
            self._widget.currentPath = value


#: The panel's own segment editor node, apart from the Segment Editor module's.
SEGMENT_EDITOR_SINGLETON_TAG = "DicomToPrint"
#: The sections a running step disables (Run all, the progress bar and Cancel are outside them).
SECTIONS = ("inputCollapsibleButton", "segmentationCollapsibleButton", "meshCollapsibleButton",
            "validationCollapsibleButton", "exportCollapsibleButton")
#: Widgets of the Input section that only a DICOM folder input uses.
FOLDER_INPUT_WIDGETS = ("inputDicomFolderPathLineEdit", "seriesComboBox", "missingSlicesComboBox")
STEP_BUTTONS = ("findSeriesButton", "loadSeriesButton", "segmentButton", "meshButton", "validateButton",
                "exportButton", "runAllButton")


#
# DicomToPrintWidget
#


class DicomToPrintWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: settings bound to the parameter node (the .ui's SlicerParameterName properties), one button per
    step of the Logic, progress with Cancel. It shows; the Logic does."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.ui = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._observedSegmentation = None
        self._effectFactory = None
        self._thresholdKey = None  # what the threshold text and slider range were last computed for
        self._updating = False
        self._busy = False
        self._cancelRequested = False
        self._readyToolTips = {}
        self._decimationLibraryOffered = False

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        problem = missingRequirement()
        if problem:  # an older Slicer: say what is needed instead of failing half-way through the panel
            label = qt.QLabel(problem)
            label.wordWrap = True
            label.objectName = "missingRequirementLabel"
            self.layout.addWidget(label)
            self.layout.addStretch(1)
            return

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DicomToPrint.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        self.logic = DicomToPrintLogic()

        editor = self.ui.segmentEditorWidget
        if not hasattr(editor, "setMRMLSegmentEditorNode"):
            # the .ui loader did not find the Segmentations module's designer plugin and made a plain QWidget
            editor = slicer.qMRMLSegmentEditorWidget()
            editor.segmentationNodeSelectorVisible = editor.sourceVolumeNodeSelectorVisible = False
            (self.ui.segmentEditorWidget.layout() or qt.QVBoxLayout(self.ui.segmentEditorWidget)).addWidget(editor)
            uiWidget.connect("mrmlSceneChanged(vtkMRMLScene*)", editor.setMRMLScene)
            self.ui.segmentEditorWidget = editor
        editor.setMaximumNumberOfUndoStates(10)
        self._selectSegmentEditorNode()  # before the scene, so that the selections it makes are kept there
        uiWidget.setMRMLScene(slicer.mrmlScene)  # the .ui passes it on to each MRML widget
        # effects registered later (other extensions, or Slicer still starting) show up in the embedded editor
        self._effectFactory = slicer.qSlicerSegmentEditorEffectFactory.instance()
        self._effectFactory.connect("effectRegistered(QString)", self.onEffectRegistered)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onSceneEndImport)
        for name, slot in (("findSeriesButton", self.onFindSeriesButton), ("loadSeriesButton", self.onLoadSeriesButton),
                           ("segmentButton", self.onSegmentButton), ("meshButton", self.onMeshButton),
                           ("validateButton", self.onValidateButton), ("exportButton", self.onExportButton),
                           ("runAllButton", self.onRunAllButton), ("cancelButton", self.onCancelButton)):
            getattr(self.ui, name).connect("clicked(bool)", slot)
        self.ui.seriesComboBox.connect("currentIndexChanged(int)", self.onSeriesSelected)
        self.ui.progressBar.hide()
        self.ui.cancelButton.hide()
        self._readyToolTips = {name: getattr(self.ui, name).toolTip for name in STEP_BUTTONS}
        # Connected once, for the widget's life: the singleton parameter node outlives scene closes and imports
        # (Slicer 5.10's wrapper would leak an observer on every reconnection).
        self.setParameterNode(self.logic.getParameterNode())

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self._cancelRequested = True
        if self.ui is None:
            return
        self.ui.segmentEditorWidget.setActiveEffect(None)
        self.ui.segmentEditorWidget.uninstallKeyboardShortcuts()
        self.ui.segmentEditorWidget.removeViewObservations()
        self._effectFactory.disconnect("effectRegistered(QString)", self.onEffectRegistered)
        self.setParameterNode(None)
        self.removeObservers()

    def enter(self) -> None:
        if self.ui is None:
            return
        self._ensureParameterNode()
        self._selectSegmentEditorNode()
        self.ui.segmentEditorWidget.installKeyboardShortcuts()
        self.ui.segmentEditorWidget.updateWidgetFromMRML()

    def exit(self) -> None:
        if self.ui is None:
            return
        if self._busy:
            self.onCancelButton()  # a step does not go on out of sight
        self.ui.segmentEditorWidget.setActiveEffect(None)
        self.ui.segmentEditorWidget.uninstallKeyboardShortcuts()
        self.ui.segmentEditorWidget.removeViewObservations()

    def onEffectRegistered(self) -> None:
        self.ui.segmentEditorWidget.updateEffectList()

    def onSceneStartClose(self, caller, event) -> None:
        if self._busy:
            self.onCancelButton()  # its nodes are going: stop at the next checkpoint
        self._observeSegmentation(None)
        self.logic.clearResults()
        self.logic.scan = None
        self._fillSeriesList()
        self.ui.segmentEditorWidget.setSegmentationNode(None)
        self.ui.segmentEditorWidget.removeViewObservations()

    def onSceneEndClose(self, caller, event) -> None:
        self.onSceneEndImport(caller, event)

    def onSceneEndImport(self, caller, event) -> None:
        # a loaded scene brings its own settings and nodes; the meshes kept from before no longer apply
        self.logic.clearResults()
        self._ensureParameterNode()
        if self.parent.isEntered:
            self._selectSegmentEditorNode()
            self.ui.segmentEditorWidget.updateWidgetFromMRML()

    def onReload(self) -> None:
        """Reload the library as well as this file (Slicer's Reload reloads only the module's own file)."""
        forgetLibraryModules()
        ScriptedLoadableModuleWidget.onReload(self)

    def _selectSegmentEditorNode(self) -> None:
        editorNode = slicer.mrmlScene.GetSingletonNode(SEGMENT_EDITOR_SINGLETON_TAG, "vtkMRMLSegmentEditorNode")
        if editorNode is None:
            editorNode = slicer.mrmlScene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
            editorNode.UnRegister(None)
            editorNode.SetSingletonTag(SEGMENT_EDITOR_SINGLETON_TAG)
            editorNode = slicer.mrmlScene.AddNode(editorNode)
        if _nodeId(self.ui.segmentEditorWidget.mrmlSegmentEditorNode()) != editorNode.GetID():
            self.ui.segmentEditorWidget.setMRMLSegmentEditorNode(editorNode)

    # -- parameter node -------------------------------------------------------------------------------------
    def _ensureParameterNode(self) -> None:
        """Connect the scene's parameter node: the one connected in setup unless the scene replaced it."""
        if self._parameterNode is None or ScriptedLoadableModuleLogic.getParameterNode(self.logic) is not \
                self._parameterNode.parameterNode:
            self.setParameterNode(self.logic.getParameterNode())
        self.updateGUIFromParameterNode()

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent,
                                self.updateGUIFromParameterNode)
        self._parameterNode = parameterNode
        if parameterNode is not None:
            self._parameterNodeGuiTag = parameterNode.connectGui(self.ui)
            self.addObserver(parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent,
                             self.updateGUIFromParameterNode)
            self._thresholdKey = None
            self.updateGUIFromParameterNode()

    def updateGUIFromParameterNode(self, caller=None, event=None) -> None:
        """What the bindings cannot show: the automatic values in effect, which settings apply, the buttons."""
        node = self._parameterNode
        if node is None or self._updating:
            return
        self._updating = True
        try:
            editor = self.ui.segmentEditorWidget
            if _nodeId(editor.segmentationNode()) != _nodeId(node.segmentation):
                editor.setSegmentationNode(node.segmentation)
            if _nodeId(editor.sourceVolumeNode()) != _nodeId(node.inputVolume):
                editor.setSourceVolumeNode(node.inputVolume)
            self._observeSegmentation(node.segmentation)
            self._updateThresholdWidgets(node)
            automatic = AUTOMATIC_SURFACE_SMOOTHING[node.surfacePlacement]
            if node.automaticSurfaceSmoothing and node.surfaceSmoothingFactor != automatic:
                node.surfaceSmoothingFactor = automatic
            self._selectSeriesItem()
            if _nodeId(self.ui.reportTableView.mrmlTableNode()) != _nodeId(node.reportTable):
                self.ui.reportTableView.setMRMLTableNode(node.reportTable)
            self._updateEnabledStates(node)
        finally:
            self._updating = False

    def _updateThresholdWidgets(self, node) -> None:
        """The range slider spans the volume's values and, unless set by hand, shows the threshold the preset or
        automatic method gives on it (ISO-50 by default), with where it comes from."""
        volume = node.inputVolume
        imageData = volume.GetImageData() if volume is not None else None
        volumeKey = (_nodeId(volume), imageData.GetMTime() if imageData else None)
        key = (volumeKey, node.useExplicitThreshold, node.preset, node.autoThresholdMethod)
        if key == self._thresholdKey:
            return
        if imageData is not None and (self._thresholdKey is None or self._thresholdKey[0] != volumeKey):
            self.ui.thresholdRangeWidget.setRange(*imageData.GetScalarRange())
        self._thresholdKey = key
        if node.useExplicitThreshold:
            text = _("Explicit range: the preset and the automatic method are not used.")
        elif imageData is None:
            text = _("Choose an input volume to see the automatic threshold.")
        else:
            text, threshold = self.logic.automaticThreshold(node)
            if threshold is not None:
                with contextlib.suppress(ValueError):  # beyond the bounds (an unusual float volume): text only
                    node.thresholdRange = FloatRange(threshold["minimum"], threshold["maximum"])
        self.ui.automaticThresholdLabel.text = text

    def _updateEnabledStates(self, node) -> None:
        ui, busy = self.ui, self._busy
        for name in SECTIONS:  # a running step's settings and nodes stay as they were when it started
            getattr(ui, name).enabled = not busy
        ui.segmentEditorWidget.readOnly = busy
        fromFolder = node.inputSource == InputSource.DICOM_FOLDER
        for name in FOLDER_INPUT_WIDGETS:
            getattr(ui, name).enabled = fromFolder
        ui.thresholdRangeWidget.enabled = node.useExplicitThreshold
        ui.presetComboBox.enabled = not node.useExplicitThreshold
        ui.autoThresholdMethodComboBox.enabled = not node.useExplicitThreshold and node.preset == ThresholdPreset.NONE
        ui.islandsMinimumSizeSpinBox.enabled = node.islandsOperation != IslandsOperation.NONE
        ui.kernelSizeSpinBox.enabled = node.smoothingMethod in (
            SmoothingMethod.MEDIAN, SmoothingMethod.MORPHOLOGICAL_OPENING, SmoothingMethod.MORPHOLOGICAL_CLOSING)
        ui.gaussianStandardDeviationSpinBox.enabled = node.smoothingMethod == SmoothingMethod.GAUSSIAN
        ui.jointTaubinSmoothingFactorSlider.enabled = node.smoothingMethod == SmoothingMethod.JOINT_TAUBIN
        ui.conversionMethodComboBox.enabled = node.surfacePlacement == SurfacePlacement.LABELMAP
        ui.surfaceSmoothingFactorSlider.enabled = not node.automaticSurfaceSmoothing
        # a disabled button says what it is waiting for; an enabled one what it does (its .ui tool tip)
        for name, why in self.logic.stepProblems(node).items():
            button = getattr(ui, name)
            button.enabled = not why and not busy
            button.toolTip = why or self._readyToolTips.get(name, "")

    def _observeSegmentation(self, segmentationNode) -> None:
        """Edits of the segmentation (Segment Editor, or the Segmentation step) make the mesh out of date."""
        if _nodeId(segmentationNode) == _nodeId(self._observedSegmentation):
            return
        events = (slicer.vtkSegmentation.SourceRepresentationModified, slicer.vtkSegmentation.SegmentAdded,
                  slicer.vtkSegmentation.SegmentRemoved)
        for event in events if self._observedSegmentation is not None else ():
            self.removeObserver(self._observedSegmentation, event, self.onSegmentationEdited)
        self._observedSegmentation = segmentationNode
        for event in events if segmentationNode is not None else ():
            self.addObserver(segmentationNode, event, self.onSegmentationEdited)
        self.logic.clearResults(self._parameterNode)

    def onSegmentationEdited(self, caller=None, event=None) -> None:
        if self.logic.meshes and not self._busy:
            self.logic.clearResults(self._parameterNode, showSegmentation=True)
            self._showInfo(self.ui.meshInfoLabel, _("The segmentation changed: create the mesh again."))
            self._showVerdict()
            self._updateEnabledStates(self._parameterNode)

    # -- series list ----------------------------------------------------------------------------------------
    def _fillSeriesList(self) -> None:
        comboBox = self.ui.seriesComboBox
        wasBlocked = comboBox.blockSignals(True)
        comboBox.clear()
        for entry, label in self.logic.seriesList():
            comboBox.addItem(label, entry["seriesInstanceUID"])
        comboBox.blockSignals(wasBlocked)
        self._selectSeriesItem()

    def _selectSeriesItem(self) -> None:
        """Show the parameter node's series (its SeriesInstanceUID; "" = the largest CT or MR series)."""
        comboBox = self.ui.seriesComboBox
        index = comboBox.findData(self.logic.chosenSeriesUid(self._parameterNode)) if self._parameterNode else -1
        if index >= 0 and index != comboBox.currentIndex:
            wasBlocked = comboBox.blockSignals(True)
            comboBox.currentIndex = index
            comboBox.blockSignals(wasBlocked)

    def onSeriesSelected(self, index: int) -> None:
        if self._parameterNode is not None and index >= 0:
            self._parameterNode.series = self.ui.seriesComboBox.itemData(index) or ""

    # -- running the steps ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _processing(self, failureMessage: str):
        """Busy while a step runs: sections disabled, the Segment Editor read-only, progress and Cancel shown.
        Errors are shown (and raised, as Slicer's tryWithErrorDisplay does); a cancel is not an error."""
        self._busy, self._cancelRequested = True, False
        self.ui.segmentEditorWidget.setActiveEffect(None)
        self.ui.progressBar.value = 0
        self.ui.progressBar.show()
        self.ui.cancelButton.enabled = True
        self.ui.cancelButton.show()
        self._updateEnabledStates(self._parameterNode)
        try:
            with slicer.util.tryWithErrorDisplay(failureMessage, waitCursor=True):
                try:
                    yield self._parameterNode  # the node, taken once for the whole run
                except self.logic.ProcessingCancelled as cancelled:
                    self.ui.statusLabel.text = str(cancelled)
        finally:
            self._busy = False
            self.ui.progressBar.hide()
            self.ui.cancelButton.hide()
            self.updateGUIFromParameterNode()

    def progressCallback(self, text: str, percent: float) -> bool:
        """The library's ``callback(text, percent)``; True asks to cancel. Events are processed so that Cancel
        (and the views) answer while a step runs."""
        self.ui.progressBar.value = int(round(max(0.0, min(100.0, percent))))
        self.ui.statusLabel.text = text
        slicer.app.processEvents()
        return self._cancelRequested

    def onCancelButton(self) -> None:
        self._cancelRequested = True
        self.ui.cancelButton.enabled = False
        self.ui.statusLabel.text = _("Cancelling...")

    def onFindSeriesButton(self) -> None:
        with self._processing(_("Failed to find DICOM series.")) as node:
            try:
                self._showInfo(self.ui.seriesInfoLabel, self.logic.findSeries(node, self.progressCallback))
            finally:
                self._fillSeriesList()  # a failed search leaves no stale list behind

    def onLoadSeriesButton(self) -> None:
        with self._processing(_("Failed to load the series.")) as node:
            self._showInfo(self.ui.seriesInfoLabel, self.logic.loadSeries(node, self.progressCallback))

    def onSegmentButton(self) -> None:
        with self._processing(_("Segmentation failed.")) as node:
            self._showInfo(self.ui.segmentationInfoLabel, self.logic.segment(node, self.progressCallback))

    def offerFastSimplification(self) -> None:
        """Slicer does not bundle fast-simplification, which decimates about six times faster than VTK's quadric
        decimation: offer to install it the first time a mesh is made, as Slicer extensions do with what they
        need. Declined (or failing), the library decimates with VTK, to the same quality."""
        if self._decimationLibraryOffered or self.logic.decimationMethod() == "fast-simplification":
            return
        self._decimationLibraryOffered = True
        if slicer.util.confirmOkCancelDisplay(
                _("DICOM to Print decimates meshes about six times faster with the fast-simplification package "
                  "(MIT license, from PyPI), which Slicer does not include. Install it now? Without it, VTK's "
                  "decimation is used."), windowTitle=_("Faster decimation")):
            with slicer.util.tryWithErrorDisplay(_("Could not install fast-simplification; VTK's decimation is "
                                                   "used."), waitCursor=True):
                slicer.util.pip_install("fast-simplification>=0.2")

    def onMeshButton(self) -> None:
        self.offerFastSimplification()
        with self._processing(_("Failed to create the mesh.")) as node:
            self._showVerdict()
            self._showInfo(self.ui.meshInfoLabel, self.logic.createMesh(node, self.progressCallback))

    def onValidateButton(self) -> None:
        with self._processing(_("Validation failed.")) as node:
            try:
                self.logic.validate(node, self.progressCallback)
            finally:
                self._showVerdict()

    def onExportButton(self) -> None:
        with self._processing(_("Export failed.")) as node:
            self._showInfo(self.ui.exportInfoLabel, self.logic.exportModel(node, self.progressCallback))

    def onRunAllButton(self) -> None:
        """Every step in order, from the input chosen in the Input section."""
        self.offerFastSimplification()
        with self._processing(_("Run all failed.")) as node:
            try:
                texts = self.logic.runAll(node, self.progressCallback)
            finally:
                self._fillSeriesList()
                self._showVerdict()
            for name, text in texts.items():
                self._showInfo(getattr(self.ui, name), text)
            self.ui.statusLabel.text = _("Done: {text}").format(text=texts["exportInfoLabel"])

    def _showInfo(self, label, text: str) -> None:
        label.text = text
        self.ui.statusLabel.text = text

    def _showVerdict(self) -> None:
        """One clear line: printable or not, and why."""
        text, printable = self.logic.verdict()
        self.ui.printableLabel.text = text
        color = "#2e7d32" if printable else "#c62828"
        self.ui.printableLabel.styleSheet = f"QLabel {{ color: {color}; font-weight: bold; }}" if text else ""


def _nodeId(node):
    return node.GetID() if node is not None else None


def forgetLibraryModules() -> list:
    """Drop DicomToPrintLib's modules so that the next import (the module's reload) reads them again."""
    names = sorted(name for name in sys.modules if name == "DicomToPrintLib" or name.startswith("DicomToPrintLib."))
    for name in names:
        del sys.modules[name]
    return names


#
# DicomToPrintLogic
#


class DicomToPrintLogic(ScriptedLoadableModuleLogic):
    """The panel's steps, on the parameter node and the scene's nodes; the library does the work.

    Each step (:meth:`findSeries`, :meth:`loadSeries`, :meth:`segment`, :meth:`createMesh`, :meth:`validate`,
    :meth:`exportModel`, :meth:`runAll`) takes the parameter node and a ``progressCallback(text, percent)``
    that returns True to cancel; it reads the node and the settings once, is cancellable within its long
    library calls (not only between them), and returns what to show. What a step makes for the next one and the
    scene cannot hold (the folder's series, the meshes, the validation reports) stays here.

    ``self.pipeline`` is the library's :class:`DicomToPrintLib.DicomToPrintLogic` on the same scene.
    """

    #: Volume node attributes that say which folder and series the panel loaded it from.
    FOLDER_ATTRIBUTE = "DicomToPrint.SourceFolder"
    SERIES_ATTRIBUTE = "DicomToPrint.SeriesInstanceUID"
    #: Marks the validation tables the panel made, so that validating again replaces them.
    REPORT_ATTRIBUTE = "DicomToPrint.Report"

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        import DicomToPrintLib
        from DicomToPrintLib import display, export, segment, surface
        from DicomToPrintLib.runtime import cancellable, reportProgress

        self.pipeline = DicomToPrintLib.DicomToPrintLogic()  # inside Slicer: slicer.mrmlScene
        self.scene = self.pipeline.context.scene
        self.DicomToPrintError = DicomToPrintLib.DicomToPrintError
        self.ProcessingCancelled = DicomToPrintLib.ProcessingCancelled
        self._display, self._export, self._segment, self._surface = display, export, segment, surface
        self._cancellable, self._reportProgress = cancellable, reportProgress
        self.scan = None  # DicomScan of the folder last searched
        self.meshes = {}  # segment ID -> the decimated, repaired mesh (RAS mm) of the Mesh step
        self.thresholds = {}  # segment ID -> how the Segmentation step thresholded it (the surface reads its levels)
        self.reports = []  # (name, ValidationReport) of the last validation

    def getParameterNode(self) -> DicomToPrintParameterNode:
        return DicomToPrintParameterNode(super().getParameterNode())

    @staticmethod
    def decimationMethod() -> str:
        """fast-simplification where it is installed, else VTK's quadric decimation (see DicomToPrintLib.mesh)."""
        from DicomToPrintLib import mesh

        return mesh.simplificationMethod()

    # -- what the panel shows ---------------------------------------------------------------------------------
    def stepProblems(self, node) -> dict:
        """Step button name -> why it cannot run now ("" when it can)."""
        folder = node.inputDicomFolder
        folderProblem = "" if folder and os.path.isdir(folder) else _("Choose an existing DICOM folder")
        if node.inputSource != InputSource.DICOM_FOLDER:
            folderProblem = _("The input is a volume in the scene (Input from)")
        volumeProblem = "" if node.inputVolume else _("Choose an input volume or load a series")
        segmentationNode = node.segmentation
        hasSegments = segmentationNode is not None and segmentationNode.GetSegmentation().GetNumberOfSegments() > 0
        meshProblem = "" if hasSegments else _("Segment first")
        if not meshProblem and node.surfacePlacement == SurfacePlacement.SUBVOXEL and not node.inputVolume:
            meshProblem = _("The sub-voxel surface also needs the input volume")
        outputProblem = outputPathProblem(node.outputStlPath, node.exportFormat)
        noMesh = "" if self.meshes else _("Create the mesh first")
        inputProblem = volumeProblem if node.inputSource == InputSource.SCENE_VOLUME else folderProblem
        return {"findSeriesButton": folderProblem, "loadSeriesButton": folderProblem,
                "segmentButton": volumeProblem, "meshButton": meshProblem, "validateButton": noMesh,
                "exportButton": noMesh or outputProblem, "runAllButton": inputProblem or outputProblem}

    def automaticThreshold(self, node):
        """(text, threshold or None): the range the preset or automatic method gives on the input volume."""
        volume = node.inputVolume
        modality = self._display.volumeModality(volume)
        try:
            threshold = self.pipeline.thresholdRange(volume, parametersFromParameterNode(node), modality or "CT")
        except (self.DicomToPrintError, ValueError) as error:
            return _("No automatic threshold: {error}").format(error=error), None
        note = "" if modality else _(" (modality unknown: treated as CT)")
        return (f"{threshold['source']}: {threshold['minimum']:g} to {threshold['maximum']:g}{note}. "
                f"{threshold['reason']}"), threshold

    def seriesList(self) -> list:
        """(listing entry, label) of each series of the folder last searched."""
        return [(entry, self._display.seriesLabel(entry)) for entry in (self.scan.listing() if self.scan else [])]

    def chosenSeriesUid(self, node) -> str:
        """The series the Load step takes: the node's, or the largest CT or MR series of the folder."""
        if node.series or self.scan is None:
            return node.series
        try:
            return self.scan.selectSeries(None).seriesInstanceUID
        except self.DicomToPrintError:  # no CT or MR volume: the user picks one
            return ""

    def verdict(self) -> tuple:
        """(text, printable) of the last validation; ("", False) when there is none."""
        if not self.reports:
            return "", False
        several = len(self.reports) > 1
        reasons = [f"{name}: {reason}" if several else reason
                   for name, report in self.reports for reason in report.reasons]
        warnings = [f"{name}: {warning}" if several else warning
                    for name, report in self.reports for warning in report.warnings]
        text = _("NOT PRINTABLE: {reasons}").format(reasons="; ".join(reasons)) if reasons else _("PRINTABLE")
        if warnings:
            text += ". " + _("Warning: {warnings}").format(warnings="; ".join(warnings))
        return text, not reasons

    def clearResults(self, node=None, showSegmentation: bool = False) -> None:
        """Forget the meshes and reports (they no longer match the segmentation) and hide the node's model."""
        self.meshes, self.reports = {}, []
        if node is None:
            return
        self._display.setModelVisible(node.printModel, False)
        if showSegmentation and node.segmentation is not None and node.segmentation.GetDisplayNode() is not None:
            node.segmentation.GetDisplayNode().SetVisibility3D(True)  # show the edits, not the old mesh

    # -- the steps ---------------------------------------------------------------------------------------------
    def findSeries(self, node, progressCallback=None) -> str:
        with self._cancellable(progressCallback) as callback:
            return self._findSeries(node, callback)

    def loadSeries(self, node, progressCallback=None) -> str:
        with self._cancellable(progressCallback) as callback:
            return self._loadSeries(node, parametersFromParameterNode(node), callback)

    def segment(self, node, progressCallback=None) -> str:
        with self._cancellable(progressCallback) as callback:
            return self._segmentVolume(node, parametersFromParameterNode(node), callback)

    def createMesh(self, node, progressCallback=None) -> str:
        with self._cancellable(progressCallback) as callback:
            return self._createMesh(node, parametersFromParameterNode(node), callback)

    def validate(self, node, progressCallback=None) -> str:
        with self._cancellable(progressCallback) as callback:
            return self._validate(node, parametersFromParameterNode(node), callback)

    def exportModel(self, node, progressCallback=None) -> str:
        with self._cancellable(progressCallback) as callback:
            return self._exportModel(node, parametersFromParameterNode(node), callback)

    def runAll(self, node, progressCallback=None) -> dict:
        """Input (the series of the DICOM folder, loaded unless it already is, or the scene's volume), segment,
        mesh, validate, export. Returns label name -> text to show."""
        parameters = parametersFromParameterNode(node)
        parameters.validate()
        problem = self.stepProblems(node)["runAllButton"]
        if problem:
            raise self.DicomToPrintError(problem)
        self._export.checkOutputPath(node.outputStlPath, parameters.overwrite)  # before the work, not after
        texts = {}
        with self._cancellable(progressCallback) as callback:
            def part(start, end):
                return lambda text, percent: callback(text, start + (end - start) * percent / 100.0)

            if node.inputSource == InputSource.DICOM_FOLDER and not self._loadedFromFolder(node, parameters):
                texts["seriesInfoLabel"] = self._loadSeries(node, parameters, part(0, 10))
            texts["segmentationInfoLabel"] = self._segmentVolume(node, parameters, part(10, 30))
            texts["meshInfoLabel"] = self._createMesh(node, parameters, part(30, 70))
            self._validate(node, parameters, part(70, 95))
            texts["exportInfoLabel"] = self._exportModel(node, parameters, part(95, 100))
        return texts

    def _findSeries(self, node, callback) -> str:
        folder = node.inputDicomFolder
        if not folder:
            raise self.DicomToPrintError(_("Choose a DICOM folder"))
        self.scan = None
        self.scan = self.pipeline.findSeries(folder, callback)
        skipped = self.scan.skippedFiles
        return _("{count} series found").format(count=len(self.scan.series)) + (
            _("; {skipped} files skipped").format(skipped=skipped) if skipped else "") + "."

    def _loadedFromFolder(self, node, parameters) -> bool:
        """Whether the input volume is the series this folder and setting choose, loaded by the panel."""
        volume = node.inputVolume
        if volume is None or volume.GetAttribute(self.FOLDER_ATTRIBUTE) != os.path.normpath(node.inputDicomFolder):
            return False
        return not parameters.series or volume.GetAttribute(self.SERIES_ATTRIBUTE) == parameters.series

    def _loadSeries(self, node, parameters, callback) -> str:
        folder = os.path.normpath(node.inputDicomFolder or ".")
        if self.scan is None or os.path.normpath(self.scan.folder) != folder:
            self._findSeries(node, callback)
        series = self.scan.selectSeries(parameters.series or None)
        self._reportProgress(callback, _("Loading {count} slices").format(count=series.numberOfSlices), 5)
        loaded = self.pipeline.loadSeries(series, callback, parameters.missingSlices)
        volume = loaded.volumeNode
        volume.SetName(self.scene.GenerateUniqueName(series.seriesDescription or f"{series.modality} series"))
        self._display.setVolumeModality(volume, series.modality)
        volume.SetAttribute(self.FOLDER_ATTRIBUTE, folder)
        volume.SetAttribute(self.SERIES_ATTRIBUTE, series.seriesInstanceUID)
        node.inputVolume = volume
        if not node.outputStlPath:
            node.outputStlPath = os.path.join(slicer.app.defaultScenePath,
                                              self._display.safeFileNamePart(volume.GetName()) + ".stl")
        slicer.util.setSliceViewerLayers(background=volume, fit=True)
        entry = next(e for e in self.scan.listing() if e["seriesInstanceUID"] == series.seriesInstanceUID)
        warnings = "; ".join(loaded.warnings)
        return _("Loaded {series}").format(series=self._display.seriesLabel(entry)) + (
            ". " + _("Warning: {warnings}").format(warnings=warnings) if warnings else ".")

    def _segmentVolume(self, node, parameters, callback) -> str:
        from DicomToPrintLib.logic import defaultSegmentName

        self._reportProgress(callback, _("Computing the threshold"), 0)
        volume = node.inputVolume
        if volume is None:
            raise self.DicomToPrintError(_("Choose an input volume, or load a series from a DICOM folder"))
        parameters.validate()
        modality = self._display.volumeModality(volume) or "CT"
        threshold = self.pipeline.thresholdRange(volume, parameters, modality)
        segmentationNode = node.segmentation
        if segmentationNode is None:
            segmentationNode = self._segment.createSegmentation(self.pipeline.context, volume,
                                                                self.scene.GenerateUniqueName("DicomToPrint"))
            node.segmentation = segmentationNode
        segmentation = segmentationNode.GetSegmentation()
        if node.pipelineSegmentId and segmentation.GetSegment(node.pipelineSegmentId):
            segmentation.RemoveSegment(node.pipelineSegmentId)  # replaced below; the user's own segments stay
        node.pipelineSegmentId = ""
        if segmentation.GetNumberOfSegments() == 0:
            # an empty segmentation takes the geometry of the volume it is made from now
            segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        before = set(segmentation.GetSegmentIDs())
        self._reportProgress(callback, _("Threshold {minimum:g} to {maximum:g}, islands and smoothing").format(
            minimum=threshold["minimum"], maximum=threshold["maximum"]), 10)
        try:
            _node, segmentId, islands = self.pipeline.segment(volume, parameters, threshold, segmentationNode,
                                                              defaultSegmentName(parameters, modality))
        except BaseException:
            for newSegmentId in set(segmentation.GetSegmentIDs()) - before:  # no half-made segment is left
                segmentation.RemoveSegment(newSegmentId)
            raise
        node.pipelineSegmentId = segmentId
        self.thresholds[segmentId] = threshold
        self._reportProgress(callback, _("Showing the segmentation"), 90)
        self._display.showSegmentation(segmentationNode)
        islandsText = "" if islands.get("islands") is None else _(", {kept} of {islands} islands kept").format(
            kept=islands["kept"], islands=islands["islands"])
        return _("{name}: threshold {minimum:g} to {maximum:g} ({source}){islands}, {voxels:,} voxels.").format(
            name=segmentation.GetSegment(segmentId).GetName(), minimum=threshold["minimum"],
            maximum=threshold["maximum"], source=threshold["source"], islands=islandsText,
            voxels=islands.get("voxels", 0))

    def _createMesh(self, node, parameters, callback) -> str:
        self._reportProgress(callback, _("Creating the mesh"), 0)
        parameters.validate()
        segmentationNode, volume = node.segmentation, node.inputVolume
        if segmentationNode is None:
            raise self.DicomToPrintError(_("Segment first: there is no segmentation"))
        segmentation = segmentationNode.GetSegmentation()
        segments = [(segmentId, segmentation.GetSegment(segmentId).GetName())
                    for segmentId in segmentation.GetSegmentIDs()
                    if self._segment.segmentVoxelCount(segmentationNode, segmentId) > 0]
        if not segments:
            raise self.DicomToPrintError(_("Every segment of the segmentation is empty: nothing to make a mesh of"))
        if parameters.surfacePlacement == SurfacePlacement.SUBVOXEL.value and volume is None:
            raise self.DicomToPrintError(_("The sub-voxel surface is placed from the intensities: choose the input "
                                           "volume (or use the labelmap surface placement)"))
        self.clearResults(node)
        meshes, lines = {}, []
        share = 100.0 / len(segments)
        for index, (segmentId, name) in enumerate(segments):
            self._reportProgress(callback, _("Creating the surface of {name}").format(name=name), index * share)
            polyData, _info, _log = self.pipeline.createSurface(segmentationNode, segmentId, volume, parameters,
                                                                self.thresholds.get(segmentId))
            surfaceTriangles = polyData.GetNumberOfPolys()
            self._reportProgress(callback, _("Decimating and repairing {name} ({count:,} triangles)").format(
                name=name, count=surfaceTriangles), (index + 0.5) * share)
            polyData, decimation, _log = self.pipeline.decimate(polyData, parameters)
            meshes[segmentId] = polyData
            lines.append(_("{name}: {triangles:,} triangles (surface {surface:,})").format(
                name=name, triangles=polyData.GetNumberOfPolys(), surface=surfaceTriangles))
            if decimation["deviation"]:
                lines[-1] += _(", within {maximum:.2f} mm of it").format(maximum=decimation["deviation"]["maximumMm"])
        # The labelmap conversion of a later segment rebuilds every closed surface: set them all at the end.
        for segmentId, polyData in meshes.items():
            self._surface.setClosedSurface(segmentationNode, segmentId, polyData)
        self.meshes = meshes
        node.printModel = self._display.showMeshModel(self.scene, list(meshes.values()),
                                                      self.scene.GenerateUniqueName("DicomToPrint model"),
                                                      node.printModel)
        if segmentationNode.GetDisplayNode() is not None:
            segmentationNode.GetDisplayNode().SetVisibility3D(False)  # the model shows the mesh that will print
        return "; ".join(lines) + ". " + _("Repaired: closed, manifold, outward-facing.")

    def _targets(self, node, outputPath: str, parameters):
        """(name, segment IDs, path) of each file the meshes go to."""
        segmentation = node.segmentation.GetSegmentation()
        segments = [(segmentId, segmentation.GetSegment(segmentId).GetName()) for segmentId in self.meshes
                    if segmentation.GetSegment(segmentId)]
        return self._display.exportTargets(outputPath, segments, parameters.oneFilePerSegment)

    def _validate(self, node, parameters, callback) -> str:
        self._reportProgress(callback, _("Validating"), 0)
        if not self.meshes:
            raise self.DicomToPrintError(_("Create the mesh first"))
        parameters.validate()
        targets = self._targets(node, node.outputStlPath or "model.stl", parameters)
        for index in reversed(range(self.scene.GetNumberOfNodesByClass("vtkMRMLTableNode"))):
            table = self.scene.GetNthNodeByClass(index, "vtkMRMLTableNode")
            if table.GetAttribute(self.REPORT_ATTRIBUTE):
                self.scene.RemoveNode(table)
        self.reports, tables, meshes, thickness = [], [], [], []
        for index, (name, segmentIds, _path) in enumerate(targets):
            self._reportProgress(callback, _("Validating {name}").format(name=name), 100.0 * index / len(targets))
            targetMeshes = [self.meshes[segmentId] for segmentId in segmentIds]
            polyData = targetMeshes[0] if len(targetMeshes) == 1 else self._display.appendMeshes(targetMeshes)
            report = self.pipeline.validate(polyData, parameters)
            table = self.pipeline.reportTable(report, f"DicomToPrint validation: {name}")
            table.SetAttribute(self.REPORT_ATTRIBUTE, "1")
            self.reports.append((name, report))
            tables.append(table)
            meshes.extend(targetMeshes)
            thickness.append(report.thickness)
        colored = all(t is not None for t in thickness)
        node.printModel = self._display.showMeshModel(self.scene, meshes, "DicomToPrint model", node.printModel,
                                                      thickness if colored else None, parameters.wallThicknessLimitMm)
        failing = [i for i, (_name, report) in enumerate(self.reports) if not report.printable]
        node.reportTable = tables[failing[0] if failing else 0]
        return self.verdict()[0]

    def _exportModel(self, node, parameters, callback) -> str:
        self._reportProgress(callback, _("Exporting"), 0)
        if not self.meshes:
            raise self.DicomToPrintError(_("Create the mesh first"))
        outputPath = node.outputStlPath
        problem = outputPathProblem(outputPath, ExportFormat(parameters.exportFormat))
        if problem:
            raise self.DicomToPrintError(problem)
        parameters.validate()
        paths = [path for _name, _ids, path in self._targets(node, outputPath, parameters)]
        for path in paths:  # refuse before writing anything, not after the first file
            self._export.checkOutputPath(path, parameters.overwrite)
        existing = {path for path in paths if os.path.exists(path)}
        # Slicer may have rebuilt a closed surface from the labelmap since (e.g. "Show 3D"): export exactly the
        # meshes that were made and validated.
        for segmentId, polyData in self.meshes.items():
            self._surface.setClosedSurface(node.segmentation, segmentId, polyData)
        segmentation = node.segmentation.GetSegmentation()
        segments = [(segmentId, segmentation.GetSegment(segmentId).GetName(),
                     tuple(segmentation.GetSegment(segmentId).GetColor())) for segmentId in self.meshes
                    if segmentation.GetSegment(segmentId)]
        self._reportProgress(callback, _("Writing {files}").format(
            files=", ".join(os.path.basename(p) for p in paths)), 10)
        try:
            written = self.pipeline.exportModel(node.segmentation, segments, self.meshes, outputPath, parameters)
        except BaseException:  # cancelled or failed half-way: no file of this export is left
            for path in set(paths) - existing:
                with contextlib.suppress(OSError):
                    os.remove(path)
            raise
        units = "mm" if parameters.sizeScale == 1.0 else f"mm x {parameters.sizeScale:g}"
        return _("Wrote {files} ({coordinates}, {units}).").format(
            files=", ".join(written), coordinates=parameters.coordinateSystem, units=units)


#
# DicomToPrintTest
#


def testSuiteFolder() -> str:
    """The Testing/Python suite: copied beside the module by the build, or the source checkout's own."""
    moduleDir = os.path.dirname(os.path.abspath(__file__))
    for folder in (os.path.join(moduleDir, "DicomToPrintTests"),
                   os.path.join(moduleDir, os.pardir, "Testing", "Python")):
        if os.path.isdir(folder):
            return os.path.normpath(folder)
    raise FileNotFoundError(f"DicomToPrint's test suite was not found beside {moduleDir}")


class DicomToPrintTest(ScriptedLoadableModuleTest):
    """Inside Slicer: the project's test suite (Testing/Python, plain unittest cases), the panel driven through
    Run all with the real Qt widgets, and the library's segmentation against Slicer's own Segment Editor effects."""

    def setUp(self):
        import tempfile

        slicer.mrmlScene.Clear(0)
        self.temporaryFolder = tempfile.mkdtemp(prefix="DicomToPrintTest-")

    def tearDown(self):
        import shutil

        shutil.rmtree(self.temporaryFolder, True)

    def runTest(self):
        for test in (self.test_DicomToPrintSuite, self.test_PanelRunAll, self.test_LibraryEqualsSegmentEditorEffects):
            self.setUp()
            try:
                test()
            finally:
                self.tearDown()

    def phantomFolder(self, name: str, **options) -> str:
        from DicomToPrintLib import sampledata

        folder = os.path.join(self.temporaryFolder, name)
        os.makedirs(folder)
        sampledata.writePhantomSeries(name, folder, **options)
        return folder

    def test_DicomToPrintSuite(self):
        self.delayDisplay("Running the DicomToPrint test suite")
        suite = unittest.defaultTestLoader.discover(testSuiteFolder(), pattern="*Test.py")
        result = unittest.TextTestRunner(verbosity=2).run(suite)
        self.assertTrue(result.wasSuccessful(), f"{len(result.failures)} failures, {len(result.errors)} errors")

    def test_PanelRunAll(self):
        """The panel with Slicer's real widgets: a DICOM folder, a few settings, Run all, the report and the file."""
        from DicomToPrintLib import export

        self.delayDisplay("Driving the DICOM to Print panel")
        folder = self.phantomFolder("shell", shape=(80, 80, 40), spacing=(1.0, 1.0, 1.5))
        outputPath = os.path.join(self.temporaryFolder, "shell.stl")
        slicer.util.selectModule("DicomToPrint")
        widget = slicer.modules.dicomtoprint.widgetRepresentation().self()
        node = widget.logic.getParameterNode()
        node.inputSource = InputSource.DICOM_FOLDER
        node.inputDicomFolder = folder
        self.assertEqual(widget.ui.inputDicomFolderPathLineEdit.currentPath, folder)
        node.targetTriangles = 20000
        self.assertEqual(widget.ui.targetTrianglesSpinBox.value, 20000)
        widget.ui.wallThicknessLimitSpinBox.value = 2.0
        self.assertEqual(node.wallThicknessLimitMm, 2.0)
        widget.ui.smoothingMethodComboBox.currentIndex = list(SmoothingMethod).index(SmoothingMethod.GAUSSIAN)
        self.assertEqual(node.smoothingMethod, SmoothingMethod.GAUSSIAN)
        node.smoothingMethod = SmoothingMethod.MEDIAN
        node.outputStlPath = outputPath
        self.assertTrue(widget.ui.runAllButton.enabled)
        widget.ui.runAllButton.click()
        self.assertTrue(os.path.isfile(outputPath))
        self.assertTrue(widget.ui.printableLabel.text.startswith("PRINTABLE"), widget.ui.printableLabel.text)
        self.assertEqual(widget.ui.reportTableView.mrmlTableNode().GetID(), node.reportTable.GetID())
        report = widget.logic.pipeline.validate(export.readStl(outputPath), parametersFromParameterNode(node))
        self.assertTrue(report.printable, report.reasons)
        self.assertLessEqual(report.statistics.triangles, 20000)
        self.delayDisplay("Panel test passed")

    def test_LibraryEqualsSegmentEditorEffects(self):
        """Slicer's Threshold, Islands and Smoothing effects, clicked through qMRMLSegmentEditorWidget, and the
        library's SegmentEditor operations give identical labelmaps on the same volume."""
        import numpy as np

        from DicomToPrintLib import segment

        self.delayDisplay("Comparing the library with Slicer's Segment Editor effects")
        folder = self.phantomFolder("islands", shape=(110, 110, 64), spacing=(0.8, 0.8, 1.25))
        logic = DicomToPrintLogic().pipeline
        volume = logic.loadSeries(logic.findSeries(folder).selectSeries()).volumeNode
        minimum, maximum = 520.0, volume.GetImageData().GetScalarRange()[1]
        # a 3 x 3 x 3 voxel median at this spacing: it moves the boundary (a 2 mm kernel would be 3 x 3 x 1)
        minimumSizeVoxels, kernelSizeMm = 200, 3.0

        effectsSegmentation = segment.createSegmentation(logic.context, volume, "Segment Editor effects")
        effectsSegmentId = effectsSegmentation.GetSegmentation().AddEmptySegment("", "Bone")
        editorNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
        editorWidget = slicer.qMRMLSegmentEditorWidget()
        try:
            editorWidget.setMRMLSegmentEditorNode(editorNode)
            editorWidget.setMRMLScene(slicer.mrmlScene)
            editorWidget.setSegmentationNode(effectsSegmentation)
            editorWidget.setSourceVolumeNode(volume)
            editorNode.SetSelectedSegmentID(effectsSegmentId)
            for effectName, effectParameters in (
                    ("Threshold", {"MinimumThreshold": minimum, "MaximumThreshold": maximum}),
                    ("Islands", {"Operation": segment.KEEP_LARGEST_ISLAND, "MinimumSize": minimumSizeVoxels}),
                    ("Smoothing", {"SmoothingMethod": segment.MEDIAN, "KernelSizeMm": kernelSizeMm})):
                editorWidget.setActiveEffectByName(effectName)
                effect = editorWidget.activeEffect()
                self.assertIsNotNone(effect, f"Slicer's {effectName} effect")
                for name, value in effectParameters.items():
                    effect.setParameter(name, str(value))
                effect.self().onApply()
        finally:  # no live editor is left on the scene
            editorWidget.setActiveEffect(None)
            editorWidget.setSegmentationNode(None)
            editorWidget.setMRMLSegmentEditorNode(None)
            editorWidget.setMRMLScene(None)
            editorWidget.deleteLater()
            slicer.mrmlScene.RemoveNode(editorNode)

        librarySegmentation = segment.createSegmentation(logic.context, volume, "DicomToPrint library")
        with segment.SegmentEditor(logic.context, librarySegmentation, volume) as editor:
            librarySegmentId = editor.addSegment("Bone")
            editor.threshold(librarySegmentId, minimum, maximum)
            thresholded = segment.segmentMask(librarySegmentation, librarySegmentId, volume)
            islands = editor.islands(librarySegmentId, segment.KEEP_LARGEST_ISLAND, minimumSize=minimumSizeVoxels)
            largestIsland = segment.segmentMask(librarySegmentation, librarySegmentId, volume)
            editor.smoothing(librarySegmentId, segment.MEDIAN, kernelSizeMm)

        effectsMask = segment.segmentMask(effectsSegmentation, effectsSegmentId, volume)
        libraryMask = segment.segmentMask(librarySegmentation, librarySegmentId, volume)
        self.assertEqual((islands["islands"], islands["kept"]), (3, 1), "the phantom's two specks are dropped")
        self.assertLess(int(largestIsland.sum()), int(thresholded.sum()))
        self.assertFalse(np.array_equal(largestIsland, libraryMask), "the median moved the boundary")
        np.testing.assert_array_equal(effectsMask, libraryMask)
        logging.info("Library and Segment Editor effects agree on %d voxels", int(libraryMask.sum()))
        self.delayDisplay("Library equals Slicer's Segment Editor effects")
