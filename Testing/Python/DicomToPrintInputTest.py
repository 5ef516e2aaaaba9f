"""Bad and unusual input: a generated corpus of scanner exports that must work, and ones that must fail cleanly
(a message naming the file and the problem, a non-zero exit, no output file), plus the guarantees: the input
is never written to, no patient data leaves, nothing goes over the network."""

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

import DicomToPrintTesting as testing
from DicomToPrintLib import DicomToPrintError, DicomToPrintLogic, dicom, export, sampledata, segment
from DicomToPrintLib.runtime import isSlicerApplication
from DicomToPrintTesting import runCli

SMALL = {"shape": (64, 64, 36), "spacing": (0.8, 0.8, 1.0)}  # the two spheres, quick to make and convert
FAST = {"writePreview": False, "targetTriangles": 20000}



def folderDigest(folder: str) -> str:
    """Names, sizes, modification times and contents of every file below a folder."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            stat = os.stat(path)
            digest.update(f"{os.path.relpath(path, folder)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def writeNonImage(path: str, sopClass: str, modality: str) -> None:
    """A DICOM object without pixels (structured report, RT structure set, presentation state)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sopClass, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sopClass, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID = modality, generate_uid()
    ds.PatientName = sampledata.SYNTHETIC_PATIENT["PatientName"]
    sampledata.saveDicomFile(ds, path)


def renderSeries(folder, name="shell", shape=(96, 96, 72), spacing=(0.8, 0.8, 1.0), direction=None,
                 noiseHu=20.0, **writeOptions):
    geometry = sampledata.VolumeGeometry.centered(shape, spacing, direction)
    hu = sampledata.renderPhantom(sampledata.PHANTOMS[name], geometry, noiseHu=noiseHu)
    return sampledata.writeDicomSeries(hu, geometry, folder, **writeOptions), hu


