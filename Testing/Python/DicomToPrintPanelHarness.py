"""The module panel on slicer-core: Slicer's own Python with PythonQt-style stand-ins for the Qt side only.

What is Slicer's real code here: MRML and the module logics (slicer-core), ``slicer.util`` (slicer-core's copy
of Slicer's), ``slicer.parameterNodeWrapper`` exactly as Slicer 5.10.0 or 5.12.3 ships it (``../shared/slicer``)
and ``slicer.ScriptedLoadableModule`` and ``slicer.i18n`` (copied from Slicer 5.12.3 into ``SlicerPython/``).

What stands in, because slicer-core has no Qt: the ``qt`` and ``ctk`` modules' widget classes, the Qt widgets
of Slicer's MRML and Segmentations libraries (``slicer.qMRMLNodeComboBox`` ...), the ``.ui`` loader, and the
application object ``slicer.app`` with the module objects in ``slicer.modules`` (whose ``logic()`` returns the
real logic). Widgets keep their properties as attributes and have signals with connect, disconnect and emit; a
stand-in records what Qt would do (clamping, rounding to its decimals, signals when a value changes, a child of
a disabled widget reading as disabled). It is not evidence about Qt itself: only the real application shows
that (the module's DicomToPrintTest drives the panel there).

``SlicerEnvironment(version)`` installs all this for one wrapper version and removes it again, restoring
``sys.modules`` and the ``slicer`` package as they were.
"""

import contextlib
import inspect
import os
import sys
import tempfile
import traceback
import types
import unittest
import xml.etree.ElementTree as ET

import slicer
import vtk

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, os.pardir, os.pardir))
MODULE_DIR = os.path.join(ROOT, "DicomToPrint")
UI_FILE = os.path.join(MODULE_DIR, "Resources", "UI", "DicomToPrint.ui")
SLICER_PYTHON = os.path.join(HERE, "SlicerPython")
#: The Slicer releases whose parameter node wrapper the panel is checked with (folders of ../shared/slicer).
WRAPPER_VERSIONS = ("v5.10.0", "v5.12.3")

#: Exceptions raised in slots (PythonQt prints them and goes on) and in VTK observers (VTK prints them).
ERRORS = []


def sharedSlicerFolder() -> str:
    """../shared/slicer beside the checkout, where Slicer's parameterNodeWrapper of each release is.

    :raises unittest.SkipTest: with a message saying where it was looked for, when it is absent (a user's clone).
    """
    candidates = [os.environ.get("DICOMTOPRINT_SHARED", ""), os.path.join(ROOT, os.pardir, "shared"),
                  os.path.join(HERE, os.pardir, os.pardir, os.pardir, "shared")]
    for base in filter(None, candidates):
        folder = os.path.normpath(os.path.join(base, "slicer"))
        if all(os.path.isdir(os.path.join(folder, v, "slicer", "parameterNodeWrapper")) for v in WRAPPER_VERSIONS):
            return folder
    raise unittest.SkipTest("Slicer's parameterNodeWrapper (../shared/slicer/v5.10.0 and v5.12.3 beside the checkout, "
                            "or $DICOMTOPRINT_SHARED/slicer) was not found; CI has it")


# -- signals -------------------------------------------------------------------------------------------------------
def _callSlot(slot, args):
    """Call a slot as PythonQt does: with as many of the signal's arguments as it takes; an exception is printed
    (and recorded), not raised into the emitter."""
    try:
        parameters = inspect.signature(slot).parameters.values()
        if not any(p.kind == p.VAR_POSITIONAL for p in parameters):
            args = args[:len([p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)])]
    except (TypeError, ValueError):
        pass
    try:
        slot(*args)
    except Exception:  # noqa: BLE001 - PythonQt's behaviour: print and go on
        ERRORS.append(traceback.format_exc())
        traceback.print_exc()


class BoundSignal:
    def __init__(self, owner, name):
        self.owner, self.name, self.slots = owner, name, []

    def connect(self, slot):
        self.slots.append(slot)
        return True

    def disconnect(self, slot=None):
        if slot is None:
            self.slots.clear()
            return True
        for index, connected in enumerate(self.slots):
            if connected == slot:
                del self.slots[index]
                return True
        return False  # as QObject::disconnect

    def emit(self, *args):
        if not self.owner.signalsBlocked():
            for slot in list(self.slots):
                _callSlot(slot, args)


