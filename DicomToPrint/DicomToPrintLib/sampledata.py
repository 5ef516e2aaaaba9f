"""Analytic CT phantoms written as DICOM series: sample data and ground truth for tests and benchmarks.

Each phantom is bone (1000 HU) and soft tissue (40 HU) in air (-1000 HU), described by exact signed distance
functions in DICOM patient coordinates (LPS, millimetres). Voxels that a surface cuts get their exact partial
volume (by supersampling), so a pipeline's output can be measured against the true surface to a fraction of a
voxel. The phantoms sit off-centre towards the patient's left and posterior, so a left/right or
anterior/posterior mirror of the output is detected rather than hidden by symmetry.

The series are written the way scanners and PACS exports leave them: file names without extension and in
shuffled order, with patient identifiers that must never appear in any output (tests look for them).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from .levels import boxPlaneFraction

BONE_HU = 1000.0
TISSUE_HU = 40.0
AIR_HU = -1000.0

#: Identifiers written into every generated series; tests assert that none of them leaves in an output.
SYNTHETIC_PATIENT = {
    "PatientName": "Testperson^Dagmar^Quinn",
    "PatientID": "DTP-4711-PHANTOM",
    "PatientBirthDate": "19630417",
    "AccessionNumber": "ACC90817263",
    "InstitutionName": "Hospital Of Synthetic Phantoms",
    "StudyDate": "20240229",
    "ReferringPhysicianName": "Doctor^Referring",
}

SdfFunction = Callable[[np.ndarray], np.ndarray]


# Signed distance functions: negative inside. Points are (N, 3) arrays in LPS millimetres.
def sphereSdf(center, radius: float) -> SdfFunction:
    center = np.asarray(center, float)
    return lambda p: np.linalg.norm(p - center, axis=-1) - radius


def capsuleSdf(start, end, radius: float) -> SdfFunction:
    """Cylinder from start to end with hemispherical caps."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    axis = end - start
    axisLength2 = float(axis @ axis)

    def sdf(p):
        t = np.clip(((p - start) @ axis) / axisLength2, 0.0, 1.0)
        return np.linalg.norm(p - start - t[..., None] * axis, axis=-1) - radius
    return sdf


def rotationX(degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), -np.sin(a)], [0.0, np.sin(a), np.cos(a)]])


def boxSdf(center, halfSize, rotation=None) -> SdfFunction:
    """Box of the given half sizes, turned by ``rotation`` (3x3) about its centre."""
    center, halfSize = np.asarray(center, float), np.asarray(halfSize, float)
    rotation = np.eye(3) if rotation is None else np.asarray(rotation, float)

    def sdf(p):
        q = np.abs((p - center) @ rotation) - halfSize
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
        inside = np.minimum(q.max(axis=-1), 0.0)
        return outside + inside
    return sdf


def union(*sdfs: SdfFunction) -> SdfFunction:
    return lambda p: np.min([s(p) for s in sdfs], axis=0)


def subtract(a: SdfFunction, b: SdfFunction) -> SdfFunction:
    """Points inside a and outside b."""
    return lambda p: np.maximum(a(p), -b(p))


@dataclass
class Phantom:
    """An analytic phantom: the exact bone surface and the tissue around it."""

    name: str
    description: str
    boneSdf: SdfFunction
    tissueSdf: SdfFunction
    #: Exact bone volume in mm^3 when it has a closed form (None otherwise).
    boneVolumeMm3: float | None
    #: Number of separate bone parts a correct segmentation keeps (specks excluded).
    parts: int = 1
    #: Default grid (columns, rows, slices) at the default spacing.
    shape: tuple[int, int, int] = (176, 176, 80)
    spacing: tuple[float, float, float] = (0.5, 0.5, 1.0)
    #: Points (LPS mm) that are bone only in specks that island removal must drop.
    speckCenters: list = field(default_factory=list)


# The phantoms sit at this offset (patient left, posterior) so that mirrored output is detectable.
OFFSET = np.array([8.0, 5.0, 0.0])
# Soft tissue around the bone: a body larger than the field of view, as in most CT.
BODY = sphereSdf(OFFSET, 45.0)


