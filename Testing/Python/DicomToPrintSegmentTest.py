"""The Segment Editor effects without Qt: Threshold, Islands, Smoothing, presets and automatic thresholds.

Results are checked against independent computations (numpy, SimpleITK) on the same voxels."""

import unittest
import warnings

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtk.util import numpy_support

import DicomToPrintTesting as testing
from DicomToPrintLib import DicomToPrintError, DicomToPrintLogic, DicomToPrintParameters, levels, sampledata, segment


class DicomToPrintSegmentTest(unittest.TestCase):
    def setUp(self):
        self.logic = DicomToPrintLogic()

    def load(self, name, **options):
        series = self.logic.findSeries(testing.phantomSeries(name, **options)).selectSeries()
        volume = self.logic.loadSeries(series).volumeNode
        self.addCleanup(self.logic.context.removeNode, volume)
        segmentation = segment.createSegmentation(self.logic.context, volume)
        self.addCleanup(self.logic.context.removeNode, segmentation)
        return volume, segmentation

    def test_thresholdSelectsExactlyTheVoxelsInRange(self):
        volume, segmentation = self.load("shell")
        hu = slicer.util.arrayFromVolume(volume)
        with segment.SegmentEditor(self.logic.context, segmentation, volume) as editor:
            segmentId = editor.addSegment("Bone")
            editor.threshold(segmentId, 520, 3071)
            editorNode = editor.editorNode
        np.testing.assert_array_equal(testing.segmentArray(segmentation, segmentId, volume), (hu >= 520) & (hu <= 3071))
        self.assertFalse(self.logic.context.scene.IsNodePresent(editorNode), "the temporary editor node is removed")
        with segment.SegmentEditor(self.logic.context, segmentation, volume) as editor:
            with self.assertRaisesRegex(ValueError, "above maximum"):
                editor.threshold(segmentId, 600, 500)
            # a segment that is not empty is set, not added to (an empty one is added to, which is the same): the
            # voxels of the first range that the second leaves out are gone
            editor.threshold(segmentId, 700, 900)
        np.testing.assert_array_equal(testing.segmentArray(segmentation, segmentId, volume), (hu >= 700) & (hu <= 900))

    def test_keepLargestIslandDropsTheSpecks(self):
        volume, segmentation = self.load("islands")
        hu = slicer.util.arrayFromVolume(volume)
        with segment.SegmentEditor(self.logic.context, segmentation, volume) as editor:
            segmentId = editor.addSegment("Bone")
            editor.threshold(segmentId, 520, 3071)
            info = editor.islands(segmentId, segment.KEEP_LARGEST_ISLAND, minimumSizeMm3=100)
        # 100 mm^3 at 0.5 x 0.5 x 1 mm voxels is 400 voxels; the shell and the two specks are found
        self.assertEqual(info, {"islands": 3, "kept": 1, "minimumSizeVoxels": 400})
        # independent check: ITK's face-connected components of the same threshold, largest one
        mask = sitk.GetImageFromArray(((hu >= 520) & (hu <= 3071)).astype(np.uint8))
        components = sitk.RelabelComponent(sitk.ConnectedComponent(mask, False))
        largest = sitk.GetArrayFromImage(components) == 1
        result = testing.segmentArray(segmentation, segmentId, volume)
        np.testing.assert_array_equal(result, largest)
        # and no voxel is left at the specks
        ijk = self.voxelIndex(volume, sampledata.PHANTOMS["islands"].speckCenters)
        self.assertEqual([int(result[k, j, i]) for i, j, k in ijk], [0, 0])

    def test_islandsEqualVtkItkIslandMath(self):
        # what Slicer's Islands effect runs: the labelmap cast to 32 bits, vtkITKIslandMath, label 1 or all labels
        def islandMath(mask, operation, minimumSize):
            image = vtk.vtkImageData()
            image.SetDimensions(mask.shape[::-1])
            image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(mask.ravel().astype(np.uint32), deep=True))
            math = slicer.vtkITKIslandMath()
            math.SetInputData(image)
            math.SetFullyConnected(False)
            math.SetMinimumSize(minimumSize)
            math.Update()
            labels = numpy_support.vtk_to_numpy(math.GetOutput().GetPointData().GetScalars()).reshape(mask.shape)
            kept = math.GetNumberOfIslands()
            if operation == segment.KEEP_LARGEST_ISLAND:
                return labels == 1, math.GetOriginalNumberOfIslands(), min(kept, 1)
            return labels > 0, math.GetOriginalNumberOfIslands(), kept

        rng = np.random.default_rng(7)
        blobs = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(
            sitk.GetImageFromArray(rng.random((40, 60, 50)).astype(np.float32)), 1.5)) > 0.52
        # two islands of exactly 27 voxels (a tie for the largest, and exactly the minimum size), and one of 26
        ties = np.zeros((20, 20, 20), np.uint8)
        ties[2:5, 2:5, 2:5] = 1
        ties[10:13, 10:13, 10:13] = 1
        ties[15:18, 2:5, 15:18] = 1
        ties[17, 4, 17] = 0
        # islands touching only at an edge or a corner are separate (face connectivity)
        diagonal = np.zeros((6, 6, 6), np.uint8)
        diagonal[1, 1, 1] = diagonal[2, 2, 1] = diagonal[3, 3, 3] = diagonal[3, 3, 4] = 1
        cases = [(blobs, 1), (blobs, 50), (blobs, 10**6), (ties, 27), (ties, 28), (ties, 1), (diagonal, 1)]
        for mask, minimumSize in cases:
            for operation in (segment.KEEP_LARGEST_ISLAND, segment.REMOVE_SMALL_ISLANDS):
                with self.subTest(shape=mask.shape, minimumSize=minimumSize, operation=operation):
                    expected, found, kept = islandMath(mask, operation, minimumSize)
                    keep, foundHere, keptHere = segment.islandsMask(mask, operation, minimumSize)
                    self.assertEqual((foundHere, keptHere), (found, kept))
                    np.testing.assert_array_equal(keep, expected)
        self.assertGreater(islandMath(blobs, segment.REMOVE_SMALL_ISLANDS, 1)[1], 10)
        self.assertEqual(islandMath(ties, segment.REMOVE_SMALL_ISLANDS, 27)[1:], (3, 2))
        self.assertEqual(islandMath(diagonal, segment.REMOVE_SMALL_ISLANDS, 1)[1:], (3, 3))

    def test_removeSmallIslandsKeepsEverythingLargeEnough(self):
        volume, segmentation = self.load("twoparts", shape=(96, 96, 40))
        with segment.SegmentEditor(self.logic.context, segmentation, volume) as editor:
            segmentId = editor.addSegment("Bone")
            editor.threshold(segmentId, 520, 3071)
            before = segment.segmentVoxelCount(segmentation, segmentId)
            info = editor.islands(segmentId, segment.REMOVE_SMALL_ISLANDS, minimumSizeMm3=100)
            self.assertEqual((info["islands"], info["kept"]), (2, 2))
            self.assertEqual(segment.segmentVoxelCount(segmentation, segmentId), before)
            # above the small sphere's volume (4/3 pi 7^3 = 1437 mm^3) only the large one is left
            info = editor.islands(segmentId, segment.REMOVE_SMALL_ISLANDS, minimumSizeMm3=2000)
            self.assertEqual((info["islands"], info["kept"]), (2, 1))

    def test_smoothingKernelsAreTheEffectsOddVoxelCounts(self):
        self.assertEqual(segment.kernelSizePixel(3.0, (0.5, 0.5, 1.0)), [7, 7, 3])
        self.assertEqual(segment.kernelSizePixel(1.0, (0.5, 0.5, 1.0)), [3, 3, 1])
        self.assertEqual(segment.kernelSizePixel(1.0, (0.8, 0.8, 1.25)), [1, 1, 1])

    def test_medianSmoothingEqualsAnIndependentMedian(self):
        volume, segmentation = self.load("islands")
        with segment.SegmentEditor(self.logic.context, segmentation, volume) as editor:
            segmentId = editor.addSegment("Bone")
            editor.threshold(segmentId, 520, 3071)
            thresholded = testing.segmentArray(segmentation, segmentId, volume)
            editor.smoothing(segmentId, segment.MEDIAN, kernelSizeMm=1.0)
        expected = sitk.GetArrayFromImage(sitk.Median(sitk.GetImageFromArray(thresholded), [1, 1, 0]))
        np.testing.assert_array_equal(testing.segmentArray(segmentation, segmentId, volume), expected)

    def test_binaryMedianEqualsVtkImageMedian3D(self):
        """The counted median gives exactly vtkImageMedian3D's labelmap, at the faces of the volume too (where the
        kernel is clipped and may hold an even number of voxels)."""
        rng = np.random.default_rng(7)
        for kernel in [(3, 1, 1), (3, 3, 1), (3, 3, 3), (5, 3, 5), (1, 1, 5), (7, 5, 3), (9, 9, 9)]:
            for share in (0.3, 0.5, 0.7):
                voxels = (rng.random((9, 11, 13)) < share).astype(np.uint8)
                image = vtk.vtkImageData()
                image.SetDimensions(13, 11, 9)
                image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(voxels.ravel(), deep=True))
                median = vtk.vtkImageMedian3D()
                median.SetInputData(image)
                median.SetKernelSize(*kernel)
                median.Update()
                expected = numpy_support.vtk_to_numpy(median.GetOutput().GetPointData().GetScalars()).reshape(9, 11, 13)
                with self.subTest(kernel=kernel, share=share):
                    np.testing.assert_array_equal(segment.binaryMedian(voxels, kernel), expected.astype(bool))
        # slab by slab: a volume taller than one slab gives the same as one piece
        tall = (rng.random((70, 512, 512)) < 0.5).astype(np.uint8)
        whole = segment.binaryMedian(tall[:, :64, :64], (3, 3, 5))
        np.testing.assert_array_equal(segment.binaryMedian(tall, (3, 3, 5))[:, :64, :64][:, :62, :62],
                                      whole[:, :62, :62])

    def test_islandsCavitiesAndMedianInOneModificationEqualTheEffectsInTurn(self):
        volume, segmentation = self.load("islands")
        fill = {"outsideLevel": 40.0, "tolerance": 100.0}
        results = []
        for inOne in (False, True):
            with segment.SegmentEditor(self.logic.context, segmentation, volume) as editor:
                segmentId = editor.addSegment("Bone")
                editor.threshold(segmentId, 520, 3071)
                if inOne:
                    counts = editor.clean(segmentId, segment.KEEP_LARGEST_ISLAND, 100.0, fill, 1.0)
                else:
                    counts = editor.islands(segmentId, segment.KEEP_LARGEST_ISLAND, minimumSizeMm3=100.0)
                    counts["cavities"] = editor.fillCavities(segmentId, **fill)
                    editor.smoothing(segmentId, segment.MEDIAN, 1.0)
            results.append((testing.segmentArray(segmentation, segmentId, volume), counts))
            segmentation.GetSegmentation().RemoveSegment(segmentId)
        (inTurn, countsInTurn), (inOne, countsInOne) = results
        np.testing.assert_array_equal(inOne, inTurn)
        self.assertEqual(countsInOne, countsInTurn)
        # each step did something: the specks went, the partial-volume rim joined (denser than the tissue), the
        # cavity (tissue, like around the shell) was kept
        self.assertEqual((countsInOne["islands"], countsInOne["kept"]), (3, 1))
        self.assertEqual((countsInOne["cavities"]["cavities"], countsInOne["cavities"]["filled"]), (1, 0))

    def test_cleanWritesTheSegmentBackSlabBySlabAsInOne(self):
        volume, segmentation = self.load("islands")
        self.addCleanup(setattr, segment, "WRITE_BACK_SLICES", segment.WRITE_BACK_SLICES)
        results = []
        # the segmentation's only segment: stored directly; beside another (empty) segment: Slicer's update, in one
        # slab and in many (the segment is emptied, then each slab added)
        for slices, other in ((10_000, False), (10_000, True), (5, True)):
            segment.WRITE_BACK_SLICES = slices
            with segment.SegmentEditor(self.logic.context, segmentation, volume) as editor:
                otherId = editor.addSegment("Other") if other else None
                segmentId = editor.addSegment("Bone")
                editor.threshold(segmentId, 520, 3071)
                editor.clean(segmentId, segment.KEEP_LARGEST_ISLAND, 100.0, {"outsideLevel": 40.0, "tolerance": 100.0},
                             1.0)
            stored = segmentation.GetBinaryLabelmapInternalRepresentation(segmentId)
            labelValue = segmentation.GetSegmentation().GetSegment(segmentId).GetLabelValue()
            values = numpy_support.vtk_to_numpy(stored.GetPointData().GetScalars())
            results.append((testing.segmentArray(segmentation, segmentId, volume), stored.GetExtent(),
                            sorted(set(np.unique(values).tolist()) - {0}), labelValue))
            for removed in filter(None, (segmentId, otherId)):
                segmentation.GetSegmentation().RemoveSegment(removed)
        self.assertGreater(volume.GetImageData().GetDimensions()[2], 3 * 5)
        for mask, extent, labels, labelValue in results[1:]:
            np.testing.assert_array_equal(mask, results[0][0])
            self.assertEqual(extent, results[0][1])  # the box of the segment's voxels and their surroundings
            self.assertEqual(labels, [labelValue])
        self.assertEqual(results[0][2], [results[0][3]])
        self.assertGreater(int(results[0][0].sum()), 0)

    def test_segmentMaskReadsTheStoredLabelmapAsSlicerResamplesIt(self):
        volume, segmentation = self.load("islands")
        with segment.SegmentEditor(self.logic.context, segmentation, volume) as editor:
            # two segments that do not overlap (they may share one labelmap, each with its own value)
            bone, tissue = editor.addSegment("Bone"), editor.addSegment("Tissue")
            editor.threshold(bone, 520, 3071)
            editor.threshold(tissue, -100, 100)
        reference = slicer.vtkOrientedImageData()
        matrix = vtk.vtkMatrix4x4()
        volume.GetIJKToRASMatrix(matrix)
        reference.SetImageToWorldMatrix(matrix)
        reference.SetExtent(volume.GetImageData().GetExtent())
        for segmentId in (bone, tissue):
            labelmap, resampled = slicer.vtkOrientedImageData(), slicer.vtkOrientedImageData()
            self.assertTrue(slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
                segmentation, segmentId, labelmap))
            slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(labelmap, reference,
                                                                                             resampled)
            expected = numpy_support.vtk_to_numpy(resampled.GetPointData().GetScalars()).reshape(
                resampled.GetDimensions()[::-1]) == segmentation.GetSegmentation().GetSegment(segmentId).GetLabelValue()
            mask = segment.segmentMask(segmentation, segmentId, volume)
            np.testing.assert_array_equal(mask, expected)
            self.assertGreater(int(mask.sum()), 1000)

    def test_segmentBoxIsTheBoundingBoxOfTheSegmentMask(self):
        volume, segmentation = self.load("islands")
        dims = volume.GetImageData().GetDimensions()
        with segment.SegmentEditor(self.logic.context, segmentation, volume) as editor:
            segmentId = editor.addSegment("Bone")
            editor.threshold(segmentId, 520, 3071)
            emptyId = editor.addSegment("Empty")
            editor.threshold(emptyId, 5000, 6000)
        mask = segment.segmentMask(segmentation, segmentId, volume)
        cases = []
        for alone in (False, True):  # beside another segment: from segmentMask; alone: where it is stored
            if alone:
                segmentation.GetSegmentation().RemoveSegment(emptyId)
            for margin, evenStart in ((0, False), (3, True), (max(dims), False)):  # the last clipped to the volume
                box, inside = segment.segmentBox(segmentation, segmentId, volume, margin, evenStart)
                expected = levels.boundingBox(mask, margin, evenStart)
                with self.subTest(alone=alone, margin=margin, evenStart=evenStart):
                    self.assertEqual(box, expected)
                    np.testing.assert_array_equal(inside, mask[expected])
                cases.append(box)
        self.assertEqual(cases[2], tuple(slice(0, n) for n in dims[::-1]))
        self.assertNotEqual(cases[0], cases[2])
        with segment.SegmentEditor(self.logic.context, segmentation, volume) as editor:
            editor.threshold(segmentId, 5000, 6000)
        self.assertIsNone(segment.segmentBox(segmentation, segmentId, volume, 3))

    def test_openingRemovesSpecksAndOtherMethodsKeepTheShell(self):
        volume, segmentation = self.load("islands")
        specks = self.voxelIndex(volume, sampledata.PHANTOMS["islands"].speckCenters)
        for method in (segment.MORPHOLOGICAL_OPENING, segment.MORPHOLOGICAL_CLOSING, segment.GAUSSIAN,
                       segment.JOINT_TAUBIN):
            with self.subTest(method=method), segment.SegmentEditor(self.logic.context, segmentation, volume) as editor:
                segmentId = editor.addSegment(method)
                editor.threshold(segmentId, 520, 3071)
                before = segment.segmentVoxelCount(segmentation, segmentId)
                editor.smoothing(segmentId, method, kernelSizeMm=3.0, gaussianStandardDeviationMm=0.5)
                after = testing.segmentArray(segmentation, segmentId, volume)
                # the 5 mm thick shell survives every method within 3 % of its voxels
                self.assertLess(abs(int(after.sum()) - before) / before, 0.03)
                if method == segment.MORPHOLOGICAL_OPENING:
                    self.assertEqual([int(after[k, j, i]) for i, j, k in specks], [0, 0])

    def test_presetsAndAutomaticThresholds(self):
        volume, _ = self.load("shell")
        hu = slicer.util.arrayFromVolume(volume)
        self.assertEqual(segment.presetRange("CT bone", volume), (226.0, float(hu.max())))
        self.assertEqual(segment.presetRange("CT soft tissue", volume), (-700.0, 225.0))
        # Otsu through vtkITKImageThresholdCalculator agrees with SimpleITK's Otsu (128 bins) on the same voxels
        minimum, maximum = segment.autoThreshold(volume, "OTSU")
        otsu = sitk.OtsuThresholdImageFilter()
        otsu.SetNumberOfHistogramBins(128)
        otsu.Execute(sitk.GetImageFromArray(hu))
        self.assertAlmostEqual(minimum, otsu.GetThreshold(), delta=2.0)
        self.assertEqual(maximum, float(hu.max()))
        with self.assertRaisesRegex(ValueError, "Unknown automatic threshold method 'MAGIC'"):
            segment.autoThreshold(volume, "MAGIC")
        # a Hounsfield preset on a series without Hounsfield units is refused
        with self.assertRaisesRegex(DicomToPrintError, "MR, which has none"):
            self.logic.thresholdRange(volume, DicomToPrintParameters(preset="CT bone"), modality="MR")

    def test_scalarRangeIsVtksFoundSlabBySlab(self):
        volume, _ = self.load("shell")
        self.assertEqual(segment.scalarRange(volume), volume.GetImageData().GetScalarRange())
        # floating-point voxels with NaN in them, in more than one slab: NaN is left out, as VTK leaves it out
        values = np.linspace(-5.0, 7.5, 70 * 6 * 5).reshape(70, 6, 5)
        values[0] = np.nan
        values[40, 2, 3] = np.nan
        floating = self.logic.context.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "floating")
        self.addCleanup(self.logic.context.removeNode, floating)
        image = vtk.vtkImageData()
        image.SetDimensions(5, 6, 70)
        image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(values.ravel(), deep=True))
        floating.SetAndObserveImageData(image)
        self.assertEqual(segment.scalarRange(floating), (float(values[1, 0, 0]), 7.5))
        self.assertEqual(segment.scalarRange(floating), floating.GetImageData().GetScalarRange())

    def test_voxelFractionOfAPlaneNeverNaN(self):
        # a plane through a voxel's centre cuts it in half whichever way it faces; a zero normal (a vertex whose
        # triangles cancel out) is no plane: the voxel is then wholly on the side its offset says, not NaN
        normals = np.array([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.3, -0.5, 0.8], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
        offsets = np.array([0.5, 1.0, 0.5 * (0.3 - 0.5 + 0.8), 0.2, -0.2])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fractions = levels.boxPlaneFraction(normals, offsets)
        np.testing.assert_allclose(fractions, [0.5, 0.5, 0.5, 1.0, 0.0], atol=2e-4)  # 1e-4 tilt of parallel axes

    def test_voxelFractionOfAPlaneIsTheCutOffVolume(self):
        # the corner x + y + z < c of the unit cube: c^3 / 6 up to c = 1, mirrored for negative slopes; with
        # slopes (a, b, c) the corner's simplex is c^3 / (6 a b c)
        normals = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, -1.0, 1.0], [-2.0, 1.0, 0.5]])
        offsets = np.array([0.6, 1.0, 0.6 - 1.0, 0.3 - 2.0])
        np.testing.assert_allclose(levels.boxPlaneFraction(normals, offsets),
                                   [0.6 ** 3 / 6, 1 / 6, 0.6 ** 3 / 6, 0.3 ** 3 / (6 * 2.0 * 1.0 * 0.5)],
                                   rtol=0, atol=1e-12)
        # a plane along an axis (tilted by 1e-4 of the largest slope, no division by zero): x + y < 0.5
        np.testing.assert_allclose(levels.boxPlaneFraction(np.array([[1.0, 1.0, 0.0]]), np.array([0.5])), [0.125],
                                   rtol=0, atol=1e-4)

    def test_eightVoxelPlaneFractionsEqualOneVoxelAtATime(self):
        # the 8 voxels around a point from the 27 distinct corners equal the voxels one at a time (cubes of
        # corner offsets cancel to 1e-9); a zero slope is no plane and nothing is inside
        rng = np.random.default_rng(7)
        slope = rng.normal(size=(5000, 3)) * np.array([0.45, 0.45, 0.8])
        slope = slope[(np.abs(slope) >= 1e-3 * np.abs(slope).max(axis=1)[:, None]).all(axis=1)]
        slope[0] = 0.0
        offset = -rng.random(slope.shape)
        corners = np.array(list(np.ndindex(2, 2, 2)))
        oneByOne = np.array([levels.boxPlaneFraction(slope, 0.5 * slope.sum(axis=1)
                                                     - ((offset + o) * slope).sum(axis=1)) for o in corners])
        together = levels.voxelPlaneFractions(slope, offset, chunk=1000)
        np.testing.assert_allclose(together, oneByOne, rtol=0, atol=1e-9)
        self.assertEqual(together[:, 0].tolist(), [0.0] * 8)

    def test_ringBinnedMeansEqualTheReshapedMeans(self):
        # the levels' binned ring means, summed as strided views, equal numpy's mean over the bins, for the
        # scanners' integer types and floats, including the trailing voxels that fill no whole bin
        rng = np.random.default_rng(5)
        ring = rng.random((13, 21, 20)) < 0.3
        for dtype in (np.int16, np.uint16, np.int32, np.float32):
            values = rng.integers(-1024 if dtype != np.uint16 else 0, 3000, ring.shape).astype(dtype)
            for shrink in ((2, 2, 1), (3, 2, 2), (1, 1, 1)):
                fi, fj, fk = shrink
                kc, jc, ic = ring.shape[0] // fk, ring.shape[1] // fj, ring.shape[2] // fi
                whole = (slice(0, kc * fk), slice(0, jc * fj), slice(0, ic * fi))
                bins = (kc, fk, jc, fj, ic, fi)
                total, count = levels._binnedRing(ring, values, shrink)
                np.testing.assert_array_equal(
                    total, np.where(ring, values, 0)[whole].reshape(bins).mean(axis=(1, 3, 5)).astype(np.float32))
                np.testing.assert_array_equal(count, ring[whole].reshape(bins).mean(axis=(1, 3, 5)).astype(np.float32))

    def test_levelsBinnedFromEveryStepthVoxelLieAtTheirBinsCentres(self):
        # bins of 4 x 4 x 2 voxels holding every second voxel in-plane (the levels' grid on a CT of 0.45 x 0.45 x
        # 0.8 mm): a linear field binned from the sampled voxels and interpolated back is the field itself at
        # every voxel between the first and the last bin's centre (trilinear interpolation keeps a linear field)
        k, j, i = np.mgrid[:12, :17, :21]
        field = 3.0 * i - 2.0 * j + 5.0 * k
        shrink, step = (4, 4, 2), (2, 2, 1)
        sampled = field[::1, ::2, ::2]
        binned = np.empty((*levels._binnedShape(field.shape, shrink), 2), np.float32)
        levels._binnedRing(np.ones(sampled.shape, bool), sampled, (2, 2, 2), out=binned)
        self.assertEqual(binned.shape, (6, 4, 5, 2))
        np.testing.assert_array_equal(binned[..., 1], 1.0)
        # the bins' centres: i = 4c + 1, j = 4c + 1, k = 2c + 0.5
        where = tuple(axis.ravel() for axis in np.mgrid[1:11, 2:13, 1:18])  # within k 0.5-10.5, j 1-13, i 1-17
        result = np.empty((len(where[0]), 2), np.float32)
        levels._interpolate(binned, shrink, where, result, 0, len(result), step)
        np.testing.assert_allclose(result[:, 0], field[where], rtol=0, atol=1e-4)

    def test_boundaryBandIsEveryVoxelWithTheOtherSideAmongItsNeighbours(self):
        rng = np.random.default_rng(2)
        inside = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(
            sitk.GetImageFromArray(rng.random((30, 40, 35)).astype(np.float32)), 1.5)) > 0.5
        # each voxel against its 26 neighbours (the array's faces have none beyond them), one shift at a time
        padded = np.pad(inside, 1, mode="edge")
        anyInside, allInside = np.zeros_like(inside), np.ones_like(inside)
        for dk, dj, di in np.ndindex(3, 3, 3):
            neighbour = padded[dk:dk + inside.shape[0], dj:dj + inside.shape[1], di:di + inside.shape[2]]
            anyInside |= neighbour
            allInside &= neighbour
        expected = anyInside & ~allInside
        np.testing.assert_array_equal(levels._boundaryBand(inside), expected)
        self.assertGreater(int(expected.sum()), 1000)

    def test_fractionMapOfTheObjectsSurroundingsEqualsThatOfTheWholeVolume(self):
        # the surface step passes only the box around the object (fractionMargin voxels wider) and frees the
        # volume once the levels are read: the same fractions, at the same place, as from the whole volume
        rng = np.random.default_rng(11)
        k, j, i = np.mgrid[:60, :70, :64]
        radius = np.sqrt(((k - 30) * 1.5) ** 2 + ((j - 38) * 0.8) ** 2 + ((i - 30) * 0.8) ** 2)
        values = np.where(radius < 12.0, 1000, 40) + rng.normal(0, 20, radius.shape)
        values = sitk.GetArrayFromImage(sitk.DiscreteGaussian(sitk.GetImageFromArray(values), 1.0)).astype(np.int16)
        mask = values >= 520
        spacing = (0.8, 0.8, 1.5)
        whole = levels.fractionMap(values, mask, spacing, threshold=520)
        box = levels.boundingBox(mask, margin=levels.fractionMargin(spacing))
        self.assertGreater(box[0].start, 0)  # a part of the volume, not all of it
        read = []
        part = levels.fractionMap(values[box], mask[box], spacing, threshold=520,
                                  offset=tuple(s.start for s in box), valuesRead=lambda: read.append(True))
        self.assertEqual(read, [True])
        self.assertEqual(part.offset, whole.offset)
        np.testing.assert_array_equal(part.fraction, whole.fraction)
        self.assertEqual((part.unclippedSum, part.insideLevel, part.outsideLevel),
                         (whole.unclippedSum, whole.insideLevel, whole.outsideLevel))
        # and the fractions add up to the voxels of the sphere before the blur and noise (within 1 %)
        drawn = int((radius < 12.0).sum())
        self.assertLess(abs(whole.unclippedSum - drawn) / drawn, 0.01)

    def test_iso50IsHalfwayBetweenSoftTissueAndBone(self):
        rng = np.random.default_rng(3)
        # air, soft tissue and bone in proportions like a head CT, with noise
        values = np.concatenate([np.full(60000, -1000.0), np.full(30000, 40.0), np.full(6000, 1000.0)])
        values += rng.normal(0.0, 20.0, values.shape)
        iso = levels.iso50Threshold(values)
        self.assertAlmostEqual(iso.lowerLevel, 40.0, delta=2.0)
        self.assertAlmostEqual(iso.upperLevel, 1000.0, delta=1.0)
        self.assertAlmostEqual(iso.threshold, 520.0, delta=1.5)
        self.assertEqual((iso.structure, iso.lowerName, iso.upperName), ("Bone", "soft tissue", "cortical bone"))
        # on an MR (no Hounsfield units): the body against the background
        mr = levels.iso50Threshold(np.abs(values + 1000.0), "MR")
        self.assertEqual((mr.structure, mr.lowerName), ("Skin", "the background"))
        with self.assertRaisesRegex(levels.NothingToPrint, "single intensity"):
            levels.iso50Threshold(np.zeros(100))

    def test_boneLevelsFromSortedVoxelsEqualHistogramsAndMediansOfTheVoxels(self):
        # the levels as they were found before (histogram and medians of the voxels as float32), against the ranges
        # of the sorted voxels: the same numbers, bit for bit, on 16-bit CT values and on float values
        def robustNoise(values, level, window):
            sigma, within = window, [values, values]
            for _ in range(2):
                sides = []
                for index, below in enumerate((True, False)):
                    pool = within[index]
                    side = pool[(pool < level) & (pool >= level - window)] if below else \
                        pool[(pool > level) & (pool <= level + window)]
                    within[index] = side
                    if side.size:
                        sides.append(1.4826 * float(np.median(np.abs(side - level))))
                if not sides:
                    return 0.0
                sigma = min(sides)
                if max(4.0 * sigma, 10.0) > window:
                    within = [values, values]
                window = max(4.0 * sigma, 10.0)
            return sigma

        def reference(values):
            values = np.asarray(values, np.float32).ravel()
            low = max(float(values.min()), -1100.0)
            bins = np.arange(np.floor(low), 3100.0, 4.0)
            counts, edges = np.histogram(values, len(bins) - 1, (float(bins[0]), float(bins[-1])))
            smooth = np.convolve(counts, np.ones(5) / 5.0, mode="same")
            centers = (edges[:-1] + edges[1:]) / 2.0
            tissue = (centers >= levels.SOFT_TISSUE_HU[0]) & (centers <= levels.SOFT_TISSUE_HU[1])
            if smooth[tissue].sum() >= 0.005 * values.size:
                lowerLevel = float(centers[tissue][np.argmax(smooth[tissue])])
            else:
                air = centers < -500.0
                lowerLevel = float(centers[air][np.argmax(smooth[air])]) if air.any() else low
            noise = robustNoise(values, lowerLevel, 150.0)
            floor = lowerLevel + max(levels.MINIMUM_CONTRAST_IN_NOISE * noise, levels.BONE_MARGIN_HU)
            candidates = values[(values > floor) & (values <= levels.METAL_HU)]
            split = levels._otsuSplit(candidates)
            upper, lower = candidates[candidates > split], candidates[candidates <= split]
            upperLevel = float(np.median(upper if upper.size else candidates))
            if not lower.size or upperLevel - float(np.median(lower)) < levels.MINIMUM_CONTRAST_IN_NOISE * noise:
                upperLevel = float(np.median(candidates))
            return (lowerLevel + upperLevel) / 2.0, lowerLevel, upperLevel, noise

        rng = np.random.default_rng(5)
        head = np.concatenate([rng.normal(-1000, 15, 50000), rng.normal(-90, 25, 8000), rng.normal(40, 12, 30000),
                               rng.normal(400, 120, 3000), rng.normal(1250, 150, 4000), rng.normal(3000, 50, 30)])
        dry = np.concatenate([rng.normal(-1000, 30, 80000), rng.normal(900, 200, 5000)])  # bone in air
        flat = np.concatenate([rng.normal(30, 8, 40000), np.full(3000, 1000.0)])  # one bone level (a phantom)
        volume = np.round(rng.permutation(head)[:48000]).astype(np.int16).reshape(40, 60, 20)
        cases = {"head CT, int16": np.round(head).astype(np.int16),
                 "head CT as a 3D view, int16": volume[::2, ::2],
                 "dry skull, int16": np.round(dry).astype(np.int16),
                 "one bone level, uint16": np.round(np.maximum(flat, 0.0)).astype(np.uint16),
                 "one bone level, int32": np.round(flat).astype(np.int32),
                 "head CT, float64": head, "dry skull, float32": dry.astype(np.float32)}
        for name, values in cases.items():
            with self.subTest(case=name):
                before = values.copy()
                found = levels.boneLevels(values)
                self.assertEqual((found.threshold, found.lowerLevel, found.upperLevel, found.noise), reference(values))
                np.testing.assert_array_equal(values, before)  # the caller's voxels are not sorted in place
        found = levels.boneLevels(cases["head CT, int16"])
        self.assertEqual((found.lowerLevel, found.lowerName), (42.0, "soft tissue"))
        self.assertAlmostEqual(found.upperLevel, 1250.0, delta=10.0)
        self.assertEqual(levels.boneLevels(cases["dry skull, int16"]).lowerName, "air")

    def voxelIndex(self, volume, lpsPoints):
        """Nearest voxel (i, j, k) of LPS points."""
        matrix = vtk.vtkMatrix4x4()
        volume.GetRASToIJKMatrix(matrix)
        result = []
        for x, y, z in lpsPoints:
            ijk = matrix.MultiplyPoint((-x, -y, z, 1.0))
            result.append(tuple(int(round(v)) for v in ijk[:3]))
        return result


if __name__ == "__main__":
    unittest.main()