class Signal:
    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        signals = obj.__dict__.setdefault("_signals", {})
        if self.name not in signals:
            signals[self.name] = BoundSignal(obj, self.name)
        return signals[self.name]


# -- qt ------------------------------------------------------------------------------------------------------------
class QObject:
    destroyed = Signal()

    def __init__(self, parent=None):
        self._parent, self._children, self._properties, self._blocked = None, [], {}, False
        self.objectName = ""
        if parent is not None:
            self.setParent(parent)

    @property
    def name(self):  # PythonQt's alias of objectName (slicer.util.childWidgetVariables reads it)
        return self.objectName

    @name.setter
    def name(self, value):
        self.objectName = value

    def parent(self):
        return self._parent

    def setParent(self, parent):
        if self._parent is not None:
            self._parent._children.remove(self)
        self._parent = parent
        if parent is not None:
            parent._children.append(self)

    def children(self):
        return list(self._children)

    def findChildren(self, classType=None):
        found = []
        for child in self._children:
            if classType is None or isinstance(child, classType):
                found.append(child)
            found.extend(child.findChildren(classType))
        return found

    def property(self, name):
        return self._properties.get(name)

    def setProperty(self, name, value):
        self._properties[name] = value

    def blockSignals(self, block):
        previous, self._blocked = self._blocked, bool(block)
        return previous

    def signalsBlocked(self):
        return self._blocked

    def connect(self, signature, slot):
        return getattr(self, signature.split("(")[0]).connect(slot)

    def disconnect(self, signature, slot=None):
        return getattr(self, signature.split("(")[0]).disconnect(slot)

    def className(self):
        return type(self).__name__

    def isWidgetType(self):
        return False

    def deleteLater(self):
        self.destroyed.emit()


class QLayout(QObject):
    def __init__(self, parent=None):
        super().__init__()
        self._owner, self._items = None, []
        if parent is not None:
            parent.setLayout(self)

    def addWidget(self, widget, *args):
        self._items.append(widget)
        if self._owner is not None:
            widget.setParent(self._owner)

    def count(self):
        return len(self._items)

    def itemAt(self, index):
        return self._items[index]

    def removeItem(self, item):
        self._items.remove(item)

    def addRow(self, *items):
        for item in items:
            if isinstance(item, QWidget):
                self.addWidget(item)

    def addLayout(self, layout, *args):
        layout._owner = self._owner

    def addStretch(self, *args):
        pass

    def setContentsMargins(self, *args):
        pass


class QVBoxLayout(QLayout):
    pass


class QHBoxLayout(QLayout):
    pass


class QFormLayout(QLayout):
    pass


class QGridLayout(QLayout):
    pass


class QWidget(QObject):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._enabled, self._hidden, self._shown, self._layout = True, False, False, None
        self.toolTip, self.styleSheet, self.statusTip = "", "", ""

    def isWidgetType(self):
        return True

    @property
    def enabled(self):  # Qt's isEnabled(): False when this widget or any ancestor is disabled
        return self._enabled and (self._parent is None or not isinstance(self._parent, QWidget)
                                  or self._parent.enabled)

    @enabled.setter
    def enabled(self, value):
        self._enabled = bool(value)

    def setEnabled(self, value):
        self.enabled = value

    def isEnabled(self):
        return self.enabled

    @property
    def visible(self):  # Qt's isVisible(): shown, and every ancestor too
        if self._hidden:
            return False
        if isinstance(self._parent, QWidget):
            return self._parent.visible
        return self._shown

    @visible.setter
    def visible(self, value):
        self.show() if value else self.hide()

    def show(self):
        self._hidden, self._shown = False, True

    def hide(self):
        self._hidden = True

    def isVisible(self):
        return self.visible

    def layout(self):
        return self._layout

    def setLayout(self, layout):
        self._layout, layout._owner = layout, self

    def setSizePolicy(self, *args):
        pass


class QLabel(QWidget):
    def __init__(self, text="", parent=None):
        super().__init__(parent)
        self.text, self.wordWrap = text, False


class QProgressBar(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.minimum, self.maximum, self._value = 0, 100, 0

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, value):
        self._value = int(min(max(value, self.minimum), self.maximum))


