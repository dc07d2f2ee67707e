"""What a map is, and read-only copies of it.

:class:`MapState` holds the map proper — keyframes (images, depth, teacher features, poses), the
teacher-feature projector, the fused-teacher layer (``fused.py``), the field and its trainer, the
stereo cache of RGB-only keyframes, the choice of answering features (``sources.py``) — and its
lifecycle: created empty, grown keyframe by keyframe (each keyframe fused into the fused layer as
soon as it has depth: at once with measured depth, when stereo gives it depth otherwise), the field
created once enough keyframes bound the scene, replaced whole by a load. It is not thread safe: the
``Mapper`` holds its lock around every call.

:class:`MapSnapshot` is a private copy of what the outputs read (the field's weights, the fused
layer, the keyframes' depth, colour, cameras and poses, the feature choice), taken under the lock
in milliseconds so that cloud extraction, feature images and masks compute outside it while
training goes on (issue: outputs must never stall queries or training). It exists from the first
fused keyframe on; its ``field`` is None until the field is created.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch

from n3f_ros.core.camera import PinholeCamera, backproject_depth
from n3f_ros.core.field.model import FeatureField, FieldConfig
from n3f_ros.core.frame import Frame
from n3f_ros.core.keyframe_depth import KeyframeStereo
from n3f_ros.core.keyframes import KeyframeBuffer, KeyframeConfig
from n3f_ros.core.mapping.best_student import BestStudent
from n3f_ros.core.mapping.config import MapperConfig
from n3f_ros.core.mapping.fused import FusedLayer
from n3f_ros.core.mapping.sources import FALLBACK_KEYFRAMES, FeatureSources, HeldOutKeyframe
from n3f_ros.core.scene_bounds import bounds_from_depth, bounds_from_views
from n3f_ros.core.teacher import FeatureProjector
from n3f_ros.core.teacher.upsample import guided_upsample
from n3f_ros.core.trainer import Trainer, TrainerConfig

log = logging.getLogger(__name__)


def clone_field(field: FeatureField) -> FeatureField:
    """An independent copy of ``field`` (same bounds, config, grid implementation and weights)."""
    bounds = field.bounds.detach().cpu().numpy()
    config = FieldConfig(**{**asdict(field.config), 'grid': field.grid_impl})
    copy = FeatureField(bounds, config, device=field.device)
    copy.load_state_dict(field.state_dict())
    return copy.eval().requires_grad_(False)


@dataclass(frozen=True)
class MapSnapshot:
    """A consistent, private copy of the map for the outputs (see the module docstring).

    version:   (map version, training steps, feature-choice version) it was taken at.
    field:     the answering student (``MapState.served_field``: the kept copy, else a copy of the
               live field; no gradients), None before the field exists.
    use_depth: the field is supervised by stored depth (measured or stereo).
    measured:  the stored depth is measured (RGB-D) rather than triangulated.
    depth:     (K, h, w) float32 keyframe z-depth in metres (0 = unknown), numpy.
    rgb:       (K, h, w, 3) uint8 keyframe colour.
    cameras:   K PinholeCamera of the stored keyframes; poses: K T_world_cam (4, 4).
    fused:     copy of the fused-teacher layer (None before a keyframe had depth).
    sources:   copy of the feature choice (``FeatureSources``).
    """

    version: tuple
    field: FeatureField | None
    use_depth: bool
    measured: bool
    depth: np.ndarray
    rgb: np.ndarray
    cameras: tuple
    poses: tuple
    fused: FusedLayer | None = None
    sources: FeatureSources | None = None

    def depth_points(self, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Back-projected stored depth of every keyframe: points (N, 3) world metres, rgb (N, 3) uint8."""
        pts, cols = [], []
        for d, rgb, cam, T in zip(self.depth, self.rgb, self.cameras, self.poses):
            p, idx = backproject_depth(d, cam, T, stride=stride)
            pts.append(p)
            cols.append(rgb.reshape(-1, 3)[idx])
        if not pts:
            return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
        return np.concatenate(pts), np.concatenate(cols)


