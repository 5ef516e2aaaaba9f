"""The dicomtoprint command: listing, converting, exit codes and clear errors."""

import json
import os
import subprocess
import sys
import unittest

import DicomToPrintTesting as testing
from DicomToPrintLib.runtime import isSlicerApplication
from DicomToPrintTesting import runCli


class DicomToPrintCliTest(unittest.TestCase):
    def setUp(self):
        self.output = testing.temporaryFolder(self)

    def test_listSeries(self):
        code, out, _ = runCli(testing.phantomSeries("shell"), "--list-series")
        self.assertEqual(code, 0)
        self.assertRegex(out, r"(?m)^\s+1\* CT\s+80\s+176x176x80\s+0\.5 x 0\.5 x 1\s+DicomToPrint phantom shell$")
        self.assertIn("(* = converted by default; 0 other files skipped)", out)

    def test_convertWritesTheStlReportAndPreview(self):
        target, report = os.path.join(self.output, "shell.stl"), os.path.join(self.output, "elsewhere.json")
        code, out, err = runCli(testing.phantomSeries("shell"), "-o", target, "--report", report,
                                "--target-triangles", 50000)
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r"Threshold 5[12]\d(\.5)? to 1093: automatic \(ISO-50\), bone: voxels of 5[12]\d HU "
                              r"and more, halfway between soft tissue \(4\d HU\) and cortical bone \(99\d HU\)")
        self.assertIn("\nPRINTABLE\n", out)
        self.assertIn("1 part(s) in 2 shell(s)", out)
        self.assertIn("[100.0%] Done", err)
        with open(report) as f:
            summary = json.load(f)
        self.assertLessEqual(summary["validation"]["triangles"], 50000)
        self.assertEqual(summary["parameters"]["targetTriangles"], 50000)
        self.assertTrue(os.path.isfile(os.path.join(self.output, "shell.png")))
        self.assertEqual(sorted(os.listdir(self.output)), ["elsewhere.json", "shell.png", "shell.stl"])

    def test_explicitThresholdPresetAndLabelmapRoute(self):
        target = os.path.join(self.output, "classic.stl")
        code, out, err = runCli(testing.phantomSeries("shell"), "-o", target, "--threshold", 520, 3071,
                                "--surface", "labelmap", "--no-preview", "-q")
        self.assertEqual(code, 0, err)
        self.assertIn("Threshold 520 to 3071: manual, threshold range given", out)
        self.assertEqual(sorted(os.listdir(self.output)), ["classic.json", "classic.stl"])
        code, out, err = runCli(testing.phantomSeries("shell"), "-o", target, "--preset", "CT bone", "--overwrite",
                                "-q")
        self.assertEqual(code, 0, err)
        self.assertIn("Threshold 226 to 1093: preset 'CT bone'", out)

    def test_errorsNameTheProblemAndWriteNothing(self):
        empty = testing.temporaryFolder(self)
        target = os.path.join(self.output, "none.stl")
        code, _, err = runCli(empty, "-o", target)
        self.assertEqual(code, 1)
        self.assertIn(f"{empty}: no DICOM image series found", err)
        self.assertFalse(os.path.exists(target))
        with open(target, "w") as f:
            f.write("existing")
        code, _, err = runCli(testing.phantomSeries("shell"), "-o", target, "-q")
        self.assertEqual(code, 1)
        self.assertIn("file exists; it is kept (use overwrite to replace it)", err)
        code, _, err = runCli(testing.phantomSeries("shell"), "-o", target, "--threshold", 600, 500, "--overwrite")
        self.assertEqual(code, 1)
        self.assertIn("minimumThreshold 600.0 is above maximumThreshold 500.0", err)
        code, _, err = runCli(testing.phantomSeries("shell"))
        self.assertEqual(code, 2)
        self.assertIn("the output file is required", err)
        with open(target) as f:
            self.assertEqual(f.read(), "existing")

    def test_sampleWritesASeriesToTry(self):
        folder = os.path.join(self.output, "sample")
        code, out, _ = runCli("sample", folder, "--phantom", "twoparts")
        self.assertEqual(code, 0)
        self.assertEqual(json.loads(out)["files"], 80)
        code, _, err = runCli("sample", folder)
        self.assertEqual(code, 1)
        self.assertIn("folder is not empty", err)
        # --overwrite replaces a sample series, and nothing else
        code, out, _ = runCli("sample", folder, "--overwrite")
        self.assertEqual((code, json.loads(out)["phantom"], len(os.listdir(folder))), (0, "shell", 80))
        with open(os.path.join(folder, "notes.txt"), "w") as f:
            f.write("mine")
        code, _, err = runCli("sample", folder, "--overwrite")
        self.assertEqual((code, len(os.listdir(folder))), (1, 81))
        self.assertIn("notes.txt: not part of a DicomToPrint sample series", err)

    def test_moduleEntryPoint(self):
        if isSlicerApplication():
            self.skipTest("the command line is for plain Python installs, not Slicer's Python")
        completed = subprocess.run([sys.executable, "-m", "DicomToPrintLib", "--version"], capture_output=True,
                                   text=True, check=False)
        self.assertEqual(completed.returncode, 0)
        self.assertRegex(completed.stdout, r"^dicomtoprint \d+\.\d+\.\d+")

    def test_aReaderThatStopsEarlyEndsTheRunQuietly(self):
        if isSlicerApplication():
            self.skipTest("the command line is for plain Python installs, not Slicer's Python")
        # `dicomtoprint ... | head -1`: the reader closes the pipe before the listing is written
        process = subprocess.Popen([sys.executable, "-m", "DicomToPrintLib", testing.phantomSeries("shell"),
                                    "--list-series"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        process.stdout.close()
        errors = process.stderr.read().decode(errors="replace")
        self.assertEqual(process.wait(), 141)
        self.assertNotIn("Traceback", errors)
        self.assertNotIn("BrokenPipeError", errors)


if __name__ == "__main__":
    unittest.main()