class QAbstractButton(QWidget):
    clicked = Signal()
    toggled = Signal()

    def __init__(self, text="", parent=None):
        super().__init__(parent)
        self.text, self.checkable, self._checked = text, False, False

    @property
    def checked(self):
        return self._checked

    @checked.setter
    def checked(self, value):
        value = bool(value) and self.checkable
        if value != self._checked:
            self._checked = value
            self._onToggled(value)

    def _onToggled(self, value):
        self.toggled.emit(value)

    def click(self):
        """A user's click: nothing happens on a disabled button."""
        if not self.enabled:
            return
        if self.checkable:
            self.checked = not self.checked
        self.clicked.emit(self.checked)


class QPushButton(QAbstractButton):
    pass


class QToolButton(QAbstractButton):
    pass


class QRadioButton(QAbstractButton):
    pass


class QCheckBox(QAbstractButton):
    stateChanged = Signal()

    def __init__(self, text="", parent=None):
        super().__init__(text, parent)
        self.checkable = True

    def _onToggled(self, value):
        self.stateChanged.emit(2 if value else 0)
        self.toggled.emit(value)


class QComboBox(QWidget):
    currentIndexChanged = Signal()
    currentTextChanged = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._items, self._currentIndex = [], -1

    @property
    def count(self):
        return len(self._items)

    @property
    def currentIndex(self):
        return self._currentIndex

    @currentIndex.setter
    def currentIndex(self, index):
        index = int(index)
        if not -1 <= index < len(self._items):
            index = -1
        if index != self._currentIndex:
            self._currentIndex = index
            self.currentIndexChanged.emit(index)
            self.currentTextChanged.emit(self.currentText)

    def setCurrentIndex(self, index):
        self.currentIndex = index

    @property
    def currentText(self):
        return self._items[self._currentIndex][0] if self._currentIndex >= 0 else ""

    def addItem(self, text, userData=None):
        self._items.append([text, userData])
        if self._currentIndex < 0:
            self.currentIndex = 0

    def clear(self):
        self._items = []
        self.currentIndex = -1

    def itemText(self, index):
        return self._items[index][0]

    def setItemText(self, index, text):
        self._items[index][0] = text

    def itemData(self, index):
        return self._items[index][1] if 0 <= index < len(self._items) else None

    def findData(self, data):
        return next((i for i, (_, d) in enumerate(self._items) if d == data), -1)

    def findText(self, text):
        return next((i for i, (t, _) in enumerate(self._items) if t == text), -1)


class QLineEdit(QWidget):
    textChanged = Signal()

    def __init__(self, text="", parent=None):
        super().__init__(parent)
        self._text = text

    @property
    def text(self):
        return self._text

    @text.setter
    def text(self, value):
        if value != self._text:
            self._text = value
            self.textChanged.emit(value)


class QTextEdit(QWidget):
    textChanged = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._plainText = ""

    def toPlainText(self):
        return self._plainText

    def setPlainText(self, text):
        self._plainText = text
        self.textChanged.emit()


class _ValueWidget(QWidget):
    """A bounded number: a new value is clamped to [minimum, maximum] (and rounded to the decimals), and
    valueChanged is emitted when it changes, as Qt's spin boxes and sliders do."""

    valueChanged = Signal()
    _integer = False
    _defaults = (0.0, 99.99, 2)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._minimum, self._maximum, self._decimals = self._defaults
        self._value, self.singleStep = self._round(self._minimum), 1

    def _round(self, value):
        return int(round(value)) if self._integer else round(float(value), self._decimals)

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, value):
        value = self._round(min(max(value, self._minimum), self._maximum))
        if value != self._value:
            self._value = value
            self.valueChanged.emit(value)

    def setValue(self, value):
        self.value = value

    @property
    def minimum(self):
        return self._minimum

    @minimum.setter
    def minimum(self, value):
        self.setRange(value, max(value, self._maximum))

    @property
    def maximum(self):
        return self._maximum

    @maximum.setter
    def maximum(self, value):
        self.setRange(min(value, self._minimum), value)

    def setMinimum(self, value):
        self.minimum = value

    def setMaximum(self, value):
        self.maximum = value

    def setRange(self, minimum, maximum):
        self._minimum, self._maximum = self._round(minimum), self._round(maximum)
        self.value = self._value  # clamped into the new range

    @property
    def decimals(self):
        return self._decimals

    @decimals.setter
    def decimals(self, value):
        self._decimals = int(value)
        self._minimum, self._maximum = self._round(self._minimum), self._round(self._maximum)
        self.value = self._value