class DicomToPrintInputTest(unittest.TestCase):
    """Inputs that must work."""

    def setUp(self):
        self.logic = DicomToPrintLogic()
        self.folder = testing.temporaryFolder(self)
        self.output = testing.temporaryFolder(self)

    def convert(self, folder=None, name="model", **parameters):
        result = self.logic.run(folder or self.folder, os.path.join(self.output, name + ".stl"),
                                **{**FAST, **parameters})
        return result, export.readStl(result.outputPath)

    def assertOnSurface(self, polyData, phantom="shell", meanMm=0.1):
        error = testing.surfaceError(polyData, sampledata.PHANTOMS[phantom].boneSdf)
        self.assertLess(error["mean"], meanMm)
        self.assertGreater(testing.surfaceError(polyData, sampledata.PHANTOMS[phantom].boneSdf, mirrorX=True)["mean"],
                           5.0)

    def test_01_gantryTiltIsResampledWithAWarning(self):
        tilt = np.radians(20.0)
        # slices 1 mm apart along the normal, each shifted in y: the slice axis leans 20 degrees
        direction = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, np.sin(tilt), np.cos(tilt)]]).T
        renderSeries(self.folder, spacing=(0.8, 0.8, 1.0 / np.cos(tilt)), direction=direction)
        result, polyData = self.convert()
        self.assertIn("gantry tilt of 20.0 degrees", result.series["geometry"])
        self.assertTrue(any("gantry tilt" in w for w in result.warnings))
        self.assertTrue(result.validation.printable)
        self.assertOnSurface(polyData)

    def test_02_unevenSpacingIsResampled(self):
        geometryShape = (96, 96, 144)
        keep = [k for k in range(144) if k % 5 not in (1, 3)]  # gaps of 1.0 and 1.5 mm (0.5 mm slices kept 3 of 5)
        renderSeries(self.folder, shape=geometryShape, spacing=(0.8, 0.8, 0.5), keepSlices=keep)
        result, polyData = self.convert()
        self.assertIn("uneven slice spacing (0.500 to 1.000 mm)", result.series["geometry"])
        self.assertOnSurface(polyData)

    def test_03_aMissingSliceIsInterpolatedOrRefused(self):
        renderSeries(self.folder, keepSlices=[k for k in range(72) if k != 40])
        result, polyData = self.convert()
        self.assertTrue(any("slices missing (1 after" in w for w in result.warnings))
        self.assertEqual(result.validation.printable, True)
        self.assertOnSurface(polyData, meanMm=0.15)
        with self.assertRaisesRegex(DicomToPrintError, r"slices are missing \(1 after 3\.50 mm along the slice normal"):
            self.convert(name="refused", missingSlices="REFUSE")
        self.assertFalse(os.path.exists(os.path.join(self.output, "refused.stl")))
        refusedByCli = os.path.join(self.output, "cli.stl")
        code, _, err = runCli(self.folder, "-o", refusedByCli, "--missing-slices", "refuse", "-q")
        self.assertEqual(code, 1)
        self.assertIn("slices are missing (1 after 3.50 mm along the slice normal", err)
        self.assertFalse(os.path.exists(refusedByCli))

    def test_04_obliqueSeriesLandsWhereTheAnatomyIs(self):
        a, b = np.radians(30.0), np.radians(20.0)
        rotateX = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
        rotateZ = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
        renderSeries(self.folder, shape=(96, 96, 80), direction=rotateZ @ rotateX)
        result, polyData = self.convert()
        self.assertEqual(result.series["geometry"], "as acquired")
        self.assertOnSurface(polyData)

    def test_05_sagittalMrWithoutHounsfieldUnits(self):
        sagittal = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]).T  # rows along y, columns down
        geometry = sampledata.VolumeGeometry.centered((96, 96, 80), (0.8, 0.8, 1.0), sagittal)
        hu = sampledata.renderPhantom(sampledata.PHANTOMS["shell"], geometry)
        signal_ = (hu + 1000.0) * 0.8  # air 0, tissue 832, bright structure 1600: arbitrary MR units
        sampledata.writeDicomSeries(signal_, geometry, self.folder, modality="MR", rescaleIntercept=0.0)
        with self.assertRaisesRegex(DicomToPrintError, "preset 'CT bone' is in Hounsfield units and the series is MR"):
            self.convert(name="preset", preset="CT bone")
        # by default an MR gives the body's surface (here the tissue that fills the field of view), named so
        result, polyData = self.convert(name="body")
        self.assertEqual(result.threshold["source"], "automatic (ISO-50)")
        self.assertEqual((result.segments[0].name, result.threshold["structure"]), ("Skin", "Skin"))
        self.assertNotIn(" HU", result.threshold["reason"])
        self.assertEqual(result.validation.statistics.parts, 1)
        # the bright structure, by its range: where the anatomy is, not mirrored
        result, polyData = self.convert(minimumThreshold=1216.0)
        self.assertOnSurface(polyData)

    def test_06_compressedTransferSyntaxes(self):
        source = testing.phantomSeries("twoparts", **SMALL)
        reference = segment.volumeArray(self.logic.loadSeries(self.logic.findSeries(source).selectSeries())
                                        .volumeNode).copy()
        for index, syntax in enumerate((RLELossless, JPEGLSLossless, JPEG2000Lossless, JPEGLosslessSV1)):
            with self.subTest(syntax=syntax.name):
                if not dicom.PYDICOM_3 and syntax in (JPEGLSLossless, JPEG2000Lossless):
                    self.skipTest(f"writing {syntax.name} test files needs pydicom 3's encoders (this is pydicom "
                                  f"{pydicom.__version__}); reading them is GDCM's, the same with either")
                folder = os.path.join(self.folder, f"syntax{index}")
                testing.transcode(source, folder, syntax)
                series = self.logic.findSeries(folder).selectSeries()
                self.assertEqual(series.summary()["transferSyntaxes"], [syntax.name])
                volume = self.logic.loadSeries(series).volumeNode
                np.testing.assert_array_equal(segment.volumeArray(volume), reference)
                result, _ = self.convert(folder, name=f"syntax{index}")
                self.assertTrue(result.validation.printable)

    def test_07_enhancedMultiFrame(self):
        renderSeries(self.folder, multiFrame=True)
        self.assertEqual(len(os.listdir(self.folder)), 1)
        result, polyData = self.convert()
        self.assertTrue(result.series["multiFrame"])
        self.assertEqual(result.series["slices"], 72)
        self.assertOnSurface(polyData)

    def test_08_signedStorageAndRescaleSlope(self):
        _, hu = renderSeries(os.path.join(self.folder, "signed"), name="twoparts", shape=SMALL["shape"],
                             signed=True, rescaleIntercept=0.0)
        renderSeries(os.path.join(self.folder, "slope"), name="twoparts", shape=SMALL["shape"], rescaleSlope=0.5,
                     rescaleIntercept=-1024.0)
        signed = segment.volumeArray(self.logic.loadSeries(
            self.logic.findSeries(os.path.join(self.folder, "signed")).selectSeries()).volumeNode)
        np.testing.assert_array_equal(signed, np.round(hu))
        sloped = segment.volumeArray(self.logic.loadSeries(
            self.logic.findSeries(os.path.join(self.folder, "slope")).selectSeries()).volumeNode)
        stored = np.clip(np.round((hu + 1024.0) / 0.5), 0, 65535)  # unsigned storage clips the noise below air
        np.testing.assert_allclose(sloped, stored * 0.5 - 1024.0, atol=0.5)
        result, _ = self.convert(os.path.join(self.folder, "slope"))
        self.assertAlmostEqual(result.threshold["minimum"], 520.0, delta=5.0)

    def test_09_severalSeriesNestedFoldersAndDicomdir(self):
        shutil.copytree(testing.phantomSeries("twoparts", **SMALL), os.path.join(self.folder, "study", "a"))
        shutil.copytree(testing.phantomSeries("shell"), os.path.join(self.folder, "study", "b", "c"))
        writeNonImage(os.path.join(self.folder, "DICOMDIR"), "1.2.840.10008.1.3.10", "")
        scan = self.logic.findSeries(self.folder)
        # listed by series number, modality and description: "...shell" before "...twoparts"
        self.assertEqual([s.numberOfSlices for s in scan.series], [80, 36])
        self.assertEqual(dict(scan.skipped), {"DICOM files without an image": 1})
        result, _ = self.convert()
        self.assertEqual(result.series["selection"], "the largest CT or MR series of the 2 in the folder")
        self.assertEqual(result.series["slices"], 80)
        chosen, _ = self.convert(name="chosen", series="2")
        self.assertEqual(chosen.series["selection"], "chosen by the user ('2') from 2 series")
        self.assertEqual(chosen.series["slices"], 36)

    def test_10_aSliceCopiedTwiceIsUsedOnce(self):
        paths, _ = renderSeries(self.folder, name="twoparts", shape=SMALL["shape"])
        shutil.copy(paths[10], os.path.join(self.folder, "COPY"))
        result, _ = self.convert()
        self.assertTrue(any(w.startswith("a slice file repeats another (same position") for w in result.warnings))
        self.assertFalse(any("COPY" in w for w in result.warnings))
        self.assertEqual(result.series["geometry"], "as acquired")
        self.assertTrue(result.validation.printable)


