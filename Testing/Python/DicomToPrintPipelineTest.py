"""The whole pipeline on analytic phantoms: where the surface lands (LPS, mm), closed and manifold output,
islands, decimation, atomic files, progress and cancel, and no patient data in what is written."""

import glob
import json
import os
import unittest

import numpy as np
import vtk
from vtk.util import numpy_support

import DicomToPrintTesting as testing
from DicomToPrintLib import (
    DicomToPrintError,
    DicomToPrintLogic,
    ProcessingCancelled,
    export,
    runtime,
    sampledata,
    segment,
)
from DicomToPrintLib.meshdata import pointsArray

# The midpoint between tissue (40 HU) and bone (1000 HU): where the partial-volume boundary is.
MIDPOINT = 520.0
FINE = {"spacing": (0.5, 0.5, 1.0), "noiseHu": 20.0}
COARSE = {"spacing": (0.8, 0.8, 1.25), "noiseHu": 40.0, "shape": (110, 110, 64)}


class DicomToPrintPipelineTest(unittest.TestCase):
    def setUp(self):
        self.logic = DicomToPrintLogic()
        self.output = testing.temporaryFolder(self)

    def run_(self, phantom, name=None, seriesOptions=None, **parameters):
        folder = testing.phantomSeries(phantom, **(seriesOptions or {}))
        parameters.setdefault("writePreview", False)
        result = self.logic.run(folder, os.path.join(self.output, (name or phantom) + ".stl"), **parameters)
        return result, export.readStl(result.outputPath)

    def assertAccurate(self, phantom, seriesOptions, meanMm, p95Mm, volumePercent):
        name = f"{phantom}-{seriesOptions['spacing'][0]}"
        result, polyData = self.run_(phantom, name, seriesOptions=seriesOptions)
        truth = sampledata.PHANTOMS[phantom]
        error = testing.surfaceError(polyData, truth.boneSdf)
        volumeError = 100.0 * (result.mesh.volumeMm3 - truth.boneVolumeMm3) / truth.boneVolumeMm3
        with self.subTest(phantom=phantom, spacing=seriesOptions["spacing"]):
            self.assertLessEqual(error["mean"], meanMm)
            self.assertLessEqual(error["p95"], p95Mm)
            self.assertLessEqual(abs(volumeError), volumePercent)
            self.assertTrue(result.validation.printable, result.validation.reasons)
            self.assertEqual(result.mesh.parts, 1)
        return error, volumeError

    def test_accuracyTargetsWithDefaultSettings(self):
        # 0.5 x 0.5 x 1 mm voxels, 20 HU noise: mean <= 0.05 mm, p95 <= 0.15 mm, volume within 1 % (plate 3 %)
        for phantom in ("shell", "tube", "plate"):
            self.assertAccurate(phantom, FINE, 0.05, 0.15, 3.0 if phantom == "plate" else 1.0)
        # 0.8 x 0.8 x 1.25 mm voxels, 40 HU noise: the same within twice
        for phantom in ("shell", "tube", "plate"):
            self.assertAccurate(phantom, COARSE, 0.10, 0.30, 6.0 if phantom == "plate" else 2.0)

    def test_specksAreDroppedAndTheShellKept(self):
        for options in (FINE, COARSE):
            result, polyData = self.run_("islands", f"islands-{options['spacing'][0]}", seriesOptions=options)
            with self.subTest(spacing=options["spacing"]):
                self.assertEqual((result.islands["islands"], result.islands["kept"]), (3, 1))
                self.assertEqual(result.mesh.parts, 1)
                self.assertTrue(result.validation.printable)
                points = pointsArray(polyData)
                for center in sampledata.PHANTOMS["islands"].speckCenters:
                    self.assertGreater(np.linalg.norm(points - center, axis=1).min(), 3.0)
                error = testing.surfaceError(polyData, sampledata.PHANTOMS["islands"].boneSdf)
                self.assertLessEqual(error["mean"], 0.05 if options is FINE else 0.10)
                self.assertLessEqual(error["p95"], 0.15 if options is FINE else 0.30)

    def test_surfaceIsInLpsAndAMirrorFails(self):
        result, polyData = self.run_("shell")
        shell = sampledata.PHANTOMS["shell"]
        self.assertLess(testing.surfaceError(polyData, shell.boneSdf)["mean"], 0.02)
        # the phantom sits 8 mm to the patient's left: a left/right mirrored model is off by centimetres
        self.assertGreater(testing.surfaceError(polyData, shell.boneSdf, mirrorX=True)["mean"], 5.0)
        self.assertEqual((result.mesh.shells, result.mesh.parts), (2, 1))  # outer surface and cavity: one solid
        self.assertEqual(testing.stlHeader(result.outputPath).rstrip(b"\0"), b"3D Slicer output. SPACE=LPS")

    def test_rasOutputIsMirroredInXAndY(self):
        lps, lpsMesh = self.run_("shell", "lps")
        ras, rasMesh = self.run_("shell", "ras", coordinateSystem="RAS")
        self.assertEqual(testing.stlHeader(ras.outputPath).rstrip(b"\0"), b"3D Slicer output. SPACE=RAS")
        lpsBounds, rasBounds = np.array(lpsMesh.GetBounds()), np.array(rasMesh.GetBounds())
        np.testing.assert_allclose(rasBounds, [-lpsBounds[1], -lpsBounds[0], -lpsBounds[3], -lpsBounds[2],
                                               lpsBounds[4], lpsBounds[5]], atol=1e-4)

    def test_iso50IsTheDefaultAndPresetsAndSlicersRouteStillWork(self):
        iso, _ = self.run_("shell", "iso")
        self.assertEqual(iso.threshold["source"], "automatic (ISO-50)")
        # the two levels it is halfway between
        self.assertRegex(iso.threshold["reason"], r"soft tissue \(4\d HU\) and cortical bone \(99\d HU\)")
        self.assertAlmostEqual(iso.threshold["minimum"], 518.0, delta=3.0)
        self.assertEqual(iso.surface["placement"], "SUBVOXEL")
        # Slicer's classic route with a fixed 226 HU preset puts the surface a quarter voxel out: +6 % volume
        classic, _ = self.run_("shell", "classic", preset="CT bone", surfacePlacement="LABELMAP")
        self.assertEqual((classic.threshold["minimum"], classic.threshold["source"]), (226.0, "preset 'CT bone'"))
        volume = sampledata.PHANTOMS["shell"].boneVolumeMm3
        self.assertGreater((classic.mesh.volumeMm3 - volume) / volume, 0.05)
        self.assertLess(abs(iso.mesh.volumeMm3 - volume) / volume, 0.005)

    def test_keepLargestOrRemoveSmallIslands(self):
        largest, _ = self.run_("twoparts", "largest")
        both, _ = self.run_("twoparts", "both", islandsOperation=segment.REMOVE_SMALL_ISLANDS)
        self.assertEqual((largest.mesh.parts, both.mesh.parts), (1, 2))
        volumeLarge, volumeBoth = 4 / 3 * np.pi * 10.0**3, sampledata.PHANTOMS["twoparts"].boneVolumeMm3
        self.assertLess(abs(largest.mesh.volumeMm3 - volumeLarge) / volumeLarge, 0.01)
        self.assertLess(abs(both.mesh.volumeMm3 - volumeBoth) / volumeBoth, 0.01)

    def test_tenfoldDecimationKeepsItPrintableAndAccurate(self):
        sdf = sampledata.PHANTOMS["shell"].boneSdf
        full, fullMesh = self.run_("shell", "full", targetTriangles=0)
        small, smallMesh = self.run_("shell", "small", targetReduction=0.9)
        self.assertGreater(full.mesh.triangles, 140000)
        self.assertLessEqual(small.mesh.triangles, full.mesh.triangles // 10 + 1)
        self.assertTrue(small.decimation["decimated"])
        self.assertTrue(small.validation.printable, small.validation.reasons)
        self.assertEqual((small.mesh.shells, small.mesh.parts), (2, 1))
        increase = testing.surfaceError(smallMesh, sdf)["mean"] - testing.surfaceError(fullMesh, sdf)["mean"]
        self.assertLessEqual(increase, 0.02)

    def test_reportPreviewAndTableBesideTheStl(self):
        result, _ = self.run_("shell", writePreview=True, keepNodes=True)
        self.addCleanup(self.logic.context.removeNode, result.volumeNode)
        self.addCleanup(self.logic.context.removeNode, result.segmentationNode)
        self.addCleanup(self.logic.context.removeNode, result.reportTableNode)
        stem = os.path.splitext(result.outputPath)[0]
        self.assertEqual((result.reportPath, result.previewPath), (stem + ".json", stem + ".png"))
        with open(result.reportPath) as f:
            report = json.load(f)
        validation = report["validation"]
        self.assertTrue(validation["printable"])
        self.assertEqual((validation["watertight"], validation["nonManifoldEdges"], validation["nonManifoldVertices"],
                          validation["orientation"], validation["selfIntersections"]), (True, 0, 0, "outward", 0))
        self.assertAlmostEqual(validation["volumeCm3"], sampledata.PHANTOMS["shell"].boneVolumeMm3 / 1000, delta=0.3)
        np.testing.assert_allclose(validation["boundingBoxMm"], [60.0, 60.0, 60.0], atol=0.15)
        # the shell wall is 6 mm: no thin area, minimum near 6 mm (measured along the faceted normals)
        self.assertAlmostEqual(validation["wallThickness"]["minimumMm"], 6.0, delta=0.25)
        self.assertEqual(validation["wallThickness"]["thinAreaMm2"], 0.0)
        self.assertEqual(report["segments"][0]["threshold"], result.threshold)
        self.assertEqual(set(report["timingsSeconds"]), {"find", "load", "segment", "surface", "decimate", "export",
                                                         "validate", "report", "total"})
        with open(result.previewPath, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        # the model in both views (front, left): the frame is captured as rendered, not blank or background only
        reader = vtk.vtkPNGReader()
        reader.SetFileName(result.previewPath)
        reader.Update()
        width, height, _ = reader.GetOutput().GetDimensions()
        pixels = numpy_support.vtk_to_numpy(reader.GetOutput().GetPointData().GetScalars()).reshape(height, width, -1)
        self.assertEqual((width, height), (1000, 500))
        model = np.any(pixels != pixels[-1, -1], axis=2)  # not the background (the top right corner)
        for view in (model[:, :500], model[:, 500:]):
            self.assertGreater(view.mean(), 0.1)
        table = result.reportTableNode
        self.assertEqual(table.GetCellText(0, 0), "Printable")
        self.assertEqual(table.GetCellText(0, 2), "pass")
        # 13 checks, then the provenance: threshold, input fingerprint, the two file hashes, 10 software versions
        self.assertEqual(table.GetNumberOfRows(), 13 + 2 + 2 + 10)
        self.assertEqual(table.GetCellText(14, 0), "Input fingerprint (SHA-256)")
        self.assertEqual(table.GetCellText(14, 1), result.inputFingerprint)

    def test_noPatientDataInTheOutputs(self):
        result, _ = self.run_("shell", writePreview=True)
        identifiers = list(sampledata.SYNTHETIC_PATIENT.values())
        for path in (result.outputPath, result.reportPath, result.previewPath):
            self.assertEqual(testing.fileContains(path, identifiers), [], path)

    def test_outputsAreAtomicAndExistingFilesKept(self):
        target = os.path.join(self.output, "model.stl")
        with open(target, "wb") as f:
            f.write(b"keep me")
        folder = testing.phantomSeries("shell")
        with self.assertRaisesRegex(DicomToPrintError, "file exists; it is kept"):
            self.logic.run(folder, target)
        with open(target, "rb") as f:
            self.assertEqual(f.read(), b"keep me")
        result = self.logic.run(folder, target, overwrite=True, writePreview=False)
        self.assertEqual(os.path.getsize(result.outputPath), 84 + 50 * result.mesh.triangles)
        with self.assertRaisesRegex(DicomToPrintError, "output folder does not exist"):
            self.logic.run(folder, os.path.join(self.output, "missing", "model.stl"))
        self.assertEqual(glob.glob(os.path.join(self.output, ".dicomtoprint-*")), [])

    def test_progressAndCancel(self):
        seen = []
        result = self.logic.run(testing.phantomSeries("shell"), os.path.join(self.output, "p.stl"), writePreview=False,
                                progressCallback=lambda text, percent: seen.append(percent) and False)
        self.assertTrue(os.path.exists(result.outputPath))
        self.assertEqual(seen[-1], 100.0)
        self.assertEqual(seen, sorted(seen))
        nodesBefore = self.logic.context.scene.GetNumberOfNodes()
        target = os.path.join(self.output, "cancelled.stl")
        with self.assertRaises(ProcessingCancelled):
            self.logic.run(testing.phantomSeries("shell"), target,
                           progressCallback=lambda text, percent: text.startswith("Creating the closed surface"))
        self.assertEqual(os.listdir(self.output), ["p.json", "p.stl"])
        self.assertEqual(self.logic.context.scene.GetNumberOfNodes(), nodesBefore)

    def test_cancelWithinAStep(self):
        """Cancel is answered inside a long step (here validation, after the STL was written): the run stops at
        the step's next checkpoint and removes what it had written."""
        self.addCleanup(setattr, runtime, "CHECKPOINT_INTERVAL", runtime.CHECKPOINT_INTERVAL)
        runtime.CHECKPOINT_INTERVAL = 0.0  # every checkpoint asks
        calls = []

        def cancelInValidation(text, percent):
            calls.append(text)
            return calls.count("Validating the exported model") == 2  # asked again from inside the step

        with self.assertRaisesRegex(ProcessingCancelled, "Cancelled at: Validating the exported model"):
            self.logic.run(testing.phantomSeries("shell"), os.path.join(self.output, "c.stl"),
                           progressCallback=cancelInValidation)
        self.assertIn("Writing the STL", calls)  # the STL had been written ...
        self.assertEqual(os.listdir(self.output), [])  # ... and is gone again

    def test_cancelStopsFilters(self):
        """VTK and ITK filters run through runtime.update/execute stop on a cancel from their progress events."""
        import SimpleITK as sitk
        import vtk

        self.addCleanup(setattr, runtime, "CHECKPOINT_INTERVAL", runtime.CHECKPOINT_INTERVAL)
        runtime.CHECKPOINT_INTERVAL = 0.0
        source = vtk.vtkImageNoiseSource()
        source.SetWholeExtent(0, 199, 0, 199, 0, 99)
        smooth = vtk.vtkImageGaussianSmooth()
        smooth.SetInputConnection(source.GetOutputPort())
        asked = []
        with runtime.cancellable(lambda text, percent: asked.append(text) or True) as callback:
            callback("Smoothing", 10.0)  # the first call (a step begins) answers True too; ignore it
            with self.assertRaisesRegex(ProcessingCancelled, "Cancelled at: Smoothing"):
                runtime.update(smooth)
            labeller = sitk.ConnectedComponentImageFilter()
            with self.assertRaisesRegex(ProcessingCancelled, "Cancelled at: Smoothing"):
                runtime.execute(labeller, sitk.Image(200, 200, 100, sitk.sitkUInt8))
        self.assertEqual(asked, ["Smoothing"] * 3)
        smooth.Update()  # the filter works again afterwards
        self.assertEqual(smooth.GetOutput().GetDimensions(), (200, 200, 100))
        # outside a cancellable block the same calls just run
        self.assertEqual(runtime.execute(sitk.ConnectedComponentImageFilter(),
                                         sitk.Image(20, 20, 10, sitk.sitkUInt8)).GetSize(), (20, 20, 10))

    def test_aCancelIsAnsweredWhileAFilterRunsAside(self):
        """runtime.updateAside: the callback is asked while the filter still runs in its thread (Slicer's series
        reader, which cannot be stopped from its progress events), and the cancel is raised at once."""
        import threading
        import time

        import vtk

        self.addCleanup(setattr, runtime, "CHECKPOINT_INTERVAL", runtime.CHECKPOINT_INTERVAL)
        runtime.CHECKPOINT_INTERVAL = 0.0
        source = vtk.vtkImageNoiseSource()
        source.SetWholeExtent(0, 299, 0, 299, 0, 299)
        smooth = vtk.vtkImageGaussianSmooth()  # about a second of work on this machine
        smooth.SetInputConnection(source.GetOutputPort())
        running = []

        def cancel(text, percent):
            running.append(any(t.name == "vtkImageGaussianSmooth.Update" for t in threading.enumerate()))
            return len(running) > 1

        with runtime.cancellable(cancel) as callback:
            callback("Smoothing", 10.0)
            started = time.monotonic()
            with self.assertRaisesRegex(ProcessingCancelled, "Cancelled at: Smoothing"):
                runtime.updateAside(smooth)
            self.assertLess(time.monotonic() - started, 0.5)
        self.assertEqual(running, [False, True])  # asked (and cancelled) while the filter was still running
        # cancelling a load in its reading leaves no node behind
        before = self.logic.context.scene.GetNumberOfNodes()
        asked = []
        series = self.logic.findSeries(testing.phantomSeries("shell")).selectSeries()
        with runtime.cancellable(lambda text, percent: asked.append(text) or len(asked) > 1) as callback:
            with self.assertRaisesRegex(ProcessingCancelled, "Cancelled at: Loading 80 slices"):
                self.logic.loadSeries(series, progressCallback=callback)
        self.assertEqual(asked, ["Loading 80 slices"] * 2)
        self.assertEqual(self.logic.context.scene.GetNumberOfNodes(), before)

    def test_nodesStayOnlyWhenAsked(self):
        before = self.logic.context.scene.GetNumberOfNodes()
        result, _ = self.run_("shell", "kept", keepNodes=True)
        self.assertEqual(result.segmentationNode.GetSegmentation().GetNumberOfSegments(), 1)
        self.assertEqual(result.volumeNode.GetImageData().GetDimensions(), (176, 176, 80))
        for node in (result.volumeNode, result.segmentationNode, result.reportTableNode):
            self.logic.context.removeNode(node)
        self.run_("shell", "removed")
        self.assertEqual(self.logic.context.scene.GetNumberOfNodes(), before)


if __name__ == "__main__":
    unittest.main()