class QSpinBox(_ValueWidget):
    _integer = True
    _defaults = (0, 99, 0)


class QSlider(QSpinBox):
    pass


class QDoubleSpinBox(_ValueWidget):
    pass


class QSettings(QObject):
    def __init__(self, *args):
        super().__init__()

    def value(self, key, default=None):
        return default

    def contains(self, key):
        return False

    def setValue(self, key, value):
        pass


class QFile(QObject):
    ReadOnly = 1

    def __init__(self, path):
        super().__init__()
        self.path = str(path)

    def exists(self):
        return os.path.isfile(self.path)

    def open(self, mode):
        return self.exists()


class QIcon:
    def __init__(self, path=""):
        self.path = path


class QColor:
    def __init__(self, *args):
        self.args = args


class Qt:
    WaitCursor = 3
    ShiftModifier = 0x02000000


class QMessageBox(QWidget):
    """Only its constants: in testing mode (slicer.app.testingEnabled()) Slicer logs the text instead of showing
    the box and takes the answer the function gives for testing."""

    NoIcon, Information, Warning, Critical, Question = 0, 1, 2, 3, 4
    Ok, Cancel = 0x00000400, 0x00400000


def _makeQtModule():
    module = types.ModuleType("qt", "Stand-ins for PythonQt's Qt classes (DicomToPrintPanelHarness)")
    for cls in (QObject, QWidget, QLabel, QProgressBar, QAbstractButton, QPushButton, QToolButton, QRadioButton,
                QCheckBox, QComboBox, QLineEdit, QTextEdit, QSpinBox, QSlider, QDoubleSpinBox, QSettings, QFile,
                QIcon, QColor, QLayout, QVBoxLayout, QHBoxLayout, QFormLayout, QGridLayout, QUiLoader, Qt,
                QMessageBox):
        setattr(module, cls.__name__, cls)
    return module


# -- ctk -----------------------------------------------------------------------------------------------------------
class ctkCollapsibleButton(QAbstractButton):
    contentsCollapsed = Signal()

    def __init__(self, text="", parent=None):
        super().__init__(text, parent)
        self._collapsed = False

    @property
    def collapsed(self):
        return self._collapsed

    @collapsed.setter
    def collapsed(self, value):
        if bool(value) != self._collapsed:
            self._collapsed = bool(value)
            self.contentsCollapsed.emit(self._collapsed)


class ctkCheckBox(QCheckBox):
    pass


class ctkCheckablePushButton(QPushButton):
    def __init__(self, text="", parent=None):
        super().__init__(text, parent)
        self.checkBoxControlsButtonToggleState = False


class ctkComboBox(QComboBox):
    pass


class ctkDoubleSpinBox(_ValueWidget):
    pass


class ctkSliderWidget(_ValueWidget):
    _defaults = (0.0, 99.0, 2)


class ctkDoubleSlider(ctkSliderWidget):
    pass


class ctkRangeWidget(QWidget):
    """Two values within [minimum, maximum], rounded to the decimals; valuesChanged(min, max) when they change."""

    valuesChanged = Signal()
    minimumValueChanged = Signal()
    maximumValueChanged = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._minimum, self._maximum, self._decimals, self.singleStep = 0.0, 99.0, 2, 1.0
        self._values = (0.0, 99.0)

    def _round(self, value):
        return round(float(value), self._decimals)

    @property
    def minimum(self):
        return self._minimum

    @minimum.setter
    def minimum(self, value):
        self.setRange(value, max(value, self._maximum))

    @property
    def maximum(self):
        return self._maximum

    @maximum.setter
    def maximum(self, value):
        self.setRange(min(value, self._minimum), value)

    @property
    def minimumValue(self):
        return self._values[0]

    @minimumValue.setter
    def minimumValue(self, value):
        self.setValues(value, max(value, self._values[1]))

    @property
    def maximumValue(self):
        return self._values[1]

    @maximumValue.setter
    def maximumValue(self, value):
        self.setValues(min(value, self._values[0]), value)

    @property
    def decimals(self):
        return self._decimals

    @decimals.setter
    def decimals(self, value):
        self._decimals = int(value)
        self.setRange(self._minimum, self._maximum)

    def setRange(self, minimum, maximum):
        self._minimum, self._maximum = self._round(minimum), self._round(maximum)
        self.setValues(*self._values)

    def setValues(self, minimum, maximum):
        low, high = sorted((minimum, maximum))
        values = tuple(self._round(min(max(v, self._minimum), self._maximum)) for v in (low, high))
        if values != self._values:
            old, self._values = self._values, values
            if old[0] != values[0]:
                self.minimumValueChanged.emit(values[0])
            if old[1] != values[1]:
                self.maximumValueChanged.emit(values[1])
            self.valuesChanged.emit(*values)


