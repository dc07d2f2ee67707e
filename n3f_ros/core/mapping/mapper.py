"""The Mapper: the one object the node and the tools talk to (no ROS here).

It owns the threading and delegates the work:

* input — ``submit`` (bounded queue, newest wins) for the background worker, or ``integrate`` /
  ``train`` synchronously (tools, benchmarks). The worker runs the teacher on new keyframes
  (outside the lock), stores them, triangulates RGB-only keyframe depth (``KeyframeStereo``, the
  sweep outside the lock) and trains the field one step at a time between frames;
* the map — :class:`~n3f_ros.core.mapping.state.MapState` (keyframes, fused-teacher layer, field,
  trainer, projector, feature choice), guarded by one lock that is held for a training step, a
  keyframe insertion (with its fusion) or a few-millisecond copy, never for an output;
* best available features — every ``holdout_eval_steps`` training steps (and at every keyframe
  before the field exists) the fused layer, the student and their combination are measured on
  held-out keyframes (``sources.measure_fields``, outside the lock) and the best one answers, from the
  student copy ``best_student`` keeps;
* outputs — cloud (``extraction.CloudCache``), feature images and masks (``views``) computed from
  a snapshot outside the lock; queries (by point, by pixel, by prototype) on the latest cloud,
  respecting its geometry, refusing whole-scene answers (refusals counted by reason in
  ``stats()``), each answer with its ``feature_source`` and ``confidence``; prototypes
  (``PrototypeStore``);
* persistence — ``map_file`` (schema, all-or-nothing validation) and ``core/persistence``
  (atomic write, safe read); a failed load leaves the map as it was.
"""
from __future__ import annotations

import collections
import logging
import os
import threading
import time

import numpy as np
import torch

from n3f_ros.core.camera import PinholeCamera, camera_directions
from n3f_ros.core.cloud import (FeatureCloud, FeaturePCA, QueryError, QueryResult, edit_cloud, query_by_point,
                                query_by_prototype)
from n3f_ros.core.device import resolve_device
from n3f_ros.core.frame import Frame
from n3f_ros.core.mapping import views
from n3f_ros.core.mapping.config import LIVE_SETTINGS, MapperConfig
from n3f_ros.core.mapping.extraction import CloudCache, query_radius
from n3f_ros.core.mapping.map_file import decode_map, encode_map
from n3f_ros.core.mapping.plausibility import FrameRejected, check_frame
from n3f_ros.core.mapping.prototypes import PrototypeStore
from n3f_ros.core.mapping.sources import SourceErrors, measure_fields
from n3f_ros.core.mapping.state import MapState, clone_field
from n3f_ros.core.persistence import load_map_file, save_map_file
from n3f_ros.core.raster import clean_depth, valid_depth
from n3f_ros.core.teacher import make_teacher

log = logging.getLogger(__name__)


