"""The whole pipeline on analytic phantoms: where the surface lands (LPS, mm), closed and manifold output,
islands, decimation, atomic files, progress and cancel, and no patient data in what is written."""

import glob
import json
import os
import unittest

import numpy as np

import DicomToPrintTesting as testing
from DicomToPrintLib import DicomToPrintError, DicomToPrintLogic, ProcessingCancelled, sampledata, segment

# The midpoint between tissue (40 HU) and bone (1000 HU): where the partial-volume boundary is.
MIDPOINT = 520.0


class DicomToPrintPipelineTest(unittest.TestCase):
    def setUp(self):
        self.logic = DicomToPrintLogic()
        self.output = testing.temporaryFolder(self)

    def run_(self, phantom, name=None, seriesOptions=None, **parameters):
        folder = testing.phantomSeries(phantom, **(seriesOptions or {}))
        result = self.logic.run(folder, os.path.join(self.output, (name or phantom) + ".stl"), **parameters)
        return result, testing.readStl(result.outputPath)

    def test_surfaceLiesOnTheTrueSurfaceInLps(self):
        result, polyData = self.run_("shell", minimumThreshold=MIDPOINT)
        shell = sampledata.PHANTOMS["shell"]
        error = testing.surfaceError(polyData, shell.boneSdf)
        # 0.5 x 0.5 x 1 mm voxels: the surface is within a twentieth of a voxel on average
        self.assertLess(error["mean"], 0.04)
        self.assertLess(error["p95"], 0.10)
        self.assertLess(error["max"], 0.50)
        # the phantom sits 8 mm to the patient's left: a left/right mirrored model is off by centimetres
        self.assertGreater(testing.surfaceError(polyData, shell.boneSdf, mirrorX=True)["mean"], 5.0)
        stats = result.mesh
        self.assertTrue(stats.watertight)
        self.assertEqual((stats.shells, stats.parts), (2, 1))  # outer surface and the inner cavity: one solid
        self.assertLess(abs(stats.volumeMm3 - shell.boneVolumeMm3) / shell.boneVolumeMm3, 0.005)
        self.assertEqual(testing.stlHeader(result.outputPath).rstrip(b"\0"), b"3D Slicer output. SPACE=LPS")
        self.assertEqual(result.threshold, {"minimum": MIDPOINT, "maximum": 1093.0, "source": "manual"})

    def test_rasOutputIsMirroredInXAndY(self):
        lps, lpsMesh = self.run_("shell", "lps", minimumThreshold=MIDPOINT)
        ras, rasMesh = self.run_("shell", "ras", minimumThreshold=MIDPOINT, coordinateSystem="RAS")
        self.assertEqual(testing.stlHeader(ras.outputPath).rstrip(b"\0"), b"3D Slicer output. SPACE=RAS")
        lpsBounds, rasBounds = np.array(lpsMesh.GetBounds()), np.array(rasMesh.GetBounds())
        np.testing.assert_allclose(rasBounds, [-lpsBounds[1], -lpsBounds[0], -lpsBounds[3], -lpsBounds[2],
                                               lpsBounds[4], lpsBounds[5]], atol=1e-4)

    def test_specksAreDroppedAndTheShellKept(self):
        result, polyData = self.run_("islands", minimumThreshold=MIDPOINT)
        self.assertEqual((result.islands["islands"], result.islands["kept"]), (3, 1))
        self.assertEqual(result.mesh.parts, 1)
        self.assertTrue(result.mesh.watertight)
        from DicomToPrintLib.validate import pointsArray

        points = pointsArray(polyData)
        for center in sampledata.PHANTOMS["islands"].speckCenters:
            self.assertGreater(np.linalg.norm(points - center, axis=1).min(), 3.0)
        self.assertLess(testing.surfaceError(polyData, sampledata.PHANTOMS["islands"].boneSdf)["mean"], 0.04)

    def test_keepLargestOrRemoveSmallIslands(self):
        largest, _ = self.run_("twoparts", "largest", minimumThreshold=MIDPOINT)
        both, _ = self.run_("twoparts", "both", minimumThreshold=MIDPOINT,
                            islandsOperation=segment.REMOVE_SMALL_ISLANDS)
        self.assertEqual((largest.mesh.parts, both.mesh.parts), (1, 2))
        volumeLarge, volumeBoth = 4 / 3 * np.pi * 10.0**3, sampledata.PHANTOMS["twoparts"].boneVolumeMm3
        self.assertLess(abs(largest.mesh.volumeMm3 - volumeLarge) / volumeLarge, 0.01)
        self.assertLess(abs(both.mesh.volumeMm3 - volumeBoth) / volumeBoth, 0.01)

    def test_decimationKeepsItClosedAndAccurate(self):
        full, fullMesh = self.run_("shell", "full", minimumThreshold=MIDPOINT, targetTriangles=0)
        small, smallMesh = self.run_("shell", "small", minimumThreshold=MIDPOINT, targetTriangles=15000)
        self.assertGreater(full.mesh.triangles, 140000)
        self.assertLessEqual(small.mesh.triangles, 15000)
        self.assertTrue(small.decimation["decimated"])
        self.assertTrue(small.mesh.watertight)
        self.assertEqual((small.mesh.shells, small.mesh.parts), (2, 1))
        sdf = sampledata.PHANTOMS["shell"].boneSdf
        increase = testing.surfaceError(smallMesh, sdf)["mean"] - testing.surfaceError(fullMesh, sdf)["mean"]
        self.assertLess(increase, 0.02)

    def test_presetIsUsedByDefaultAndReported(self):
        result, _ = self.run_("shell", reportPath=os.path.join(self.output, "report.json"))
        self.assertEqual(result.threshold["source"], "preset 'CT bone'")
        self.assertEqual(result.threshold["minimum"], 226.0)
        with open(result.reportPath) as f:
            report = json.load(f)
        self.assertEqual(report["threshold"], result.threshold)
        self.assertEqual(report["mesh"]["triangles"], result.mesh.triangles)
        self.assertTrue(report["mesh"]["watertight"])
        self.assertEqual(set(report["timingsSeconds"]),
                         {"find", "load", "segment", "surface", "decimate", "validate", "export", "total"})

    def test_noPatientDataInTheOutputs(self):
        report = os.path.join(self.output, "report.json")
        result, _ = self.run_("shell", reportPath=report)
        identifiers = list(sampledata.SYNTHETIC_PATIENT.values())
        self.assertEqual(testing.fileContains(result.outputPath, identifiers), [])
        self.assertEqual(testing.fileContains(report, identifiers), [])

    def test_outputsAreAtomicAndExistingFilesKept(self):
        target = os.path.join(self.output, "model.stl")
        with open(target, "wb") as f:
            f.write(b"keep me")
        folder = testing.phantomSeries("shell")
        with self.assertRaisesRegex(DicomToPrintError, "file exists; it is kept"):
            self.logic.run(folder, target)
        with open(target, "rb") as f:
            self.assertEqual(f.read(), b"keep me")
        result = self.logic.run(folder, target, overwrite=True, minimumThreshold=MIDPOINT)
        self.assertGreater(os.path.getsize(result.outputPath), 84 + 50 * result.mesh.triangles - 1)
        with self.assertRaisesRegex(DicomToPrintError, "output folder does not exist"):
            self.logic.run(folder, os.path.join(self.output, "missing", "model.stl"))
        self.assertEqual(glob.glob(os.path.join(self.output, ".dicomtoprint-*")), [])

    def test_progressAndCancel(self):
        seen = []
        result = self.logic.run(testing.phantomSeries("shell"), os.path.join(self.output, "p.stl"),
                                progressCallback=lambda text, percent: seen.append(percent) and False)
        self.assertTrue(os.path.exists(result.outputPath))
        self.assertEqual(seen[-1], 100.0)
        self.assertEqual(seen, sorted(seen))
        nodesBefore = self.logic.context.scene.GetNumberOfNodes()
        target = os.path.join(self.output, "cancelled.stl")
        with self.assertRaises(ProcessingCancelled):
            self.logic.run(testing.phantomSeries("shell"), target,
                           progressCallback=lambda text, percent: text.startswith("Creating the closed surface"))
        self.assertFalse(os.path.exists(target))
        self.assertEqual(self.logic.context.scene.GetNumberOfNodes(), nodesBefore)

    def test_nodesStayOnlyWhenAsked(self):
        before = self.logic.context.scene.GetNumberOfNodes()
        result, _ = self.run_("shell", "kept", keepNodes=True)
        self.assertEqual(result.segmentationNode.GetSegmentation().GetNumberOfSegments(), 1)
        self.assertEqual(result.volumeNode.GetImageData().GetDimensions(), (176, 176, 80))
        self.logic.context.removeNode(result.volumeNode)
        self.logic.context.removeNode(result.segmentationNode)
        self.run_("shell", "removed")
        self.assertEqual(self.logic.context.scene.GetNumberOfNodes(), before)


if __name__ == "__main__":
    unittest.main()