def _shell():
    outer, inner = 30.0, 24.0
    return Phantom(
        "shell", "hollow sphere, radius 24-30 mm",
        subtract(sphereSdf(OFFSET, outer), sphereSdf(OFFSET, inner)),
        BODY,
        4.0 / 3.0 * np.pi * (outer**3 - inner**3))


def _tube():
    start, end = OFFSET + np.array([-18.0, -12.0, -26.0]), OFFSET + np.array([18.0, 12.0, 26.0])
    return Phantom(
        "tube", "hollow oblique tube (capsule), radius 5-9 mm, closed ends",
        subtract(capsuleSdf(start, end, 9.0), capsuleSdf(start, end, 5.0)),
        BODY,
        # cylinder + sphere for each radius; the inner capsule is wholly inside the outer one
        float(np.pi * np.linalg.norm(end - start) * (9.0**2 - 5.0**2) + 4.0 / 3.0 * np.pi * (9.0**3 - 5.0**3)))


def _plate():
    # A plate never lies exactly along the slices: tilted by 4 degrees, its faces cross the slices.
    return Phantom(
        "plate", "50 x 50 x 1.8 mm plate across the slices, tilted 4 degrees",
        boxSdf(OFFSET, [25.0, 25.0, 0.9], rotationX(4.0)),
        BODY,
        50.0 * 50.0 * 1.8)


def _alignedPlate():
    # The worst case: both faces midway between slice centres, so no voxel is wholly bone and the bone level is
    # never seen in the data (every voxel of the plate reads 90 % bone at 1 mm slices).
    return Phantom(
        "alignedplate", "50 x 50 x 1.8 mm plate exactly along the slices, faces between slice centres",
        boxSdf(OFFSET, [25.0, 25.0, 0.9]),
        BODY,
        50.0 * 50.0 * 1.8)


def _islands():
    outer, inner = 22.0, 17.0
    specks = [OFFSET + np.array([31.0, 0.0, 0.0]), OFFSET + np.array([0.0, -30.0, 6.0])]
    shell = subtract(sphereSdf(OFFSET, outer), sphereSdf(OFFSET, inner))
    return Phantom(
        "islands", "hollow sphere, radius 17-22 mm, with two ~1 mm bone specks beside it",
        union(shell, sphereSdf(specks[0], 1.2), sphereSdf(specks[1], 0.9)),
        BODY,
        None,
        speckCenters=specks)


def _twoParts():
    left, right = OFFSET + np.array([14.0, 0.0, 0.0]), OFFSET + np.array([-16.0, 0.0, 0.0])
    return Phantom(
        "twoparts", "two solid spheres (radius 10 and 7 mm) 30 mm apart: keep-largest must keep the first",
        union(sphereSdf(left, 10.0), sphereSdf(right, 7.0)),
        BODY,
        4.0 / 3.0 * np.pi * (10.0**3 + 7.0**3), parts=2)


def ellipsoidSdf(center, radii) -> SdfFunction:
    """Approximate signed distance to an ellipsoid: f / |grad f| for f = |(p - c) / r| - 1, the distance to first
    order near the surface (so the partial volumes there are those of the true surface), its sign exact anywhere.
    Offsets of a few millimetres (a skull's tables, a layer of fat) stay within hundredths of a millimetre of the
    true parallel surfaces for radii of centimetres."""
    center, radii = np.asarray(center, float), np.asarray(radii, float)

    def sdf(p):
        q = (p - center) / radii
        length = np.maximum(np.linalg.norm(q, axis=-1), 1e-12)
        gradient = np.linalg.norm(q / radii, axis=-1) / length
        return (length - 1.0) / np.maximum(gradient, 1e-12)
    return sdf


def shellSdf(sdf: SdfFunction, outer: float, inner: float) -> SdfFunction:
    """The layer between two parallel surfaces of ``sdf``: points with inner < sdf <= outer (mm, inner < outer)."""
    return lambda p: (lambda d: np.maximum(d - outer, inner - d))(sdf(p))


def intersect(*sdfs: SdfFunction) -> SdfFunction:
    return lambda p: np.max([s(p) for s in sdfs], axis=0)


def halfSpaceSdf(point, normal) -> SdfFunction:
    """Points on the side of the plane through ``point`` that ``normal`` points away from."""
    point, normal = np.asarray(point, float), np.asarray(normal, float) / np.linalg.norm(normal)
    return lambda p: (p - point) @ normal


