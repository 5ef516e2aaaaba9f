"""Finding and loading DICOM series: any file names, shuffled files, skipped files, geometry and voxels."""

import os
import shutil
import unittest

import numpy as np
import pydicom
import slicer
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import DicomToPrintTesting as testing
from DicomToPrintLib import DicomToPrintError, DicomToPrintLogic, dicom, sampledata


def writeStructuredReport(path: str) -> None:
    """A DICOM file without an image (a Basic Text SR), as PACS exports mix in."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID = "SR", generate_uid()
    sampledata.saveDicomFile(ds, path)


def huFromFile(path: str) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


class DicomToPrintDicomTest(unittest.TestCase):
    def setUp(self):
        self.logic = DicomToPrintLogic()

    def test_findsShuffledExtensionlessSeries(self):
        folder = testing.phantomSeries("shell")
        names = os.listdir(folder)
        self.assertTrue(all("." not in name for name in names))
        scan = self.logic.findSeries(folder)
        self.assertEqual(len(scan.series), 1)
        self.assertEqual(scan.skippedFiles, 0)
        series = scan.selectSeries()
        self.assertEqual(series.modality, "CT")
        self.assertEqual(series.numberOfSlices, 80)
        self.assertEqual(series.size, (176, 176, 80))
        self.assertEqual(series.spacing, (0.5, 0.5, 1.0))

    def test_pixelDataIsNotReadWhileFinding(self):
        """The header's pixel data element gives its length and place without its value, on pydicom 3 and on the
        pydicom 2.4.4 that Slicer 5.10 ships (whose get_item would read the whole value)."""
        path = os.path.join(testing.phantomSeries("twoparts", shape=(64, 48, 20)), sorted(os.listdir(
            testing.phantomSeries("twoparts", shape=(64, 48, 20))))[0])
        ds = pydicom.dcmread(path, defer_size=1024)
        element = dicom._unreadElement(ds, 0x7FE00010)
        self.assertEqual(element.length, 64 * 48 * 2)
        self.assertEqual(element.value_tell + element.length, os.path.getsize(path), "pixel data ends the file")
        self.assertIsNone(element.value, "the value was not read")
        self.assertEqual(dicom.PYDICOM_3, pydicom.__version__.startswith("3."))

    def test_skipsNonImagesAndListsSeveralSeriesInNestedFolders(self):
        folder = testing.temporaryFolder(self)
        shutil.copytree(testing.phantomSeries("shell"), os.path.join(folder, "a", "ct"))
        small = testing.phantomSeries("twoparts", shape=(64, 64, 40))
        shutil.copytree(small, os.path.join(folder, "b", "deeper", "small"))
        with open(os.path.join(folder, "README.txt"), "w") as f:
            f.write("not DICOM")
        writeStructuredReport(os.path.join(folder, "b", "report"))
        scan = self.logic.findSeries(folder)
        self.assertEqual(len(scan.series), 2)
        self.assertEqual(dict(scan.skipped), {"non-DICOM files": 1, "DICOM files without an image": 1})
        self.assertEqual(sorted(s.numberOfSlices for s in scan.series), [40, 80])
        # by default the largest CT series; explicitly by number (as listed) or by SeriesInstanceUID
        self.assertEqual(scan.selectSeries().numberOfSlices, 80)
        small = next(s for s in scan.series if s.numberOfSlices == 40)
        self.assertIs(scan.selectSeries(small.seriesInstanceUID), small)
        self.assertIs(scan.selectSeries(str(scan.series.index(small) + 1)), small)
        self.assertEqual([entry["number"] for entry in scan.listing()], [1, 2])
        with self.assertRaisesRegex(DicomToPrintError, "no series '7'"):
            scan.selectSeries("7")

    def test_emptyFolderAndMissingFolderFailClearly(self):
        folder = testing.temporaryFolder(self)
        with self.assertRaisesRegex(DicomToPrintError, "no DICOM image series found"):
            self.logic.findSeries(folder).selectSeries()
        with self.assertRaisesRegex(DicomToPrintError, "not a folder"):
            self.logic.findSeries(os.path.join(folder, "missing"))

    def test_loadsSortedGeometryAndHounsfieldUnits(self):
        folder = testing.phantomSeries("shell")
        series = self.logic.findSeries(folder).selectSeries()
        loaded = self.logic.loadSeries(series)
        volume = loaded.volumeNode
        self.assertEqual(loaded.warnings, [])
        # geometry: IJK to LPS from the headers (origin at the lowest slice, axes along rows/columns/normal)
        expected = sampledata.VolumeGeometry.centered((176, 176, 80), (0.5, 0.5, 1.0))
        matrix = dicom.ijkToLpsMatrix(volume)
        np.testing.assert_allclose(matrix[:3, 3], expected.origin, atol=1e-6)
        np.testing.assert_allclose(matrix[:3, :3], np.diag([0.5, 0.5, 1.0]), atol=1e-9)
        # voxels: every slice k holds the file whose position is k-th along the normal, in Hounsfield units
        voxels = slicer.util.arrayFromVolume(volume)
        self.assertEqual(voxels.shape, (80, 176, 176))
        byPosition = sorted(series.slices, key=lambda s: s.position[2])
        for k in (0, 17, 40, 79):
            np.testing.assert_array_equal(voxels[k], huFromFile(byPosition[k].path))

    def test_hounsfieldUnitsAreKeptIn16BitsWithTheReadersFingerprint(self):
        # unsigned 16-bit storage with intercept -1024: ITK reads it as 32-bit; the values fit in 16 bits, so they
        # are kept there (half the memory), and the fingerprint is still that of the 32-bit values the reader made
        import hashlib

        series = self.logic.findSeries(testing.phantomSeries("shell")).selectSeries()
        volume = self.logic.loadSeries(series).volumeNode
        voxels = slicer.util.arrayFromVolume(volume)
        self.assertEqual((voxels.dtype, volume.GetAttribute(dicom.READ_AS_ATTRIBUTE)), (np.dtype(np.int16), "<i4"))
        self.assertEqual((int(voxels.min()), int(voxels.max())), (-1024, 1093))
        digest = hashlib.sha256()
        digest.update(f"{volume.GetImageData().GetDimensions()}|<i4|".encode())
        digest.update(np.round(dicom.ijkToLpsMatrix(volume), 6).astype("<f8").tobytes())
        digest.update(voxels.astype("<i4").tobytes())
        self.assertEqual(dicom.fingerprint(volume), digest.hexdigest())


if __name__ == "__main__":
    unittest.main()
