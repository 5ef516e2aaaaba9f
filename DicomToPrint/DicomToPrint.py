"""DicomToPrint: a CT or MR DICOM series to a validated, print-ready STL, as a Slicer scripted module.

The work is done by the GUI-free library DicomToPrintLib (beside this file), which also runs on a plain Python
install with slicer-core. This file is the Slicer-facing layer: the module description, the panel (a thin
widget over the library's steps, its settings in a parameter node), a Logic that works on ``slicer.mrmlScene``,
and a Test that runs the project's whole test suite inside Slicer and drives the panel.
"""

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import unittest
from typing import Annotated

import ctk
import numpy as np
import qt
import slicer
import vtk
from slicer import vtkMRMLModelNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

import DicomToPrintLib
from DicomToPrintLib import dicom, display, export, levels, sampledata, segment, surface
from DicomToPrintLib.logic import AUTO_THRESHOLD_METHODS, DicomToPrintParameters, defaultSegmentName
from DicomToPrintLib.runtime import DicomToPrintError, ProcessingCancelled, reportProgress

# The parameter node wrapper (and its ranges) is newer than some Slicer versions that can still load this file:
# without it the panel says which Slicer it needs instead of the module failing to load.
try:
    from slicer.parameterNodeWrapper import (
        Choice,
        FloatRange,
        GuiConnector,
        RangeBounds,
        WithinRange,
        parameterNodeGuiConnector,
        parameterNodeWrapper,
    )
    from slicer.parameterNodeWrapper.util import unannotatedType

    PARAMETER_NODE_WRAPPER_PROBLEM = ""
except ImportError as error:
    PARAMETER_NODE_WRAPPER_PROBLEM = f"slicer.parameterNodeWrapper is incomplete ({error})"

    def parameterNodeWrapper(classtype):
        return classtype

    def parameterNodeGuiConnector(classtype):
        return classtype

    def unannotatedType(datatype):
        return datatype

    class _Annotation:
        def __init__(self, *args):
            self.args = args

    Choice = RangeBounds = WithinRange = _Annotation
    GuiConnector = object

    class FloatRange:
        def __init__(self, minimum=0.0, maximum=0.0):
            self.minimum, self.maximum = minimum, maximum


#: The panel segments with vtkSlicerSegmentEditorLogic, which Slicer has since this version.
MINIMUM_SLICER_VERSION = "5.10"


