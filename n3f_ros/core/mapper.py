"""The Mapper: the one object the node and the tools talk to (no ROS here).

Frames go in at any time (``submit``: bounded queue, newest wins); a background worker runs the
teacher on new keyframes and trains the field between frames. Outputs (cloud, queries, masks,
edits) are computed from a consistent snapshot under the mapper's lock, so they never see a
half-applied training step or keyframe insertion.
"""
from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch

from n3f_ros.core.camera import PinholeCamera, backproject_depth
from n3f_ros.core.cloud import (FeatureCloud, FeaturePCA, QueryResult, edit_cloud, query_by_point,
                                query_by_prototype, segment, voxel_downsample)
from n3f_ros.core.field.model import FeatureField, FieldConfig
from n3f_ros.core.field.render import RenderSettings, render_image
from n3f_ros.core.frame import Frame
from n3f_ros.core.keyframe_depth import KeyframeStereo
from n3f_ros.core.keyframes import KeyframeBuffer, KeyframeConfig
from n3f_ros.core.persistence import load_map_file, save_map_file
from n3f_ros.core.scene_bounds import bounds_from_depth, bounds_from_views
from n3f_ros.core.stereo import StereoConfig
from n3f_ros.core.teacher import DEFAULT_MODEL, FeatureProjector, make_teacher
from n3f_ros.core.trainer import Trainer, TrainerConfig

log = logging.getLogger(__name__)


@dataclass
class MapperConfig:
    """Engine settings; names match the node parameters (config/n3f.yaml) where they overlap."""

    teacher_model: str = DEFAULT_MODEL      # 'auto': see core/teacher/resolve.py
    teacher_checkpoint: str = ''
    teacher_random_init: bool = False
    teacher_input_width: int = 320
    feature_dim: int = 64
    device: str = 'auto'
    use_depth: bool = True
    stereo_depth: bool = True              # RGB-only: triangulate keyframe depth by multi-view stereo
    min_depth: float = 0.1                 # metres
    max_depth: float = 5.0                 # metres
    keyframe_translation: float = 0.05     # metres
    keyframe_rotation: float = 5.0         # degrees
    max_keyframes: int = 64
    keyframe_width: int = 160              # pixels
    scene_bounds: tuple = (0.0,) * 6       # xmin ymin zmin xmax ymax zmax, metres; zeros = auto
    bounds_keyframes: int = 3              # keyframes used to estimate bounds before training starts
    rays_per_step: int = 1024
    learning_rate: float = 1e-2
    voxel_size: float = 0.01               # metres
    num_segments: int = 8
    query_threshold: float = 0.0           # 0 = automatic
    queue_size: int = 2
    render_width: int = 160                # pixels of feature images and masks rendered from the field
    cloud_refresh_steps: int = 50          # training steps after which the cached cloud is stale
    pca_fit_steps: int = 300               # PCA colours are refitted until this many training steps
    seed: int = 0
    field_config: FieldConfig = field(default_factory=FieldConfig)
    render_config: RenderSettings = field(default_factory=RenderSettings)
    stereo_config: StereoConfig = field(default_factory=StereoConfig)

    @classmethod
    def from_dict(cls, d: dict) -> 'MapperConfig':
        """Build from a flat dict (e.g. ROS parameters); unknown keys are ignored."""
        names = {f.name for f in fields(cls)} - {'field_config', 'render_config', 'stereo_config'}
        kw = {k: v for k, v in d.items() if k in names}
        if 'scene_bounds' in kw:
            kw['scene_bounds'] = tuple(float(v) for v in kw['scene_bounds'])
        return cls(**kw)


def resolve_device(name: str) -> torch.device:
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    dev = torch.device(name)
    if dev.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'device {name!r} requested but CUDA is not available')
    return dev