class ctkDoubleRangeSlider(ctkRangeWidget):
    pass


class ctkPathLineEdit(QWidget):
    currentPathChanged = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._currentPath, self.filters, self.nameFilters = "", "", []

    @property
    def currentPath(self):
        return self._currentPath

    @currentPath.setter
    def currentPath(self, value):
        if value != self._currentPath:
            self._currentPath = value
            self.currentPathChanged.emit(value)


class ctkDirectoryButton(QWidget):
    directoryChanged = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.directory = ""


class ctkColorPickerButton(QWidget):
    colorChanged = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.color = QColor()


def _makeCtkModule():
    module = types.ModuleType("ctk", "Stand-ins for PythonQt's CTK classes (DicomToPrintPanelHarness)")
    for cls in (ctkCollapsibleButton, ctkCheckBox, ctkCheckablePushButton, ctkComboBox, ctkDoubleSpinBox,
                ctkSliderWidget, ctkDoubleSlider, ctkRangeWidget, ctkDoubleRangeSlider, ctkPathLineEdit,
                ctkDirectoryButton, ctkColorPickerButton):
        setattr(module, cls.__name__, cls)
    return module


# -- Slicer's Qt widgets (slicer-core has none) ----------------------------------------------------------------------
class qMRMLWidget(QWidget):
    mrmlSceneChanged = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None

    def setMRMLScene(self, scene):
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


class qSlicerWidget(qMRMLWidget):
    pass


class qMRMLNodeComboBox(qMRMLWidget):
    """Picks a node of its nodeTypes; the pick goes to None when the node leaves the scene."""

    currentNodeChanged = Signal()
    currentNodeIDChanged = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.nodeTypes, self.noneEnabled, self._current, self._observations = [], False, None, []

    def setMRMLScene(self, scene):
        for tag in self._observations:
            self._scene.RemoveObserver(tag)
        self._observations = [] if scene is None else [
            scene.AddObserver(event, self._onSceneChanged)
            for event in (scene.NodeRemovedEvent, scene.EndCloseEvent)]
        super().setMRMLScene(scene)

    def _onSceneChanged(self, caller, event):
        if self._current is not None and not caller.IsNodePresent(self._current):
            self.setCurrentNode(None)

    def currentNode(self):
        return self._current

    def currentNodeID(self):
        return self._current.GetID() if self._current is not None else ""

    def setCurrentNode(self, node):
        if node is not None and not any(node.IsA(t) for t in self.nodeTypes):
            return
        if (node.GetID() if node else None) != (self._current.GetID() if self._current else None):
            self._current = node
            self.currentNodeChanged.emit(node)
            self.currentNodeIDChanged.emit(self.currentNodeID())

    def setCurrentNodeID(self, nodeId):
        self.setCurrentNode(self._scene.GetNodeByID(nodeId) if nodeId and self._scene else None)


