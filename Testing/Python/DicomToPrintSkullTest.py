"""The real CT of a plastic skull (../shared/data/ct_skull_phantom_philips): found despite DIRFILE and
extension-less names, the skull out as one closed part, the head holder gone, no patient data out."""

import os
import unittest

import numpy as np
import slicer

import DicomToPrintTesting as testing
from DicomToPrintLib import DicomToPrintLogic, dicom
from DicomToPrintLib.validate import pointsArray

SKULL = "ct_skull_phantom_philips"
# Behind the skull (LPS y beyond 200 mm) the CT shows only the head holder, a separate curved island.
HOLDER_Y_MM = 200.0


class DicomToPrintSkullTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.folder = testing.sharedDataFolder(SKULL)

    def setUp(self):
        self.logic = DicomToPrintLogic()
        self.output = testing.temporaryFolder(self)

    def test_seriesIsFoundDespiteDirfileAndNames(self):
        scan = self.logic.findSeries(self.folder)
        self.assertEqual(len(scan.series), 1)
        self.assertEqual(dict(scan.skipped), {"DICOM files without an image": 1, "non-DICOM files": 1})
        series = scan.selectSeries()
        self.assertEqual((series.modality, series.numberOfSlices, series.size), ("CT", 140, (512, 512, 140)))
        self.assertTrue(all("." not in os.path.basename(path) for path in series.files))

    def test_skullIsOneClosedPartWithoutTheHeadHolder(self):
        report = os.path.join(self.output, "skull.json")
        result = self.logic.run(self.folder, os.path.join(self.output, "skull.stl"), reportPath=report,
                                keepNodes=True)
        self.addCleanup(self.logic.context.removeNode, result.volumeNode)
        self.addCleanup(self.logic.context.removeNode, result.segmentationNode)
        mesh = result.mesh
        self.assertTrue(mesh.watertight)
        self.assertEqual(mesh.parts, 1)
        self.assertLessEqual(mesh.triangles, 300000)
        # the surface encloses the segmented voxels: its volume is theirs within 0.5 %
        voxelVolume = result.islands["voxels"] * float(np.prod(result.volumeNode.GetSpacing()))
        self.assertLess(abs(mesh.volumeMm3 - voxelVolume) / voxelVolume, 0.005)
        # the head holder: bone-dense voxels behind the skull in the CT, none of it in the model
        hu = slicer.util.arrayFromVolume(result.volumeNode)
        ijkToLps = dicom.ijkToLpsMatrix(result.volumeNode)
        rowY = ijkToLps[1, 3] + np.arange(hu.shape[1]) * ijkToLps[1, 1]
        holderVoxels = int(((hu >= result.threshold["minimum"]) & (rowY[None, :, None] > HOLDER_Y_MM)).sum())
        self.assertGreater(holderVoxels, 100000)
        modelY = pointsArray(testing.readStl(result.outputPath))[:, 1]
        self.assertLess(modelY.max(), HOLDER_Y_MM)
        # no patient data (the headers say PatientName HEAD, PatientID PLASTIC) in what was written: the text
        # report, and the STL's header (the rest of a binary STL is numbers)
        self.assertEqual(testing.fileContains(report, ["HEAD", "PLASTIC"]), [])
        self.assertEqual(testing.stlHeader(result.outputPath).rstrip(b"\0"), b"3D Slicer output. SPACE=LPS")


if __name__ == "__main__":
    unittest.main()
