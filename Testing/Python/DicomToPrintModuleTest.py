"""The module panel's GUI-free helpers (DicomToPrintLib.display) on a real MRML scene: the model coloured by wall
thickness, the segmentation shown in 3D, the modality of a volume, the files an export writes, the series list."""

import os
import unittest

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from DicomToPrintLib import SlicerContext, display


class DicomToPrintModuleTest(unittest.TestCase):
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


if __name__ == "__main__":
    unittest.main()