class Mapper:
    """See the module docstring. ``teacher``: a built teacher (tests, benchmarks); None = from config."""

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
        self._working = threading.Lock()             # held by the worker for one unit of work (set_paused)
        self._thread: threading.Thread | None = None
        self._running = False
        self.paused = False
        self.prototypes = PrototypeStore()
        self.last_result: QueryResult | None = None
        self._stats_lock = threading.Lock()          # counters and timings (never the map lock)
        self._counters = collections.Counter()
        self._timing: dict[str, float] = {}
        self._totals = collections.Counter()
        self._calls = collections.Counter()
        self._reset_state()

    # ------------------------------------------------------------------------------------------
    # state
    # ------------------------------------------------------------------------------------------
    def _reset_state(self) -> None:
        self.map = MapState(self.config, self.device)
        self._clouds = CloudCache(self.config)
        self.latest_frame: Frame | None = None

    def reset(self) -> None:
        """Forget the map (keyframes, field, cloud). Prototypes are kept."""
        with self._lock:
            self._reset_state()
            self.last_result = None
            self._count('resets', 1)

    # read-only views of the map for tools and tests (the map object changes on reset / load)
    keyframes = property(lambda self: self.map.keyframes)
    field = property(lambda self: self.map.field)                # the live (training) field
    student = property(lambda self: self.map.served_field())     # the one that answers (best_student.py)
    trainer = property(lambda self: self.map.trainer)
    projector = property(lambda self: self.map.projector)
    train_steps = property(lambda self: self.map.train_steps)
    pca = property(lambda self: self._clouds.pca)

    @property
    def query_radius(self) -> float:
        return query_radius(self.config)

    def update_settings(self, **settings) -> None:
        """Change the settings that may change while running (``config.LIVE_SETTINGS``)."""
        unknown = set(settings) - LIVE_SETTINGS
        if unknown:
            raise ValueError(f'not live settings: {sorted(unknown)} (live: {sorted(LIVE_SETTINGS)})')
        with self._lock:
            for k, v in settings.items():
                setattr(self.config, k, type(getattr(self.config, k))(v))
            self.map.stereo.min_depth, self.map.stereo.max_depth = self.config.min_depth, self.config.max_depth

    def stats(self) -> dict:
        """Counters and timings for diagnostics. Never waits for the map lock (a training step):
        counters have their own lock, the map's sizes are read as they are."""
        state, clouds = self.map, self._clouds
        with self._stats_lock:
            s = dict(self._counters)
            s.update({f'{k}_ms': 1000.0 * v for k, v in self._timing.items()})
            s.update({f'{k}_calls': v for k, v in self._calls.items()})
            s.update({f'{k}_total_s': v for k, v in self._totals.items()})
        cloud, trainer = clouds.cloud, state.trainer
        s.update(keyframes=len(state.keyframes), train_steps=state.train_steps, queue=len(self._queue),
                 paused=self.paused, cloud_points=len(cloud) if cloud is not None else 0,
                 prototypes=len(self.prototypes))
        if trainer is not None:
            s.update({f'loss_{k}': v for k, v in trainer.last.items()})
        fused, src = state.fused, state.sources
        s.update(fused_voxels=len(fused) if fused is not None else 0,
                 fused_keyframes=fused.fused_keyframes if fused is not None else 0,
                 fused_evicted=fused.evicted if fused is not None else 0,
                 fused_mb=fused.nbytes / 2 ** 20 if fused is not None else 0.0,
                 feature_source=src.source, feature_source_alpha=src.alpha,
                 heldout_measurements=src.measurements, heldout_keyframes=len(state.keyframes.held_out_slots()))
        if src.last is not None:
            s.update(heldout_error_fused=src.last.fused, heldout_error_student=src.last.student,
                     heldout_error_combined=src.last.combined, heldout_pixels=src.last.pixels,
                     heldout_steps=src.last.steps)
        s.update(state.best.stats(state.version, state.train_steps))
        if np.isfinite(clouds.seconds):
            s['cloud_ms'] = 1000.0 * clouds.seconds
        return s

    def _count(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self._counters[key] += n

    def _time(self, key: str, seconds: float) -> None:
        """Record one run of stage ``key``: ``stats()`` reports ``<key>_ms`` (moving average),
        ``<key>_calls`` and ``<key>_total_s``."""
        old = self._timing.get(key)
        with self._stats_lock:
            self._timing[key] = seconds if old is None else 0.9 * old + 0.1 * seconds
            self._totals[key] += seconds
            self._calls[key] += 1

    # ------------------------------------------------------------------------------------------
    # input
    # ------------------------------------------------------------------------------------------
    def check_frame(self, frame: Frame) -> None:
        """Raise :class:`FrameRejected` (``.reason``) for a frame the map must not take (see
        ``plausibility.check_frame``); the node calls it before ``submit`` to count the reason.

        Never waits for the map lock: it runs in the node's input callbacks, and a training step
        holds the lock for 0.2-2 s on a busy CPU (measured: the input callbacks then spent most of
        their time here and the node received 13 % of a 30 Hz stream). A field's bounds never
        change; reset and load replace the whole map object."""
        field = self.map.field
        bounds = field.bounds.cpu().numpy() if field is not None else None
        check_frame(frame, self.config, bounds)

    def submit(self, frame: Frame) -> bool:
        """Queue a frame for the worker without blocking. False if an older frame was dropped."""
        with self._wake:
            self._count('frames_submitted', 1)
            dropped = False
            if self.paused:
                self._count('frames_dropped_paused', 1)
                return False
            while len(self._queue) >= max(1, self.config.queue_size):
                self._queue.popleft()
                self._count('frames_dropped_queue', 1)
                dropped = True
            self._queue.append(frame)
            self._wake.notify()
            return not dropped

    def _prepare(self, frame: Frame) -> Frame:
        """The frame as the map takes it: depth dropped when ``use_depth`` is off, else cleaned."""
        if frame.depth is None:
            return frame
        cfg = self.config
        depth = clean_depth(frame.depth, cfg.min_depth, cfg.max_depth) if cfg.use_depth else None
        return Frame(frame.rgb, frame.camera, frame.T_world_cam, frame.stamp, depth, frame.instance)

    def integrate(self, frame: Frame) -> bool:
        """Synchronously add a frame: teacher + keyframe insertion. True if it became a keyframe.

        Raises :class:`FrameRejected` for an implausible frame (counted as ``frames_rejected``)."""
        try:
            self.check_frame(frame)
        except FrameRejected:
            self._count('frames_rejected', 1)
            raise
        frame = self._prepare(frame)
        self._count('frames_integrated', 1)
        with self._lock:
            self.latest_frame = frame
            novel = self.map.keyframes.is_novel(frame.T_world_cam)
        if not novel:
            return False
        t0 = time.perf_counter()
        feats = self.teacher(frame).float()                    # (h, w, C) on the teacher's device
        if feats.is_cuda:
            torch.cuda.synchronize(feats.device)               # honest timing: kernels are asynchronous
        self._time('teacher', time.perf_counter() - t0)
        with self._lock:
            t0 = time.perf_counter()
            state = self.map
            patch = state.projector(feats).to(self.device)     # (h, w, D)
            slot = state.add_keyframe(frame, patch)
            self._count('keyframes_added', 1)
            job = None
            if frame.depth is None and self.config.stereo_depth:
                bounds = state.stereo_bounds()
                job = state.stereo.plan(state.keyframes, slot, bounds) if bounds is not None else None
            self._time('keyframe', time.perf_counter() - t0)
        if job is not None:
            # the sweep runs outside the lock: queries and clouds are served meanwhile
            t0 = time.perf_counter()
            state.stereo.run(job)
            with self._lock:
                slots = state.stereo.apply(state.keyframes, job)
                if slots and not self._counters['stereo_keyframes']:
                    log.info('no depth images: keyframe depth is triangulated by multi-view stereo')
                self._count('stereo_keyframes', len(slots))
                if self.map is state:
                    self._count('stereo_reguided', state.reguide(slots))
                    t1 = time.perf_counter()
                    if state.fuse_all():
                        self._time('fuse', time.perf_counter() - t1)
            self._time('stereo', time.perf_counter() - t0)
        with self._lock:
            self.map.maybe_create_field()
            measure_now = self.map.field is None
        if measure_now:                    # before the field: the fused layer's own agreement
            self.measure_sources()
        return True

    def measure_sources(self) -> SourceErrors | None:
        """Measure the feature sources on the held-out keyframes, keep the better of the live
        field and the kept student copy (``best_student.py``), and update the choice of the
        answering features (``sources.py``); the work runs outside the lock on copies. Returns
        the answering student's measurement (None when nothing could be measured)."""
        with self._lock:
            state = self.map
            snap = state.snapshot()
            kfs = state.measurement_keyframes() if snap is not None else []
            version, kept = state.version, state.best.current(state.version)
            live = None
            if state.field is not None:
                live = snap.field if kept is None else clone_field(state.field)
        fields = [f for f in (live, kept.field if kept is not None else None) if f is not None]
        if snap is None or not kfs or (snap.fused is None and not fields):
            return None
        t0 = time.perf_counter()
        errs = measure_fields(kfs, snap.fused, fields, snap.version[1], seed=self.config.seed,
                              render=self.config.render_config)
        self._time('measure', time.perf_counter() - t0)
        errors = errs[0]
        with self._lock:
            if self.map is not state:
                return errors
            if live is not None:
                kept_error = errs[1].student if kept is not None else float('nan')
                took = state.keep_student(live, errors.student, kept_error, errors.steps, version)
                if kept is not None and not took:
                    errors = errs[1]                         # the kept copy answers
            src = state.sources
            before = (src.source, src.alpha)
            src.update(errors, student_available=live is not None)
            if (src.source, src.alpha) != before:
                state.sources_version += 1
                log.info('features now from %s (held-out 1-cos: fused %.4f, student %.4f, combined %.4f) at %d steps',
                         src.source, errors.fused, errors.student, errors.combined, errors.steps)
        return errors

    def train(self, steps: int = 1) -> float:
        """Run ``steps`` training steps synchronously (measuring the feature sources every
        ``holdout_eval_steps``). Returns the mean loss (nan if no field)."""
        losses = []
        for _ in range(steps):
            with self._lock:
                trainer = self.map.trainer
                if trainer is None:
                    break
                t0 = time.perf_counter()
                losses.append(trainer.step()['loss'])
                self._time('train_step', time.perf_counter() - t0)
                due = trainer.steps % max(1, self.config.holdout_eval_steps) == 0
            if due:
                self.measure_sources()
            time.sleep(0)          # let a thread waiting for the lock (query, diagnostics) take it
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
        """Pause (or resume) integration and training. Pausing drops the queued frames and returns
        once the worker's unit of work in flight (an integration or a training step, with its
        held-out measurement) has finished, so the map does not change after it returns: two
        queries after a pause see the same map. Never call it from the worker thread or while
        holding the map lock (the work it waits for takes that lock)."""
        with self._wake:
            self.paused = bool(paused)
            if self.paused:
                self._queue.clear()
            self._wake.notify_all()
        if paused:
            with self._working:        # the worker re-checks ``paused`` under it before any work
                pass

    def _run(self) -> None:
        while self._running:
            frame = None
            with self._wake:
                if self._queue and not self.paused:
                    frame = self._queue.pop()          # newest
                    self._queue.clear()
            idle = True
            try:
                with self._working:                    # a pause waits for this unit of work
                    if self.paused:                    # paused since the frame was taken
                        if frame is not None:
                            self._count('frames_dropped_paused', 1)
                    elif frame is not None:
                        idle = False
                        self.integrate(frame)
                    elif self.map.trainer is not None:
                        idle = False
                        self.train(1)
            except FrameRejected as e:
                log.warning('frame rejected: %s', e)
            except Exception:   # noqa: BLE001 - the worker must survive anything a frame does
                self._count('worker_errors', 1)
                log.exception('mapper worker error')
                time.sleep(0.1)
            if idle:
                with self._wake:
                    self._wake.wait(0.05)

    # ------------------------------------------------------------------------------------------
    # outputs (computed from snapshots, outside the lock)
    # ------------------------------------------------------------------------------------------
    def _snapshot(self):
        with self._lock:
            return self.map.snapshot()

    def _map_version(self) -> tuple:
        """What outputs depend on (map version, training steps, feature-choice version), read without
        the lock (ints of the current map: a training step in flight must not delay a query that the
        cached cloud can answer)."""
        return self.map.output_version

    def cloud(self, force: bool = False) -> FeatureCloud | None:
        """The current feature cloud (cached; re-extracted when the map changed enough; while
        another thread re-extracts, the previous cloud). None before the first keyframe with
        depth (RGB-D: the first keyframe) and, without any depth, before the field exists."""
        return self._clouds.get(self._map_version(), self._snapshot, force)

    def latest_cloud(self) -> FeatureCloud | None:
        """The last extracted cloud as it is (never extracts; None before the first)."""
        return self._clouds.cloud

    def render_features(self, camera: PinholeCamera, T_world_cam, depth: np.ndarray | None = None):
        """Student features seen from a camera (``views.FeatureView``), None before the field exists."""
        snap = self._snapshot()
        return None if snap is None else views.render_features(snap, self.config, camera, T_world_cam, depth)

    def feature_image(self, camera: PinholeCamera, T_world_cam, depth=None) -> np.ndarray | None:
        """PCA colours (h, w, 3) uint8 of the student's features seen from a camera (black where
        invalid); None before the field exists."""
        view = self.render_features(camera, T_world_cam, depth)
        if view is None:
            return None
        pca = self._clouds.pca
        return views.feature_image(view, pca if pca.fitted else FeaturePCA())

    def render_mask(self, result: QueryResult, camera: PinholeCamera, T_world_cam, depth=None) -> np.ndarray | None:
        """2D retrieval: (H, W) bool mask, at the camera's full size, of the queried object
        (``views.retrieval_mask``: the answer's 3D points seen from the camera, on their side of
        the support plane); the surface comes from ``depth`` when given, else from the field. None
        when there is neither."""
        snap = self._snapshot()
        if snap is None:
            return None
        view = views.surface_view(snap, self.config, camera, T_world_cam, depth)
        if view is None:
            return None
        cloud = result.cloud
        geometry = getattr(cloud, 'geometry', None)
        plane = geometry.plane if geometry is not None else None
        if plane is None and snap.field is not None and result.feature_source in ('', 'student'):
            view = views.render_features(snap, self.config, camera, T_world_cam, depth)
        return views.retrieval_mask(view, result, self.query_radius, camera.width, camera.height, plane)

    def _threshold(self, threshold):
        if threshold is None and self.config.query_threshold > 0:
            return self.config.query_threshold
        return threshold

    def _query_cloud(self) -> FeatureCloud:
        cloud = self.cloud()
        if cloud is None or len(cloud) == 0:
            self._refused('empty_map')
            raise QueryError('the map is empty', reason='empty_map')
        return cloud

    def _refused(self, reason: str) -> None:
        self._count('queries_refused')
        self._count(f'queries_refused_{reason}')

    def _answer(self, run, cloud: FeatureCloud) -> QueryResult:
        """Run a query function on ``cloud``, attach the cloud, source and confidence, count refusals."""
        t0 = time.perf_counter()
        try:
            res = run()
        except QueryError as e:
            self._refused(e.reason)
            raise
        finally:
            self._time('query', time.perf_counter() - t0)
        res.cloud = cloud
        res.feature_source = cloud.feature_source
        agreement = self.map.sources.agreement(cloud.feature_source)   # floats of the current map: no lock
        self._count('queries_answered')
        res.confidence = float(np.clip(agreement * res.separation, 0.0, 1.0))
        self.last_result = res
        return res

    def _guards(self) -> dict:
        cfg = self.config
        return dict(max_share=cfg.query_max_share if cfg.query_max_share < 1.0 else None,
                    min_spread=cfg.query_min_spread if cfg.query_min_spread > 0.0 else None)

    def query_point(self, xyz, threshold: float | None = None) -> QueryResult:
        """Object (or support region) at world point ``xyz`` (3,) metres (``cloud.query``: the
        cloud's geometry is respected, whole-scene answers refused). Raises QueryError (with
        ``reason``, counted in ``stats()``) if it can't be answered."""
        cloud = self._query_cloud()
        return self._answer(lambda: query_by_point(
            cloud.xyz, cloud.features, np.asarray(xyz, dtype=np.float64), threshold=self._threshold(threshold),
            radius=self.query_radius, seed_radius=0.75 * self.query_radius, geometry=cloud.geometry,
            **self._guards()), cloud)

    def pixel_point(self, camera: PinholeCamera, T_world_cam, depth, u, v) -> np.ndarray:
        """The world point (3,) metres that pixel (column ``u``, row ``v``; indices of a
        ``camera.width`` x ``camera.height`` image, fractions floored) sees: from ``depth``
        (z-depth metres, registered to the camera, any size; the median of the valid depth in a
        5x5 window) when it has one there, else the first cloud point along the pixel's ray (within
        one voxel of it). Raises QueryError ``outside_image`` / ``no_surface``."""
        try:
            u, v = float(u), float(v)
        except (TypeError, ValueError):
            self._refused('outside_image')
            raise QueryError(f'pixel ({u!r}, {v!r}) is not a pair of numbers', reason='outside_image') from None
        W, H = camera.width, camera.height
        if not (np.isfinite(u) and np.isfinite(v) and 0 <= u < W and 0 <= v < H):
            self._refused('outside_image')
            raise QueryError(f'pixel ({u:g}, {v:g}) is outside the {W}x{H} image', reason='outside_image')
        T = np.asarray(T_world_cam, dtype=np.float64)
        ray = camera_directions(camera, [[np.floor(u) + 0.5, np.floor(v) + 0.5]])[0]     # camera frame, unit z
        if depth is not None:
            d = np.asarray(depth, dtype=np.float32)
            dh, dw = d.shape[:2]
            i, j = int(np.floor(v) * dh / H), int(np.floor(u) * dw / W)
            win = d[max(0, i - 2):i + 3, max(0, j - 2):j + 3]
            ok = valid_depth(win, self.config.min_depth, self.config.max_depth)
            if ok.any():
                return T[:3, :3] @ (ray * float(np.median(win[ok]))) + T[:3, 3]
        cloud = self._query_cloud()
        dw = T[:3, :3] @ (ray / np.linalg.norm(ray))
        rel = cloud.xyz.astype(np.float64) - T[:3, 3]
        t = rel @ dw
        off = np.linalg.norm(rel - t[:, None] * dw[None], axis=1)
        hit = (t > 0) & (off <= self.config.voxel_size)
        if not hit.any():
            self._refused('no_surface')
            raise QueryError(f'pixel ({u:g}, {v:g}) sees no mapped surface', reason='no_surface')
        return cloud.xyz[np.flatnonzero(hit)[np.argmin(t[hit])]].astype(np.float64)

    def query_pixel(self, camera: PinholeCamera, T_world_cam, depth, u, v,
                    threshold: float | None = None) -> QueryResult:
        """The object the pixel (``u``, ``v``) of a camera view sees (``pixel_point``, then
        ``query_point``): the ``~/query`` service's BY_PIXEL mode."""
        return self.query_point(self.pixel_point(camera, T_world_cam, depth, u, v), threshold)

    def query_prototype(self, name: str, threshold: float | None = None) -> QueryResult:
        """Object best matching the saved prototype ``name``. KeyError if unknown."""
        proto = self.prototypes.get(name)
        cloud = self._query_cloud()
        if len(proto) != cloud.dim:
            self._refused('unanswerable')
            raise QueryError(f'prototype {name!r} has {len(proto)} dimensions, the map {cloud.dim}')
        return self._answer(lambda: query_by_prototype(
            cloud.xyz, cloud.features, proto, threshold=self._threshold(threshold), radius=self.query_radius,
            name=name, geometry=cloud.geometry, **self._guards()), cloud)

    def save_prototype(self, name: str, result: QueryResult | None = None) -> str:
        """Store the prototype of ``result`` (default: the last query) under ``name``; returns the
        cleaned name. ValueError (``PrototypeError``) for a bad name, no result or a full store."""
        result = result or self.last_result
        if result is None:
            raise ValueError('no query result to take a prototype from')
        return self.prototypes.save(name, result.prototype)

    def edit(self, result: QueryResult, mode: str = 'remove') -> FeatureCloud:
        """Scene without (``remove``) or only (``extract``) the queried object, from the cloud
        snapshot the query ran on."""
        cloud = result.cloud if result.cloud is not None else self.cloud()
        return edit_cloud(cloud, result, mode)

    def keyframe_poses(self) -> list[np.ndarray]:
        """Copies of the keyframe poses (4, 4), without the lock: slots are replaced, never changed
        in place, so a copy of the list is consistent (a slot being inserted is left out)."""
        return [T.copy() for T in list(self.map.keyframes.poses) if T is not None]

    # ------------------------------------------------------------------------------------------
    # persistence
    # ------------------------------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Write the map atomically to ``path`` (a crash mid-save leaves the old file intact). Only
        copying the map holds the lock; writing the file does not."""
        with self._lock:
            state = encode_map(self.map, self._clouds.pca, self.prototypes.items())
        save_map_file(os.path.expanduser(path), state)

    def load(self, path: str) -> None:
        """Replace the map with the one in ``path``. The new map is built and validated completely
        first (``map_file.decode_map``); on any error (MapFileError) the current one is untouched."""
        decoded = decode_map(load_map_file(os.path.expanduser(path)), self.config, self.device)
        with self._lock:
            self.prototypes.update(decoded.prototypes)        # validated: raises before storing anything
            self.map = decoded.state
            self._clouds = CloudCache(self.config, decoded.pca, decoded.pca_steps)
            self.latest_frame = None
            self._count('maps_loaded', 1)
