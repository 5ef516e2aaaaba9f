"""Mesh repair, decimation and validation on meshes whose answers are known."""

import math
import unittest

import numpy as np
import vtk

from DicomToPrintLib import mesh, meshdata, validate


def sphere(radius=10.0, center=(0.0, 0.0, 0.0), resolution=64) -> vtk.vtkPolyData:
    source = vtk.vtkSphereSource()
    source.SetRadius(radius)
    source.SetCenter(*center)
    source.SetThetaResolution(resolution)
    source.SetPhiResolution(resolution)
    source.Update()
    return mesh.cleanMesh(source.GetOutput())


def reversed_(polyData) -> vtk.vtkPolyData:
    reverse = vtk.vtkReverseSense()
    reverse.SetInputData(polyData)
    reverse.ReverseCellsOn()
    reverse.Update()
    return reverse.GetOutput()


def append(*meshes) -> vtk.vtkPolyData:
    appendFilter = vtk.vtkAppendPolyData()
    for m in meshes:
        appendFilter.AddInputData(m)
    appendFilter.Update()
    return appendFilter.GetOutput()


def massPropertiesVolume(polyData) -> float:
    properties = vtk.vtkMassProperties()
    properties.SetInputData(polyData)
    properties.Update()
    return properties.GetVolume()