def cylinderSdf(center, radius: float, axis: int = 2) -> SdfFunction:
    """Infinite circular cylinder along a coordinate axis (0: x, 1: y, 2: z)."""
    center = np.asarray(center, float)
    others = [a for a in range(3) if a != axis]
    return lambda p: np.linalg.norm((p - center)[..., others], axis=-1) - radius


def _head():
    # A head-and-neck sized object for benchmarks: skull vault (ellipsoidal shell, 6 mm), a jaw-like arch of
    # capsules, and a column of vertebra-like cylinders with gaps; soft tissue around. Not exact (the
    # ellipsoid distance is approximate): for speed and memory measurements, not accuracy.
    vault = subtract(ellipsoidSdf([0, 0, 40], [75, 90, 80]), ellipsoidSdf([0, 0, 40], [69, 84, 74]))
    def arch(angle):
        return [55 * np.sin(angle), -55 * np.cos(angle) - 10, -40]

    jaw = union(*(capsuleSdf(arch(a0), arch(a1), 7.0)
                  for a0, a1 in zip(np.linspace(-1.3, 1.1, 6), np.linspace(-1.1, 1.3, 6), strict=True)))
    spine = union(*(capsuleSdf([0, 25, -55 - 22 * k], [0, 25, -65 - 22 * k], 11.0) for k in range(4)))
    return Phantom("head", "head-and-neck sized: skull vault, jaw arch, vertebrae (for benchmarks)",
                   union(vault, jaw, spine), ellipsoidSdf([0, 0, 0], [88, 105, 150]), None, parts=10,
                   shape=(512, 512, 300), spacing=(0.45, 0.45, 0.8))


@dataclass
class ScanPhantom:
    """A phantom that looks like a patient's scan: air around the body, skin, fat, muscle, bone with cancellous
    bone inside, a head holder and a table, all with partial volume and noise.

    Materials are chains of nested solids (each solid inside the one before it), painted over the background in
    order; within a chain a voxel holds each material in proportion to its volume, exactly.
    """

    name: str
    description: str
    modality: str
    #: [[(sdf, value), ...], ...]: chains of nested solids, from the outermost in
    chains: list
    background: float
    #: the solid a correct default run prints, e.g. the skull with its diploe (see :func:`solidVolume`)
    targetSdf: SdfFunction
    target: str
    #: solids that must never be part of the model (the head holder, the table), by name
    excludedSdfs: dict
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    #: noise: Gaussian (CT), or the magnitude of complex Gaussian noise (MR: Rician, never negative)
    noise: float = 20.0
    rician: bool = False

    def render(self, geometry: VolumeGeometry, noise: float | None = None, seed: int = 0,
               supersampling: int = 3) -> np.ndarray:
        """The scan's values on the grid, shape (slices, rows, columns)."""
        noise = self.noise if noise is None else noise
        nI, nJ, nK = geometry.shape
        axes = (geometry.direction * geometry.spacing).T
        values = np.empty((nK, nJ, nI), np.float32)
        for k in range(nK):
            centers = geometry.slicePoints(k).reshape(-1, 3)
            value = np.full(len(centers), self.background)
            for chain in self.chains:
                fractions, previous = [], None
                for sdf, _ in chain:
                    fraction = _insideFraction(sdf, centers, axes, supersampling)
                    previous = fraction if previous is None else np.minimum(fraction, previous)
                    fractions.append(previous)
                fractions.append(np.zeros(len(centers)))
                value = value * (1.0 - fractions[0]) + sum(
                    (fractions[i] - fractions[i + 1]) * level for i, (_, level) in enumerate(chain))
            values[k] = value.reshape(nJ, nI)
        if noise > 0:
            rng = np.random.default_rng(seed)
            if self.rician:
                values = np.hypot(values + rng.normal(0.0, noise, values.shape),
                                  rng.normal(0.0, noise, values.shape)).astype(np.float32)
            else:
                values += rng.normal(0.0, noise, values.shape).astype(np.float32)
        return values