def missingRequirement() -> str:
    """Why this Slicer cannot run the panel, or "" when it can."""
    version = getattr(getattr(slicer, "app", None), "applicationVersion", "of this version")
    if not hasattr(slicer, "vtkSlicerSegmentEditorLogic"):
        return (f"DICOM to Print needs Slicer {MINIMUM_SLICER_VERSION} or newer: it segments with Slicer's "
                f"vtkSlicerSegmentEditorLogic, which Slicer {version} does not have. Please install a newer "
                "Slicer from https://download.slicer.org.")
    if PARAMETER_NODE_WRAPPER_PROBLEM:
        return (f"DICOM to Print needs Slicer {MINIMUM_SLICER_VERSION} or newer: {PARAMETER_NODE_WRAPPER_PROBLEM} "
                f"in Slicer {version}. Please install a newer Slicer from https://download.slicer.org.")
    return ""


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
The panel runs the steps one by one (each section's button) or all at once (Run all); the Segment Editor in the
Segmentation section touches up the segmentation with any of Slicer's effects before the mesh is made.
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
# DicomToPrintParameterNode
#

#: The library's defaults: the parameter node starts from exactly these.
LIBRARY_DEFAULTS = DicomToPrintParameters()
#: Threshold presets; "" is none (then the automatic method decides).
PRESET_CHOICES = ("", *segment.THRESHOLD_PRESETS)


@parameterNodeWrapper
class DicomToPrintParameterNode:
    """Everything the panel shows, saved with the scene.

    The settings have the names, meanings and defaults of :class:`DicomToPrintLib.DicomToPrintParameters`, except
    for the library's optional values (None), which a parameter node cannot hold; see
    :func:`parametersFromParameterNode` for how they map. The rest are the nodes and files the panel works on.
    """

    # -- nodes and files
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
    series: str = LIBRARY_DEFAULTS.series
    missingSlices: Annotated[str, Choice(dicom.MISSING_SLICES)] = LIBRARY_DEFAULTS.missingSlices

    # -- 2. Segmentation
    preset: Annotated[str, Choice(PRESET_CHOICES)] = LIBRARY_DEFAULTS.preset
    autoThresholdMethod: Annotated[str, Choice(AUTO_THRESHOLD_METHODS)] = LIBRARY_DEFAULTS.autoThresholdMethod
    #: False: minimumThreshold and maximumThreshold are None (preset or automatic method); thresholdRange then
    #: shows the automatic value, which is where an explicit range starts from
    useExplicitThreshold: bool = False
    thresholdRange: Annotated[FloatRange, RangeBounds(-100000.0, 100000.0)]
    islandsOperation: Annotated[str, Choice(segment.ISLANDS_OPERATIONS)] = LIBRARY_DEFAULTS.islandsOperation
    islandsMinimumSizeMm3: Annotated[float, WithinRange(0.0, 1000000.0)] = LIBRARY_DEFAULTS.islandsMinimumSizeMm3
    fillCavities: bool = LIBRARY_DEFAULTS.fillCavities
    smoothingMethod: Annotated[str, Choice(segment.SMOOTHING_METHODS)] = LIBRARY_DEFAULTS.smoothingMethod
    kernelSizeMm: Annotated[float, WithinRange(0.1, 50.0)] = LIBRARY_DEFAULTS.kernelSizeMm
    gaussianStandardDeviationMm: Annotated[float, WithinRange(0.1, 50.0)] = \
        LIBRARY_DEFAULTS.gaussianStandardDeviationMm
    jointTaubinSmoothingFactor: Annotated[float, WithinRange(0.0, 1.0)] = LIBRARY_DEFAULTS.jointTaubinSmoothingFactor
    segmentName: str = LIBRARY_DEFAULTS.segmentName

    # -- 3. Mesh
    surfacePlacement: Annotated[str, Choice(surface.SURFACE_PLACEMENTS)] = LIBRARY_DEFAULTS.surfacePlacement
    conversionMethod: Annotated[str, Choice(tuple(surface.CONVERSION_METHODS))] = LIBRARY_DEFAULTS.conversionMethod
    #: True: surfaceSmoothingFactor is None (the placement's default); the factor then shows that default
    automaticSurfaceSmoothing: bool = LIBRARY_DEFAULTS.surfaceSmoothingFactor is None
    surfaceSmoothingFactor: Annotated[float, WithinRange(0.0, 1.0)] = LIBRARY_DEFAULTS.smoothingFactor
    targetTriangles: Annotated[int, WithinRange(0, 100000000)] = LIBRARY_DEFAULTS.targetTriangles
    targetReduction: Annotated[float, WithinRange(0.0, 0.999)] = LIBRARY_DEFAULTS.targetReduction
    minimumShellVolumeMm3: Annotated[float, WithinRange(0.0, 1000000.0)] = LIBRARY_DEFAULTS.minimumShellVolumeMm3
    hollowWallMm: Annotated[float, WithinRange(0.0, 100.0)] = LIBRARY_DEFAULTS.hollowWallMm
    hollowMode: Annotated[str, Choice(levels.SHELL_MODES)] = LIBRARY_DEFAULTS.hollowMode
    drainHoleDiameterMm: Annotated[float, WithinRange(0.0, 50.0)] = LIBRARY_DEFAULTS.drainHoleDiameterMm

    # -- 4. Validation
    buildVolumeXMm: Annotated[float, WithinRange(1.0, 10000.0)] = LIBRARY_DEFAULTS.buildVolumeXMm
    buildVolumeYMm: Annotated[float, WithinRange(1.0, 10000.0)] = LIBRARY_DEFAULTS.buildVolumeYMm
    buildVolumeZMm: Annotated[float, WithinRange(1.0, 10000.0)] = LIBRARY_DEFAULTS.buildVolumeZMm
    wallThicknessLimitMm: Annotated[float, WithinRange(0.0, 100.0)] = LIBRARY_DEFAULTS.wallThicknessLimitMm
    maximumThinAreaPercent: Annotated[float, WithinRange(0.0, 100.0)] = LIBRARY_DEFAULTS.maximumThinAreaPercent

    # -- 5. Export
    exportFormat: Annotated[str, Choice(export.FORMATS)] = LIBRARY_DEFAULTS.exportFormat
    coordinateSystem: Annotated[str, Choice(export.COORDINATE_SYSTEMS)] = LIBRARY_DEFAULTS.coordinateSystem
    sizeScale: Annotated[float, WithinRange(0.0001, 1000.0)] = LIBRARY_DEFAULTS.sizeScale
    overwrite: bool = LIBRARY_DEFAULTS.overwrite
    writePreview: bool = LIBRARY_DEFAULTS.writePreview


#: Library settings whose value the parameter node holds in another form (see parametersFromParameterNode).
MAPPED_SETTINGS = ("minimumThreshold", "maximumThreshold", "surfaceSmoothingFactor", "structures")


def parametersFromParameterNode(parameterNode) -> DicomToPrintParameters:
    """The library's settings from the panel's parameter node.

    Every setting has the same name and meaning in both, except the library's optional values:

    - ``minimumThreshold``, ``maximumThreshold``: ``thresholdRange.minimum`` and ``.maximum`` when
      ``useExplicitThreshold`` is on; None when it is off (then the preset, else the automatic method, decides).
    - ``surfaceSmoothingFactor``: None when ``automaticSurfaceSmoothing`` is on (the placement's default: 0.2
      sub-voxel, 0.5 labelmap); the node's ``surfaceSmoothingFactor`` when it is off.
    - ``structures``: always empty. In the panel the structures are the segmentation's segments: the
      Segmentation step makes one, the embedded Segment Editor adds, edits and colours the others, and the Mesh
      and Export steps take every non-empty segment.

    A setting the library gains and the node lacks raises AttributeError, so the two cannot drift apart quietly.
    """
    values = {field.name: getattr(parameterNode, field.name)
              for field in dataclasses.fields(DicomToPrintParameters) if field.name not in MAPPED_SETTINGS}
    explicit = parameterNode.useExplicitThreshold
    values["minimumThreshold"] = float(parameterNode.thresholdRange.minimum) if explicit else None
    values["maximumThreshold"] = float(parameterNode.thresholdRange.maximum) if explicit else None
    values["surfaceSmoothingFactor"] = (None if parameterNode.automaticSurfaceSmoothing
                                        else float(parameterNode.surfaceSmoothingFactor))
    values["structures"] = []
    return DicomToPrintParameters(**values)


@parameterNodeGuiConnector
class PathLineEditToStrConnector(GuiConnector):
    """Binds a ctkPathLineEdit to a str parameter.

    Slicer binds ctkPathLineEdit only to pathlib.Path, whose empty value is "." - a real folder, which would
    make an unset input folder look set. Paths are plain str here, as in the library, "" meaning unset.
    """

    @staticmethod
    def canRepresent(widget, datatype) -> bool:
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


#: What the combo boxes show for the library's choices (the parameter node keeps the library's values).
CHOICE_LABELS = {
    "": "None (automatic threshold)",
    "ISO50": "ISO-50 (CT: bone, halfway between soft tissue and cortical bone; MR: the body's surface)",
    "KEEP_LARGEST_ISLAND": "Keep the largest island",
    "REMOVE_SMALL_ISLANDS": "Remove small islands",
    "MEDIAN": "Median",
    "MORPHOLOGICAL_OPENING": "Opening (removes extrusions)",
    "MORPHOLOGICAL_CLOSING": "Closing (fills holes)",
    "GAUSSIAN": "Gaussian",
    "JOINT_TAUBIN": "Joint smoothing",
    "SUBVOXEL": "Sub-voxel (from the intensities)",
    "LABELMAP": "Labelmap (Slicer's classic conversion)",
    "FLYING_EDGES": "Flying edges",
    "SURFACE_NETS": "Surface nets",
    "LPS": "LPS (DICOM patient coordinates)",
    "RAS": "RAS (Slicer's world coordinates)",
    "INTERPOLATE": "Interpolate from the neighbours",
    "REFUSE": "Refuse the series",
}
#: Combo boxes whose labels come from CHOICE_LABELS ("NONE" is labelled in context).
LABELLED_COMBO_BOXES = {
    "presetComboBox": {}, "autoThresholdMethodComboBox": {}, "islandsOperationComboBox": {"NONE": "Keep all"},
    "smoothingMethodComboBox": {"NONE": "No smoothing"}, "surfacePlacementComboBox": {},
    "conversionMethodComboBox": {}, "coordinateSystemComboBox": {}, "missingSlicesComboBox": {},
}
#: Marks the validation tables the panel made, so that validating again replaces them.
REPORT_ATTRIBUTE = "DicomToPrint.Report"
#: The panel's own segment editor node, apart from the Segment Editor module's.
SEGMENT_EDITOR_SINGLETON_TAG = "DicomToPrint"


#
# DicomToPrintWidget
#


class DicomToPrintWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: each section runs one step of the library on the scene's nodes; settings live in the parameter
    node (bound to the widgets by their SlicerParameterName), results in the scene."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self.ui = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._scan = None  # DicomScan of the folder last searched
        self._meshes = {}  # segment ID -> the decimated, repaired mesh (RAS mm) of the Mesh step
        self._reports = []  # (name, ValidationReport) of the last validation
        self._observedSegmentation = None
        self._automaticThresholdKey = None
        self._thresholdRangeVolumeKey = None
        self._updatingGui = False
        self._busy = False
        self._cancelRequested = False
        self._readyToolTips = {}

    def resourcePath(self, filename):
        return resourcePath(filename)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        problem = missingRequirement()
        if problem:
            # An older Slicer: say what is needed instead of failing half-way through building the panel.
            label = qt.QLabel(problem)
            label.wordWrap = True
            label.objectName = "missingRequirementLabel"
            self.layout.addWidget(label)
            self.layout.addStretch(1)
            return

        uiWidget = slicer.util.loadUI(resourcePath("UI/DicomToPrint.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        self._setUpSegmentEditor()
        # The .ui connects the top widget's mrmlSceneChanged to each MRML widget's setMRMLScene.
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = DicomToPrintLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onSceneEndImport)

        self.ui.findSeriesButton.connect("clicked(bool)", self.onFindSeriesButton)
        self.ui.loadSeriesButton.connect("clicked(bool)", self.onLoadSeriesButton)
        self.ui.seriesComboBox.connect("currentIndexChanged(int)", self.onSeriesSelected)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.meshButton.connect("clicked(bool)", self.onMeshButton)
        self.ui.validateButton.connect("clicked(bool)", self.onValidateButton)
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)
        self.ui.runAllButton.connect("clicked(bool)", self.onRunAllButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.progressBar.hide()
        self.ui.cancelButton.hide()
        self._readyToolTips = {name: getattr(self.ui, name).toolTip for name in (
            "findSeriesButton", "loadSeriesButton", "segmentButton", "meshButton", "validateButton", "exportButton",
            "runAllButton")}

        self.initializeParameterNode()

    def _setUpSegmentEditor(self) -> None:
        editor = self.ui.segmentEditorWidget
        placeholder = None
        if not hasattr(editor, "setMRMLSegmentEditorNode"):
            # The .ui loader could not make the Segmentations module's widget (its designer plugin was not
            # found) and left a plain QWidget: put the real widget inside it.
            placeholder = editor
            editor = slicer.qMRMLSegmentEditorWidget()
            editor.segmentationNodeSelectorVisible = False
            editor.sourceVolumeNodeSelectorVisible = False
            (placeholder.layout() or qt.QVBoxLayout(placeholder)).addWidget(editor)
            self.ui.segmentEditorWidget = editor
        editor.setMaximumNumberOfUndoStates(10)
        # Its editor node first, so that the selections the widget makes when it gets the scene are kept there.
        self._selectSegmentEditorNode()
        if placeholder is not None:
            editor.setMRMLScene(slicer.mrmlScene)

    def _selectSegmentEditorNode(self) -> None:
        editorNode = slicer.mrmlScene.GetSingletonNode(SEGMENT_EDITOR_SINGLETON_TAG, "vtkMRMLSegmentEditorNode")
        if editorNode is None:
            editorNode = slicer.mrmlScene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
            editorNode.UnRegister(None)
            editorNode.SetSingletonTag(SEGMENT_EDITOR_SINGLETON_TAG)
            editorNode = slicer.mrmlScene.AddNode(editorNode)
        if _nodeId(self.ui.segmentEditorWidget.mrmlSegmentEditorNode()) != _nodeId(editorNode):
            self.ui.segmentEditorWidget.setMRMLSegmentEditorNode(editorNode)

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self.setParameterNode(None)
        self._observeSegmentation(None)
        self.removeObservers()

    def enter(self) -> None:
        if self.ui is None:
            return
        self.initializeParameterNode()
        self._selectSegmentEditorNode()
        self.ui.segmentEditorWidget.updateWidgetFromMRML()

    def exit(self) -> None:
        if self.ui is None:
            return
        # Stop reacting to parameter node changes; the panel is brought up to date when it is entered again.
        self.setParameterNode(None)
        self.ui.segmentEditorWidget.setActiveEffect(None)
        self.ui.segmentEditorWidget.removeViewObservations()

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self._observeSegmentation(None)
        self._clearResults()
        self._scan = None
        if self.ui is not None:
            self.ui.segmentEditorWidget.setSegmentationNode(None)
            self.ui.segmentEditorWidget.removeViewObservations()

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered and self.ui is not None:
            self._selectSegmentEditorNode()
            self.initializeParameterNode()

    def onSceneEndImport(self, caller, event) -> None:
        # A loaded scene brings its own settings and nodes; meshes of the previous session no longer apply.
        self._clearResults()
        if self.parent.isEntered and self.ui is not None:
            self._selectSegmentEditorNode()
            self.initializeParameterNode()
            self.ui.segmentEditorWidget.updateWidgetFromMRML()

    # -- parameter node -------------------------------------------------------------------------------------
    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Each widget that shows a setting has the Qt dynamic property SlicerParameterName in the .ui.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self._labelChoices()
            self._thresholdRangeVolumeKey = None  # connecting set the range widget's bounds again
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    def _labelChoices(self) -> None:
        """Readable texts for the library's choice values; connecting the GUI refills the combo boxes with the
        raw values, and the connectors go by index, so only the texts change."""
        for name, contextLabels in LABELLED_COMBO_BOXES.items():
            comboBox = getattr(self.ui, name)
            for index in range(comboBox.count):
                value = comboBox.itemText(index)
                # e.g. OTSU -> Otsu: Slicer's Threshold effect names its methods like this
                generic = value.replace("_", " ").capitalize() if value.isupper() else value
                comboBox.setItemText(index, contextLabels.get(value, CHOICE_LABELS.get(value, generic)))

    def parameters(self) -> DicomToPrintParameters:
        """The library's settings as the panel shows them."""
        return parametersFromParameterNode(self._parameterNode)

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        if self._parameterNode is None or self._updatingGui:
            return
        self._updatingGui = True
        try:
            node = self._parameterNode
            self._syncSegmentEditor()
            self._observeSegmentation(node.segmentation)
            self._updateThresholdRangeBounds()
            self._updateAutomaticValues()
            self._updateSettingWidgets()
            self._selectSeriesItem()
            if _nodeId(self.ui.reportTableView.mrmlTableNode()) != _nodeId(node.reportTable):
                self.ui.reportTableView.setMRMLTableNode(node.reportTable)
            self._updateButtonStates()
        finally:
            self._updatingGui = False

    def _syncSegmentEditor(self) -> None:
        editor, node = self.ui.segmentEditorWidget, self._parameterNode
        if _nodeId(editor.segmentationNode()) != _nodeId(node.segmentation):
            editor.setSegmentationNode(node.segmentation)
        if _nodeId(editor.sourceVolumeNode()) != _nodeId(node.inputVolume):
            editor.setSourceVolumeNode(node.inputVolume)

    def _observeSegmentation(self, segmentationNode) -> None:
        """Edits of the segmentation (Segment Editor, or the Segmentation step) make the mesh out of date."""
        if _nodeId(segmentationNode) == _nodeId(self._observedSegmentation):
            return
        events = (slicer.vtkSegmentation.SourceRepresentationModified, slicer.vtkSegmentation.SegmentAdded,
                  slicer.vtkSegmentation.SegmentRemoved)
        if self._observedSegmentation is not None:
            for event in events:
                self.removeObserver(self._observedSegmentation, event, self._onSegmentationEdited)
        self._observedSegmentation = segmentationNode
        if segmentationNode is not None:
            for event in events:
                self.addObserver(segmentationNode, event, self._onSegmentationEdited)
        self._clearResults()

    def _onSegmentationEdited(self, caller=None, event=None) -> None:
        if not self._meshes:
            return
        self._clearResults()
        segmentationNode = self._parameterNode.segmentation if self._parameterNode else None
        if segmentationNode is not None and segmentationNode.GetDisplayNode() is not None:
            segmentationNode.GetDisplayNode().SetVisibility3D(True)  # show the edits, not the old mesh
        self._setInfo(self.ui.meshInfoLabel, "The segmentation changed: create the mesh again.")
        self._updateButtonStates()

    def _clearResults(self) -> None:
        """Forget the meshes and reports: they no longer match the segmentation."""
        self._meshes = {}
        self._reports = []
        if self.ui is None:
            return
        if self._parameterNode is not None:
            display.setModelVisible(self._parameterNode.printModel, False)
        self.ui.printableLabel.text = ""
        self.ui.printableLabel.styleSheet = ""

    def _updateThresholdRangeBounds(self) -> None:
        """The range slider spans the input volume's values (the parameter node's bounds are much wider)."""
        volume = self._parameterNode.inputVolume
        imageData = volume.GetImageData() if volume else None
        key = (_nodeId(volume), imageData.GetMTime() if imageData else None)
        if key == self._thresholdRangeVolumeKey:
            return
        self._thresholdRangeVolumeKey = key
        if imageData is not None:
            low, high = imageData.GetScalarRange()
            self.ui.thresholdRangeWidget.setRange(low, high)

    def _updateAutomaticValues(self) -> None:
        """Show the values the library will use when a setting is automatic: the threshold range of the preset or
        automatic method (ISO-50) on the input volume, and the placement's surface smoothing factor."""
        node = self._parameterNode
        if node.automaticSurfaceSmoothing:
            factor = surface.DEFAULT_SMOOTHING[node.surfacePlacement]
            if node.surfaceSmoothingFactor != factor:
                node.surfaceSmoothingFactor = factor
        volume = node.inputVolume
        imageData = volume.GetImageData() if volume else None
        if node.useExplicitThreshold:
            self.ui.automaticThresholdLabel.text = "Explicit range: the preset and the automatic method are not used."
            self._automaticThresholdKey = None
            return
        if imageData is None:
            self.ui.automaticThresholdLabel.text = "Choose an input volume to see the automatic threshold."
            self._automaticThresholdKey = None
            return
        key = (volume.GetID(), imageData.GetMTime(), node.preset, node.autoThresholdMethod)
        if key == self._automaticThresholdKey:
            return
        self._automaticThresholdKey = key
        modality = display.volumeModality(volume)
        try:
            threshold = self.logic.thresholdRange(volume, self.parameters(), modality or "CT")
        except (DicomToPrintError, ValueError) as error:
            self.ui.automaticThresholdLabel.text = f"No automatic threshold: {error}"
            return
        note = "" if modality else " (modality unknown: treated as CT)"
        self.ui.automaticThresholdLabel.text = (f"{threshold['source']}: {threshold['minimum']:g} to "
                                                f"{threshold['maximum']:g}{note}. {threshold['reason']}")
        current = node.thresholdRange
        if (current.minimum, current.maximum) != (threshold["minimum"], threshold["maximum"]):
            try:
                node.thresholdRange = FloatRange(threshold["minimum"], threshold["maximum"])
            except ValueError:  # beyond the range widget's bounds (an unusual float volume): shown as text only
                pass

    def _updateSettingWidgets(self) -> None:
        """Enable the settings that matter for the choices made."""
        node, ui = self._parameterNode, self.ui
        ui.thresholdRangeWidget.enabled = node.useExplicitThreshold
        ui.presetComboBox.enabled = not node.useExplicitThreshold
        ui.autoThresholdMethodComboBox.enabled = not node.useExplicitThreshold and not node.preset
        ui.islandsMinimumSizeSpinBox.enabled = node.islandsOperation != segment.ISLANDS_NONE
        ui.kernelSizeSpinBox.enabled = node.smoothingMethod in (
            segment.MEDIAN, segment.MORPHOLOGICAL_OPENING, segment.MORPHOLOGICAL_CLOSING)
        ui.gaussianStandardDeviationSpinBox.enabled = node.smoothingMethod == segment.GAUSSIAN
        ui.jointTaubinSmoothingFactorSlider.enabled = node.smoothingMethod == segment.JOINT_TAUBIN
        ui.conversionMethodComboBox.enabled = node.surfacePlacement == surface.LABELMAP
        ui.surfaceSmoothingFactorSlider.enabled = not node.automaticSurfaceSmoothing

    def _updateButtonStates(self) -> None:
        node, ui = self._parameterNode, self.ui
        if node is None:
            return
        folder = node.inputDicomFolder
        folderOk = bool(folder) and os.path.isdir(folder)
        segmentationNode = node.segmentation
        hasSegments = segmentationNode is not None and segmentationNode.GetSegmentation().GetNumberOfSegments() > 0
        volumeNeeded = node.surfacePlacement == surface.SUBVOXEL
        outputProblem = outputPathProblem(node.outputStlPath, node.exportFormat)
        states = [
            (ui.findSeriesButton, folderOk, "Choose an existing DICOM folder"),
            (ui.loadSeriesButton, folderOk, "Choose an existing DICOM folder"),
            (ui.segmentButton, node.inputVolume is not None, "Choose an input volume or load a series"),
            (ui.meshButton, hasSegments and (node.inputVolume is not None or not volumeNeeded),
             "Segment first (the sub-voxel surface also needs the input volume)"),
            (ui.validateButton, bool(self._meshes), "Create the mesh first"),
            (ui.exportButton, bool(self._meshes) and not outputProblem, outputProblem or "Create the mesh first"),
            (ui.runAllButton, (node.inputVolume is not None or folderOk) and not outputProblem,
             outputProblem or "Choose an input volume or a DICOM folder"),
        ]
        for button, enabled, why in states:
            button.enabled = enabled and not self._busy
            # a disabled button says what it is waiting for; an enabled one what it does (its .ui tool tip)
            button.toolTip = self._readyToolTips.get(button.objectName, "") if enabled else why

    # -- series list ----------------------------------------------------------------------------------------
    def _fillSeriesList(self) -> None:
        comboBox = self.ui.seriesComboBox
        wasBlocked = comboBox.blockSignals(True)
        try:
            comboBox.clear()
            for entry in self._scan.listing() if self._scan else []:
                comboBox.addItem(display.seriesLabel(entry), entry["seriesInstanceUID"])
        finally:
            comboBox.blockSignals(wasBlocked)
        self._selectSeriesItem()

    def _defaultSeriesUid(self) -> str:
        try:
            return self._scan.selectSeries(None).seriesInstanceUID if self._scan else ""
        except DicomToPrintError:  # no CT or MR volume: the user picks one
            return ""

    def _selectSeriesItem(self) -> None:
        """Show the parameter node's series (its SeriesInstanceUID; "" = the largest CT or MR series)."""
        comboBox = self.ui.seriesComboBox
        if comboBox.count == 0:
            return
        uid = self._parameterNode.series or self._defaultSeriesUid()
        index = comboBox.findData(uid)
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
        """Busy state, progress bar and Cancel for a step; errors shown (and raised), a cancel is not an error."""
        self._busy = True
        self._cancelRequested = False
        self.ui.progressBar.value = 0
        self.ui.progressBar.show()
        self.ui.cancelButton.enabled = True
        self.ui.cancelButton.show()
        self._updateButtonStates()
        try:
            with slicer.util.tryWithErrorDisplay(failureMessage, waitCursor=True):
                try:
                    yield
                except ProcessingCancelled as cancelled:
                    self.ui.statusLabel.text = str(cancelled)
        finally:
            self._busy = False
            self.ui.progressBar.hide()
            self.ui.cancelButton.hide()
            self._updateButtonStates()

    def _progressCallback(self, start: float = 0.0, end: float = 100.0):
        """A library-style ``callback(text, percent)`` mapped onto [start, end] of the bar; True asks to cancel.
        Events are processed so that Cancel can be clicked while a step runs."""
        def callback(text, percent):
            self.ui.progressBar.value = int(round(start + (end - start) * max(0.0, min(100.0, percent)) / 100.0))
            self.ui.statusLabel.text = text
            slicer.app.processEvents()
            return self._cancelRequested
        return callback

    def onCancelButton(self) -> None:
        self._cancelRequested = True
        self.ui.cancelButton.enabled = False
        self.ui.statusLabel.text = "Cancelling at the end of the current step..."

    def onFindSeriesButton(self) -> None:
        with self._processing("Failed to find DICOM series."):
            self._findSeries(self._progressCallback())

    def onLoadSeriesButton(self) -> None:
        with self._processing("Failed to load the series."):
            self._loadSeries(self._progressCallback())

    def onSegmentButton(self) -> None:
        with self._processing("Segmentation failed."):
            self._segment(self._progressCallback())

    def onMeshButton(self) -> None:
        with self._processing("Failed to create the mesh."):
            self._createMesh(self._progressCallback())

    def onValidateButton(self) -> None:
        with self._processing("Validation failed."):
            self._validate(self._progressCallback())

    def onExportButton(self) -> None:
        with self._processing("Export failed."):
            self._export(self._progressCallback())

    def onRunAllButton(self) -> None:
        """Every step in order: the input volume (or the series chosen in the DICOM folder), segment, mesh,
        validate, export."""
        with self._processing("Run all failed."):
            if self._parameterNode.inputVolume is None:
                self._loadSeries(self._progressCallback(0, 10))
            self._segment(self._progressCallback(10, 30))
            self._createMesh(self._progressCallback(30, 70))
            self._validate(self._progressCallback(70, 95))
            self._export(self._progressCallback(95, 100))
            self.ui.statusLabel.text = "Done: " + self.ui.exportInfoLabel.text

    # -- the steps: each reads the parameter node and calls the library ---------------------------------------
    def _findSeries(self, progressCallback) -> None:
        folder = self._parameterNode.inputDicomFolder
        if not folder:
            raise DicomToPrintError("Choose a DICOM folder (or an input volume)")
        self._scan = None
        try:
            self._scan = self.logic.findSeries(folder, progressCallback)
        finally:
            self._fillSeriesList()  # a failed search leaves no stale list behind
        skipped = f"; {self._scan.skippedFiles} files skipped" if self._scan.skippedFiles else ""
        self._setInfo(self.ui.seriesInfoLabel, f"{len(self._scan.series)} series found{skipped}.")

    def _loadSeries(self, progressCallback) -> None:
        node = self._parameterNode
        if self._scan is None or os.path.normpath(self._scan.folder) != os.path.normpath(node.inputDicomFolder):
            self._findSeries(progressCallback)
        parameters = self.parameters()
        series = self._scan.selectSeries(parameters.series or None)
        reportProgress(progressCallback, f"Loading {series.numberOfSlices} slices", 5)
        loaded = self.logic.loadSeries(series, progressCallback, parameters.missingSlices)
        volume = loaded.volumeNode
        volume.SetName(slicer.mrmlScene.GenerateUniqueName(series.seriesDescription or f"{series.modality} series"))
        display.setVolumeModality(volume, series.modality)
        node.inputVolume = volume
        if not node.outputStlPath:
            node.outputStlPath = os.path.join(slicer.app.defaultScenePath,
                                              display.safeFileNamePart(volume.GetName()) + ".stl")
        slicer.util.setSliceViewerLayers(background=volume, fit=True)
        warnings = "; ".join(getattr(loaded, "warnings", []) or [])
        self._setInfo(self.ui.seriesInfoLabel, f"Loaded {display.seriesLabel(self._listingEntry(series))}"
                      + (f". Warning: {warnings}" if warnings else "."))

    def _listingEntry(self, series) -> dict:
        return next((e for e in self._scan.listing() if e["seriesInstanceUID"] == series.seriesInstanceUID), {})

    def _segment(self, progressCallback) -> None:
        node = self._parameterNode
        volume = node.inputVolume
        if volume is None:
            raise DicomToPrintError("Choose an input volume, or load a series from a DICOM folder")
        parameters = self.parameters()
        parameters.validate()
        modality = display.volumeModality(volume) or "CT"
        reportProgress(progressCallback, "Computing the threshold", 0)
        threshold = self.logic.thresholdRange(volume, parameters, modality)
        segmentationNode = node.segmentation
        if segmentationNode is None:
            segmentationNode = segment.createSegmentation(self.logic.context, volume,
                                                          slicer.mrmlScene.GenerateUniqueName("DicomToPrint"))
            node.segmentation = segmentationNode
        self._observeSegmentation(segmentationNode)  # (the parameter node's observer may not have run yet)
        segmentation = segmentationNode.GetSegmentation()
        if node.pipelineSegmentId and segmentation.GetSegment(node.pipelineSegmentId):
            segmentation.RemoveSegment(node.pipelineSegmentId)  # replaced below; the user's own segments stay
        node.pipelineSegmentId = ""
        if segmentation.GetNumberOfSegments() == 0:
            # an empty segmentation takes the geometry of the volume it is made from now
            segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        before = set(segmentation.GetSegmentIDs())
        reportProgress(progressCallback, f"Threshold {threshold['minimum']:g} to {threshold['maximum']:g}, islands "
                       "and smoothing", 10)
        try:
            _, segmentId, islands = self.logic.segment(volume, parameters, threshold, segmentationNode,
                                                       defaultSegmentName(parameters, modality))
        except Exception:
            for segmentId in set(segmentation.GetSegmentIDs()) - before:  # no half-made segment is left
                segmentation.RemoveSegment(segmentId)
            raise
        node.pipelineSegmentId = segmentId
        reportProgress(progressCallback, "Showing the segmentation", 80)
        display.showSegmentation(segmentationNode)
        islandsText = "" if islands.get("islands") is None else \
            f", {islands['kept']} of {islands['islands']} islands kept"
        self._setInfo(self.ui.segmentationInfoLabel,
                      f"{segmentation.GetSegment(segmentId).GetName()}: threshold {threshold['minimum']:g} to "
                      f"{threshold['maximum']:g} ({threshold['source']}){islandsText}, "
                      f"{islands.get('voxels', 0):,} voxels.")

    def _segmentsToMesh(self) -> list:
        """(segment ID, name) of the segmentation's non-empty segments, in its order."""
        segmentationNode = self._parameterNode.segmentation
        if segmentationNode is None:
            raise DicomToPrintError("Segment first: there is no segmentation")
        segmentation = segmentationNode.GetSegmentation()
        return [(segmentId, segmentation.GetSegment(segmentId).GetName())
                for segmentId in segmentation.GetSegmentIDs()
                if segment.segmentVoxelCount(segmentationNode, segmentId) > 0]

    def _createMesh(self, progressCallback) -> None:
        node = self._parameterNode
        parameters = self.parameters()
        parameters.validate()
        segmentationNode, volume = node.segmentation, node.inputVolume
        segments = self._segmentsToMesh()
        if not segments:
            raise DicomToPrintError("Every segment of the segmentation is empty: nothing to make a mesh of")
        if parameters.surfacePlacement == surface.SUBVOXEL and volume is None:
            raise DicomToPrintError("The sub-voxel surface is placed from the intensities: choose the input volume "
                                    "(or use the labelmap surface placement)")
        self._clearResults()
        meshes, lines = {}, []
        share = 100.0 / len(segments)
        for index, (segmentId, name) in enumerate(segments):
            reportProgress(progressCallback, f"Creating the surface of {name}", index * share)
            polyData, _, _ = self.logic.createSurface(segmentationNode, segmentId, volume, parameters)
            surfaceTriangles = polyData.GetNumberOfPolys()
            reportProgress(progressCallback, f"Decimating and repairing {name} ({surfaceTriangles:,} triangles)",
                           (index + 0.5) * share)
            polyData, decimation, _ = self.logic.decimate(polyData, parameters)
            meshes[segmentId] = polyData
            lines.append(f"{name}: {polyData.GetNumberOfPolys():,} triangles (surface {surfaceTriangles:,})")
        # The labelmap conversion of a later segment rebuilds every closed surface: set them all at the end.
        for segmentId, polyData in meshes.items():
            surface.setClosedSurface(segmentationNode, segmentId, polyData)
        self._meshes = meshes
        node.printModel = display.showMeshModel(slicer.mrmlScene, list(meshes.values()),
                                                slicer.mrmlScene.GenerateUniqueName("DicomToPrint model"),
                                                node.printModel)
        if segmentationNode.GetDisplayNode() is not None:
            segmentationNode.GetDisplayNode().SetVisibility3D(False)  # the model shows the mesh that will print
        self._setInfo(self.ui.meshInfoLabel, "; ".join(lines) + ". Repaired: closed, manifold, outward-facing.")

    def _validate(self, progressCallback) -> None:
        node = self._parameterNode
        if not self._meshes:
            raise DicomToPrintError("Create the mesh first")
        parameters = self.parameters()
        parameters.validate()
        targets = self._exportTargets(node.outputStlPath or "model.stl")
        for table in slicer.util.getNodesByClass("vtkMRMLTableNode"):
            if table.GetAttribute(REPORT_ATTRIBUTE):
                slicer.mrmlScene.RemoveNode(table)
        self._reports, tables, meshes, thickness = [], [], [], []
        for index, (name, segmentIds, _) in enumerate(targets):
            reportProgress(progressCallback, f"Validating {name}", 100.0 * index / len(targets))
            targetMeshes = [self._meshes[segmentId] for segmentId in segmentIds]
            polyData = targetMeshes[0] if len(targetMeshes) == 1 else display.appendMeshes(targetMeshes)
            report = self.logic.validate(polyData, parameters)
            table = self.logic.reportTable(report, f"DicomToPrint validation: {name}")
            table.SetAttribute(REPORT_ATTRIBUTE, "1")
            self._reports.append((name, report))
            tables.append(table)
            meshes.extend(targetMeshes)
            thickness.append(report.thickness)
        colored = all(t is not None for t in thickness)
        node.printModel = display.showMeshModel(slicer.mrmlScene, meshes, "DicomToPrint model", node.printModel,
                                                thickness if colored else None, parameters.wallThicknessLimitMm)
        failing = [i for i, (_, report) in enumerate(self._reports) if not report.printable]
        node.reportTable = tables[failing[0] if failing else 0]
        self._showVerdict()

    def _showVerdict(self) -> None:
        """One clear line: printable or not, and why."""
        several = len(self._reports) > 1
        reasons = [f"{name}: {reason}" if several else reason
                   for name, report in self._reports for reason in report.reasons]
        warnings = [f"{name}: {warning}" if several else warning
                    for name, report in self._reports for warning in report.warnings]
        if reasons:
            text, color = "NOT PRINTABLE: " + "; ".join(reasons), "#c62828"
        else:
            text, color = "PRINTABLE", "#2e7d32"
        if warnings:
            text += ". Warning: " + "; ".join(warnings)
        self.ui.printableLabel.text = text
        self.ui.printableLabel.styleSheet = f"QLabel {{ color: {color}; font-weight: bold; }}"

    def _exportTargets(self, outputPath: str):
        segmentation = self._parameterNode.segmentation.GetSegmentation()
        segments = [(segmentId, segmentation.GetSegment(segmentId).GetName()) for segmentId in self._meshes
                    if segmentation.GetSegment(segmentId)]
        return display.exportTargets(outputPath, segments, self._parameterNode.oneFilePerSegment)

    def _export(self, progressCallback) -> None:
        node = self._parameterNode
        if not self._meshes:
            raise DicomToPrintError("Create the mesh first")
        problem = outputPathProblem(node.outputStlPath, node.exportFormat)
        if problem:
            raise DicomToPrintError(problem)
        parameters = self.parameters()
        parameters.validate()
        targets = self._exportTargets(node.outputStlPath)
        for _, _, path in targets:  # refuse before writing anything, not after the first file
            export.checkOutputPath(path, parameters.overwrite)
        # Slicer may have rebuilt a closed surface from the labelmap since (e.g. "Show 3D"): export exactly the
        # meshes that were made and validated.
        for segmentId, polyData in self._meshes.items():
            surface.setClosedSurface(node.segmentation, segmentId, polyData)
        segmentation = node.segmentation.GetSegmentation()
        segments = [(segmentId, segmentation.GetSegment(segmentId).GetName(),
                     tuple(segmentation.GetSegment(segmentId).GetColor())) for segmentId in self._meshes
                    if segmentation.GetSegment(segmentId)]
        reportProgress(progressCallback, f"Writing {', '.join(os.path.basename(p) for _, _, p in targets)}", 0)
        written = self.logic.exportModel(node.segmentation, segments, self._meshes, node.outputStlPath, parameters)
        units = "mm" if parameters.sizeScale == 1.0 else f"mm x {parameters.sizeScale:g}"
        self._setInfo(self.ui.exportInfoLabel, f"Wrote {', '.join(written)} ({parameters.coordinateSystem}, {units}).")

    def _setInfo(self, label, text: str) -> None:
        label.text = text
        self.ui.statusLabel.text = text


def _nodeId(node):
    return node.GetID() if node is not None else None


def outputPathProblem(path: str, exportFormat: str = export.STL) -> str:
    """Why the model cannot be written there ("" when it can, as far as can be told before writing)."""
    extension = export.EXTENSIONS.get(exportFormat, ".stl")
    if not path:
        return f"Choose the output {exportFormat} file"
    if not path.lower().endswith(extension):
        return f"The output file name must end with {extension} (the format is {exportFormat})"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"The output folder {folder} does not exist"
    return ""


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

    def getParameterNode(self) -> "DicomToPrintParameterNode":
        return DicomToPrintParameterNode(super().getParameterNode())


#
# DicomToPrintTest
#


class DicomToPrintTest(ScriptedLoadableModuleTest):
    """Runs the project's test suite (Testing/Python, plain unittest cases) inside Slicer, drives the panel, and
    checks that the library's segmentation equals that of Slicer's own Segment Editor effects."""

    def setUp(self):
        if getattr(slicer, "app", None) is None:
            raise unittest.SkipTest("needs the Slicer application")
        slicer.mrmlScene.Clear(0)
        self.temporaryFolder = tempfile.mkdtemp(prefix="DicomToPrintTest-")
        self.addCleanup(shutil.rmtree, self.temporaryFolder, True)

    def runTest(self):
        for test in (self.test_DicomToPrintSuite, self.test_PanelRunAll, self.test_LibraryEqualsSegmentEditorEffects):
            self.setUp()
            try:
                test()
            finally:
                self.doCleanups()

    def phantomFolder(self, name: str, **options) -> str:
        folder = os.path.join(self.temporaryFolder, name)
        os.makedirs(folder)
        sampledata.writePhantomSeries(name, folder, **options)
        return folder

    def test_DicomToPrintSuite(self):
        self.delayDisplay("Running the DicomToPrint test suite")
        suite = unittest.defaultTestLoader.discover(testSuiteFolder(), pattern="*Test.py")
        result = unittest.TextTestRunner(verbosity=2).run(suite)
        self.assertTrue(result.wasSuccessful(), f"{len(result.failures)} failures, {len(result.errors)} errors")
        self.delayDisplay("DicomToPrint test suite passed")

    def test_PanelRunAll(self):
        """The panel as a user drives it: a DICOM folder, a few settings changed, Run all, the report and the file."""
        self.delayDisplay("Driving the DICOM to Print panel")
        folder = self.phantomFolder("shell", shape=(80, 80, 40), spacing=(1.0, 1.0, 1.5))
        outputPath = os.path.join(self.temporaryFolder, "shell.stl")
        slicer.util.selectModule("DicomToPrint")
        widget = slicer.modules.dicomtoprint.widgetRepresentation().self()
        self.assertEqual(missingRequirement(), "")
        node = widget.logic.getParameterNode()

        node.inputDicomFolder = folder
        self.assertEqual(widget.ui.inputDicomFolderPathLineEdit.currentPath, folder)
        self.assertTrue(widget.ui.findSeriesButton.enabled)
        self.assertFalse(widget.ui.runAllButton.enabled, "no output file chosen yet")
        widget.onFindSeriesButton()
        self.assertEqual(widget.ui.seriesComboBox.count, 1)
        self.assertIn("DicomToPrint phantom shell", widget.ui.seriesComboBox.currentText)

        # settings set on the parameter node show in the widgets, and widgets write the parameter node
        node.targetTriangles = 20000
        self.assertEqual(widget.ui.targetTrianglesSpinBox.value, 20000)
        widget.ui.wallThicknessLimitSpinBox.value = 2.0
        self.assertEqual(node.wallThicknessLimitMm, 2.0)
        widget.ui.smoothingMethodComboBox.currentIndex = segment.SMOOTHING_METHODS.index(segment.GAUSSIAN)
        self.assertEqual(node.smoothingMethod, segment.GAUSSIAN)
        node.smoothingMethod = segment.MEDIAN
        self.assertEqual(node.parameterNode.GetParameter("targetTriangles"), "20000", "saved with the scene")
        node.outputStlPath = outputPath
        self.assertTrue(widget.ui.runAllButton.enabled)
        self.assertEqual(parametersFromParameterNode(node).targetTriangles, 20000)

        widget.onRunAllButton()
        self.assertIsNotNone(node.inputVolume)
        self.assertEqual(display.volumeModality(node.inputVolume), "CT")
        self.assertIn("ISO-50", widget.ui.automaticThresholdLabel.text)
        self.assertTrue(os.path.isfile(outputPath))
        with open(outputPath, "rb") as f:
            self.assertEqual(f.read(80).rstrip(b"\0"), b"3D Slicer output. SPACE=LPS")
        table = node.reportTable
        self.assertIsNotNone(table)
        self.assertEqual((table.GetCellText(0, 0), table.GetCellText(0, 2)), ("Printable", "pass"))
        self.assertTrue(widget.ui.printableLabel.text.startswith("PRINTABLE"), widget.ui.printableLabel.text)
        self.assertEqual(widget.ui.reportTableView.mrmlTableNode().GetID(), table.GetID())
        thickness = node.printModel.GetPolyData().GetPointData().GetArray(display.THICKNESS_ARRAY_NAME)
        self.assertIsNotNone(thickness)
        self.assertEqual(node.printModel.GetDisplayNode().GetActiveScalarName(), display.THICKNESS_ARRAY_NAME)
        report = self.logicValidation(outputPath, parametersFromParameterNode(node))
        self.assertTrue(report.printable, report.reasons)
        self.assertLessEqual(report.statistics.triangles, 20000)

        # the file exists now and overwrite is off: the export step refuses (the button shows this in a dialog)
        with self.assertRaisesRegex(DicomToPrintError, "file exists"):
            widget._export(widget._progressCallback())
        self.assertTrue(widget.ui.exportButton.enabled)
        # an edit of the segmentation makes the mesh out of date
        segmentation = node.segmentation.GetSegmentation()
        segmentation.AddEmptySegment("", "Edit")
        self.assertFalse(widget.ui.exportButton.enabled)
        self.assertFalse(widget.ui.validateButton.enabled)
        node.outputStlPath = ""
        self.assertFalse(widget.ui.runAllButton.enabled)
        self.delayDisplay("Panel test passed")

    @staticmethod
    def logicValidation(path: str, parameters: DicomToPrintParameters):
        logic = DicomToPrintLogic()
        return logic.validate(export.readStl(path), parameters)

    def test_LibraryEqualsSegmentEditorEffects(self):
        """Slicer's Threshold, Islands and Smoothing effects, clicked through qMRMLSegmentEditorWidget, and the
        library's SegmentEditor operations give identical labelmaps on the same volume."""
        self.delayDisplay("Comparing the library with Slicer's Segment Editor effects")
        folder = self.phantomFolder("islands", shape=(110, 110, 64), spacing=(0.8, 0.8, 1.25))
        logic = DicomToPrintLogic()
        volume = logic.loadSeries(logic.findSeries(folder).selectSeries()).volumeNode
        minimum, maximum = 520.0, volume.GetImageData().GetScalarRange()[1]
        # a 3 x 3 x 3 voxel median at this spacing: it moves the boundary (a 2 mm kernel would be 3 x 3 x 1)
        minimumSizeVoxels, kernelSizeMm = 200, 3.0

        effectsSegmentation = segment.createSegmentation(logic.context, volume, "Segment Editor effects")
        effectsSegmentId = effectsSegmentation.GetSegmentation().AddEmptySegment("", "Bone")
        editorNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
        editorWidget = slicer.qMRMLSegmentEditorWidget()
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
        editorWidget.setActiveEffect(None)
        editorWidget.setSegmentationNode(None)

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
        self.assertGreater(int(libraryMask.sum()), 0)
        # each step did something, so that equal results mean equal operations
        self.assertEqual((islands["islands"], islands["kept"]), (3, 1), "the phantom's two specks are dropped")
        self.assertLess(int(largestIsland.sum()), int(thresholded.sum()))
        self.assertFalse(np.array_equal(largestIsland, libraryMask), "the median moved the boundary")
        self.assertEqual(int(effectsMask.sum()), int(libraryMask.sum()))
        np.testing.assert_array_equal(effectsMask, libraryMask)
        logging.info("Library and Segment Editor effects agree on %d voxels", int(libraryMask.sum()))
        self.delayDisplay("Library equals Slicer's Segment Editor effects")