class MapState:
    """The map (see the module docstring). ``config``: the engine settings; ``device``: torch device."""

    def __init__(self, config: MapperConfig, device: torch.device):
        cfg = self.config = config
        self.device = device
        self.keyframes = KeyframeBuffer(make_keyframe_config(cfg), device)
        # PCA of teacher features fitted on the first keyframe, then fixed (keyframe features must share a basis)
        self.projector = FeatureProjector(out_dim=cfg.feature_dim, fit_frames=1)
        self.field: FeatureField | None = None
        self.trainer: Trainer | None = None
        self.stereo = KeyframeStereo(cfg.stereo_config, cfg.min_depth, cfg.max_depth)
        self.measured_depth = False           # some keyframe came with a depth image
        self.version = 0                      # bumped on every keyframe insertion
        self.fused: FusedLayer | None = None  # created with the first keyframe that has depth
        self.fused_orders: set[int] = set()   # insertion counters of the keyframes fused
        self.sources = FeatureSources(cfg.feature_source)
        self.sources_version = 0              # bumped when the answering source changes
        self.best = BestStudent()             # the student copy that answers (best_student.py)
        self._snapshot: MapSnapshot | None = None

    def served_field(self) -> FeatureField | None:
        """The student that answers (``best_student``): the kept copy with the lowest held-out
        error since the keyframes last changed, else the live field (None before it exists)."""
        return self.best.served(self.field, self.version)

    def keep_student(self, live_copy: FeatureField, live_error: float, kept_error: float, steps: int,
                     version: int) -> bool:
        """Record a held-out measurement of the live field's copy (and of the kept copy) taken at
        map ``version`` (``BestStudent.update``); ignored when a keyframe arrived since. Returns
        True when the copy now answers."""
        if version != self.version:
            return False
        took = self.best.update(live_copy, live_error, kept_error, steps, version)
        if took:
            self._snapshot = None             # outputs must read the new copy
        return took

    @property
    def train_steps(self) -> int:
        return self.trainer.steps if self.trainer is not None else 0

    # --- growth ---------------------------------------------------------------------------------
    def add_keyframe(self, frame: Frame, patch: torch.Tensor) -> int:
        """Store ``frame`` with its projected teacher patch grid ``patch`` (ph, pw, D) and the
        features upsampled from it, guided by the frame's colour and depth (``core/teacher/upsample.py``;
        ``reguide`` does it again once stereo gives an RGB-only keyframe depth), and fuse it when it
        has depth. Returns the slot."""
        feats = guided_upsample(patch, frame.rgb, frame.depth, self.config.upsample_config)   # (ph f, pw f, D)
        slot = self.keyframes.add(frame, feats, patch)
        self.version += 1
        self.measured_depth |= frame.depth is not None
        self.fuse(slot)
        return slot

    def reguide(self, slots) -> int:
        """Upsample the teacher features of the keyframes in ``slots`` again from their stored
        patch grid, guided by their colour and their depth as it is now (called when stereo has
        written an RGB-only keyframe's depth: it was stored upsampled bilinearly, with no depth to
        guide it; ``core/teacher/upsample.py``). Keyframes without a patch grid are left as they
        are. Returns the keyframes whose features were replaced."""
        kf, cfg = self.keyframes, self.config.upsample_config
        if cfg.factor <= 1 or kf.patch is None:
            return 0
        n = 0
        for s in slots:
            if not bool(kf.has_patch[s]):
                continue
            feats = guided_upsample(kf.patch[s].float(), kf.rgb[s].cpu().numpy(), kf.depth[s].cpu().numpy(), cfg)
            kf.set_feat(s, feats)
            n += 1
        if n:
            self.version += 1                 # the student's targets changed
        return n

    def fuse(self, slot: int) -> int:
        """Fuse the keyframe in ``slot`` into the fused layer if it has depth and was not fused yet
        (each keyframe once: re-triangulated stereo depth is not fused again). Returns the voxels
        it touched (0 if nothing was done)."""
        kf = self.keyframes
        order = kf.order[slot]
        if order in self.fused_orders:
            return 0
        depth = kf.depth[slot].cpu().numpy()
        if not (depth > 0).any():
            return 0
        cam, T = kf.cameras[slot], kf.poses[slot]
        pts, idx = backproject_depth(depth, cam, T)
        w, h = kf.size
        u = torch.as_tensor((idx % w + 0.5) / w, dtype=torch.float32, device=kf.device)
        v = torch.as_tensor((idx // w + 0.5) / h, dtype=torch.float32, device=kf.device)
        slots = torch.full((len(idx),), slot, dtype=torch.long, device=kf.device)
        feats = kf.bilinear_feat(slots, u, v).cpu().numpy()                 # (N, D)
        rgb = kf.rgb[slot].cpu().numpy().reshape(-1, 3)[idx]
        if self.fused is None:
            self.fused = FusedLayer(self.config.voxel_size, feats.shape[1], self.config.fused_max_voxels)
        n = self.fused.integrate(pts, feats, rgb, T[:3, 3], order)
        self.fused_orders.add(order)
        self.version += 1
        return n

    def fuse_all(self) -> int:
        """Fuse every stored keyframe with depth that is not fused yet (after a load of an older
        map, or after stereo gave keyframes depth). Returns the keyframes fused."""
        return sum(1 for s in range(len(self.keyframes)) if self.fuse(s))

    def configured_bounds(self) -> np.ndarray | None:
        """Parameter ``scene_bounds`` as (2, 3) metres, or None when it is all zero (automatic)."""
        b = np.asarray(self.config.scene_bounds, dtype=np.float64).reshape(2, 3)
        return b if np.any(b != 0) else None

    def stereo_bounds(self) -> np.ndarray | None:
        """Box (2, 3) metres limiting stereo depth: the field's bounds, or before the field exists
        the configured bounds or the looked-at box of the keyframes so far (None if undefined)."""
        if self.field is not None:
            return self.field.bounds.cpu().numpy()
        try:
            b = self.configured_bounds()
            return b if b is not None else bounds_from_views(self.keyframes.poses)
        except ValueError:
            return None

    def maybe_create_field(self) -> bool:
        """Create the field and trainer once the scene can be bounded. True when created now."""
        if self.field is not None:
            return False
        cfg = self.config
        bounds = self.configured_bounds()
        if bounds is None:
            if len(self.keyframes) < cfg.bounds_keyframes:
                return False
            if self.measured_depth:
                bounds = bounds_from_depth(self.keyframes.depth_points(stride=2)[0])
            else:
                bounds = bounds_from_views(self.keyframes.poses)
        fcfg = FieldConfig(**{**asdict(cfg.field_config), 'feature_dim': int(self.keyframes.feat.shape[-1])})
        with torch.random.fork_rng(devices=[]):      # the same seed gives the same initial field
            torch.manual_seed(cfg.seed)
            self.field = FeatureField(bounds, fcfg, device=self.device)
        # stored depth (measured, or triangulated for RGB-only keyframes) supervises the field
        self.trainer = self.make_trainer(self.measured_depth or cfg.stereo_depth)
        log.info('field created with bounds %s (%s hash grid)', np.round(bounds, 3).tolist(), self.field.grid_impl)
        return True

    def measurement_keyframes(self) -> list[HeldOutKeyframe]:
        """Copies of the keyframes ``sources.measure_fields`` measures on (call under the lock;
        milliseconds): the held-out keyframes that were fused; when none was, every held-out one
        (colour alone: measured by rendering; depth not fused yet is left out, as zeros, since the
        fused layer's leave-one-out needs the keyframe's own observation in it); when none is
        held out, the latest fused keyframes."""
        kf = self.keyframes
        with_depth = [s for s in range(len(kf)) if kf.order[s] in self.fused_orders]
        held = [s for s in with_depth if kf.held_out(s)] or kf.held_out_slots()
        slots = held or sorted(with_depth, key=lambda s: kf.order[s])[-FALLBACK_KEYFRAMES:]
        out = []
        for s in slots:
            depth = kf.depth[s].cpu().numpy().copy()
            if kf.order[s] not in self.fused_orders:
                depth[:] = 0.0
            out.append(HeldOutKeyframe(depth, kf.rgb[s].cpu().numpy().copy(), kf.feat[s].float().cpu().numpy(),
                                       kf.cameras[s], kf.poses[s].copy(), kf.order[s], kf.held_out(s)))
        return out

    def make_trainer(self, use_depth: bool) -> Trainer:
        cfg = self.config
        tcfg = TrainerConfig(rays_per_step=cfg.rays_per_step, learning_rate=cfg.learning_rate,
                             lr_half_life=cfg.lr_half_life, lr_min_factor=cfg.lr_min_factor,
                             use_depth=use_depth, render=cfg.render_config,
                             patch_weight=cfg.patch_loss_weight, patch_share=cfg.patch_loss_share)
        return Trainer(self.field, self.keyframes, tcfg, seed=cfg.seed)

    # --- reading --------------------------------------------------------------------------------
    @property
    def output_version(self) -> tuple:
        """What outputs depend on: (map version, training steps, feature-choice version)."""
        return self.version, self.train_steps, self.sources_version

    def snapshot(self) -> MapSnapshot | None:
        """A copy for the outputs (None before the field exists and before any keyframe was fused);
        reused while the map, the training step count and the feature choice are unchanged. Takes
        milliseconds (copies ~20 MB at the defaults)."""
        if self.field is None and (self.fused is None or len(self.fused) == 0):
            return None
        version = self.output_version
        if self._snapshot is not None and self._snapshot.version == version:
            return self._snapshot
        k = len(self.keyframes)
        kf = self.keyframes
        sources = FeatureSources(self.sources.forced)
        sources.source, sources.alpha, sources.last = self.sources.source, self.sources.alpha, self.sources.last
        self._snapshot = MapSnapshot(
            version=version, field=self._served_copy(),
            use_depth=bool(self.trainer.config.use_depth) if self.trainer is not None else True,
            measured=self.measured_depth, depth=kf.depth[:k].cpu().numpy().copy(),
            rgb=kf.rgb[:k].cpu().numpy().copy(), cameras=tuple(kf.cameras[:k]),
            poses=tuple(T.copy() for T in kf.poses[:k]),
            fused=self.fused.copy() if self.fused is not None else None, sources=sources)
        return self._snapshot

    def _served_copy(self) -> FeatureField | None:
        """A field the outputs may read outside the lock: the kept copy itself (never changed in
        place), else a clone of the live field."""
        if self.field is None:
            return None
        kept = self.best.current(self.version)
        return kept.field if kept is not None else clone_field(self.field)


def make_keyframe_config(cfg: MapperConfig) -> KeyframeConfig:
    """The keyframe buffer's settings from the engine's."""
    return KeyframeConfig(cfg.max_keyframes, cfg.keyframe_translation, cfg.keyframe_rotation, cfg.keyframe_width,
                          holdout_every=cfg.holdout_every)


def scaled_camera(camera: PinholeCamera, width: int) -> PinholeCamera:
    """``camera`` scaled to at most ``width`` pixels wide (aspect kept)."""
    w = min(int(width), camera.width)
    return camera.scaled(w, max(1, int(round(camera.height * w / camera.width))))
