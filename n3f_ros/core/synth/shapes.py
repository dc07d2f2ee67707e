"""Object meshes for the synthetic tabletop (open3d ``TriangleMesh.create_*``) and their placement.

World frame: z up, the table top is the plane z = 0, metres. Every mesh is returned resting on
the plane (min z = 0) and centred on the origin in x, y; :func:`place_objects` then moves them to
non-overlapping spots of the table.
"""
from __future__ import annotations

import numpy as np
import open3d as o3d

SHAPES = ('box', 'sphere', 'cylinder', 'cone', 'torus', 'capsule', 'ellipsoid')


class PlacementError(RuntimeError):
    """The objects do not fit on the table without overlapping."""


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _raw_mesh(shape: str, rng: np.random.Generator) -> o3d.geometry.TriangleMesh:
    """Unit-ish mesh of ``shape`` with random proportions, arbitrary scale and position."""
    if shape == 'box':
        dims = rng.uniform(0.5, 1.0, size=3)
        return o3d.geometry.TriangleMesh.create_box(*dims)
    if shape == 'sphere':
        return o3d.geometry.TriangleMesh.create_sphere(1.0, resolution=24)
    if shape == 'cylinder':
        return o3d.geometry.TriangleMesh.create_cylinder(1.0, float(rng.uniform(1.0, 3.0)), resolution=40)
    if shape == 'cone':
        return o3d.geometry.TriangleMesh.create_cone(1.0, float(rng.uniform(1.2, 2.5)), resolution=40)
    if shape == 'torus':
        return o3d.geometry.TriangleMesh.create_torus(1.0, float(rng.uniform(0.25, 0.5)),
                                                      radial_resolution=40, tubular_resolution=16)
    if shape == 'capsule':
        length = float(rng.uniform(1.0, 2.5))
        mesh = o3d.geometry.TriangleMesh.create_cylinder(1.0, length, resolution=32)
        for sign in (-1.0, 1.0):
            cap = o3d.geometry.TriangleMesh.create_sphere(1.0, resolution=16)
            cap.translate((0.0, 0.0, sign * length / 2))
            mesh += cap
        return mesh
    if shape == 'ellipsoid':
        radii = rng.uniform(0.5, 1.0, size=3)
        mesh = o3d.geometry.TriangleMesh.create_sphere(1.0, resolution=24)
        v = np.asarray(mesh.vertices) * radii
        mesh.vertices = o3d.utility.Vector3dVector(v)
        return mesh
    raise ValueError(f'unknown shape {shape!r}, expected one of {SHAPES}')


def make_object_mesh(shape: str, size: float, rng: np.random.Generator) -> o3d.geometry.TriangleMesh:
    """Mesh of ``shape`` whose largest extent is ``size`` metres, resting on z = 0, centred at x = y = 0.

    Random proportions and a random yaw; cylinders and capsules lie on their side half the time.
    """
    if not size > 0:
        raise ValueError(f'object size must be positive, got {size}')
    mesh = _raw_mesh(shape, rng)
    mesh.translate(-mesh.get_axis_aligned_bounding_box().get_center())
    if shape in ('cylinder', 'capsule') and rng.uniform() < 0.5:
        mesh.rotate(_rot_x(np.pi / 2), center=(0.0, 0.0, 0.0))
    mesh.rotate(_rot_z(float(rng.uniform(0, 2 * np.pi))), center=(0.0, 0.0, 0.0))
    extent = mesh.get_axis_aligned_bounding_box().get_extent()
    mesh.scale(size / float(np.max(extent)), center=(0.0, 0.0, 0.0))
    return _rest_on_table(mesh)


def _rest_on_table(mesh: o3d.geometry.TriangleMesh) -> o3d.geometry.TriangleMesh:
    """Translate so the bounding box is centred on x = y = 0 and its bottom is at z = 0."""
    bb = mesh.get_axis_aligned_bounding_box()
    c, lo = bb.get_center(), bb.get_min_bound()
    mesh.translate((-c[0], -c[1], -lo[2]))
    mesh.compute_triangle_normals()
    return mesh


def footprint_radius(mesh: o3d.geometry.TriangleMesh) -> float:
    """Radius (metres) of the smallest origin-centred disc containing the mesh's xy projection."""
    v = np.asarray(mesh.vertices)
    return float(np.max(np.linalg.norm(v[:, :2], axis=1)))


def place_objects(radii, rng: np.random.Generator, region: float, gap: float = 0.01,
                  tries: int = 500) -> np.ndarray:
    """Non-overlapping xy centres (N, 2) for discs of ``radii`` (N,) inside a disc of radius ``region``.

    Larger discs are placed first; rejection sampling, seeded by ``rng``. Raises PlacementError
    when a disc cannot be placed in ``tries`` attempts.
    """
    radii = np.asarray(radii, dtype=np.float64)
    centres = np.zeros((len(radii), 2))
    placed: list[int] = []
    for i in np.argsort(-radii, kind='stable'):
        limit = region - radii[i]
        if limit <= 0:
            raise PlacementError(f'object of footprint radius {radii[i]:.3f} m does not fit in {region} m')
        for _ in range(tries):
            r, a = limit * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
            c = np.array([r * np.cos(a), r * np.sin(a)])
            if all(np.linalg.norm(c - centres[j]) >= radii[i] + radii[j] + gap for j in placed):
                centres[i] = c
                placed.append(int(i))
                break
        else:
            raise PlacementError(f'could not place {len(radii)} objects in a {region} m disc')
    return centres