class Mapper:
    def __init__(self, config: MapperConfig | None = None, teacher=None):
        self.config = cfg = config or MapperConfig()
        self.device = resolve_device(cfg.device)
        if teacher is None and cfg.teacher_model.strip().lower() == 'synthetic':
            # ground-truth-driven stand-in for DINO (needs Frame.instance: benchmarks and tests only)
            teacher = make_teacher('synthetic', seed=cfg.seed)
        elif teacher is None:
            teacher = make_teacher(cfg.teacher_model, checkpoint=cfg.teacher_checkpoint or None,
                                   random_init=cfg.teacher_random_init, device=str(self.device),
                                   input_width=cfg.teacher_input_width)
        self.teacher = teacher
        self._lock = threading.RLock()
        self._queue: collections.deque[Frame] = collections.deque()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._running = False
        self.paused = False
        self.prototypes: dict[str, np.ndarray] = {}
        self.last_result: QueryResult | None = None
        self._counters = collections.Counter()
        self._timing: dict[str, float] = {}
        self._reset_state()

    # ------------------------------------------------------------------------------------------
    # state
    # ------------------------------------------------------------------------------------------
    def _reset_state(self) -> None:
        cfg = self.config
        self.keyframes = KeyframeBuffer(KeyframeConfig(cfg.max_keyframes, cfg.keyframe_translation,
                                                       cfg.keyframe_rotation, cfg.keyframe_width), self.device)
        # PCA of teacher features fitted on the first keyframe, then fixed (keyframe features must share a basis)
        self.projector = FeatureProjector(out_dim=cfg.feature_dim, fit_frames=1)
        self.field: FeatureField | None = None
        self.trainer: Trainer | None = None
        self.stereo = KeyframeStereo(cfg.stereo_config, cfg.min_depth, cfg.max_depth)
        self._measured_depth = False           # some keyframe came with a depth image
        self.pca = FeaturePCA()
        self._pca_steps = -1
        self._cloud: FeatureCloud | None = None
        self._cloud_version = (-1, -1)
        self.latest_frame: Frame | None = None
        self._version = 0                      # bumped on every keyframe insertion / load / reset

    def reset(self) -> None:
        """Forget the map (keyframes, field, cloud). Prototypes are kept."""
        with self._lock:
            self._reset_state()
            self.last_result = None
            self._counters['resets'] += 1

    @property
    def train_steps(self) -> int:
        return self.trainer.steps if self.trainer is not None else 0

    def stats(self) -> dict:
        with self._lock:
            s = dict(self._counters)
            s.update(keyframes=len(self.keyframes), train_steps=self.train_steps,
                     queue=len(self._queue), paused=self.paused,
                     cloud_points=len(self._cloud) if self._cloud is not None else 0,
                     prototypes=len(self.prototypes))
            if self.trainer is not None:
                s.update({f'loss_{k}': v for k, v in self.trainer.last.items()})
            s.update({f'{k}_ms': 1000.0 * v for k, v in self._timing.items()})
            return s

    def _time(self, key: str, seconds: float) -> None:
        old = self._timing.get(key)
        self._timing[key] = seconds if old is None else 0.9 * old + 0.1 * seconds

    # ------------------------------------------------------------------------------------------
    # input
    # ------------------------------------------------------------------------------------------
    def submit(self, frame: Frame) -> bool:
        """Queue a frame for the worker without blocking. False if an older frame was dropped."""
        with self._wake:
            self._counters['frames_submitted'] += 1
            dropped = False
            if self.paused:
                self._counters['frames_dropped_paused'] += 1
                return False
            while len(self._queue) >= max(1, self.config.queue_size):
                self._queue.popleft()
                self._counters['frames_dropped_queue'] += 1
                dropped = True
            self._queue.append(frame)
            self._wake.notify()
            return not dropped

    def _clean_depth(self, frame: Frame) -> Frame:
        if frame.depth is None:
            return frame
        if not self.config.use_depth:
            return Frame(frame.rgb, frame.camera, frame.T_world_cam, frame.stamp, None, frame.instance)
        d = np.nan_to_num(frame.depth.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        d[(d < self.config.min_depth) | (d > self.config.max_depth)] = 0.0
        return Frame(frame.rgb, frame.camera, frame.T_world_cam, frame.stamp, d, frame.instance)

    def integrate(self, frame: Frame) -> bool:
        """Synchronously add a frame: teacher + keyframe insertion. True if it became a keyframe."""
        frame = self._clean_depth(frame)
        self._counters['frames_integrated'] += 1
        with self._lock:
            self.latest_frame = frame
            novel = self.keyframes.is_novel(frame.T_world_cam)
        if not novel:
            return False
        t0 = time.perf_counter()
        feats = self.teacher(frame).float()                    # (h, w, C) on the teacher's device
        feats = self.projector(feats).to(self.device)          # (h, w, D)
        self._time('teacher', time.perf_counter() - t0)
        with self._lock:
            t0 = time.perf_counter()
            slot = self.keyframes.add(frame, feats)
            self._version += 1
            self._counters['keyframes_added'] += 1
            self._measured_depth |= frame.depth is not None
            job = self._plan_stereo(slot) if frame.depth is None and self.config.stereo_depth else None
            self._time('keyframe', time.perf_counter() - t0)
        if job is not None:
            # the sweep runs outside the lock: queries and clouds are served meanwhile
            t0 = time.perf_counter()
            self.stereo.run(job)
            with self._lock:
                n = self.stereo.apply(self.keyframes, job)
                if n and not self._counters['stereo_keyframes']:
                    log.info('no depth images: keyframe depth is triangulated by multi-view stereo')
                self._counters['stereo_keyframes'] += n
            self._time('stereo', time.perf_counter() - t0)
        with self._lock:
            if self.field is None:
                self._maybe_create_field()
        return True

    def _plan_stereo(self, slot: int):
        """Stereo work for the RGB-only keyframe in ``slot``: depth range from the field's bounds,
        or before the field exists from the looked-at box of the keyframes so far."""
        if self.field is not None:
            bounds = self.field.bounds.cpu().numpy()
        else:
            try:
                bounds = self._configured_bounds()
                bounds = bounds if bounds is not None else bounds_from_views(self.keyframes.poses)
            except ValueError:
                return None
        return self.stereo.plan(self.keyframes, slot, bounds)

    def _configured_bounds(self) -> np.ndarray | None:
        """Parameter ``scene_bounds`` as (2, 3) metres, or None when it is all zero (automatic)."""
        b = np.asarray(self.config.scene_bounds, dtype=np.float64).reshape(2, 3)
        return b if np.any(b != 0) else None

    def _maybe_create_field(self) -> None:
        cfg = self.config
        bounds = self._configured_bounds()
        if bounds is None:
            if len(self.keyframes) < cfg.bounds_keyframes:
                return
            if self._measured_depth:
                bounds = bounds_from_depth(self.keyframes.depth_points(stride=2)[0])
            else:
                bounds = bounds_from_views(self.keyframes.poses)
        fcfg = FieldConfig(**{**asdict(cfg.field_config), 'feature_dim': int(self.keyframes.feat.shape[-1])})
        self.field = FeatureField(bounds, fcfg, device=self.device)
        # stored depth (measured, or triangulated for RGB-only keyframes) supervises the field
        self.trainer = self._make_trainer(self._measured_depth or cfg.stereo_depth)
        log.info('field created with bounds %s', np.round(bounds, 3).tolist())

    def _make_trainer(self, use_depth: bool) -> Trainer:
        cfg = self.config
        tcfg = TrainerConfig(rays_per_step=cfg.rays_per_step, learning_rate=cfg.learning_rate,
                             use_depth=use_depth, render=cfg.render_config)
        return Trainer(self.field, self.keyframes, tcfg, seed=cfg.seed)

    def train(self, steps: int = 1) -> float:
        """Run ``steps`` training steps synchronously. Returns the mean loss (nan if no field)."""
        losses = []
        for _ in range(steps):
            with self._lock:
                if self.trainer is None:
                    break
                t0 = time.perf_counter()
                losses.append(self.trainer.step()['loss'])
                self._time('train_step', time.perf_counter() - t0)
        return float(np.mean(losses)) if losses else float('nan')

    # ------------------------------------------------------------------------------------------
    # background worker
    # ------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._running = True
        self._thread = threading.Thread(target=self._run, name='n3f_mapper', daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._running = False
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def set_paused(self, paused: bool) -> None:
        with self._wake:
            self.paused = bool(paused)
            if self.paused:
                self._queue.clear()
            self._wake.notify_all()

    def _run(self) -> None:
        while self._running:
            frame = None
            with self._wake:
                if self._queue and not self.paused:
                    frame = self._queue.pop()          # newest
                    self._queue.clear()
            try:
                if frame is not None:
                    self.integrate(frame)
                elif not self.paused and self.trainer is not None:
                    self.train(1)
                else:
                    with self._wake:
                        self._wake.wait(0.05)
            except Exception:   # noqa: BLE001 - the worker must survive anything a frame does
                self._counters['worker_errors'] += 1
                log.exception('mapper worker error')
                time.sleep(0.1)

    # ------------------------------------------------------------------------------------------
    # outputs
    # ------------------------------------------------------------------------------------------
    def cloud(self, force: bool = False) -> FeatureCloud | None:
        """The current feature cloud (cached; re-extracted when the map changed enough)."""
        with self._lock:
            if self.field is None:
                return None
            version = (self._version, self.train_steps)
            stale = (version[0] != self._cloud_version[0]
                     or version[1] - self._cloud_version[1] >= self.config.cloud_refresh_steps)
            if self._cloud is None or stale or force:
                t0 = time.perf_counter()
                self._cloud = self._extract_cloud()
                self._cloud_version = version
                self._time('cloud', time.perf_counter() - t0)
            return self._cloud

    def surface_points(self):
        """Surface samples (N, 3) world metres and colours (N, 3) uint8 of the keyframes.

        RGB-D: measured depth back-projected. RGB-only: depth rendered from the density field
        at (up to 8 spread) keyframes, where the rendered opacity exceeds 0.5.
        """
        if self.trainer.config.use_depth:
            return self.keyframes.depth_points()
        pts, cols = [], []
        slots = np.linspace(0, len(self.keyframes) - 1, min(8, len(self.keyframes))).round().astype(int)
        for s in np.unique(slots):
            cam = self.keyframes.cameras[s]
            r = render_image(self.field, cam, self.keyframes.poses[s], self.config.render_config,
                             width=min(cam.width, 96), with_features=False)
            d = np.where(r['acc'] > 0.5, r['depth'], 0.0)
            p, idx = backproject_depth(d, r['camera'], self.keyframes.poses[s])
            pts.append(p)
            cols.append(np.clip(r['rgb'].reshape(-1, 3)[idx] * 255, 0, 255).astype(np.uint8))
        return np.concatenate(pts), np.concatenate(cols)

    def _extract_cloud(self) -> FeatureCloud:
        cfg = self.config
        pts, cols = self.surface_points()
        inside = self.field.inside(torch.as_tensor(pts, dtype=torch.float32, device=self.device)).cpu().numpy()
        pts, cols = pts[inside], cols[inside]
        if len(pts) == 0:
            D = self.field.config.feature_dim
            return FeatureCloud(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8),
                                np.zeros((0, D), np.float32), np.zeros((0, 3), np.uint8),
                                np.zeros(0, np.uint32))
        xyz, attrs = voxel_downsample(pts.astype(np.float32), cfg.voxel_size, rgb=cols.astype(np.uint8))
        feats = self.field.query_features(xyz)
        if self._pca_steps < 0 or self.train_steps < cfg.pca_fit_steps:
            self.pca.fit(feats)
            self._pca_steps = self.train_steps
        if len(xyz) > 1:
            labels = segment(xyz, feats, n_clusters=cfg.num_segments, radius=self.query_radius, seed=cfg.seed)
        else:
            labels = np.ones(len(xyz), np.uint32)
        return FeatureCloud(xyz.astype(np.float32), attrs['rgb'], feats,
                            self.pca.colors(feats), labels)

    def render_features(self, camera: PinholeCamera, T_world_cam, depth: np.ndarray | None = None):
        """Student features seen from a camera, ``render_width`` wide (or None before the field exists).

        Returns (features (h, w, D) L2-normalised, valid (h, w) bool, points (h, w, 3) world
        metres of the surface each pixel sees, camera scaled to (w, h)).
        With a depth image (z-depth, metres, any size: resampled nearest) the field is read at the
        back-projected surface points — one field evaluation per pixel, which is what keeps masks
        cheap on a CPU; without depth features and depth are volume-rendered (valid where the
        opacity exceeds 0.5).
        """
        with self._lock:
            if self.field is None:
                return None
            w = min(self.config.render_width, camera.width)
            cam = camera.scaled(w, max(1, int(round(camera.height * w / camera.width))))
            h = cam.height
            if depth is not None:
                d = np.asarray(depth, dtype=np.float32)
                d = d[(np.arange(h) * d.shape[0] // h)][:, (np.arange(w) * d.shape[1] // w)]
                d = np.where(np.isfinite(d) & (d >= self.config.min_depth) & (d <= self.config.max_depth), d, 0)
                pts, idx = backproject_depth(d, cam, T_world_cam)
                feats = np.zeros((h * w, self.field.config.feature_dim), np.float32)
                feats[idx] = self.field.query_features(pts)
            else:
                r = render_image(self.field, cam, T_world_cam, self.config.render_config)
                d = np.where(r['acc'] > 0.5, r['depth'], 0.0)
                pts, idx = backproject_depth(d, cam, T_world_cam)
                f = r['feat'].reshape(h * w, -1)
                feats = f / np.maximum(np.linalg.norm(f, axis=-1, keepdims=True), 1e-6)
        valid = np.zeros(h * w, bool)
        valid[idx] = True
        points = np.full((h * w, 3), np.nan)
        points[idx] = pts
        return feats.reshape(h, w, -1), valid.reshape(h, w), points.reshape(h, w, 3), cam

    def feature_image(self, camera: PinholeCamera, T_world_cam, depth=None) -> np.ndarray | None:
        """PCA colours (h, w, 3) uint8 of the student's features seen from a camera (see
        ``render_features``; black where invalid); None before the field exists."""
        r = self.render_features(camera, T_world_cam, depth)
        if r is None:
            return None
        f, valid, _, _ = r
        img = self.pca.colors(f.reshape(-1, f.shape[-1])).reshape(*f.shape[:2], 3)
        return np.where(valid[..., None], img, 0).astype(np.uint8)

    def render_mask(self, result: QueryResult, camera: PinholeCamera, T_world_cam, depth=None) -> np.ndarray | None:
        """2D retrieval: (H, W) bool mask, at the camera's full size, of the queried object.

        A pixel belongs to the object when the surface it sees (from ``depth`` or rendered from the
        field) lies within the query radius of the object's 3D points and its student feature
        reaches the query's similarity threshold — the 3D answer carried into the image.
        """
        from scipy.spatial import cKDTree
        r = self.render_features(camera, T_world_cam, depth)
        if r is None:
            return None
        f, valid, points, _ = r
        sim = f @ np.asarray(result.prototype, dtype=np.float32)
        mask = valid & (sim >= result.threshold)
        if mask.any() and len(result.xyz):
            d, _ = cKDTree(result.xyz).query(points[mask], distance_upper_bound=self.query_radius)
            mask[mask] = np.isfinite(d)
        h, w = mask.shape
        return mask[(np.arange(camera.height) * h // camera.height)][:, (np.arange(camera.width) * w // camera.width)]

    @property
    def query_radius(self) -> float:
        """Connectivity radius (metres) of object queries: 2 voxels links a voxel to its face and
        edge neighbours (and most corners) without jumping gaps."""
        return 2.0 * self.config.voxel_size

    def _threshold(self, threshold):
        if threshold is None and self.config.query_threshold > 0:
            return self.config.query_threshold
        return threshold

    def query_point(self, xyz, threshold: float | None = None) -> QueryResult:
        """Object at world point ``xyz`` (3,) metres. Raises QueryError if it can't be answered."""
        cloud = self.cloud()
        if cloud is None or len(cloud) == 0:
            from n3f_ros.core.cloud import QueryError
            raise QueryError('the map is empty')
        t0 = time.perf_counter()
        res = query_by_point(cloud.xyz, cloud.features, np.asarray(xyz, dtype=np.float64),
                             threshold=self._threshold(threshold), radius=self.query_radius,
                             seed_radius=0.75 * self.query_radius)
        res.cloud = cloud
        self._time('query', time.perf_counter() - t0)
        self.last_result = res
        return res

    def query_prototype(self, name: str, threshold: float | None = None) -> QueryResult:
        """Object best matching the saved prototype ``name``. KeyError if unknown."""
        if name not in self.prototypes:
            raise KeyError(f'no prototype named {name!r} (known: {sorted(self.prototypes)})')
        cloud = self.cloud()
        if cloud is None or len(cloud) == 0:
            from n3f_ros.core.cloud import QueryError
            raise QueryError('the map is empty')
        res = query_by_prototype(cloud.xyz, cloud.features, self.prototypes[name],
                                 threshold=self._threshold(threshold), radius=self.query_radius, name=name)
        res.cloud = cloud
        self.last_result = res
        return res

    def save_prototype(self, name: str, result: QueryResult | None = None) -> np.ndarray:
        """Store the prototype of ``result`` (default: the last query) under ``name``."""
        result = result or self.last_result
        if result is None:
            raise ValueError('no query result to take a prototype from')
        if not name or not name.strip():
            raise ValueError('prototype name is empty')
        self.prototypes[name.strip()] = np.asarray(result.prototype, dtype=np.float32).copy()
        return self.prototypes[name.strip()]

    def edit(self, result: QueryResult, mode: str = 'remove') -> FeatureCloud:
        """Scene without (``remove``) or only (``extract``) the queried object, from the cloud
        snapshot the query ran on."""
        cloud = result.cloud if result.cloud is not None else self.cloud()
        return edit_cloud(cloud, result, mode)

    def keyframe_poses(self) -> list[np.ndarray]:
        with self._lock:
            return [T.copy() for T in self.keyframes.poses]

    # ------------------------------------------------------------------------------------------
    # persistence
    # ------------------------------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Write the map atomically to ``path`` (a crash mid-save leaves the old file intact)."""
        with self._lock:
            if self.field is None:
                raise ValueError('nothing to save: the map is empty')
            state = {
                'format': 'n3f_map', 'version': 1,
                'feature_dim': int(self.field.config.feature_dim),
                'field_config': asdict(self.field.config),
                'bounds': self.field.bounds.cpu(),
                'field': {k: v.cpu() for k, v in self.field.state_dict().items()},
                'keyframes': self.keyframes.state_dict(),
                'projector': self.projector.state_dict(),
                'pca': self.pca.state_dict(),
                'prototypes': {k: torch.as_tensor(v) for k, v in self.prototypes.items()},
                'train_steps': self.train_steps,
                'use_depth': bool(self.trainer.config.use_depth),
            }
        save_map_file(os.path.expanduser(path), state)

    def load(self, path: str) -> None:
        """Replace the map with the one in ``path``. On any error the current map is kept."""
        state = load_map_file(os.path.expanduser(path))
        fcfg = FieldConfig(**state['field_config'])
        new_field = FeatureField(state['bounds'].numpy(), fcfg, device=self.device)
        new_field.load_state_dict(state['field'])
        kf = KeyframeBuffer(KeyframeConfig(**asdict(self.keyframes.config)), self.device)
        kf.load_state_dict(state['keyframes'])
        projector = FeatureProjector(out_dim=self.config.feature_dim, fit_frames=1)
        projector.load_state_dict(state['projector'])
        pca = FeaturePCA()
        pca.load_state_dict(state['pca'])
        with self._lock:
            self._reset_state()
            self.keyframes, self.field, self.projector, self.pca = kf, new_field, projector, pca
            self.trainer = self._make_trainer(bool(state['use_depth']))
            self.trainer.steps = int(state['train_steps'])
            self._pca_steps = self.trainer.steps
            self.prototypes.update({k: v.numpy().astype(np.float32) for k, v in state['prototypes'].items()})
            self._version += 1
            self._counters['maps_loaded'] += 1