def solidVolume(sdf: SdfFunction, geometry: VolumeGeometry, supersampling: int = 3) -> float:
    """Volume (mm^3) of the solid within the grid's field of view, from the same exact partial volumes that
    :meth:`ScanPhantom.render` paints: what a perfect model of that solid from this scan encloses."""
    axes = (geometry.direction * geometry.spacing).T
    total = 0.0
    for k in range(geometry.shape[2]):
        total += float(_insideFraction(sdf, geometry.slicePoints(k).reshape(-1, 3), axes, supersampling).sum())
    return total * float(abs(np.linalg.det(axes)))


# The head scans (LPS mm: x to the patient's left, y posterior, z superior). The patient lies on the back, so the
# head holder and the table are posterior (+y). Nothing is symmetric about the volume's centre.
_SKULL_CENTER = np.array([3.0, -8.0, -6.0])
_SKULL_RADII = (70.0, 88.0, 78.0)
_FLOOR_Z = _SKULL_CENTER[2] - 30.0  # the skull base: a 5 mm floor, open at the foramen magnum


def _headAnatomy(values: dict):
    """Chains of a head and neck with the given material values (CT: HU; MR: signal), and the skull's solid."""
    skull = ellipsoidSdf(_SKULL_CENTER, _SKULL_RADII)  # the skull's outer surface
    center = _SKULL_CENTER
    neck = intersect(lambda p: np.linalg.norm((p - (center + [0, 10, 0]))[..., :2] / [45.0, 50.0], axis=-1)
                     * 45.0 - 45.0, halfSpaceSdf([0, 0, _FLOOR_Z - 2.5], [0, 0, 1]))
    body = union(lambda p: skull(p) - 9.0, neck)  # skin 9 mm outside the skull
    aboveFloor = halfSpaceSdf([0, 0, _FLOOR_Z - 2.5], [0, 0, -1])
    insideFloor = halfSpaceSdf([0, 0, _FLOOR_Z + 2.5], [0, 0, -1])
    foramen = intersect(cylinderSdf(center + [0, 25, 0], 16.0), lambda p: p[..., 2] - (_FLOOR_Z + 2.5))
    # the skull: outer table 1.8 mm, diploe 3 mm, inner table 1.5 mm; below the brain the floor, with its hole
    skullSolid = subtract(intersect(skull, aboveFloor), foramen)
    head = [(body, values["skin"]), (lambda p: body(p) + 1.5, values["fat"]),
            (lambda p: body(p) + 5.5, values["muscle"]), (skullSolid, values["cortical"]),
            (intersect(lambda p: skull(p) + 1.8, insideFloor), values["diploe"]),
            (intersect(lambda p: skull(p) + 4.8, insideFloor), values["cortical"]),
            (intersect(lambda p: skull(p) + 6.3, insideFloor), values["csf"]),
            (intersect(lambda p: skull(p) + 8.3, insideFloor), values["brain"])]
    ventricles = [(union(ellipsoidSdf(center + [11, 2, 12], [5, 18, 9]), ellipsoidSdf(center + [-11, 2, 12],
                                                                                      [5, 18, 9])), values["csf"])]

    def arch(angle):
        return center + [52 * np.sin(angle), -52 * np.cos(angle) - 8, -52]

    segments = list(zip(np.linspace(-1.4, 1.1, 6), np.linspace(-1.1, 1.4, 6), strict=True))
    mandible = [(union(*(capsuleSdf(arch(a), arch(b), 6.5) for a, b in segments)), values["cortical"]),
                (union(*(capsuleSdf(arch(a), arch(b), 4.0) for a, b in segments)), values["cancellous"])]
    vertebrae = []
    for k in range(2):
        top = _FLOOR_Z - 14.0 - 20.0 * k
        axisPoint = center + [0, 22, 0]
        vertebrae.append([(intersect(cylinderSdf(axisPoint, 11.0), halfSpaceSdf([0, 0, top], [0, 0, 1]),
                                     halfSpaceSdf([0, 0, top - 14.0], [0, 0, -1])), values["cortical"]),
                          (intersect(cylinderSdf(axisPoint, 9.5), halfSpaceSdf([0, 0, top - 1.5], [0, 0, 1]),
                                     halfSpaceSdf([0, 0, top - 12.5], [0, 0, -1])), values["cancellous"])])
    # the head holder: a curved shell under the back of the head, touching it; the table under that
    back = center[1] + _SKULL_RADII[1] + 9.0
    holderCenter = np.array([center[0], back - 85.0, 0.0])
    holder = intersect(shellSdf(cylinderSdf(holderCenter, 85.0), 5.0, 0.0),
                       halfSpaceSdf(holderCenter + [0, 40, 0], [0, -1, 0]))
    table = boxSdf([0.0, back + 5.0 + 22.5, 0.0], [250.0, 22.5, 400.0])
    tableCore = boxSdf([0.0, back + 5.0 + 22.5, 0.0], [250.0, 21.0, 400.0])
    chains = [[(table, values["table"]), (tableCore, values["foam"])], [(holder, values["holder"])],
              [(d, v) for d, v in head], ventricles, mandible, *vertebrae]
    bone = subtract(skullSolid, head[6][0])  # the skull's bone: its solid without the cranial cavity
    return chains, bone, body, {"head holder": holder, "table": table}


