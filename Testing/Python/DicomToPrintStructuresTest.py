"""Several structures in one model, OBJ and 3MF with names and colours, and hollow prints with drain holes."""

import contextlib
import io
import os
import unittest

import numpy as np

import DicomToPrintTesting as testing
from DicomToPrintLib import DicomToPrintLogic, cli, export, sampledata, segment
from DicomToPrintLib.validate import meshStatistics

TWO = [{"name": "Skin", "preset": "CT skin"}, {"name": "Bone"}]
SPHERE = {"islandsOperation": "KEEP_LARGEST_ISLAND"}  # of the two spheres, the 10 mm one


class DicomToPrintStructuresTest(unittest.TestCase):
    def setUp(self):
        self.logic = DicomToPrintLogic()
        self.output = testing.temporaryFolder(self)

    def path(self, name):
        return os.path.join(self.output, name)

    def test_skinAndBoneIn3mfDoNotOverlapOrCross(self):
        result = self.logic.run(testing.phantomSeries("shell"), self.path("head.3mf"), structures=TWO,
                                exportFormat="3MF", keepNodes=True, writePreview=False)
        for node in (result.volumeNode, result.segmentationNode, result.reportTableNode):
            self.addCleanup(self.logic.context.removeNode, node)
        # voxels: the later structure (bone) took what the two shared, as Slicer's overwrite mode does
        skin, bone = (segment.segmentMask(result.segmentationNode, s.segmentId, result.volumeNode)
                      for s in result.segments)
        self.assertEqual(int((skin & bone).sum()), 0)
        self.assertGreater(int(bone.sum()), 200000)  # the 24-30 mm shell at 0.5 x 0.5 x 1 mm voxels
        self.assertGreater(int(skin.sum()), int(bone.sum()))
        # the file: two named, coloured objects, closed, not crossing each other where they touch
        parts = export.read3mf(result.outputPath)
        self.assertEqual([(name, color) for name, color, _ in parts],
                         [("Skin", (177, 122, 101)), ("Bone", (241, 214, 145))])
        self.assertTrue(all(meshStatistics(polyData).watertight for _, _, polyData in parts))
        self.assertGreater(result.partsSeparation["crossingsFound"], 0)
        self.assertEqual(result.partsSeparation["crossingsLeft"], 0)
        self.assertTrue(result.validation.printable, result.validation.reasons)
        self.assertEqual(result.validation.selfIntersections, 0)
        # the bone kept its place (the skin gave way); in LPS like the STL (the shell sits to the left)
        boneMesh = parts[1][2]
        error = testing.surfaceError(boneMesh, sampledata.PHANTOMS["shell"].boneSdf)
        self.assertLess(error["mean"], 0.05)

    def test_oneStlPerStructureAndObjWithMaterials(self):
        result = self.logic.run(testing.phantomSeries("shell"), self.path("head.stl"), structures=TWO,
                                oneFilePerSegment=True, writePreview=False)
        self.assertEqual([os.path.basename(p) for p in result.outputPaths], ["head_Skin.stl", "head_Bone.stl"])
        self.assertEqual(sorted(os.path.basename(p) for p in result.fileValidations), sorted(
            os.path.basename(p) for p in result.outputPaths))
        self.assertTrue(all(report.statistics.watertight for report in result.fileValidations.values()))
        self.assertTrue(result.validation.printable, result.validation.reasons)
        objResult = self.logic.run(testing.phantomSeries("shell"), self.path("model.obj"), structures=TWO,
                                   exportFormat="OBJ", writePreview=False)
        self.assertEqual(objResult.outputPaths, [self.path("model.obj")])
        with open(self.path("model.mtl")) as f:
            materials = f.read()
        self.assertIn("newmtl material1\nKd 0.6941 0.4784 0.3961", materials)
        self.assertIn("newmtl material2\nKd 0.9451 0.8392 0.5686", materials)
        with open(self.path("model.obj")) as f:
            text = f.read()
        self.assertIn("mtllib model.mtl\no Skin\nusemtl material1\n", text)
        self.assertEqual(export.readObj(self.path("model.obj")).GetNumberOfPolys(),
                         sum(s.triangles for s in objResult.segments))
        self.assertIn("model.mtl", objResult.outputSha256)

    def test_hollowInsideWithADrainHole(self):
        folder = testing.phantomSeries("twoparts")
        solid = 4 / 3 * np.pi * 10.0**3
        result = self.logic.run(folder, self.path("hollow.stl"), hollowWallMm=2.0, drainHoleDiameterMm=3.0,
                                writePreview=False, **SPHERE)
        hollow = result.surface["hollow"]
        self.assertEqual((hollow["mode"], hollow["wallMm"], hollow["drainHoles"]), ("OUTSIDE_SURFACE", 2.0, 1))
        # a 10 mm sphere with a 2 mm wall saves 8^3/10^3 = 51.2 % of its material (less the drain hole)
        self.assertAlmostEqual(hollow["materialSavedPercent"], 51.2, delta=1.5)
        self.assertAlmostEqual(result.mesh.volumeMm3, solid * (1 - 0.512), delta=0.03 * solid)
        self.assertTrue(result.validation.printable, result.validation.reasons)
        self.assertEqual(result.mesh.shells, 1)  # the drain hole joins the cavity to the outside
        wall = result.validation.wallThickness
        self.assertGreater(wall.minimumMm, 1.7)
        self.assertAlmostEqual(wall.percentile5Mm, 2.0, delta=0.35)
        self.assertEqual(wall.thinAreaMm2, 0.0)
        closed = self.logic.run(folder, self.path("closed.stl"), hollowWallMm=2.0, writePreview=False, **SPHERE)
        self.assertEqual((closed.mesh.shells, closed.mesh.parts, closed.surface["hollow"]["drainHoles"]), (2, 1, 0))

    def test_hollowModesAreSlicersUseTheSurfaceAs(self):
        folder = testing.phantomSeries("twoparts")
        sizes = {}
        for mode in ("INSIDE_SURFACE", "MEDIAL_SURFACE", "OUTSIDE_SURFACE"):
            result = self.logic.run(folder, self.path(mode + ".stl"), hollowWallMm=2.0, hollowMode=mode,
                                    writePreview=False, **SPHERE)
            sizes[mode] = result.validation.boundingBoxMm[0]
        # the surface as the wall's outside keeps the 20 mm sphere; as its middle or inside it grows 2 or 4 mm
        self.assertAlmostEqual(sizes["OUTSIDE_SURFACE"], 20.0, delta=0.2)
        self.assertAlmostEqual(sizes["MEDIAL_SURFACE"], 22.0, delta=0.3)
        self.assertAlmostEqual(sizes["INSIDE_SURFACE"], 24.0, delta=0.3)

    def test_hollowOnTheLabelmapRoute(self):
        result = self.logic.run(testing.phantomSeries("twoparts"), self.path("classic.stl"), hollowWallMm=2.0,
                                surfacePlacement="LABELMAP", writePreview=False, **SPHERE)
        # Slicer's Hollow effect on the voxels (vtkITKImageMargin, its margins to a fraction of a voxel): the
        # wall reaches 2 mm in on average but the voxel staircase thickens it, so between the exact 8-10 mm
        # shell and 25 % more; never thinner than asked
        shell = 4 / 3 * np.pi * (10.0**3 - 8.0**3)
        self.assertGreater(result.mesh.volumeMm3, shell)
        self.assertLess(result.mesh.volumeMm3, 1.25 * shell)
        self.assertGreater(result.validation.wallThickness.percentile5Mm, 1.9)
        self.assertAlmostEqual(result.validation.boundingBoxMm[0], 20.0, delta=0.6)
        self.assertEqual((result.mesh.shells, result.mesh.parts), (2, 1))
        with self.assertRaisesRegex(ValueError, "drain holes are made on the SUBVOXEL surface only"):
            self.logic.run(testing.phantomSeries("twoparts"), self.path("x.stl"), hollowWallMm=2.0,
                           drainHoleDiameterMm=3.0, surfacePlacement="LABELMAP")

    def test_structuresFromTheCommandLine(self):
        self.assertEqual([cli._structure(t) for t in ("Skin=CT skin", "Bone", "Vessel=200:600")],
                         [{"name": "Skin", "preset": "CT skin"}, {"name": "Bone"},
                          {"name": "Vessel", "minimumThreshold": 200.0, "maximumThreshold": 600.0}])
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main([testing.phantomSeries("shell"), "-o", self.path("m.3mf"), "--structure", "Bone=soft"])
        self.assertEqual(code, 1)
        self.assertIn("--structure 'Bone=soft': give NAME, NAME=MIN:MAX or NAME=PRESET", err.getvalue())
        with self.assertRaisesRegex(ValueError, "structures\\[1\\]: the name 'skin' is used twice"):
            self.logic.run(testing.phantomSeries("shell"), self.path("n.stl"),
                           structures=[{"name": "Skin"}, {"name": "skin"}])


if __name__ == "__main__":
    unittest.main()