class DicomToPrintBadInputTest(unittest.TestCase):
    """Inputs that must fail cleanly: message names the file and the problem, exit status 1, no output."""

    def setUp(self):
        self.folder = testing.temporaryFolder(self)
        self.output = testing.temporaryFolder(self)
        self.target = os.path.join(self.output, "model.stl")

    def assertFails(self, message, *extra, folder=None):
        code, _, err = runCli(folder or self.folder, "-o", self.target, "--no-preview", "-q", *extra)
        self.assertEqual(code, 1, err)
        self.assertRegex(err, message)
        self.assertEqual(os.listdir(self.output), [], "nothing is written")
        return err

    def copySeries(self):
        shutil.copytree(testing.phantomSeries("twoparts", **SMALL), self.folder, dirs_exist_ok=True)
        return sorted(os.path.join(self.folder, name) for name in os.listdir(self.folder))

    def test_11_emptyFolder(self):
        self.assertFails(f"{self.folder}: no DICOM image series found \\(0 files skipped")

    def test_12_noDicomAtAll(self):
        for name in ("notes.txt", "scan.png"):
            with open(os.path.join(self.folder, name), "wb") as f:
                f.write(b"\x89PNG not a dicom file" if name.endswith("png") else b"hello")
        self.assertFails("no DICOM image series found \\(2 files skipped: 2 non-DICOM files\\)")

    def test_13_onlyNonImageDicom(self):
        writeNonImage(os.path.join(self.folder, "report"), "1.2.840.10008.5.1.4.1.1.88.11", "SR")
        writeNonImage(os.path.join(self.folder, "structures"), "1.2.840.10008.5.1.4.1.1.481.3", "RTSTRUCT")
        writeNonImage(os.path.join(self.folder, "state"), "1.2.840.10008.5.1.4.1.1.11.1", "PR")
        self.assertFails("no DICOM image series found \\(3 files skipped: 3 DICOM files without an image\\)")

    def test_14_truncatedFile(self):
        paths = self.copySeries()
        with open(paths[5], "rb") as f:
            data = f.read()
        with open(paths[5], "wb") as f:
            f.write(data[: len(data) // 2])
        self.assertFails(f"{paths[5]}: truncated: the pixel data should end at byte")

    def test_15_zeroByteFile(self):
        paths = self.copySeries()
        open(paths[3], "wb").close()
        self.assertFails(f"{paths[3]}: empty file \\(0 bytes\\); remove it or export the series again")

    def test_16_duplicatePositionsWithDifferentPixels(self):
        paths = self.copySeries()
        ds = pydicom.dcmread(paths[0])
        ds.SOPInstanceUID = generate_uid()
        ds.PixelData = (ds.pixel_array + 7).astype(np.uint16).tobytes()
        ds.save_as(os.path.join(self.folder, "CONFLICT"))
        self.assertFails("same slice position as .* but different pixels")

    def test_17_slicesOfDifferentSizesOrOrientations(self):
        paths = self.copySeries()
        ds = pydicom.dcmread(paths[2])
        ds.Rows, ds.Columns = 32, 32
        ds.PixelData = np.zeros((32, 32), np.uint16).tobytes()
        ds.save_as(paths[2])
        self.assertFails(f"{paths[2]}: image size 32x32 differs from 64x64 of the other slices")
        shutil.rmtree(self.folder)
        paths = self.copySeries()
        ds = pydicom.dcmread(paths[4])
        ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        ds.save_as(paths[4])
        self.assertFails(f"{paths[4]}: image orientation .* differs from")

    def test_18_absurdDimensionsAreRefusedBeforeAllocating(self):
        paths = self.copySeries()
        ds = pydicom.dcmread(paths[1])
        ds.Rows, ds.Columns = 60000, 60000
        ds.save_as(paths[1])
        self.assertFails(f"{paths[1]}: the header describes 60000x60000 pixels x 1 frames \\(7200000000 bytes\\) "
                         "but the file holds 8192 bytes")
        # a consistent series larger than the machine allows is refused before its pixels are read
        shutil.rmtree(self.folder)
        self.copySeries()
        logic = DicomToPrintLogic()
        series = logic.findSeries(self.folder).selectSeries()
        nodes = logic.context.scene.GetNumberOfNodes()
        with self.assertRaisesRegex(DicomToPrintError, "would need 0.0 GiB \\(64x64x36\\); more than"):
            dicom.loadSeries(series, logic.context, maximumBytes=1000)
        self.assertEqual(logic.context.scene.GetNumberOfNodes(), nodes)

    def test_19_thresholdSelectingNothingOrEverything(self):
        self.copySeries()
        self.assertFails("empty after thresholding at 5000 to 6000 \\(the threshold selects nothing\\)",
                         "--threshold", 5000, 6000)
        self.assertFails("The threshold -5000 to 5000 selects 100 % of the volume", "--threshold", -5000, 5000)

    def test_20_outputFolderMissingOrNotWritable(self):
        self.copySeries()
        code, _, err = runCli(self.folder, "-o", os.path.join(self.output, "no", "such", "model.stl"))
        self.assertEqual(code, 1)
        self.assertIn(f"{os.path.join(self.output, 'no', 'such')}: output folder does not exist", err)
        code, _, err = runCli(self.folder, "-o", "/proc/model.stl")  # not writable, even for root
        self.assertEqual(code, 1)
        self.assertIn("/proc: output folder is not writable", err)
        self.assertEqual(os.listdir(self.output), [])

    def test_21_existingOutputIsKeptUnlessOverwrite(self):
        self.copySeries()
        with open(self.target, "w") as f:
            f.write("earlier model")
        code, _, err = runCli(self.folder, "-o", self.target, "--no-preview", "-q")
        self.assertEqual(code, 1)
        self.assertIn(f"{self.target}: file exists; it is kept", err)
        with open(self.target) as f:
            self.assertEqual(f.read(), "earlier model")
        code, _, err = runCli(self.folder, "-o", self.target, "--no-preview", "-q", "--overwrite", "--target-triangles",
                              20000)
        self.assertEqual(code, 0, err)
        self.assertGreater(os.path.getsize(self.target), 1000)

    def test_22_interruptLeavesNothing(self):
        if isSlicerApplication():
            self.skipTest("the command line is for plain Python installs")
        folder = testing.phantomSeries("shell")
        process = subprocess.Popen([sys.executable, "-m", "DicomToPrintLib", folder, "-o", self.target],
                                   stderr=subprocess.PIPE, text=True)
        for line in process.stderr:
            if "Decimating" in line or "closed surface" in line:
                break
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        rest = process.stderr.read()
        self.assertEqual(process.wait(timeout=120), 130)
        self.assertIn("interrupted; no output was written", rest)
        self.assertEqual(os.listdir(self.output), [])


class DicomToPrintGuaranteesTest(unittest.TestCase):
    def setUp(self):
        self.output = testing.temporaryFolder(self)

    def test_23_inputIsNeverWrittenTo(self):
        folder = testing.phantomSeries("twoparts", **SMALL)
        before = folderDigest(folder)
        code, _, err = runCli(folder, "-o", os.path.join(self.output, "m.stl"), "-q", "--target-triangles", 20000)
        self.assertEqual(code, 0, err)
        code, _, _ = runCli(folder, "-o", os.path.join(self.output, "m.stl"), "-q")  # a failing run, too
        self.assertEqual(code, 1)
        self.assertEqual(folderDigest(folder), before)

    def test_24_noPatientDataInAnyOutputOrLogLine(self):
        folder = testing.temporaryFolder(self)
        name = sampledata.SYNTHETIC_PATIENT["PatientName"]
        # some scanners put the patient's name in the series description: it must not come out either
        renderSeries(folder, name="twoparts", shape=SMALL["shape"], seriesDescription=f"CT HEAD {name}")
        code, out, err = runCli(folder, "-o", os.path.join(self.output, "m.stl"), "--verbose", "--target-triangles",
                                20000)
        self.assertEqual(code, 0, err)
        code, listing, _ = runCli(folder, "--list-series")
        identifiers = list(sampledata.SYNTHETIC_PATIENT.values())
        for name_ in os.listdir(self.output):
            self.assertEqual(testing.fileContains(os.path.join(self.output, name_), identifiers), [], name_)
        for text in (out, err, listing):
            for identifier in identifiers:
                for variant in (identifier, identifier.replace("^", " ")):
                    self.assertNotIn(variant, text)
        self.assertIn("CT HEAD [removed]", listing)

    def test_25_noNetworkAccess(self):
        original = socket.socket

        def refuse(*args, **kwargs):
            raise AssertionError("DicomToPrint tried to open a network socket")

        socket.socket = refuse
        try:
            code, _, err = runCli(testing.phantomSeries("twoparts", **SMALL), "-o", os.path.join(self.output, "m.stl"),
                                  "-q", "--target-triangles", 20000)
        finally:
            socket.socket = original
        self.assertEqual(code, 0, err)


if __name__ == "__main__":
    unittest.main()