def _patientHeadCt():
    # Hounsfield units as a head CT shows them; the head holder is plastic (the real one in ../shared/data reads
    # about 390 HU), the table's carbon-fibre sheets read as dense as bone.
    values = {"skin": 45.0, "fat": -95.0, "muscle": 50.0, "cortical": 1300.0, "diploe": 450.0, "csf": 8.0,
              "brain": 35.0, "cancellous": 280.0, "holder": 350.0, "table": 600.0, "foam": -850.0}
    chains, bone, _, excluded = _headAnatomy(values)
    return ScanPhantom("patienthead", "patient-like head CT: air, skin, fat, muscle, a skull with diploe, brain and "
                       "ventricles, jaw and vertebrae, a head holder touching the back of the head, a table",
                       "CT", chains, AIR_HU, bone, "the skull with its diploe", excluded,
                       shape=(222, 262, 138), spacing=(0.9, 0.9, 1.25), noise=20.0)


def _mrHead():
    # T1-weighted signal, no Hounsfield units: fat and marrow bright, bone and CSF dark, plastic invisible.
    values = {"skin": 300.0, "fat": 750.0, "muscle": 280.0, "cortical": 25.0, "diploe": 600.0, "csf": 100.0,
              "brain": 480.0, "cancellous": 550.0, "holder": 0.0, "table": 0.0, "foam": 0.0}
    chains, _, body, excluded = _headAnatomy(values)
    return ScanPhantom("mrhead", "MR T1 head: background, skin, fat, muscle, dark bone with bright marrow, brain "
                       "and ventricles; no Hounsfield units", "MR", chains, 0.0, body, "the head's outer surface",
                       {}, shape=(222, 262, 138), spacing=(0.9, 0.9, 1.25), noise=10.0, rician=True)


def _uniform():
    # Nothing to print: soft tissue filling the field of view, and noise.
    return ScanPhantom("uniform", "uniform soft tissue (40 HU) and noise: nothing to print", "CT", [], TISSUE_HU,
                       lambda p: np.ones(p.shape[:-1]), "nothing", {}, shape=(64, 64, 40), spacing=(1.0, 1.0, 1.0))


PHANTOMS: dict[str, Phantom | ScanPhantom] = {
    p.name: p for p in (_shell(), _tube(), _plate(), _alignedPlate(), _islands(), _twoParts(), _head(),
                        _patientHeadCt(), _mrHead(), _uniform())}


@dataclass
class VolumeGeometry:
    """Voxel grid in LPS: point(i, j, k) = origin + direction @ (spacing * (i, j, k))."""

    origin: np.ndarray
    spacing: np.ndarray
    #: Columns are the LPS directions of the i (column), j (row) and k (slice) axes.
    direction: np.ndarray
    shape: tuple[int, int, int]  # (columns, rows, slices)

    @classmethod
    def centered(cls, shape, spacing, direction=None) -> VolumeGeometry:
        spacing = np.asarray(spacing, float)
        direction = np.eye(3) if direction is None else np.asarray(direction, float)
        halfExtent = (np.asarray(shape) - 1) * spacing / 2.0
        return cls(-direction @ halfExtent, spacing, direction, tuple(int(n) for n in shape))

    def slicePoints(self, k: int) -> np.ndarray:
        """LPS coordinates of the voxel centres of slice k, shape (rows, columns, 3)."""
        nI, nJ, _ = self.shape
        i, j = np.meshgrid(np.arange(nI), np.arange(nJ), indexing="xy")
        ijk = np.stack([i, j, np.full_like(i, k)], axis=-1) * self.spacing
        return self.origin + ijk @ self.direction.T


