"""Synthetic tabletop scene rendered by ray casting (open3d ``RaycastingScene``, CPU).

World frame: z up, metres; the table top is the plane z = 0 centred on the origin. Instance ids:
0 = nothing hit, 1 = the table (support plane), 2.. = objects. The scene is a pure function of
its seed: same seed, same meshes, colours and textures, hence bit-identical images.

Rendering casts one ray per pixel centre (``core.camera.pixel_rays``), shades the hit with the
object's procedural 3D texture and a Lambertian model (fixed light + ambient, shadow rays) and
returns colour, z-depth and instance id images.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import open3d as o3d

from n3f_ros.core.camera import GeometryError, PinholeCamera, pixel_grid, pixel_rays
from n3f_ros.core.synth import shapes, texture

TABLE_ID = 1
#: table top size (x, y) and thickness, metres
TABLE_SIZE = (1.2, 0.9)
TABLE_THICKNESS = 0.03
#: objects are placed inside a disc of this radius around the table centre (metres)
OBJECT_REGION = 0.28
#: largest extent of an object (metres)
OBJECT_SIZE = (0.04, 0.15)


@dataclass(frozen=True)
class SceneObject:
    """One object of the scene (world frame, metres).

    instance_id: id in the instance images (>= 2).
    name:        unique readable name, e.g. ``'cone_3'``.
    shape:       one of ``shapes.SHAPES``.
    color:       (r, g, b) base (primary) colour of its texture, floats in [0, 1].
    center:      (x, y, z) centre of its axis-aligned bounding box.
    extent:      (dx, dy, dz) size of its axis-aligned bounding box.
    """

    instance_id: int
    name: str
    shape: str
    color: tuple
    center: tuple
    extent: tuple = (0.0, 0.0, 0.0)

    def to_dict(self) -> dict:
        return {'instance_id': int(self.instance_id), 'name': self.name, 'shape': self.shape,
                'color': [float(c) for c in self.color], 'center': [float(c) for c in self.center],
                'extent': [float(c) for c in self.extent]}

    @classmethod
    def from_dict(cls, d: dict) -> SceneObject:
        try:
            return cls(int(d['instance_id']), str(d['name']), str(d['shape']),
                       tuple(float(c) for c in d['color']), tuple(float(c) for c in d['center']),
                       tuple(float(c) for c in d.get('extent', (0.0, 0.0, 0.0))))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f'malformed scene object {d!r}: {exc}') from exc


@dataclass
class _Part:
    """A mesh with its instance id and texture (texture coordinates = world point - origin)."""

    instance_id: int
    mesh: o3d.geometry.TriangleMesh
    texture: texture.Texture
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))


class TabletopScene:
    """A table with objects on it; build with :meth:`generate`, draw with :meth:`render`."""

    SOURCE = 'synth'          # scene source name (sequence.SCENE_SOURCES)

    def __init__(self, parts: list[_Part], objects: list[SceneObject], seed: int | None = None):
        self.seed = seed
        self.objects = list(objects)
        self._parts = list(parts)
        self._raycast = o3d.t.geometry.RaycastingScene()
        ids = []
        for part in self._parts:
            gid = self._raycast.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(part.mesh))
            ids.append((gid, part.instance_id))
        # geometry id -> index into self._parts (geometry ids are 0..n-1 in insertion order)
        self._geom_to_part = np.full(max(g for g, _ in ids) + 1, -1, dtype=np.int64)
        for k, (gid, _) in enumerate(ids):
            self._geom_to_part[gid] = k
        self._part_instance = np.array([p.instance_id for p in self._parts], dtype=np.int32)
        lo = np.min([np.asarray(p.mesh.vertices).min(axis=0) for p in self._parts], axis=0)
        hi = np.max([np.asarray(p.mesh.vertices).max(axis=0) for p in self._parts], axis=0)
        self._bounds = (lo, hi)

    # -----------------------------------------------------------------------------------------
    @classmethod
    def generate(cls, seed: int, n_objects: int | None = None) -> TabletopScene:
        """Random scene for ``seed``: a textured table and ``n_objects`` (default 5..7) objects.

        The first five objects have five different shapes. Base colours come from a small shared
        palette (so two objects often have close colours); every object is textured.
        """
        rng = np.random.default_rng([int(seed), 0x7AB1E])
        if n_objects is None:
            n_objects = int(rng.integers(5, 8))
        if n_objects < 1:
            raise ValueError(f'n_objects must be >= 1, got {n_objects}')
        kinds = list(rng.permutation(shapes.SHAPES))
        kinds += [str(k) for k in rng.choice(shapes.SHAPES, size=max(0, n_objects - len(kinds)))]
        kinds = [str(k) for k in kinds[:n_objects]]
        cols = texture.palette(rng, 4)

        parts = [cls._table_part(rng, cols)]
        meshes = [shapes.make_object_mesh(k, float(rng.uniform(*OBJECT_SIZE)), rng) for k in kinds]
        centres = cls._place(meshes, rng)
        objects = []
        for i, (kind, mesh, c) in enumerate(zip(kinds, meshes, centres)):
            mesh.translate((c[0], c[1], 0.0))
            a, b = rng.choice(len(cols), size=2, replace=False)
            primary = texture.jitter_colour(rng, cols[a])
            secondary = texture.jitter_colour(rng, cols[b] * rng.uniform(0.6, 1.0))
            bb = mesh.get_axis_aligned_bounding_box()
            center = np.asarray(bb.get_center())
            tex = texture.Texture.random(rng, primary, secondary)
            parts.append(_Part(i + 2, mesh, tex, center))
            objects.append(SceneObject(i + 2, f'{kind}_{i + 2}', kind, tuple(primary.tolist()),
                                       tuple(center.tolist()), tuple(bb.get_extent().tolist())))
        return cls(parts, objects, seed=int(seed))

    @staticmethod
    def _table_part(rng: np.random.Generator, cols: np.ndarray) -> _Part:
        """Table: a slab whose top face is z = 0, checker/noise textured (tablecloth-like)."""
        sx, sy = TABLE_SIZE
        mesh = o3d.geometry.TriangleMesh.create_box(sx, sy, TABLE_THICKNESS)
        mesh.translate((-sx / 2, -sy / 2, -TABLE_THICKNESS))
        mesh.compute_triangle_normals()
        base = np.array([0.78, 0.70, 0.58]) * rng.uniform(0.85, 1.05)
        second = 0.5 * base + 0.5 * cols[int(rng.integers(len(cols)))] * 0.8
        pattern = ('checker', 'stripes', 'noise')[int(rng.integers(3))]
        tex = texture.Texture.random(rng, base, second, pattern=pattern, frequency=(6.0, 14.0), grain=0.12)
        return _Part(TABLE_ID, mesh, tex)

    @staticmethod
    def _place(meshes, rng: np.random.Generator) -> np.ndarray:
        """xy centres (N, 2) without overlap; shrinks all objects by 15 % until they fit."""
        for _ in range(10):
            radii = [shapes.footprint_radius(m) for m in meshes]
            try:
                return shapes.place_objects(radii, rng, OBJECT_REGION)
            except shapes.PlacementError:
                for m in meshes:
                    m.scale(0.85, center=(0.0, 0.0, 0.0))
        raise shapes.PlacementError('objects do not fit on the table')

    # -----------------------------------------------------------------------------------------
    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounds of all geometry (table included): (min (3,), max (3,)), metres."""
        return self._bounds[0].copy(), self._bounds[1].copy()

    @property
    def objects_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounds of the objects only (table top z = 0 as the floor)."""
        parts = [p for p in self._parts if p.instance_id != TABLE_ID]
        lo = np.min([np.asarray(p.mesh.vertices).min(axis=0) for p in parts], axis=0)
        hi = np.max([np.asarray(p.mesh.vertices).max(axis=0) for p in parts], axis=0)
        return lo, hi

    @property
    def instance_ids(self) -> list[int]:
        """All instance ids in the scene (table and objects)."""
        return [int(p.instance_id) for p in self._parts]

    def mesh(self, instance_id: int) -> o3d.geometry.TriangleMesh:
        """A copy of the (world-frame) mesh of ``instance_id`` (1 = table). Raises KeyError."""
        for p in self._parts:
            if p.instance_id == int(instance_id):
                return o3d.geometry.TriangleMesh(p.mesh)
        raise KeyError(f'no instance {instance_id} in the scene (ids {self.instance_ids})')

    def render(self, camera: PinholeCamera, T_world_cam, shadows: bool = True):
        """Render the view of ``camera`` at pose ``T_world_cam`` (4, 4) (OpenCV optical frame).

        Returns ``rgb`` (H, W, 3) uint8, ``depth`` (H, W) float32 z-depth in metres (0 where
        nothing is hit) and ``instance`` (H, W) int32 (0 = nothing hit).
        """
        T = np.asarray(T_world_cam, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise GeometryError(f'T_world_cam must be a finite 4x4 matrix, got shape {T.shape}')
        W, H = camera.size
        o, d = pixel_rays(camera, T_world_cam, pixel_grid(W, H))   # (N, 3) each; d has unit cam-z
        hit = self.cast(o, d)
        # pixel_rays directions have unit z in the camera frame, so the ray parameter t_hit is
        # already the z-depth (not the Euclidean ray length).
        inst = hit['instance']
        idx = np.flatnonzero(inst > 0)                                # (M,) pixels that hit
        depth = np.zeros(len(inst), dtype=np.float32)
        depth[idx] = hit['t'][idx]
        rgb = np.empty((len(inst), 3), dtype=np.float32)
        rgb[:] = texture.BACKGROUND
        if len(idx):
            dh = d[idx].astype(np.float32)
            p = o[0].astype(np.float32) + dh * depth[idx, None]       # (M, 3) world hit points
            n = hit['normal'][idx]
            n *= np.where(np.einsum('ij,ij->i', n, dh) > 0, -1.0, 1.0).astype(np.float32)[:, None]
            lit = self._lit(p, n) if shadows else None
            albedo = np.empty((len(p), 3), dtype=np.float32)
            part = hit['part'][idx]
            order = np.argsort(part, kind='stable')
            ks, starts = np.unique(part[order], return_index=True)
            for k, sel in zip(ks, np.split(order, starts[1:])):
                pk = self._parts[int(k)]
                albedo[sel] = pk.texture.albedo(p[sel] - pk.origin.astype(np.float32))
            rgb[idx] = texture.shade(albedo, n, lit)
        rgb8 = (rgb * 255.0 + 0.5).astype(np.uint8).reshape(H, W, 3)
        return rgb8, depth.reshape(H, W), inst.reshape(H, W)

    def cast(self, origins, directions) -> dict:
        """Cast rays (N, 3) + (N, 3) (world frame). Returns a dict of per-ray arrays:

        ``t`` (N,) float32 ray parameter of the first hit (inf if none; in units of the direction's
        length), ``instance`` (N,) int32 (0 = none), ``part`` (N,) int64 (-1 = none) and
        ``normal`` (N, 3) float32 geometric normal of the hit triangle (mesh orientation).
        """
        rays = np.concatenate([np.asarray(origins), np.asarray(directions)], axis=1).astype(np.float32)
        out = self._raycast.cast_rays(o3d.core.Tensor(rays))
        t = out['t_hit'].numpy()
        gid = out['geometry_ids'].numpy()
        miss = (gid == o3d.t.geometry.RaycastingScene.INVALID_ID) | ~np.isfinite(t)
        part = np.full(len(gid), -1, dtype=np.int64)
        part[~miss] = self._geom_to_part[gid[~miss].astype(np.int64)]
        inst = np.zeros(len(gid), dtype=np.int32)
        inst[~miss] = self._part_instance[part[~miss]]
        t[miss] = np.inf
        return {'t': t, 'instance': inst, 'part': part,
                'normal': out['primitive_normals'].numpy()}

    def _lit(self, p: np.ndarray, n: np.ndarray) -> np.ndarray:
        """(M,) bool: the hit points ``p`` (M, 3) with normals ``n`` see the light."""
        rays = np.empty((len(p), 6), dtype=np.float32)
        rays[:, :3] = p + 1e-4 * n
        rays[:, 3:] = texture.LIGHT_DIR
        occluded = self._raycast.test_occlusions(o3d.core.Tensor(rays)).numpy()
        return ~occluded.astype(bool)
