"""A posed synthetic image sequence: a tabletop scene seen along one full orbit.

Frame ``i`` has stamp ``i / fps`` seconds and the pose of the orbit at fraction ``i / frames``;
:meth:`SyntheticSequence.pose_at` gives the (continuous) pose at any time, so pose streams
faster than the images, or offset from them, follow the same path. Frames are rendered on
access (nothing is cached).

Two scene sources share this sequence (chosen by name in :func:`make_scene` /
:func:`make_sequence`): ``'synth'``, procedural shapes ray cast by open3d
(``scene.TabletopScene``), and ``'pybullet'``, photo-textured ``pybullet_data`` models rendered
by pybullet's TinyRenderer (``pybullet_scene.PybulletScene``). Both have the table top at z = 0
and instance ids 0 = nothing, 1 = table, 2.. = objects.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from n3f_ros.core.camera import PinholeCamera, backproject_depth
from n3f_ros.core.frame import Frame
from n3f_ros.core.synth.camera_path import OrbitPath
from n3f_ros.core.synth.scene import SceneObject, TabletopScene

#: scene sources by name (``make_scene``); the first is the default
SCENE_SOURCES = ('synth', 'pybullet')


class Scene(Protocol):
    """What a sequence needs from a scene (``TabletopScene``, ``PybulletScene``)."""

    seed: int | None
    objects: list[SceneObject]

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]: ...

    @property
    def objects_bounds(self) -> tuple[np.ndarray, np.ndarray]: ...

    def render(self, camera: PinholeCamera, T_world_cam, shadows: bool = True) -> tuple: ...


def make_scene(seed: int, n_objects: int | None = None, source: str = SCENE_SOURCES[0]) -> Scene:
    """The seeded scene of ``source`` (one of ``SCENE_SOURCES``); ``n_objects`` None = its default."""
    if source == 'synth':
        return TabletopScene.generate(seed, n_objects=n_objects)
    if source == 'pybullet':
        from n3f_ros.core.synth.pybullet_scene import PybulletScene   # imports pybullet only when used
        return PybulletScene.generate(seed, n_objects=n_objects)
    raise ValueError(f'unknown scene source {source!r}; choose one of {SCENE_SOURCES}')


def make_camera(width: int, height: int, hfov_deg: float = 60.0) -> PinholeCamera:
    """Square-pixel pinhole camera with horizontal field of view ``hfov_deg``, centred principal point."""
    if not 0.0 < hfov_deg < 180.0:
        raise ValueError(f'horizontal field of view must be in (0, 180) degrees, got {hfov_deg}')
    f = (width / 2.0) / np.tan(np.deg2rad(hfov_deg) / 2.0)
    return PinholeCamera(f, f, width / 2.0, height / 2.0, int(width), int(height))


@dataclass
class GroundTruthPoints:
    """Voxel-downsampled ground-truth surface points seen by a sequence (world frame).

    xyz:    (N, 3) float32 metres, mean of the samples in each voxel.
    labels: (N,) int32 instance id (majority of the samples in the voxel; 1 = table, >= 2 objects).
    rgb:    (N, 3) uint8 mean rendered colour.
    """

    xyz: np.ndarray
    labels: np.ndarray
    rgb: np.ndarray

    def __len__(self) -> int:
        return len(self.xyz)


class SyntheticSequence:
    """``frames`` views of ``scene`` along ``path`` at ``fps``; indexable and iterable (Frame)."""

    def __init__(self, scene: Scene, camera: PinholeCamera, path: OrbitPath, frames: int,
                 fps: float = 10.0, seed: int | None = None, shadows: bool = True):
        if int(frames) < 1:
            raise ValueError(f'frames must be >= 1, got {frames}')
        if not (np.isfinite(fps) and fps > 0):
            raise ValueError(f'fps must be positive, got {fps}')
        self.scene = scene
        self.camera = camera
        self.path = path
        self.frames = int(frames)
        self.fps = float(fps)
        self.seed = seed
        self.shadows = shadows
        self.poses = [path.pose(i / self.frames) for i in range(self.frames)]   # T_world_cam (4, 4)

    def __len__(self) -> int:
        return self.frames

    def stamp(self, i: int) -> float:
        """Stamp of frame ``i`` in seconds."""
        return i / self.fps

    @property
    def duration(self) -> float:
        """Stamp of the last frame, seconds."""
        return self.stamp(self.frames - 1)

    def pose_at(self, t: float) -> np.ndarray:
        """``T_world_cam`` (4, 4) at time ``t`` seconds (continuous; ``pose_at(stamp(i)) == poses[i]``)."""
        return self.path.pose(float(t) * self.fps / self.frames)

    def __getitem__(self, i: int) -> Frame:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self.frames))]
        i = int(i)
        if i < 0:
            i += self.frames
        if not 0 <= i < self.frames:
            raise IndexError(f'frame {i} out of range (sequence has {self.frames})')
        rgb, depth, inst = self.scene.render(self.camera, self.poses[i], shadows=self.shadows)
        return Frame(rgb, self.camera, self.poses[i].copy(), self.stamp(i), depth, inst)

    def __iter__(self):
        for i in range(self.frames):
            yield self[i]

    def gt_points(self, voxel: float = 0.005, stride: int = 1, frame_step: int = 1) -> GroundTruthPoints:
        """Back-project the depth of every ``frame_step``-th frame (every ``stride``-th pixel) with
        its instance ids and colours, and voxel-downsample (voxel size in metres)."""
        if not voxel > 0:
            raise ValueError(f'voxel size must be positive, got {voxel}')
        if stride < 1 or frame_step < 1:
            raise ValueError('stride and frame_step must be >= 1')
        xyz, lab, col = [], [], []
        for i in range(0, self.frames, frame_step):
            f = self[i]
            p, idx = backproject_depth(f.depth, self.camera, f.T_world_cam, stride=stride)
            xyz.append(p)
            lab.append(f.instance.reshape(-1)[idx])
            col.append(f.rgb.reshape(-1, 3)[idx])
        return voxelize_labelled(np.concatenate(xyz), np.concatenate(lab), np.concatenate(col), voxel)


def voxelize_labelled(xyz: np.ndarray, labels: np.ndarray, rgb: np.ndarray, voxel: float) -> GroundTruthPoints:
    """Voxel grid (world-aligned, index floor(xyz / voxel)) mean xyz / rgb and majority label.

    xyz (N, 3) metres, labels (N,) int, rgb (N, 3) uint8. Ties in the vote go to the smaller id.
    """
    if len(xyz) == 0:
        return GroundTruthPoints(np.zeros((0, 3), np.float32), np.zeros(0, np.int32), np.zeros((0, 3), np.uint8))
    key = np.floor(np.asarray(xyz, dtype=np.float64) / voxel).astype(np.int64)
    _, inv, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    m = len(counts)
    mean_xyz = np.stack([np.bincount(inv, xyz[:, k], m) for k in range(3)], axis=1) / counts[:, None]
    mean_rgb = np.stack([np.bincount(inv, rgb[:, k].astype(np.float64), m) for k in range(3)], axis=1)
    mean_rgb = np.round(mean_rgb / counts[:, None])
    labels = np.asarray(labels, dtype=np.int64)
    lab_vals, lab_codes = np.unique(labels, return_inverse=True)
    nl = len(lab_vals)
    pair, cnt = np.unique(inv * nl + lab_codes.reshape(-1), return_counts=True)
    vox, code = pair // nl, pair % nl
    order = np.lexsort((code, -cnt, vox))        # per voxel: most votes first, then smaller id
    vox, code = vox[order], code[order]
    first = np.ones(len(vox), dtype=bool)
    first[1:] = vox[1:] != vox[:-1]
    out_lab = np.empty(m, dtype=np.int32)
    out_lab[vox[first]] = lab_vals[code[first]]
    return GroundTruthPoints(mean_xyz.astype(np.float32), out_lab, mean_rgb.astype(np.uint8))


def make_sequence(seed: int, frames: int, width: int, height: int, fps: float = 10.0,
                  hfov_deg: float = 60.0, n_objects: int | None = None, shadows: bool = True,
                  scene: str = SCENE_SOURCES[0]) -> SyntheticSequence:
    """Scene ``make_scene(seed, n_objects, scene)`` seen along ``OrbitPath.random(seed)`` (one full
    circle over ``frames`` frames, looking at the table centre) by a ``width`` x ``height`` camera
    of ``hfov_deg`` horizontal FOV. ``scene``: a name of ``SCENE_SOURCES`` ('synth', 'pybullet')."""
    scene = make_scene(seed, n_objects=n_objects, source=scene)
    _, hi = scene.objects_bounds
    center = (0.0, 0.0, float(0.4 * hi[2]))
    return SyntheticSequence(scene, make_camera(width, height, hfov_deg), OrbitPath.random(seed, center),
                             frames, fps, seed=int(seed), shadows=shadows)