def _insideFraction(sdf: SdfFunction, centers: np.ndarray, axes: np.ndarray, supersampling: int):
    """Fraction of each voxel inside the surface (sdf < 0).

    Voxels away from the surface are 0 or 1. Where the surface cuts a voxel and is flat across it (checked at the
    voxel's corners), the fraction is the exact box-plane intersection volume; where it is not (edges, corners,
    tight curves), the voxel is supersampled ``supersampling``^3 times.

    :param axes: (3, 3) rows are the voxel's edge vectors (direction times spacing) in LPS mm.
    """
    distance = sdf(centers)
    fraction = (distance < 0).astype(np.float64)
    halfDiagonal = 0.5 * float(np.linalg.norm(axes.sum(axis=0)))
    cut = np.nonzero(np.abs(distance) < halfDiagonal)[0]
    if len(cut) == 0:
        return fraction
    p, d = centers[cut], distance[cut]
    step = 1e-4 * float(np.linalg.norm(axes, axis=1).min())
    gradient = np.stack([(sdf(p + step * e) - sdf(p - step * e)) / (2 * step) for e in np.eye(3)], axis=1)
    gradient /= np.maximum(np.linalg.norm(gradient, axis=1, keepdims=True), 1e-12)
    m = gradient @ axes.T  # plane slope per voxel axis
    fraction[cut] = boxPlaneFraction(m, 0.5 * m.sum(axis=1) - d)
    # flat across the voxel? compare the distance at the corners with the plane's prediction
    # (a 0.01-voxel mismatch at the corners is a fraction error far below 1 %)
    tolerance = 0.02 * float(np.linalg.norm(axes, axis=1).min())
    curved = np.zeros(len(cut), bool)
    for corner in np.array(list(np.ndindex(2, 2, 2)), float) - 0.5:
        offset = corner @ axes
        curved |= np.abs(sdf(p + offset) - (d + gradient @ offset)) > tolerance
    index = cut[curved]
    offsets = (np.arange(supersampling) + 0.5) / supersampling - 0.5
    sub = np.stack(np.meshgrid(offsets, offsets, offsets, indexing="ij"), axis=-1).reshape(-1, 3) @ axes
    for start in range(0, len(index), 1024):
        chunk = index[start:start + 1024]
        samples = centers[chunk, None, :] + sub[None, :, :]
        fraction[chunk] = (sdf(samples.reshape(-1, 3)).reshape(len(chunk), -1) < 0).mean(axis=1)
    return fraction


def renderPhantom(phantom: Phantom, geometry: VolumeGeometry, noiseHu: float = 20.0, seed: int = 0,
                  supersampling: int = 10) -> np.ndarray:
    """Hounsfield units on the grid, shape (slices, rows, columns), with partial volume and Gaussian noise.

    :param phantom: the phantom to render.
    :param geometry: the voxel grid (any orientation).
    :param noiseHu: standard deviation of the added noise.
    :param seed: noise seed (the same seed gives the same volume).
    :param supersampling: samples per axis in voxels where the surface is not flat (see :func:`_insideFraction`).
    """
    nI, nJ, nK = geometry.shape
    axes = (geometry.direction * geometry.spacing).T  # rows: voxel edge vectors in LPS
    hu = np.empty((nK, nJ, nI), np.float32)
    for k in range(nK):
        centers = geometry.slicePoints(k).reshape(-1, 3)
        bone = _insideFraction(phantom.boneSdf, centers, axes, supersampling)
        tissue = np.maximum(_insideFraction(phantom.tissueSdf, centers, axes, supersampling), bone)
        hu[k] = (AIR_HU + (TISSUE_HU - AIR_HU) * tissue + (BONE_HU - TISSUE_HU) * bone).reshape(nJ, nI)
    if noiseHu > 0:
        hu += np.random.default_rng(seed).normal(0.0, noiseHu, hu.shape).astype(np.float32)
    return hu


