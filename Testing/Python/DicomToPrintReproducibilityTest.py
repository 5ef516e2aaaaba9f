"""Traceable and reproducible models: what the report records, byte-identical STLs whatever the thread count
and file order, and `dicomtoprint reproduce`."""

import json
import os
import random
import re
import shutil
import subprocess
import sys
import unittest

import numpy as np
import pydicom

import DicomToPrintTesting as testing
from DicomToPrintLib import DicomToPrintLogic, DicomToPrintParameters, dicom, export
from DicomToPrintLib.runtime import isSlicerApplication

SMALL = {"shape": (64, 64, 36), "spacing": (0.8, 0.8, 1.0)}


def shuffledCopy(source: str, target: str, seed: int = 5) -> None:
    """The same files under other names, written in another order."""
    names = sorted(os.listdir(source))
    random.Random(seed).shuffle(names)
    os.makedirs(target)
    for index, name in enumerate(names):
        shutil.copy(os.path.join(source, name), os.path.join(target, f"slice{index:04d}"))


def runCommand(*argv):
    completed = subprocess.run([sys.executable, "-m", "DicomToPrintLib", *[str(a) for a in argv]],
                               capture_output=True, text=True, check=False)
    return completed.returncode, completed.stdout, completed.stderr


class DicomToPrintReproducibilityTest(unittest.TestCase):
    def setUp(self):
        self.output = testing.temporaryFolder(self)

    def test_reportRecordsHowTheModelWasMade(self):
        result = DicomToPrintLogic().run(testing.phantomSeries("twoparts", **SMALL),
                                         os.path.join(self.output, "m.stl"), targetTriangles=20000)
        with open(result.reportPath) as f:
            report = json.load(f)
        self.assertEqual(set(report["software"]), {"dicomtoprint", "slicer", "vtk", "itk (SimpleITK)", "simpleitk",
                                                   "pydicom", "numpy", "fast-simplification", "embreex",
                                                   "python"})
        self.assertRegex(report["software"]["slicer"], r"^(Slicer|slicer-core) \d+\.\d+")
        self.assertEqual(report["parameters"], DicomToPrintParameters(targetTriangles=20000).asDict())
        self.assertRegex(report["segments"][0]["threshold"]["reason"],
                         r"^bone: voxels of \d+ HU and more, halfway between soft tissue \(\d+ HU\) and cortical "
                         r"bone \(\d+ HU\)$")
        self.assertIsInstance(report["warnings"], list)
        provenance = report["provenance"]
        self.assertRegex(provenance["inputFingerprint"], r"^[0-9a-f]{64}$")
        self.assertEqual(provenance["outputSha256"], {"m.stl": export.sha256(result.outputPath),
                                                      "m.png": export.sha256(result.previewPath)})

    def test_fingerprintIsTheDataNotThePatient(self):
        folder = testing.phantomSeries("twoparts", **SMALL)
        logic = DicomToPrintLogic()

        def fingerprintOf(path):
            volume = logic.loadSeries(logic.findSeries(path).selectSeries()).volumeNode
            value = dicom.fingerprint(volume)
            logic.context.removeNode(volume)
            return value

        original = fingerprintOf(folder)
        # another patient's name, ID, dates and new UIDs on the same voxels: the same fingerprint
        renamed = os.path.join(self.output, "renamed")
        shutil.copytree(folder, renamed)
        series, study = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
        for name in os.listdir(renamed):
            path = os.path.join(renamed, name)
            ds = pydicom.dcmread(path)
            ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Other^Person", "X-1", "19990101"
            ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.SOPInstanceUID = series, study, pydicom.uid.generate_uid()
            ds.save_as(path)
        self.assertEqual(fingerprintOf(renamed), original)
        # one voxel changed: another fingerprint
        path = os.path.join(renamed, sorted(os.listdir(renamed))[0])
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array.copy()
        pixels[10, 10] += 1
        ds.PixelData = pixels.tobytes()
        ds.save_as(path)
        self.assertNotEqual(fingerprintOf(renamed), original)

    def test_sameInputSameBytesWhateverThreadsAndFileOrder(self):
        if isSlicerApplication():
            self.skipTest("runs the command line in separate processes (thread counts are per process)")
        folder = testing.phantomSeries("shell")
        shuffled = os.path.join(self.output, "shuffled")
        shuffledCopy(folder, shuffled)
        first, second = os.path.join(self.output, "one.stl"), os.path.join(self.output, "two.stl")
        code, _, err = runCommand(folder, "-o", first, "--threads", 1, "-q")
        self.assertEqual(code, 0, err)
        code, _, err = runCommand(shuffled, "-o", second, "--threads", 2, "-q")
        self.assertEqual(code, 0, err)
        with open(first, "rb") as a, open(second, "rb") as b:
            self.assertEqual(a.read(), b.read())
        with open(os.path.join(self.output, "one.json")) as a, open(os.path.join(self.output, "two.json")) as b:
            fingerprints = [json.load(report)["provenance"]["inputFingerprint"] for report in (a, b)]
        self.assertEqual(fingerprints[0], fingerprints[1])
        # reproduce: from the first report, on the shuffled copy, in another process
        code, out, err = runCommand("reproduce", os.path.join(self.output, "one.json"), shuffled, "-o",
                                    os.path.join(self.output, "again.stl"), "-q")
        self.assertEqual(code, 0, err)
        self.assertIn("Input: the same data as recorded (fingerprint matches)", out)
        self.assertIn("Model: identical to the recorded one (SHA-256 matches)", out)

    def test_reproduceSaysWhatDiffers(self):
        from DicomToPrintLib import cli

        folder = testing.phantomSeries("twoparts", **SMALL)
        report = os.path.join(self.output, "m.json")
        DicomToPrintLogic().run(folder, os.path.join(self.output, "m.stl"), targetTriangles=20000)
        changed = os.path.join(self.output, "changed")
        shutil.copytree(folder, changed)
        path = os.path.join(changed, sorted(os.listdir(changed))[0])
        ds = pydicom.dcmread(path)
        ds.PixelData = (ds.pixel_array + np.uint16(50)).tobytes()  # another scan, as far as the data goes
        ds.save_as(path)
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            code = cli.main(["reproduce", report, changed, "-o", os.path.join(self.output, "n.stl"), "-q"])
        self.assertEqual(code, 4)
        self.assertIn("Input: DIFFERENT data from the recorded input (fingerprint differs)", out.getvalue())
        self.assertIn("Model: DIFFERS from the recorded one (SHA-256 differs)", out.getvalue())
        with open(os.path.join(self.output, "broken.json"), "w") as f:
            f.write("{}")
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = cli.main(["reproduce", os.path.join(self.output, "broken.json"), folder, "-o",
                             os.path.join(self.output, "o.stl")])
        self.assertEqual(code, 1)
        self.assertRegex(err.getvalue(), re.escape(os.path.join(self.output, "broken.json")) +
                         r": not a DicomToPrint report \(KeyError")


if __name__ == "__main__":
    unittest.main()
