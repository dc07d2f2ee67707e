"""What a map is, and read-only copies of it.

:class:`MapState` holds the map proper — keyframes (images, depth, teacher features, poses), the
teacher-feature projector, the field and its trainer, the stereo cache of RGB-only keyframes —
and its lifecycle: created empty, grown keyframe by keyframe, the field created once enough
keyframes bound the scene, replaced whole by a load. It is not thread safe: the ``Mapper`` holds
its lock around every call.

:class:`MapSnapshot` is a private copy of what the outputs read (the field's weights, the
keyframes' depth, colour, cameras and poses), taken under the lock in milliseconds so that cloud
extraction, feature images and masks compute outside it while training goes on (issue: outputs
must never stall queries or training).
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
from n3f_ros.core.mapping.config import MapperConfig
from n3f_ros.core.scene_bounds import bounds_from_depth, bounds_from_views
from n3f_ros.core.teacher import FeatureProjector
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

    version:   (map version, training steps) it was taken at.
    field:     copy of the field (no gradients).
    use_depth: the field is supervised by stored depth (measured or stereo).
    measured:  the stored depth is measured (RGB-D) rather than triangulated.
    depth:     (K, h, w) float32 keyframe z-depth in metres (0 = unknown), numpy.
    rgb:       (K, h, w, 3) uint8 keyframe colour.
    cameras:   K PinholeCamera of the stored keyframes; poses: K T_world_cam (4, 4).
    """

    version: tuple
    field: FeatureField
    use_depth: bool
    measured: bool
    depth: np.ndarray
    rgb: np.ndarray
    cameras: tuple
    poses: tuple

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
        self.keyframes = KeyframeBuffer(KeyframeConfig(cfg.max_keyframes, cfg.keyframe_translation,
                                                       cfg.keyframe_rotation, cfg.keyframe_width), device)
        # PCA of teacher features fitted on the first keyframe, then fixed (keyframe features must share a basis)
        self.projector = FeatureProjector(out_dim=cfg.feature_dim, fit_frames=1)
        self.field: FeatureField | None = None
        self.trainer: Trainer | None = None
        self.stereo = KeyframeStereo(cfg.stereo_config, cfg.min_depth, cfg.max_depth)
        self.measured_depth = False           # some keyframe came with a depth image
        self.version = 0                      # bumped on every keyframe insertion
        self._snapshot: MapSnapshot | None = None

    @property
    def train_steps(self) -> int:
        return self.trainer.steps if self.trainer is not None else 0

    # --- growth ---------------------------------------------------------------------------------
    def add_keyframe(self, frame: Frame, feats: torch.Tensor) -> int:
        """Store ``frame`` with its projected teacher features (h, w, D). Returns the slot."""
        slot = self.keyframes.add(frame, feats)
        self.version += 1
        self.measured_depth |= frame.depth is not None
        return slot

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

    def make_trainer(self, use_depth: bool) -> Trainer:
        cfg = self.config
        tcfg = TrainerConfig(rays_per_step=cfg.rays_per_step, learning_rate=cfg.learning_rate,
                             use_depth=use_depth, render=cfg.render_config)
        return Trainer(self.field, self.keyframes, tcfg, seed=cfg.seed)

    # --- reading --------------------------------------------------------------------------------
    def snapshot(self) -> MapSnapshot | None:
        """A copy for the outputs (None before the field exists); reused while the map and the
        training step count are unchanged. Takes milliseconds (copies ~20 MB at the defaults)."""
        if self.field is None:
            return None
        version = (self.version, self.train_steps)
        if self._snapshot is not None and self._snapshot.version == version:
            return self._snapshot
        k = len(self.keyframes)
        kf = self.keyframes
        self._snapshot = MapSnapshot(
            version=version, field=clone_field(self.field), use_depth=bool(self.trainer.config.use_depth),
            measured=self.measured_depth, depth=kf.depth[:k].cpu().numpy().copy(),
            rgb=kf.rgb[:k].cpu().numpy().copy(), cameras=tuple(kf.cameras[:k]),
            poses=tuple(T.copy() for T in kf.poses[:k]))
        return self._snapshot


def scaled_camera(camera: PinholeCamera, width: int) -> PinholeCamera:
    """``camera`` scaled to at most ``width`` pixels wide (aspect kept)."""
    w = min(int(width), camera.width)
    return camera.scaled(w, max(1, int(round(camera.height * w / camera.width))))