def _dataset(sopClass: str, modality: str, patient: dict, uids: tuple[str, str, str], description: str):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sopClass
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sopClass, meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    for keyword, value in patient.items():
        setattr(ds, keyword, value)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = uids
    ds.SeriesNumber = 3
    ds.SeriesDescription = description
    return ds


def saveDicomFile(ds, path: str) -> None:
    """Write a DICOM Part 10 file (preamble, file meta) with pydicom 3 or 2.4 (which Slicer 5.10 ships)."""
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.is_little_endian, ds.is_implicit_VR = True, False  # the file meta's Explicit VR Little Endian
        ds.save_as(path, write_like_original=False)


def _setPixelModule(ds, rows: int, columns: int, signed: bool) -> None:
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if signed else 0


def writeDicomSeries(hu: np.ndarray, geometry: VolumeGeometry, outputFolder: str, modality: str = "CT",
                     seriesDescription: str = "DicomToPrint phantom", patient: dict | None = None,
                     shuffle: bool = True, seed: int = 1, rescaleSlope: float = 1.0,
                     rescaleIntercept: float = -1024.0, signed: bool = False, keepSlices=None,
                     multiFrame: bool = False) -> list[str]:
    """Write a volume as a DICOM series: one file per slice, or one enhanced multi-frame file.

    :param hu: values, shape (slices, rows, columns); stored as round((hu - intercept) / slope).
    :param geometry: grid of the volume; each slice's position and the orientation go into the headers.
    :param outputFolder: created if missing.
    :param modality: "CT" (Hounsfield units) or "MR" (no rescale type).
    :param patient: identifiers to write (default :data:`SYNTHETIC_PATIENT`).
    :param shuffle: write the files in random order with extension-less random names, as PACS exports do.
    :param signed: store as signed 16 bit (PixelRepresentation 1) instead of unsigned.
    :param keepSlices: indices of the slices to write (default all): leaving some out makes uneven spacing or
        missing slices.
    :param multiFrame: write one Enhanced CT / Enhanced MR file holding every slice as a frame.
    :return: the written file paths in slice order (one path for a multi-frame file).
    """
    os.makedirs(outputFolder, exist_ok=True)
    patient = SYNTHETIC_PATIENT if patient is None else patient
    slices = list(range(hu.shape[0])) if keepSlices is None else [int(k) for k in keepSlices]
    rng = np.random.default_rng(seed)
    stored = np.round((hu - rescaleIntercept) / rescaleSlope)
    dtype = np.int16 if signed else np.uint16
    info = np.iinfo(dtype)
    stored = np.clip(stored, info.min, info.max).astype(dtype)
    uids = (generate_uid(), generate_uid(), generate_uid())
    rowDirection, columnDirection = geometry.direction[:, 0], geometry.direction[:, 1]
    orientation = [round(float(v), 8) for v in (*rowDirection, *columnDirection)]
    sliceStep = geometry.direction[:, 2] * geometry.spacing[2]
    pixelSpacing = [float(geometry.spacing[1]), float(geometry.spacing[0])]  # row spacing, column spacing

    def position(k):
        return [round(float(v), 6) for v in geometry.origin + k * sliceStep]

    if multiFrame:
        from pydicom.dataset import Dataset
        from pydicom.sequence import Sequence

        sopClass = "1.2.840.10008.5.1.4.1.1.2.1" if modality == "CT" else "1.2.840.10008.5.1.4.1.1.4.1"
        ds = _dataset(sopClass, modality, patient, uids, seriesDescription)
        ds.InstanceNumber, ds.NumberOfFrames = 1, len(slices)
        _setPixelModule(ds, int(hu.shape[1]), int(hu.shape[2]), signed)
        measures, plane, transform = Dataset(), Dataset(), Dataset()
        measures.PixelSpacing, measures.SliceThickness = pixelSpacing, float(geometry.spacing[2])
        plane.ImageOrientationPatient = orientation
        transform.RescaleIntercept, transform.RescaleSlope = rescaleIntercept, rescaleSlope
        transform.RescaleType = "HU" if modality == "CT" else "US"
        shared = Dataset()
        shared.PixelMeasuresSequence = Sequence([measures])
        shared.PlaneOrientationSequence = Sequence([plane])
        shared.PixelValueTransformationSequence = Sequence([transform])
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        frames = []
        for number, k in enumerate(slices):
            group, framePosition, content = Dataset(), Dataset(), Dataset()
            framePosition.ImagePositionPatient = position(k)
            content.InStackPositionNumber = number + 1
            group.PlanePositionSequence = Sequence([framePosition])
            group.FrameContentSequence = Sequence([content])
            frames.append(group)
        ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
        ds.PixelData = stored[slices].tobytes()
        path = os.path.join(outputFolder, "ENHANCED" if shuffle else "enhanced.dcm")
        saveDicomFile(ds, path)
        return [path]

    sopClass = CTImageStorage if modality == "CT" else MRImageStorage
    names = [f"{n:08X}" for n in rng.choice(16**8, size=len(slices), replace=False)] if shuffle else \
        [f"IM{k:05d}.dcm" for k in range(len(slices))]
    order = rng.permutation(len(slices)) if shuffle else np.arange(len(slices))
    paths = [""] * len(slices)
    for fileIndex, index in enumerate(order):
        k = slices[index]
        ds = _dataset(sopClass, modality, patient, uids, seriesDescription)
        ds.InstanceNumber = int(index) + 1
        ds.ImageOrientationPatient = orientation
        ds.ImagePositionPatient = position(k)
        ds.SliceLocation = round(float(np.dot(position(k), np.cross(rowDirection, columnDirection))), 6)
        ds.PixelSpacing = pixelSpacing
        ds.SliceThickness = float(geometry.spacing[2])
        _setPixelModule(ds, int(hu.shape[1]), int(hu.shape[2]), signed)
        ds.RescaleIntercept, ds.RescaleSlope = rescaleIntercept, rescaleSlope
        if modality == "CT":
            ds.RescaleType = "HU"
        ds.PixelData = stored[k].tobytes()
        path = os.path.join(outputFolder, names[fileIndex])
        saveDicomFile(ds, path)
        paths[index] = path
    return paths