class qMRMLTableView(qMRMLWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._table = None

    def setMRMLTableNode(self, node):
        self._table = node

    def mrmlTableNode(self):
        return self._table


class qMRMLSliderWidget(ctkSliderWidget):
    pass


class qMRMLSpinBox(ctkDoubleSpinBox):
    pass


class qMRMLRangeWidget(ctkRangeWidget):
    pass


class qMRMLSegmentEditorWidget(qMRMLWidget):
    """Keeps its selections in its (real) segment editor node, as Slicer's does, and records what it was asked:
    keyboard shortcuts installed, effect list updates, view observations removed, the active effect."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._editorNode, self._readOnly, self.activeEffectName = None, False, None
        self.segmentationNodeSelectorVisible = self.sourceVolumeNodeSelectorVisible = True
        self.shortcutsInstalled, self.effectListUpdates, self.viewObservationsRemoved = False, 0, 0
        self.maximumNumberOfUndoStates = 0

    def setMRMLSegmentEditorNode(self, node):
        self._editorNode = node

    def mrmlSegmentEditorNode(self):
        return self._editorNode

    def setSegmentationNode(self, node):
        if self._editorNode is not None:
            self._editorNode.SetAndObserveSegmentationNode(node)

    def segmentationNode(self):
        return self._editorNode.GetSegmentationNode() if self._editorNode is not None else None

    def segmentationNodeID(self):
        node = self.segmentationNode()
        return node.GetID() if node else ""

    def setSourceVolumeNode(self, node):
        if self._editorNode is not None:
            self._editorNode.SetAndObserveSourceVolumeNode(node)

    def sourceVolumeNode(self):
        return self._editorNode.GetSourceVolumeNode() if self._editorNode is not None else None

    @property
    def readOnly(self):
        return self._readOnly

    @readOnly.setter
    def readOnly(self, value):
        self._readOnly = bool(value)
        if value:
            self.setActiveEffect(None)  # as qMRMLSegmentEditorWidget::setReadOnly

    def setReadOnly(self, value):
        self.readOnly = value

    def setActiveEffectByName(self, name):
        if not self._readOnly:
            self.activeEffectName = name

    def setActiveEffect(self, effect):
        self.activeEffectName = effect

    def activeEffect(self):
        return self.activeEffectName

    def installKeyboardShortcuts(self, parent=None):
        self.shortcutsInstalled = True

    def uninstallKeyboardShortcuts(self):
        self.shortcutsInstalled = False

    def updateEffectList(self):
        self.effectListUpdates += 1

    def removeViewObservations(self):
        self.viewObservationsRemoved += 1

    def updateWidgetFromMRML(self):
        pass

    def setMaximumNumberOfUndoStates(self, count):
        self.maximumNumberOfUndoStates = count


class qSlicerSegmentEditorEffectFactory(QObject):
    effectRegistered = Signal()
    _instance = None

    @classmethod
    def instance(cls):
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance


SLICER_QT_CLASSES = (qMRMLWidget, qSlicerWidget, qMRMLNodeComboBox, qMRMLTableView, qMRMLSliderWidget, qMRMLSpinBox,
                     qMRMLRangeWidget, qMRMLSegmentEditorWidget, qSlicerSegmentEditorEffectFactory)


# -- the .ui loader ------------------------------------------------------------------------------------------------
def _propertyValue(element):
    value = list(element)[0]
    if value.tag == "string":
        return value.text or ""
    if value.tag == "bool":
        return value.text == "true"
    if value.tag == "number":
        return int(value.text)
    if value.tag == "double":
        return float(value.text)
    if value.tag == "stringlist":
        return [s.text or "" for s in value.findall("string")]
    if value.tag in ("set", "enum", "cstring"):
        return value.text
    return None  # geometry, size policies, fonts: not needed


class QUiLoader(QObject):
    """Builds a .ui file's widgets from the stand-ins: properties in the file's order, dynamic ones (stdset="0")
    with setProperty, children parented to the widget whose layout holds them, and the file's connections."""

    def load(self, qfile):
        root = ET.parse(qfile.path).getroot()
        byName = {}
        top = self._build(root.find("widget"), None, byName)
        for connection in root.iter("connection"):
            sender, receiver = byName[connection.findtext("sender")], byName[connection.findtext("receiver")]
            sender.connect(connection.findtext("signal"), getattr(receiver, connection.findtext("slot").split("(")[0]))
        return top

    def _build(self, element, parent, byName):
        className = element.get("class")
        cls = getattr(QT, className, None) or getattr(CTK, className, None) or \
            next((c for c in SLICER_QT_CLASSES if c.__name__ == className), None)
        if cls is None:
            raise RuntimeError(f"No stand-in for the .ui's widget class {className}")
        widget = cls()
        widget.objectName = element.get("name")
        byName[widget.objectName] = widget
        if parent is not None:
            widget.setParent(parent)
        for prop in element.findall("property"):
            value = _propertyValue(prop)
            if prop.get("stdset") == "0":
                widget.setProperty(prop.get("name"), value)
            elif value is not None:
                setattr(widget, prop.get("name"), value)
        self._buildChildren(element, widget, byName)
        return widget

    def _buildChildren(self, element, widget, byName):
        for child in element:
            if child.tag == "widget":
                self._build(child, widget, byName)
            elif child.tag in ("layout", "item"):
                self._buildChildren(child, widget, byName)


QT = _makeQtModule()
CTK = _makeCtkModule()


# -- the application -----------------------------------------------------------------------------------------------
class ModuleStandIn(QObject):
    """A Slicer module object (slicer.modules.<name>): its path, its real logic, its panel."""

    def __init__(self, logic=None, path=""):
        super().__init__()
        self._logic, self.path, self.panel = logic, path, None
        self.title, self.categories, self.dependencies, self.contributors = "", [], [], []
        self.helpText = self.acknowledgementText = ""
        self.icon = None

    def logic(self):
        return self._logic

    def widgetRepresentation(self):
        return self.panel


class PanelStandIn(QWidget):
    """The module panel (qSlicerScriptedLoadableModuleWidget): holds the Python widget, knows if it is shown."""

    def __init__(self, environment):
        super().__init__()
        self.setLayout(QVBoxLayout())
        self.isEntered, self._environment = False, environment

    def reload(self):
        """A new Python widget from the (reloaded) module, set up in this panel."""
        self._environment.module = sys.modules["DicomToPrint"]
        self._environment._newWidget(self)


class ModuleManagerStandIn(QObject):
    moduleAboutToBeUnloaded = Signal()


class ApplicationStandIn(QObject):
    """slicer.app: what the module asks of Slicer's application object. processEvents runs the actions a test
    queued with :meth:`whileProcessingEvents` (a user clicking while a step runs)."""

    startupCompleted = Signal()

    def __init__(self, version, applicationLogic, folder):
        super().__init__()
        self.applicationName, self.applicationVersion = "Slicer", version
        self.temporaryPath = self.defaultScenePath = folder
        self._applicationLogic, self._moduleManager = applicationLogic, ModuleManagerStandIn()
        self.overrideCursors, self.processEventsCalls, self._actions = 0, 0, []

    def applicationLogic(self):
        return self._applicationLogic

    def moduleManager(self):
        return self._moduleManager

    def layoutManager(self):
        return None

    def testingEnabled(self):
        return True  # errors are logged, no message box

    def translate(self, context, text):
        return text

    def setOverrideCursor(self, cursor):
        self.overrideCursors += 1

    def restoreOverrideCursor(self):
        self.overrideCursors -= 1

    def whileProcessingEvents(self, action):
        """Call ``action()`` at each processEvents until it returns True (then it is dropped)."""
        self._actions.append(action)

    def processEvents(self, *args):
        self.processEventsCalls += 1
        for action in list(self._actions):
            if action():
                self._actions.remove(action)


class SlicerEnvironment:
    """Slicer's Python for the panel, with one release's parameterNodeWrapper, on slicer-core; see the module's
    docstring for what is real and what stands in. Use as a context manager; ``module`` is DicomToPrint.py
    imported in it."""

    _REMOVED = ("qt", "ctk", "DicomToPrint", "slicer.i18n", "slicer.ScriptedLoadableModule")

    def __init__(self, version: str):
        self.version, self.wrapperFolder = version, os.path.join(sharedSlicerFolder(), version, "slicer")

    def __enter__(self):
        from DicomToPrintLib import SlicerContext, runtime

        if runtime.isSlicerApplication():
            raise unittest.SkipTest("inside the Slicer application the real panel is tested (DicomToPrintTest)")
        for name in ("app", "mrmlScene", "modules", *(c.__name__ for c in SLICER_QT_CLASSES)):
            if hasattr(slicer, name):
                raise RuntimeError(f"slicer.{name} exists already: the harness would hide the real one")
        self.folder = tempfile.mkdtemp(prefix="dicomtoprint-panel-")
        # the scene and logics the application would have, built on slicer-core before it "starts"
        self.context = SlicerContext.create()
        self.scene = self.context.scene
        self._savedModules = {name: module for name, module in sys.modules.items() if self._ours(name)}
        for name in self._savedModules:
            del sys.modules[name]
        self._savedPath = list(slicer.__path__)
        slicer.__path__.extend([self.wrapperFolder, os.path.join(SLICER_PYTHON, "slicer")])
        sys.modules["qt"], sys.modules["ctk"] = QT, CTK
        self.app = ApplicationStandIn(self.version.lstrip("v"), self.context.applicationLogic, self.folder)
        self.moduleObject = ModuleStandIn(path=os.path.join(MODULE_DIR, "DicomToPrint.py"))
        slicer.app, slicer.mrmlScene, slicer.selfTests = self.app, self.scene, {}
        slicer.modules = types.SimpleNamespace(volumes=ModuleStandIn(self.context.volumesLogic),
                                               segmentations=ModuleStandIn(self.context.segmentationsLogic),
                                               dicomtoprint=self.moduleObject)
        for cls in SLICER_QT_CLASSES:
            setattr(slicer, cls.__name__, cls)
        qSlicerSegmentEditorEffectFactory._instance = None
        self._savedSysPath = list(sys.path)
        sys.path.insert(0, MODULE_DIR)
        self._savedExcepthook, sys.excepthook = sys.excepthook, self._recordException  # VTK observers print here
        ERRORS.clear()
        import DicomToPrint

        self.module = DicomToPrint
        return self

    def __exit__(self, *exc):
        import shutil

        sys.excepthook = self._savedExcepthook
        sys.path[:] = self._savedSysPath
        for name in [n for n in sys.modules if self._ours(n)]:
            del sys.modules[name]
        sys.modules.update(self._savedModules)
        slicer.__path__[:] = self._savedPath
        for name in ("app", "mrmlScene", "modules", "selfTests", "parameterNodeWrapper", "ScriptedLoadableModule",
                     "i18n", *(c.__name__ for c in SLICER_QT_CLASSES)):
            if hasattr(slicer, name):
                delattr(slicer, name)
        self.scene.Clear(1)
        shutil.rmtree(self.folder, True)
        return False

    def _ours(self, name):
        return name in self._REMOVED or name == "slicer.parameterNodeWrapper" or \
            name.startswith("slicer.parameterNodeWrapper.")

    @staticmethod
    def _recordException(kind, value, tb):
        ERRORS.append("".join(traceback.format_exception(kind, value, tb)))
        traceback.print_exception(kind, value, tb)

    # -- what Slicer does with a module's widget ---------------------------------------------------------------
    def createModule(self):
        """The module object, as Slicer makes it at startup."""
        return self.module.DicomToPrint(self.moduleObject)

    def createWidget(self):
        """The panel as Slicer makes it when the module is first shown: the widget, then setup()."""
        panel = PanelStandIn(self)
        panel.show()
        self.moduleObject.panel = panel
        return self._newWidget(panel)

    def _newWidget(self, panel):
        widget = self.module.DicomToPrintWidget(panel)
        slicer.modules.DicomToPrintWidget = widget
        widget.setup()
        return widget

    @staticmethod
    def enter(widget):
        widget.parent.isEntered = True
        widget.enter()

    @staticmethod
    def exit(widget):
        widget.exit()
        widget.parent.isEntered = False

    def unload(self, widget):
        """The application closing: Slicer's module manager announces the unload, the widget cleans up."""
        self.app.moduleManager().moduleAboutToBeUnloaded.emit("DicomToPrint")

    def closeScene(self):
        """File > Close Scene."""
        self.scene.Clear(0)

    def removeParameterNode(self):
        """A freshly started Slicer: no parameter node of the module yet. Closing the scene keeps the singleton
        parameter node, and Slicer 5.10's wrapper never removes the observer it adds to it (fixed in 5.12), so one
        test's widget would leave it an observer calling into a widget that is gone; in the application there is
        one widget per session."""
        node = self.scene.GetSingletonNode("DicomToPrint", "vtkMRMLScriptedModuleNode")
        if node is not None:
            self.scene.RemoveNode(node)


@contextlib.contextmanager
def noErrors(testCase):
    """Fail the test if a slot or a VTK observer raised while the block ran."""
    start = len(ERRORS)
    yield
    testCase.assertEqual(ERRORS[start:], [], "exceptions in slots or observers")


def uiParameterWidgets() -> dict:
    """SlicerParameterName -> widget name, from the .ui."""
    root = ET.parse(UI_FILE).getroot()
    found = {}
    for widget in root.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                found[prop.findtext("string")] = widget.get("name")
    return found


def vtkObserverCount(obj, event=vtk.vtkCommand.ModifiedEvent) -> int:
    """How many observers of ``event`` the VTK object has (counted by tags, as VTK gives no count)."""
    count, tag = 0, obj.AddObserver(event, lambda *args: None)
    obj.RemoveObserver(tag)
    for candidate in range(tag):
        if obj.GetCommand(candidate) is not None and obj.HasObserver(event, obj.GetCommand(candidate)):
            count += 1
    return count
