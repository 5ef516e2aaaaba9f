"""Series that look like patients' scans, with default settings, judged as a print lab judges a model
(PrusaSlicer): a head CT with air around the head, skin, fat, muscle, a skull with diploe, brain and ventricles,
a head holder touching the back of the head and a table (bone about 4 % of the voxels); an MR head without
Hounsfield units; volumes with nothing to print."""

import json
import os
import unittest

import numpy as np

import DicomToPrintTesting as testing
from DicomToPrintLib import export, sampledata
from DicomToPrintLib.meshdata import pointsArray


def exactVolume(name: str) -> float:
    """Volume (mm^3) of what a perfect default model of the phantom holds, on its own grid."""
    phantom = sampledata.PHANTOMS[name]
    return sampledata.solidVolume(phantom.targetSdf, sampledata.VolumeGeometry.centered(phantom.shape,
                                                                                          phantom.spacing))


class DicomToPrintRealScanTest(unittest.TestCase):
    def test_headCtGivesTheSkullAsOneSolidPart(self):
        folder, output = testing.phantomSeries("patienthead"), testing.temporaryFolder(self)
        path = os.path.join(output, "skull.stl")
        code, out, err = testing.runCli(folder, "-o", path, "-q")
        self.assertEqual((code, err), (0, ""))  # no warning, no traceback
        with open(os.path.join(output, "skull.json"), encoding="utf-8") as f:
            report = json.load(f)
        validation, (skull,) = report["validation"], report["segments"]
        self.assertTrue(validation["printable"], validation["reasons"])
        # one solid: the diploe between the tables is bone, no cavity is left between two plates
        self.assertEqual((validation["parts"], validation["shells"]), (1, 1))
        exact = exactVolume("patienthead")
        self.assertLess(abs(validation["volumeCm3"] * 1000.0 - exact) / exact, 0.02)
        self.assertGreater(skull["islands"]["cavities"]["voxelsFilled"], 0)
        # bone, found between soft tissue (skin 45, muscle 50, brain 35 HU) and cortical bone (1300 HU), and the
        # report says so in words; the segment is named for it
        threshold = skull["threshold"]
        self.assertEqual((skull["name"], threshold["structure"]), ("Bone", "Bone"))
        self.assertAlmostEqual(threshold["levels"]["lowerLevel"], 40.0, delta=10.0)
        self.assertAlmostEqual(threshold["levels"]["upperLevel"], 1250.0, delta=60.0)
        self.assertIn("halfway between soft tissue", threshold["reason"])
        self.assertIn("cortical bone", threshold["reason"])
        # the surface lies on the skull's: its inside level is cortical bone, not the diploe's
        self.assertAlmostEqual(skull["surface"]["insideLevel"], 1300.0, delta=30.0)
        # neither the head holder nor the table (whose carbon sheets are as dense as bone) is in the model
        phantom = sampledata.PHANTOMS["patienthead"]
        points = pointsArray(export.readStl(path))
        for name, sdf in phantom.excludedSdfs.items():
            self.assertGreater(float(sdf(points).min()), 5.0, name)
        # close to the exact bone surface, and the report says how close the file is to the undecimated surface
        error = testing.surfaceError(export.readStl(path), phantom.targetSdf)
        self.assertLess(error["mean"], 0.05)
        self.assertLess(error["p95"], 0.15)
        fidelity = skull["decimation"]["deviation"]
        self.assertLessEqual(fidelity["maximumMm"], 0.5)
        self.assertLess(fidelity["meanMm"], fidelity["p95Mm"])
        # the print lab's judge: manifold, nothing to repair, one part; and it slices
        info = testing.prusaSlicerInfo(path)
        self.assertEqual((info["manifold"], info["number_of_parts"]), ("yes", "1"), info)
        self.assertEqual(testing.prusaSlicerRepairs(info), {})
        sliced = testing.prusaSlicerSlice(path, output)
        self.assertEqual((sliced["exitStatus"], sliced["gcode"]), (0, True))
        self.assertAlmostEqual(sliced["filamentCm3"], validation["volumeCm3"], delta=0.6 * validation["volumeCm3"])

    def test_mrHeadGivesTheBodySurfaceAsOneClosedPart(self):
        folder, output = testing.phantomSeries("mrhead"), testing.temporaryFolder(self)
        path = os.path.join(output, "head.stl")
        code, out, err = testing.runCli(folder, "-o", path, "-q", "--no-preview")
        self.assertEqual((code, err), (0, ""))
        with open(os.path.join(output, "head.json"), encoding="utf-8") as f:
            report = json.load(f)
        validation, (body,) = report["validation"], report["segments"]
        self.assertTrue(validation["printable"], validation["reasons"])
        self.assertEqual((validation["parts"], validation["shells"]), (1, 1))
        # background (Rician noise, 10) against the tissue; named for what it is, and why it is that
        self.assertEqual(body["name"], "Skin")
        self.assertIn("no Hounsfield units", body["threshold"]["reason"])
        self.assertLess(body["threshold"]["levels"]["lowerLevel"], 20.0)
        # the skin, halfway between the background and the tissue's level (a 1.5 mm skin over bright fat is too
        # thin to measure its own level): within 2 % of the head and neck in the field of view, and within half a
        # millimetre of their surface (the neck's cut by the field of view aside), a little inside it
        exact = exactVolume("mrhead")
        self.assertLess(abs(validation["volumeCm3"] * 1000.0 - exact) / exact, 0.02)
        points = pointsArray(export.readStl(path))
        distance = sampledata.PHANTOMS["mrhead"].targetSdf(points[points[:, 2] > points[:, 2].min() + 2.0])
        self.assertLess(float(np.abs(distance).max()), 0.75)
        self.assertLess(float(distance.mean()), 0.0)
        self.assertIn("the skin being too thin to measure", body["surface"]["description"])
        info = testing.prusaSlicerInfo(path)
        self.assertEqual((info["manifold"], info["number_of_parts"]), ("yes", "1"), info)
        self.assertEqual(testing.prusaSlicerRepairs(info), {})

    def test_nothingToPrintIsAnError(self):
        output = testing.temporaryFolder(self)
        # soft tissue filling the field of view, 20 HU of noise: nothing is as dense as bone
        folder = testing.phantomSeries("uniform")
        code, out, err = testing.runCli(folder, "-o", os.path.join(output, "noise.stl"), "-q")
        self.assertEqual(code, 1)
        self.assertIn(f"{folder}: nothing in this CT is as dense as bone", err)
        self.assertIn("five times the noise", err)
        # the same noise as an MR: no class stands out from the noise
        mr = testing.phantomSeries("uniform", modality="MR", rescaleIntercept=0.0)
        code, out, err = testing.runCli(mr, "-o", os.path.join(output, "noise.stl"), "-q")
        self.assertEqual(code, 1)
        self.assertIn(f"{mr}: nothing stands out from the noise", err)
        self.assertEqual(os.listdir(output), [])

    def test_levelsOfAPatientLikeHistogram(self):
        from DicomToPrintLib import levels

        rng = np.random.default_rng(5)
        # a head CT's proportions: mostly air and soft tissue, some fat, cancellous bone and a head holder, bone
        # 3 % of the voxels; the old rule (the two densest of three classes) found air and soft tissue here
        values = np.concatenate([np.full(600000, -1000.0), np.full(250000, 40.0), np.full(60000, -100.0),
                                 np.full(20000, 350.0), np.full(10000, 450.0), np.full(30000, 1300.0)])
        values += rng.normal(0.0, 20.0, values.shape)
        found = levels.iso50Threshold(values, "CT")
        self.assertAlmostEqual(found.lowerLevel, 40.0, delta=4.0)
        self.assertAlmostEqual(found.upperLevel, 1300.0, delta=4.0)
        self.assertAlmostEqual(found.threshold, 670.0, delta=4.0)
        self.assertAlmostEqual(found.noise, 20.0, delta=2.0)
        # a dry bone in air (no soft tissue): the lower level is the air's
        dry = np.concatenate([np.full(90000, -1000.0), np.full(10000, 800.0)]) + rng.normal(0.0, 20.0, 100000)
        found = levels.iso50Threshold(dry, "CT")
        self.assertEqual(found.lowerName, "air")
        self.assertAlmostEqual(found.threshold, -100.0, delta=10.0)
        # bone that does not stand out from the noise, and no bone at all
        with self.assertRaisesRegex(levels.NothingToPrint, "nothing in this CT is as dense as bone"):
            levels.iso50Threshold(40.0 + rng.normal(0.0, 20.0, 100000), "CT")
        with self.assertRaisesRegex(levels.NothingToPrint, "single intensity"):
            levels.iso50Threshold(np.zeros(100), "CT")


if __name__ == "__main__":
    unittest.main()