def writePhantomSeries(name: str, outputFolder: str, shape=None, spacing=None, noiseHu: float | None = None,
                       seed: int = 0, supersampling: int = 10, direction=None, **writeOptions) -> list[str]:
    """Render the named phantom and write it as a DICOM series.

    :param name: one of :data:`PHANTOMS`.
    :param outputFolder: folder to write the files into.
    :param shape: grid (columns, rows, slices); default the phantom's.
    :param spacing: voxel size in mm (column, row, slice); default the phantom's.
    :param direction: 3x3 LPS direction matrix (columns: i, j, k axes) for oblique series.
    """
    if name not in PHANTOMS:
        raise ValueError(f"Unknown phantom '{name}'; choose one of {', '.join(sorted(PHANTOMS))}")
    phantom = PHANTOMS[name]
    geometry = VolumeGeometry.centered(shape or phantom.shape, spacing or phantom.spacing, direction)
    writeOptions.setdefault("seriesDescription", f"DicomToPrint phantom {name}")
    if isinstance(phantom, ScanPhantom):
        values = phantom.render(geometry, noiseHu, seed, min(supersampling, 3))
        if phantom.modality != "CT":  # MR: the signal as stored, no Hounsfield rescale
            writeOptions.setdefault("modality", phantom.modality)
            writeOptions.setdefault("rescaleIntercept", 0.0)
        return writeDicomSeries(values, geometry, outputFolder, **writeOptions)
    hu = renderPhantom(phantom, geometry, 20.0 if noiseHu is None else noiseHu, seed, supersampling)
    return writeDicomSeries(hu, geometry, outputFolder, **writeOptions)



def removeSampleSeries(folder: str) -> None:
    """Remove a series written by :func:`writePhantomSeries` from a folder; refuse if anything else is there.

    :raises ValueError: naming the first file that is not part of a sample series (nothing is removed then).
    """
    paths = [os.path.join(folder, name) for name in sorted(os.listdir(folder))]
    for path in paths:
        try:
            description = str(pydicom.dcmread(path, stop_before_pixels=True).get("SeriesDescription", ""))
        except (OSError, InvalidDicomError):
            description = ""
        if not os.path.isfile(path) or not description.startswith("DicomToPrint phantom"):
            raise ValueError(f"{path}: not part of a DicomToPrint sample series; the folder is left as it is")
    for path in paths:
        os.remove(path)
