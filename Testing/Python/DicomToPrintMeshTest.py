"""Mesh repair, decimation and validation on meshes whose answers are known."""

import math
import unittest

import numpy as np
import vtk

from DicomToPrintLib import mesh, validate


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

    def test_openAndNonManifoldEdgesAreCounted(self):
        s = sphere(resolution=16)
        triangles, points = validate.trianglesArray(s), validate.pointsArray(s)
        opened = validate.polyDataFromArrays(points, triangles[1:])
        stats = validate.meshStatistics(opened)
        self.assertEqual((stats.boundaryEdges, stats.nonManifoldEdges, stats.watertight), (3, 0, False))
        # a fin: a third triangle on an edge makes that edge non-manifold
        a, b = triangles[0][0], triangles[0][1]
        fin = validate.polyDataFromArrays(np.vstack([points, [[50.0, 50.0, 50.0]]]),
                                          np.vstack([triangles, [[a, b, len(points)]]]))
        stats = validate.meshStatistics(fin)
        self.assertEqual((stats.boundaryEdges, stats.nonManifoldEdges, stats.watertight), (2, 1, False))

    def test_cavityCountsAsPartOfOneSolid(self):
        hollow = append(sphere(10.0), reversed_(sphere(6.0)))
        stats = validate.meshStatistics(hollow)
        self.assertEqual((stats.shells, stats.parts), (2, 1))
        expected = massPropertiesVolume(sphere(10.0)) - massPropertiesVolume(sphere(6.0))
        self.assertAlmostEqual(stats.volumeMm3, expected, delta=1e-6 * expected)

    def test_orientOutwardKeepsTheCavityInward(self):
        # the whole hollow sphere turned inside out: orientation repair must flip both shells, not inflate it
        insideOut = reversed_(append(sphere(10.0), reversed_(sphere(6.0))))
        self.assertLess(validate.signedVolume(insideOut), 0)
        repaired = mesh.orientOutward(insideOut)
        expected = massPropertiesVolume(sphere(10.0)) - massPropertiesVolume(sphere(6.0))
        self.assertAlmostEqual(validate.signedVolume(repaired), expected, delta=1e-6 * expected)

    def test_removeSmallShellsKeepsTheLargeOnes(self):
        crumbs = append(sphere(10.0), sphere(0.5, center=(30, 0, 0), resolution=8), reversed_(sphere(6.0)))
        cleaned = mesh.removeSmallShells(crumbs, minimumVolumeMm3=10.0)
        stats = validate.meshStatistics(cleaned)
        self.assertEqual((stats.shells, stats.parts), (2, 1))
        self.assertLess(cleaned.GetBounds()[1], 10.01)

    def test_closeDefectsClosesAHole(self):
        s = sphere(resolution=32)
        triangles, points = validate.trianglesArray(s), validate.pointsArray(s)
        opened = validate.polyDataFromArrays(points, np.delete(triangles, [100, 101, 102], axis=0))
        self.assertFalse(mesh.isClosedManifold(opened))
        closed, found = mesh.closeDefects(opened)
        self.assertTrue(mesh.isClosedManifold(closed))
        self.assertGreater(found, 0)
        repaired = mesh.orientOutward(closed)
        self.assertAlmostEqual(validate.signedVolume(repaired), validate.signedVolume(s),
                               delta=0.01 * validate.signedVolume(s))

    def test_decimationKeepsTheSolidClosedAndInPlace(self):
        hollow = mesh.repair(append(sphere(10.0, resolution=200), reversed_(sphere(6.0, resolution=200))))
        before = validate.meshStatistics(hollow)
        decimated, info = mesh.decimateClosed(hollow, before.triangles // 10)
        after = validate.meshStatistics(decimated)
        self.assertTrue(info["decimated"])
        self.assertLessEqual(after.triangles, before.triangles // 10)
        self.assertTrue(after.watertight)
        self.assertEqual((after.shells, after.parts), (2, 1))
        self.assertLess(abs(after.volumeMm3 - before.volumeMm3) / before.volumeMm3, 0.002)
        # every vertex still lies on one of the two spheres (within 0.05 mm)
        points = validate.pointsArray(decimated)
        radius = np.linalg.norm(points, axis=1)
        self.assertLess(np.minimum(np.abs(radius - 10.0), np.abs(radius - 6.0)).max(), 0.05)
        # nothing to do when the mesh is already small enough
        same, info = mesh.decimateClosed(hollow, before.triangles + 1)
        self.assertEqual((same.GetNumberOfPolys(), info["decimated"]), (before.triangles, False))


if __name__ == "__main__":
    unittest.main()