class DicomToPrintMeshTest(unittest.TestCase):
    def test_closedSphereStatistics(self):
        s = sphere()
        stats = validate.meshStatistics(s)
        self.assertTrue(stats.watertight)
        self.assertEqual((stats.boundaryEdges, stats.nonManifoldEdges, stats.shells, stats.parts), (0, 0, 1, 1))
        # Euler: a closed genus-0 triangle mesh has F = 2V - 4
        self.assertEqual(stats.triangles, 2 * stats.points - 4)
        self.assertAlmostEqual(stats.volumeMm3, massPropertiesVolume(s), delta=1e-6 * stats.volumeMm3)
        self.assertLess(abs(stats.volumeMm3 - 4 / 3 * math.pi * 1000) / (4 / 3 * math.pi * 1000), 0.01)

    def test_stableArgsortEqualsNumpys(self):
        # the index packed under the key: numpy's stable order, ties in index order; keys too large to share 64
        # bits with the index (and an empty array) go to numpy's argsort
        rng = np.random.default_rng(11)
        for count, largest in ((100_000, 30), (100_000, 2**40), (17, 2**62), (1, 5), (0, 5)):
            keys = rng.integers(0, largest, count, dtype=np.int64)
            np.testing.assert_array_equal(meshdata.stableArgsort(keys), np.argsort(keys, kind="stable"))

    def test_openAndNonManifoldEdgesAreCounted(self):
        s = sphere(resolution=16)
        triangles, points = meshdata.trianglesArray(s), meshdata.pointsArray(s)
        opened = meshdata.polyDataFromArrays(points, triangles[1:])
        stats = validate.meshStatistics(opened)
        self.assertEqual((stats.boundaryEdges, stats.nonManifoldEdges, stats.watertight), (3, 0, False))
        # a fin: a third triangle on an edge makes that edge non-manifold
        a, b = triangles[0][0], triangles[0][1]
        fin = meshdata.polyDataFromArrays(np.vstack([points, [[50.0, 50.0, 50.0]]]),
                                          np.vstack([triangles, [[a, b, len(points)]]]))
        stats = validate.meshStatistics(fin)
        self.assertEqual((stats.boundaryEdges, stats.nonManifoldEdges, stats.watertight), (2, 1, False))

    def test_cavityCountsAsPartOfOneSolid(self):
        hollow = append(sphere(10.0), reversed_(sphere(6.0)))
        stats = validate.meshStatistics(hollow)
        self.assertEqual((stats.shells, stats.parts), (2, 1))
        expected = massPropertiesVolume(sphere(10.0)) - massPropertiesVolume(sphere(6.0))
        self.assertAlmostEqual(stats.volumeMm3, expected, delta=1e-6 * expected)

    def test_orientShellsFacesPartsOutAndCavitiesIn(self):
        expected = massPropertiesVolume(sphere(10.0)) - massPropertiesVolume(sphere(6.0))
        # the whole hollow sphere inside out, or only its cavity facing the wrong way: both come out right,
        # where "auto orient" would turn the cavity outwards and count it as material
        for broken, flips in ((reversed_(append(sphere(10.0), reversed_(sphere(6.0)))), 2),
                              (append(sphere(10.0), sphere(6.0)), 1)):
            repaired, flipped = mesh.orientShells(broken)
            self.assertEqual(flipped, flips)
            self.assertAlmostEqual(meshdata.signedVolume(repaired), expected, delta=1e-6 * expected)
            report = validate.validateMesh(repaired, computeWallThickness=False)
            self.assertEqual((report.asDict()["orientation"], report.statistics.parts), ("outward", 1))
            self.assertEqual(validate.validateMesh(broken, computeWallThickness=False).asDict()["orientation"],
                             "inconsistent")

    def test_removeSmallShellsKeepsTheLargeOnes(self):
        crumbs = append(sphere(10.0), sphere(0.5, center=(30, 0, 0), resolution=8), reversed_(sphere(6.0)))
        cleaned, removed = mesh.removeSmallShells(crumbs, minimumVolumeMm3=10.0)
        stats = validate.meshStatistics(cleaned)
        self.assertEqual((removed, stats.shells, stats.parts), (1, 2, 1))
        self.assertLess(cleaned.GetBounds()[1], 10.01)

    def test_duplicateTrianglesAreRemoved(self):
        s = sphere(resolution=16)
        triangles, points = meshdata.trianglesArray(s), meshdata.pointsArray(s)
        # a repeat facing the same way, and a fin (the same triangle facing the other way) elsewhere
        doubled = meshdata.polyDataFromArrays(points, np.vstack([triangles, triangles[:1], triangles[5:6, ::-1]]))
        self.assertFalse(mesh.isClosedManifold(doubled))
        repaired, log = mesh.repair(doubled, final=True)
        self.assertEqual(log.duplicateTriangles, 3)
        self.assertTrue(mesh.isClosedManifold(repaired))
        volume = meshdata.signedVolume(s)
        self.assertLess(abs(meshdata.signedVolume(repaired) - volume), 0.02 * volume)

    def test_pinchedVertexIsSplitApart(self):
        # two tetrahedra touching at one corner: every edge is fine, the shared corner is not
        points = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, 0, 0], [0, -1, 0], [0, 0, -1]], float)
        tetra = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
        other = np.array([[0, 4, 5], [0, 6, 4], [0, 5, 6], [4, 6, 5]])
        pinched = meshdata.polyDataFromArrays(points, np.vstack([tetra, other]))
        self.assertTrue(mesh.isClosedManifold(pinched))
        self.assertEqual(mesh.nonManifoldVertexCount(pinched), 1)
        split, count = mesh.splitNonManifoldVertices(pinched)
        self.assertEqual((count, split.GetNumberOfPoints(), mesh.nonManifoldVertexCount(split)), (1, 8, 0))
        # the copy moved a micrometre into its own tetrahedron, so an STL keeps them apart
        distance = np.linalg.norm(meshdata.pointsArray(split)[7])
        self.assertAlmostEqual(distance, 1e-3, delta=1e-9)

    def test_selfIntersectionsAreFoundAndRemoved(self):
        overlapping = append(sphere(10.0, resolution=48), sphere(10.0, center=(12, 0, 0), resolution=48))
        pairs = meshdata.selfIntersections(overlapping)
        self.assertGreater(len(pairs), 0)
        # every reported pair has one triangle of each sphere
        firstSphere = overlapping.GetNumberOfPolys() // 2
        self.assertTrue(np.all((pairs[:, 0] < firstSphere) != (pairs[:, 1] < firstSphere)))
        self.assertEqual(len(meshdata.selfIntersections(sphere(10.0, resolution=48))), 0)
        repaired, log = mesh.repair(overlapping, final=True)
        self.assertEqual(log.selfIntersections >= len(pairs), True)
        self.assertEqual(log.defectsLeft, 0)
        self.assertTrue(mesh.isPrintable(repaired, log))
        # what the repair's last round found, checked again on the mesh
        self.assertTrue(log.closedManifold)
        self.assertTrue(mesh.isClosedManifold(repaired))
        self.assertEqual(meshdata.nonManifoldVertexCount(repaired), 0)
        self.assertEqual(len(meshdata.selfIntersections(repaired)), 0)  # the whole mesh, not only what was made
        # the rounds are bounded: with none allowed, the crossings are left and counted
        kept, log = mesh.repair(overlapping, final=True, maximumRounds=0)
        self.assertEqual((log.rounds, log.defectsLeft, log.closedManifold), (0, len(np.unique(pairs)), False))
        self.assertFalse(mesh.isPrintable(kept, log))

    def test_crossingsOfAThinWallAreRefinedOntoTheSurface(self):
        # a shell 0.1 mm thin at its flat sides (two ellipsoids), decimated to triangles far longer than that:
        # collapses leave triangles of one side cutting through the other
        def ellipsoid(radii):
            unit = sphere(1.0, resolution=160)
            return meshdata.polyDataFromArrays(meshdata.pointsArray(unit) * radii, meshdata.trianglesArray(unit))

        wall = mesh.cleanMesh(append(ellipsoid([10.0, 6.0, 2.0]), reversed_(ellipsoid([9.9, 5.9, 1.9]))))
        simplified = mesh.simplify(wall, 800)
        pairs = meshdata.selfIntersections(simplified)
        self.assertEqual(len(pairs), 29)
        # refining the crossing triangles back onto the surface they came from, each corner on its own side of
        # the wall, mends them in one round and keeps the mesh on the surface
        repaired, log = mesh.repair(simplified, final=True, reference=mesh.ReferenceSurface(wall))
        self.assertTrue(mesh.isPrintable(repaired, log))
        self.assertEqual((log.refined, log.rounds, len(meshdata.selfIntersections(repaired))), (1, 1, 0))
        self.assertEqual(validate.meshStatistics(repaired).shells, 2)
        self.assertLess(meshdata.surfaceDeviation(repaired, wall)["maximumMm"], 0.06)
        # cutting out and re-filling alone does not get there within the rounds allowed
        _, log = mesh.repair(simplified, final=True)
        self.assertGreater(log.defectsLeft, 0)

    def test_keepPartsKeepsTheLargestWithItsCavities(self):
        # a hollow sphere, a crumb beside it and an island inside its cavity: keep-largest keeps the sphere and
        # its cavity; remove-small keeps what is at least as large as asked
        model = append(sphere(10.0), reversed_(sphere(6.0)), sphere(2.0, center=(0, 0, 0), resolution=16),
                       sphere(1.5, center=(20, 0, 0), resolution=16))
        kept, removed, crumbs = mesh.keepParts(model)
        stats = validate.meshStatistics(kept)
        self.assertEqual((removed, crumbs, stats.shells, stats.parts), (2, 0, 2, 1))
        expected = massPropertiesVolume(sphere(10.0)) - massPropertiesVolume(sphere(6.0))
        self.assertAlmostEqual(stats.volumeMm3, expected, delta=1e-6 * expected)
        kept, removed, crumbs = mesh.keepParts(model, keepLargest=False, minimumVolumeMm3=20.0)
        self.assertEqual((removed, crumbs, validate.meshStatistics(kept).shells), (1, 0, 3))  # the 1.5 mm one goes
        # shells under a volume are crumbs, dropped in the same labelling (the 1.5 mm sphere holds 14 mm^3)
        kept, removed, crumbs = mesh.keepParts(model, keepLargest=False, minimumShellVolumeMm3=20.0)
        self.assertEqual((removed, crumbs, validate.meshStatistics(kept).shells), (0, 1, 3))

    def test_everyEdgeSharedByTwoAgreesWithTheEdgeCount(self):
        ball = meshdata.trianglesArray(sphere(10.0, resolution=24))
        two = np.concatenate([ball, ball + ball.max() + 1])
        # closed; open (a triangle less); an edge of four triangles (the same ball twice on the same points)
        for triangles, closed in ((ball, True), (two, True), (ball[1:], False), (np.concatenate([ball, ball]), False),
                                  (ball[:0], False)):
            self.assertEqual(meshdata.everyEdgeSharedByTwo(triangles), closed)
            use = meshdata.edgeUse(triangles)
            self.assertEqual(closed, len(use) > 0 and bool(np.all(use == 2)))

    def test_enclosedByRayAgreesWithVtkOrSaysItCannotTell(self):
        ball = sphere(10.0, center=(1.0, 2.0, 3.0), resolution=48)
        points, triangles = meshdata.pointsArray(ball).astype(np.float64), meshdata.trianglesArray(ball)
        probes = np.random.default_rng(7).uniform(-12.0, 14.0, (60, 3))
        inside = meshdata.enclosedByRay(points, triangles, probes)
        probeData = meshdata.polyDataFromArrays(probes, np.zeros((0, 3), np.int64))
        enclosed = vtk.vtkSelectEnclosedPoints()
        enclosed.SetInputData(probeData)
        enclosed.SetSurfaceData(ball)
        enclosed.Update()
        expected = [bool(enclosed.IsInside(i)) for i in range(len(probes))]
        self.assertEqual(inside.tolist(), expected)
        self.assertEqual(sum(expected), 13)  # both sides are tested
        # a ray through a corner (which two or more triangles share), or a probe on the surface: no answer
        corner = points[triangles[5, 0]]
        self.assertIsNone(meshdata.enclosedByRay(points, triangles, [corner - [30.0, 0.0, 0.0]]))
        self.assertIsNone(meshdata.enclosedByRay(points, triangles, [points[triangles[5]].mean(axis=0)]))

    def test_repairKeepingPartsGivesWhatTheRepairThenKeepPartsGive(self):
        model = append(sphere(10.0), reversed_(sphere(6.0)), sphere(2.0, center=(0, 0, 0), resolution=16),
                       sphere(1.5, center=(20, 0, 0), resolution=16))
        # closed (the shells labelled beside the edge check are used), and with a hole (the repair re-closes it:
        # they are labelled again)
        holed = meshdata.polyDataFromArrays(meshdata.pointsArray(model), meshdata.trianglesArray(model)[1:])
        for surface, openEdges in ((model, 0), (holed, 3)):
            together, removed, log = mesh.repairKeepingParts(surface, True, 0.0, 20.0)
            repaired, first = mesh.repair(surface)
            kept, removedApart, crumbs = mesh.keepParts(repaired, True, 0.0, 20.0)
            self.assertEqual((removed, log.smallShellsRemoved, log.openOrNonManifoldEdges),
                             (removedApart, crumbs, first.openOrNonManifoldEdges))
            self.assertEqual((removed, crumbs, log.openOrNonManifoldEdges), (1, 1, openEdges))
            np.testing.assert_array_equal(meshdata.pointsArray(together), meshdata.pointsArray(kept))
            np.testing.assert_array_equal(meshdata.trianglesArray(together), meshdata.trianglesArray(kept))
            self.assertTrue(mesh.isClosedManifold(together))

    def test_recheckOnlyWhatTheRepairMade(self):
        overlapping = append(sphere(10.0, resolution=48), sphere(10.0, center=(12, 0, 0), resolution=48))
        pairs = meshdata.selfIntersections(overlapping)
        # asked about some triangles only: exactly the crossing pairs that involve one of them
        involving = np.zeros(overlapping.GetNumberOfPolys(), bool)
        involving[pairs[::3, 0]] = True
        expected = pairs[involving[pairs[:, 0]] | involving[pairs[:, 1]]]
        self.assertEqual(meshdata.selfIntersections(overlapping, involving=involving).tolist(), expected.tolist())
        self.assertEqual(len(meshdata.selfIntersections(overlapping, involving=np.zeros_like(involving))), 0)
        # the triangles a repair made: three removed from a sphere and the hole filled
        s = sphere(resolution=32)
        opened = meshdata.polyDataFromArrays(meshdata.pointsArray(s),
                                             np.delete(meshdata.trianglesArray(s), [100, 101, 102], axis=0))
        closed, _ = mesh.closeDefects(opened)
        made, cut = mesh.newTriangles(opened, closed), mesh.newTriangles(closed, opened)
        # the repair cut out the hole's rim (more than the 3 missing triangles) and filled the larger hole
        self.assertGreater(int(cut.sum()), 3)
        self.assertGreater(int(made.sum()), 0)
        self.assertEqual(closed.GetNumberOfPolys() - int(made.sum()), opened.GetNumberOfPolys() - int(cut.sum()))
        self.assertFalse(mesh.newTriangles(s, s).any())

    def test_closeDefectsClosesAHole(self):
        s = sphere(resolution=32)
        triangles, points = meshdata.trianglesArray(s), meshdata.pointsArray(s)
        opened = meshdata.polyDataFromArrays(points, np.delete(triangles, [100, 101, 102], axis=0))
        self.assertFalse(mesh.isClosedManifold(opened))
        closed, found = mesh.closeDefects(opened)
        self.assertTrue(mesh.isClosedManifold(closed))
        self.assertGreater(found, 0)
        repaired, _ = mesh.orientShells(closed)
        self.assertAlmostEqual(meshdata.signedVolume(repaired), meshdata.signedVolume(s),
                               delta=0.01 * meshdata.signedVolume(s))

    def test_decimationKeepsTheSolidClosedAndInPlace(self):
        hollow, _ = mesh.repair(append(sphere(10.0, resolution=200), reversed_(sphere(6.0, resolution=200))))
        before = validate.meshStatistics(hollow)
        for method in (mesh.FAST_SIMPLIFICATION, mesh.VTK_QUADRIC):
            decimated, info, _ = mesh.decimateClosed(hollow, before.triangles // 10, method=method)
            after = validate.meshStatistics(decimated)
            self.assertEqual((info["decimated"], info["method"]), (True, method))
            self.assertLessEqual(after.triangles, before.triangles // 10)
            self.assertTrue(after.watertight)
            self.assertEqual((after.shells, after.parts), (2, 1))
            self.assertLess(abs(after.volumeMm3 - before.volumeMm3) / before.volumeMm3, 0.002)
            # every vertex still lies on one of the two spheres (within 0.05 mm), and the report says so
            points = meshdata.pointsArray(decimated)
            radius = np.linalg.norm(points, axis=1)
            self.assertLess(np.minimum(np.abs(radius - 10.0), np.abs(radius - 6.0)).max(), 0.05)
            self.assertLess(info["deviation"]["maximumMm"], 0.05)
            self.assertEqual(info["deviation"]["samples"], decimated.GetNumberOfPoints())
        # nothing to do when the mesh is already small enough
        same, info, _ = mesh.decimateClosed(hollow, before.triangles + 1)
        self.assertEqual((same.GetNumberOfPolys(), info["decimated"]), (before.triangles, False))

    def test_simplificationInAHelperProcessIsTheSameAsInThisOne(self):
        hollow, _ = mesh.repair(append(sphere(10.0, resolution=120), reversed_(sphere(6.0, resolution=120))))
        target = hollow.GetNumberOfPolys() // 8
        apart = mesh.Simplification(hollow, target)
        self.assertEqual(len(apart.helpers), 1)  # a plain Python install can always start its own interpreter
        here = mesh.Simplification(hollow, target, inProcess=True)
        self.assertEqual(here.helpers, [])
        a, b = apart.result(), here.result()
        self.assertEqual(apart.helpers[0].process.returncode, 0)
        np.testing.assert_array_equal(meshdata.pointsArray(a), meshdata.pointsArray(b))
        np.testing.assert_array_equal(meshdata.trianglesArray(a), meshdata.trianglesArray(b))
        self.assertLessEqual(a.GetNumberOfPolys(), target)
        self.assertGreater(a.GetNumberOfPolys(), 0.95 * target)

    def test_aLargeSurfaceIsSimplifiedInTwoHalvesThatFitTogether(self):
        # a hollow ball of 2 x 230,000 triangles: above SPLIT_TRIANGLES, so cut in two through both walls, each half
        # simplified in a helper process of its own with the cut kept
        surface = append(sphere(10.0, resolution=340), reversed_(sphere(6.0, resolution=340)))
        surface, _ = mesh.repair(surface)
        triangles = surface.GetNumberOfPolys()
        self.assertGreater(triangles, mesh.SPLIT_TRIANGLES)
        target = triangles // 10
        parts = mesh.simplificationParts(meshdata.pointsArray(surface), meshdata.trianglesArray(surface), target)
        self.assertEqual([part.count for part in parts], [triangles // 2, triangles - triangles // 2])
        self.assertEqual(sum(part.target for part in parts), target)
        # each part holds its own triangles and the other's near the cut: together more than all, each far less
        held = [len(part.triangles) for part in parts]
        self.assertGreater(sum(held), triangles)
        self.assertLess(max(held), 0.6 * triangles)
        # every triangle left out of a part lies beyond its guard's limit
        allPoints, allTriangles = meshdata.pointsArray(surface), meshdata.trianglesArray(surface)
        for part in parts:
            axis, limit, side = part.guard
            along = allPoints[:, int(axis)][allTriangles]
            beyond = (side * (along - limit) > 0).all(axis=1)
            self.assertEqual(int(np.count_nonzero(~beyond)), len(part.triangles))
        apart = mesh.Simplification(surface, target, measure=True, helpers=mesh.Simplification.startHelpers())
        here = mesh.Simplification(surface, target, inProcess=True)
        self.assertEqual((len(apart.helpers), here.helpers), (2, []))
        a, b = apart.result(), here.result()
        np.testing.assert_array_equal(meshdata.pointsArray(a), meshdata.pointsArray(b))
        np.testing.assert_array_equal(meshdata.trianglesArray(a), meshdata.trianglesArray(b))
        # the halves meet: one closed surface again, each wall a shell
        self.assertTrue(mesh.isClosedManifold(a))
        self.assertEqual(meshdata.labelShells(a)[2], 2)
        self.assertLessEqual(a.GetNumberOfPolys(), target)
        self.assertGreater(a.GetNumberOfPolys(), 0.95 * target)
        # the helpers' distances are those this process measures, point for point
        points, distances = apart.distances()
        self.assertGreater(len(points), a.GetNumberOfPoints())  # the cut's points came from both halves
        measured = meshdata.surfaceDeviation(a, surface)
        known = meshdata.surfaceDeviation(a, lambda: self.fail("nothing is left to measure"), known=(points, distances))
        self.assertEqual(known, measured)
        self.assertLess(measured["maximumMm"], 0.05)
        self.assertEqual([helper.process.returncode for helper in apart.helpers], [0, 0])
        # unmerged, as the decimation takes it: the repair merges the cut's points and makes no triangle (so the
        # decimation measures no triangle's middle)
        unmerged = mesh.Simplification(surface, target, inProcess=True).result(merge=False)
        self.assertEqual(unmerged.GetNumberOfPoints(), len(points))
        repaired, log = mesh.repair(unmerged, final=True)
        self.assertEqual((log.rounds, log.nonManifoldVerticesSplit), (0, 0))
        self.assertEqual(repaired.GetNumberOfPoints(), a.GetNumberOfPoints())
        self.assertFalse(meshdata.newTriangles(unmerged, repaired).any())

    def test_aDistanceMeasuredOnAPartIsKeptOnlyWhereNothingLeftOutCanBeNearer(self):
        from DicomToPrintLib.helperworker import unproven

        # triangles left out lie at x >= 5; points at x = 1, 4, 4.5, 6 and 8 measured 2 mm from the part's
        # triangles: only the first is further than 2 mm from x = 5 on this side
        points = np.array([[1.0, 0, 0], [4.0, 0, 0], [4.5, 0, 0], [6.0, 0, 0], [8.0, 0, 0]])
        squared = np.full(5, 4.0)
        self.assertEqual(unproven(points, squared, (0, 5.0, 1.0)).tolist(), [False, True, True, True, True])
        # the same below (side -1: left out at x <= 5), and nothing left out
        self.assertEqual(unproven(points, squared, (0, 5.0, -1.0)).tolist(), [True, True, True, True, False])
        self.assertEqual(unproven(points, squared, (0, 0.0, 0.0)).tolist(), [False] * 5)

    def test_helpersStartedBeforeAndNotNeededAreStopped(self):
        small = sphere(10.0, resolution=40)
        helpers = mesh.Simplification.startHelpers()
        self.assertEqual(len(helpers), 2)
        same = mesh.Simplification(small, small.GetNumberOfPolys() + 1, helpers=helpers).result()
        self.assertEqual(same.GetNumberOfPolys(), small.GetNumberOfPolys())
        self.assertTrue(all(helper.process.returncode is not None for helper in helpers))

    def test_aCancelStopsTheHelperProcessAtOnce(self):
        import time

        from DicomToPrintLib import runtime

        self.addCleanup(setattr, runtime, "CHECKPOINT_INTERVAL", runtime.CHECKPOINT_INTERVAL)
        runtime.CHECKPOINT_INTERVAL = 0.0
        surface = sphere(10.0, resolution=1000)  # ~2 M triangles: seconds of work for the helper
        pressed = []
        with runtime.cancellable(lambda text, percent: bool(pressed)) as callback:
            simplification = mesh.Simplification(surface, 1000)  # cutting it in two is asked between passes too
            pressed.append(True)
            started = time.monotonic()
            self.assertTrue(callback("Decimating", 50.0))  # the step begins (and Cancel is already pressed)
            with self.assertRaisesRegex(runtime.ProcessingCancelled, "Cancelled at: Decimating"):
                simplification.result()
            self.assertLess(time.monotonic() - started, 1.0)
        # ended, not left running, by the kill, not by finishing
        self.assertEqual(len(simplification.helpers), 2)
        self.assertTrue(all(helper.process.returncode < 0 for helper in simplification.helpers))

    @staticmethod
    def fractionalBall(size: int, radius: float):
        """A fractional labelmap (Slicer's int8, -108 outside to 108 inside) of a ball, 1 mm voxels, tilted axes."""
        import slicer
        from vtk.util import numpy_support

        from DicomToPrintLib import surface

        k, j, i = np.mgrid[:size, :size, :size].astype(np.float32) - (size - 1) / 2.0
        fraction = np.clip(radius + 0.5 - np.sqrt(i * i + j * j + k * k), 0.0, 1.0)
        image = slicer.vtkOrientedImageData()
        image.SetExtent(3, 3 + size - 1, 0, size - 1, 5, 5 + size - 1)
        matrix = vtk.vtkMatrix4x4()
        matrix.DeepCopy([0.0, -1.0, 0.0, 20.0, 1.0, 0.0, 0.0, -7.5, 0.0, 0.0, 1.0, 3.0, 0.0, 0.0, 0.0, 1.0])
        image.SetImageToWorldMatrix(matrix)
        voxels = np.round(fraction * 216 - 108).astype(np.int8)
        image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(voxels.ravel(), deep=True,
                                                                   array_type=vtk.VTK_SIGNED_CHAR))
        scalarRange = vtk.vtkDoubleArray()
        scalarRange.SetName(slicer.vtkSegmentationConverter.GetScalarRangeFieldName())
        scalarRange.InsertNextValue(-108)
        scalarRange.InsertNextValue(108)
        image.GetFieldData().AddArray(scalarRange)
        parameters = {"Smoothing factor": "0.2", "Decimation factor": "0.0", "Compute surface normals": "0",
                      "Fractional labelmap oversampling factor": "1", "Threshold fraction": "0.5"}
        return surface, image, parameters

    def test_surfaceConversionInAHelperProcessIsTheSameAsInThisOne(self):
        # Slicer's rule on the same labelmap, in a helper process and here: the same points, bit for bit, and the
        # same triangles (the pipeline's STLs are byte for byte those of the conversion in this process)
        surface, image, parameters = self.fractionalBall(60, 20.0)
        apart = surface.SurfaceConversion()
        self.assertIsNotNone(apart.helper)  # a plain Python install can always start its own interpreter
        helper = apart.helper
        a = apart.convert(image, parameters)
        self.assertEqual(helper.process.returncode, 0)
        self.assertIsNone(apart.helper)  # one conversion per process: a second one runs here
        b = surface.SurfaceConversion(inProcess=True).convert(image, parameters)
        self.assertGreater(a.GetNumberOfPolys(), 10000)
        self.assertEqual(a.GetPoints().GetDataType(), b.GetPoints().GetDataType())
        self.assertEqual(a.GetPolys().IsStorage64Bit(), b.GetPolys().IsStorage64Bit())  # as Slicer stores them
        np.testing.assert_array_equal(meshdata.pointsArray(a), meshdata.pointsArray(b))
        np.testing.assert_array_equal(meshdata.trianglesArray(a), meshdata.trianglesArray(b))
        # the ball, 20.5 mm to its 0.5 contour, where the tilted matrix puts it (centre at voxel 29.5 + extent)
        centre = np.array([20.0 - (0 + 29.5), -7.5 + (3 + 29.5), 3.0 + (5 + 29.5)])
        radii = np.linalg.norm(meshdata.pointsArray(a) - centre, axis=1)
        self.assertLess(np.abs(radii - 20.0).max(), 0.15)

    def test_aCancelStopsTheSurfaceConversionAtOnce(self):
        import time

        from DicomToPrintLib import runtime

        surface, image, parameters = self.fractionalBall(200, 90.0)
        parameters["Fractional labelmap oversampling factor"] = "3"  # 3.6 s of work for Slicer's rule here
        self.addCleanup(setattr, runtime, "CHECKPOINT_INTERVAL", runtime.CHECKPOINT_INTERVAL)
        runtime.CHECKPOINT_INTERVAL = 0.0
        conversion = surface.SurfaceConversion()
        helper = conversion.helper
        started = time.monotonic()
        # Cancel pressed 2 s on: the helper has imported (about a second) and is converting
        with runtime.cancellable(lambda text, percent: time.monotonic() - started > 2.0) as callback:
            callback("Creating the closed surface", 50.0)
            with self.assertRaisesRegex(runtime.ProcessingCancelled, "Cancelled at: Creating the closed surface"):
                conversion.convert(image, parameters)
            self.assertLess(time.monotonic() - started, 2.0 + 1.0)
        self.assertLess(helper.process.returncode, 0)  # ended by the kill, not by finishing

    def test_perTriangleMeasuresInChunksAreTheWholeArraysFormulas(self):
        s = sphere(resolution=40)
        points, triangles = meshdata.pointsArray(s), meshdata.trianglesArray(s)
        a, b, c = points[triangles[:, 0]], points[triangles[:, 1]], points[triangles[:, 2]]
        cross = np.cross(b - a, c - a)
        whole = (cross, 0.5 * np.linalg.norm(cross, axis=1), np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0)
        self.addCleanup(setattr, meshdata, "_TRIANGLE_CHUNK", meshdata._TRIANGLE_CHUNK)
        meshdata._TRIANGLE_CHUNK = 7  # 3,000 triangles: many chunks, the last one short
        self.assertGreater(len(triangles) % 7, 0)
        chunked = (meshdata.faceNormals(points, triangles), meshdata.triangleAreas(points, triangles),
                   meshdata.triangleVolumes(points, triangles))
        for expected, got in zip(whole, chunked, strict=True):
            np.testing.assert_array_equal(got, expected)

    def test_pointNormalsAreOneBincountOfAllCornersBitForBit(self):
        # the sums per vertex in the order of one bincount over every first, then second, then third corner
        s = sphere(resolution=40)
        points, triangles = meshdata.pointsArray(s), meshdata.trianglesArray(s)
        weights = np.cross(points[triangles[:, 1]] - points[triangles[:, 0]],
                           points[triangles[:, 2]] - points[triangles[:, 0]])
        sums = np.stack([np.bincount(triangles.T.ravel(), weights=np.tile(weights[:, axis], 3),
                                     minlength=len(points)) for axis in range(3)], axis=1)
        expected = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-300)
        np.testing.assert_array_equal(meshdata.pointNormals(s), expected)
        # outward on the sphere: each normal within a degree of the radius
        radial = points / np.linalg.norm(points, axis=1, keepdims=True)
        self.assertGreater(float(np.min((meshdata.pointNormals(s) * radial).sum(axis=1))), math.cos(math.radians(1)))

    def test_aDecimationThatCannotBeKeptLeavesTheSurfaceUndecimated(self):
        # no decimated mesh lies within 0 mm of the surface: both attempts are rejected, and the surface itself is
        # what comes out, repaired, never worse
        hollow, _ = mesh.repair(append(sphere(10.0, resolution=100), reversed_(sphere(6.0, resolution=100))))
        result, info, log = mesh.decimateClosed(hollow, hollow.GetNumberOfPolys() // 10, maximumDeviationMm=0.0)
        self.assertEqual((info["decimated"], info["attempts"], len(info["rejected"])), (False, 2, 2))
        self.assertIn("mm from the surface (limit 0 mm)", info["rejected"][0])
        self.assertEqual(result.GetNumberOfPolys(), hollow.GetNumberOfPolys())
        self.assertTrue(mesh.isPrintable(result, log))

    @unittest.skipUnless(validate.rayCaster() == validate.EMBREE, "embreex is not installed: VTK casts every ray")
    def test_wallThicknessByEmbreeIsVtks(self):
        # the same rays in single precision: every vertex gets VTK's thickness to a micrometre, and no ray that
        # misses (a vertex whose opposite wall is further than 20 mm, NaN) hits in the other
        hollow, _ = mesh.repair(append(sphere(10.0, resolution=96), reversed_(sphere(6.0, resolution=96))), final=True)
        # two balls far apart: across the 18 mm one every ray hits; across the 24 mm one none does within 20 mm
        balls, _ = mesh.repair(append(sphere(9.0, resolution=64), sphere(12.0, (50.0, 0.0, 0.0), 64)), final=True)
        for model in (hollow, balls):
            byVtk = validate.wallThickness(model, method=validate.VTK_LOCATOR)
            byEmbree = validate.wallThickness(model, method=validate.EMBREE)
            np.testing.assert_array_equal(np.isnan(byEmbree), np.isnan(byVtk))
            self.assertLess(np.nanmax(np.abs(byEmbree - byVtk)), 0.001)
        self.assertEqual(int(np.count_nonzero(np.isnan(byVtk))), balls.GetNumberOfPoints() // 2)

    def test_wallThicknessAndBuildVolume(self):
        hollow, _ = mesh.repair(append(sphere(10.0, resolution=96), reversed_(sphere(6.0, resolution=96))), final=True)
        thickness = validate.wallThickness(hollow)
        # from the outer sphere inwards the wall is 4 mm; from the cavity outwards, too (faceting: < 0.05 mm)
        self.assertLess(np.nanmax(np.abs(thickness - 4.0)), 0.05)
        report = validate.validateMesh(hollow, buildVolumeMm=(250, 210, 210), wallThicknessLimitMm=1.0)
        self.assertTrue(report.printable)
        self.assertEqual(report.wallThickness.thinAreaMm2, 0.0)
        self.assertAlmostEqual(report.wallThickness.minimumMm, 4.0, delta=0.05)
        # the same wall against a 5 mm limit: all of it is thin, so not printable; and a printer too small
        report = validate.validateMesh(hollow, buildVolumeMm=(250, 210, 15), wallThicknessLimitMm=5.0)
        self.assertFalse(report.printable)
        self.assertAlmostEqual(report.wallThickness.thinAreaPercent, 100.0, delta=0.01)
        self.assertEqual(len(report.reasons), 2)
        self.assertIn("larger than the build volume 250 x 210 x 15 mm", report.reasons[0])
        self.assertIn("thinner than 5 mm", report.reasons[1])
        # a box too long for 210 mm one way fits when laid along the 250 mm axis
        box = vtk.vtkCubeSource()
        box.SetXLength(20)
        box.SetYLength(240)
        box.SetZLength(20)
        box.Update()
        closedBox, _ = mesh.repair(box.GetOutput(), final=True)
        self.assertTrue(validate.validateMesh(closedBox, computeWallThickness=False).fitsBuildVolume)


if __name__ == "__main__":
    unittest.main()
