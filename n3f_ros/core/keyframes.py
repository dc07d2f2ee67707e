"""Keyframe selection and the bounded keyframe buffer the trainer samples rays from.

A frame becomes a keyframe when its camera is farther than ``min_translation`` metres or
``min_rotation_deg`` degrees from *every* stored keyframe (so revisiting a place adds nothing).
Keyframes are stored downsampled to ``width`` pixels (all the same size, camera intrinsics scaled
accordingly), with uint8 colour, float32 depth (0 = unknown) and float16 teacher features on a
fixed patch grid. When full, the most redundant keyframe (closest pose to another one, never the
newest) is replaced, so memory stays bounded over a long stream.

Next to the (upsampled) features each keyframe can keep the teacher's own **patch grid** (one
feature per ViT patch, before ``teacher/upsample.py``): :meth:`KeyframeBuffer.sample_patches`
draws rays spread over whole patches so the trainer can pool the student's features over a patch
and compare the pool with the patch's token (``trainer.py``: the patch loss).

With ``holdout_every = n >= 2`` every n-th keyframe (insertion counter ``c`` with ``c % n == n - 1``)
is *held out* of feature learning: its rays carry ``feat_weight`` 0, so the student never fits its
teacher features and the map can measure how well it predicts them (``mapping/sources.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from n3f_ros.core.camera import PinholeCamera, invert_pose, rotation_angle
from n3f_ros.core.frame import Frame
from n3f_ros.core.raster import clean_depth, resize_nearest


@dataclass
class KeyframeConfig:
    max_keyframes: int = 64
    min_translation: float = 0.05      # metres
    min_rotation_deg: float = 5.0      # degrees
    width: int = 160                   # stored width in pixels (aspect of the first frame kept)
    newest_fraction: float = 0.25      # share of rays sampled from the newest keyframe
    holdout_every: int = 0             # every n-th keyframe is held out of feature learning (0, 1 = none)


@dataclass
class RayBatch:
    origins: torch.Tensor    # (N, 3) world, metres
    dirs: torch.Tensor       # (N, 3) world, unit z in the camera frame
    rgb: torch.Tensor        # (N, 3) float in [0, 1]
    depth: torch.Tensor      # (N,) z-depth metres, 0 = unknown
    feat: torch.Tensor       # (N, D) teacher features (bilinear on the patch grid)
    feat_weight: torch.Tensor | None = None   # (N,) 0 for rays of held-out keyframes, else 1

    def __len__(self) -> int:
        return int(self.origins.shape[0])

    @staticmethod
    def cat(a: 'RayBatch', b: 'RayBatch') -> 'RayBatch':
        """The rays of ``a`` then those of ``b`` (a missing feat_weight counts as 1)."""
        def w(x):
            return x.feat_weight if x.feat_weight is not None else torch.ones(len(x), device=x.origins.device)
        names = ('origins', 'dirs', 'rgb', 'depth', 'feat')
        return RayBatch(*(torch.cat([getattr(a, k), getattr(b, k)]) for k in names),
                        feat_weight=torch.cat([w(a), w(b)]))


@dataclass
class PatchBatch:
    """Rays spread over ``P`` teacher patches, ``S`` rays each (uniform inside the patch's footprint),
    and the patches' own teacher features."""
    rays: RayBatch               # P * S rays, patch after patch
    target: torch.Tensor         # (P, D) the teacher's patch feature (unit norm)
    per_patch: int               # S



def pose_distance(T_a, T_b) -> tuple[float, float]:
    """(translation metres, rotation degrees) between two poses."""
    d = invert_pose(T_a) @ np.asarray(T_b)
    return float(np.linalg.norm(d[:3, 3])), float(np.degrees(rotation_angle(d[:3, :3])))


class KeyframeBuffer:
    def __init__(self, config: KeyframeConfig | None = None, device='cpu'):
        self.config = config or KeyframeConfig()
        self.device = torch.device(device)
        self.clear()

    def clear(self) -> None:
        self.size: tuple[int, int] | None = None        # (w, h) of stored images
        self.feat_size: tuple[int, int] | None = None   # (fw, fh) of stored feature grids
        self.poses: list[np.ndarray] = []               # T_world_cam per slot
        self.cameras: list[PinholeCamera] = []          # scaled to self.size
        self.stamps: list[float] = []
        self.order: list[int] = []                      # insertion counter per slot (newest = max)
        self._count = 0
        self.rgb = self.depth = self.feat = None
        self.patch: torch.Tensor | None = None          # (K, ph, pw, D) float16 teacher patch grids
        self.patch_size: tuple[int, int] | None = None  # (pw, ph)
        self.has_patch: torch.Tensor | None = None      # (K,) bool: the slot's patch grid is stored
        self._T = self._K = None

    def __len__(self) -> int:
        return len(self.poses)

    @property
    def inserted(self) -> int:
        """Keyframes inserted since the buffer was cleared (or the count a loaded map had)."""
        return self._count

    @property
    def has_depth(self) -> bool:
        return self.depth is not None and bool((self.depth[:len(self)] > 0).any())

    def held_out(self, slot: int) -> bool:
        """The keyframe in ``slot`` is kept out of feature learning (see the module docstring)."""
        n = self.config.holdout_every
        return n > 1 and self.order[slot] % n == n - 1

    def held_out_slots(self) -> list[int]:
        return [s for s in range(len(self)) if self.held_out(s)]

    def is_novel(self, T_world_cam) -> bool:
        cfg = self.config
        for T in self.poses:
            dt, dr = pose_distance(T, T_world_cam)
            if dt < cfg.min_translation and dr < cfg.min_rotation_deg:
                return False
        return True

    def _allocate(self, frame: Frame, feats: torch.Tensor) -> None:
        W, H = frame.size
        w = min(self.config.width, W)
        h = max(1, int(round(H * w / W)))
        self.size = (w, h)
        self.feat_size = (feats.shape[1], feats.shape[0])
        K, D = self.config.max_keyframes, feats.shape[2]
        dev = self.device
        self.rgb = torch.zeros(K, h, w, 3, dtype=torch.uint8, device=dev)
        self.depth = torch.zeros(K, h, w, dtype=torch.float32, device=dev)
        self.feat = torch.zeros(K, self.feat_size[1], self.feat_size[0], D, dtype=torch.float16, device=dev)
        self._T = torch.zeros(K, 4, 4, dtype=torch.float32, device=dev)
        self._K = torch.zeros(K, 4, dtype=torch.float32, device=dev)   # fx fy cx cy
        self.has_patch = torch.zeros(K, dtype=torch.bool, device=dev)

    def _allocate_patches(self, pw: int, ph: int) -> None:
        K, D = self.config.max_keyframes, self.feat.shape[-1]
        self.patch_size = (pw, ph)
        self.patch = torch.zeros(K, ph, pw, D, dtype=torch.float16, device=self.device)

    def _slot_to_replace(self) -> int:
        """Most redundant keyframe: nearest to another keyframe (never the newest)."""
        P = np.stack([T[:3, 3] for T in self.poses])
        Z = np.stack([T[:3, 2] for T in self.poses])
        dist = np.linalg.norm(P[:, None] - P[None], axis=-1) + 0.2 * (1 - Z @ Z.T)
        np.fill_diagonal(dist, np.inf)
        score = dist.min(1)
        score[int(np.argmax(self.order))] = np.inf
        return int(np.argmin(score))

    def add(self, frame: Frame, feats: torch.Tensor, patch: torch.Tensor | None = None) -> int:
        """Store ``frame`` with its teacher features (h, w, D) and, optionally, the teacher's own
        patch grid ``patch`` (ph, pw, D) they were upsampled from (kept only when its size matches
        the buffer's first one). Returns the slot used."""
        if self.rgb is None:
            self._allocate(frame, feats)
        w, h = self.size
        if len(self) < self.config.max_keyframes:
            slot = len(self)
            self.poses.append(None)
            self.cameras.append(None)
            self.stamps.append(0.0)
            self.order.append(0)
        else:
            slot = self._slot_to_replace()
        cam = frame.camera.scaled(w, h)
        rgb = torch.as_tensor(frame.rgb, device=self.device).permute(2, 0, 1)[None].float()
        self.rgb[slot] = F.interpolate(rgb, size=(h, w), mode='area')[0].permute(1, 2, 0).round().to(torch.uint8)
        if frame.depth is not None:
            d = torch.as_tensor(resize_nearest(clean_depth(frame.depth), w, h), device=self.device)
            self.depth[slot] = d
        else:
            self.depth[slot] = 0
        self.set_feat(slot, feats)
        self.has_patch[slot] = False
        if patch is not None:
            if self.patch is None:
                self._allocate_patches(patch.shape[1], patch.shape[0])
            if (patch.shape[1], patch.shape[0]) == self.patch_size and patch.shape[2] == self.patch.shape[-1]:
                self.patch[slot] = patch.to(self.device, torch.float16)
                self.has_patch[slot] = True
        self._T[slot] = torch.as_tensor(frame.T_world_cam, dtype=torch.float32)
        self._K[slot] = torch.tensor([cam.fx, cam.fy, cam.cx, cam.cy])
        self.poses[slot] = frame.T_world_cam.copy()
        self.cameras[slot] = cam
        self.stamps[slot] = frame.stamp
        self.order[slot] = self._count
        self._count += 1
        return slot

    def set_feat(self, slot: int, feats: torch.Tensor) -> None:
        """Replace the teacher features (h, w, D) of ``slot`` (bilinearly resized to the buffer's
        feature grid when their size differs; stored float16)."""
        f = feats.to(self.device, torch.float32)
        if (f.shape[1], f.shape[0]) != self.feat_size:
            f = F.interpolate(f.permute(2, 0, 1)[None], size=self.feat_size[::-1], mode='bilinear',
                              align_corners=False)[0].permute(1, 2, 0)
        self.feat[slot] = f.to(torch.float16)

    def sample(self, n: int, generator: torch.Generator | None = None) -> RayBatch:
        """``n`` random rays from the stored keyframes (a share from the newest one)."""
        k = len(self)
        if k == 0:
            raise RuntimeError('no keyframes to sample from')
        dev = self.device
        w, h = self.size
        n_new = int(n * self.config.newest_fraction) if k > 1 else 0
        slots = torch.randint(0, k, (n - n_new,), generator=generator).to(dev)
        slots = torch.cat([slots, torch.full((n_new,), int(np.argmax(self.order)), device=dev)])
        u = torch.rand(n, generator=generator).to(dev) * w          # continuous pixel coords
        v = torch.rand(n, generator=generator).to(dev) * h
        return self._rays(slots, u, v)

    def patch_slots(self) -> list[int]:
        """Slots whose patch grid is stored and that teach features (not held out)."""
        if self.has_patch is None:
            return []
        return [s for s in range(len(self)) if bool(self.has_patch[s]) and not self.held_out(s)]

    def sample_patches(self, n_patches: int, per_patch: int,
                       generator: torch.Generator | None = None) -> PatchBatch | None:
        """``n_patches`` random teacher patches of the keyframes that have them (:meth:`patch_slots`),
        ``per_patch`` rays each inside the patch's footprint (the patch grid tiles the image),
        stratified: with ``per_patch = k * k`` one ray jittered in each of k x k sub-cells, so the
        rays' mean estimates the patch's mean with little variance (a variance the patch loss would
        otherwise pay for features that vary inside a patch). None when no keyframe has a grid."""
        eligible = self.patch_slots()
        if not eligible or n_patches <= 0 or per_patch <= 0:
            return None
        dev = self.device
        w, h = self.size
        pw, ph = self.patch_size
        pick = torch.randint(0, len(eligible), (n_patches,), generator=generator)
        slots_p = torch.as_tensor(eligible, dtype=torch.long)[pick].to(dev)
        col = torch.randint(0, pw, (n_patches,), generator=generator).to(dev)
        row = torch.randint(0, ph, (n_patches,), generator=generator).to(dev)
        n = n_patches * per_patch
        slots = slots_p.repeat_interleave(per_patch)
        k = max(1, math.isqrt(per_patch))
        cell = torch.arange(per_patch, device=dev) % (k * k)                       # sub-cell of each ray
        sx = ((cell % k).repeat(n_patches) + torch.rand(n, generator=generator).to(dev)) / k   # [0, 1) in the patch
        sy = ((cell // k).repeat(n_patches) + torch.rand(n, generator=generator).to(dev)) / k
        x = (col.repeat_interleave(per_patch) + sx) / pw                          # [0, 1) in the image
        y = (row.repeat_interleave(per_patch) + sy) / ph
        rays = self._rays(slots, x * w, y * h)
        return PatchBatch(rays, self.patch[slots_p, row, col].float(), per_patch)

    def _rays(self, slots: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> RayBatch:
        """Rays of keyframe ``slots`` through continuous pixel coordinates ``u``, ``v`` (N,)."""
        w, h = self.size
        ui, vi = u.long().clamp(0, w - 1), v.long().clamp(0, h - 1)
        K = self._K[slots]
        d_cam = torch.stack([(u - K[:, 2]) / K[:, 0], (v - K[:, 3]) / K[:, 1], torch.ones_like(u)], -1)
        T = self._T[slots]
        dirs = (T[:, :3, :3] @ d_cam[..., None])[..., 0]
        origins = T[:, :3, 3]
        rgb = self.rgb[slots, vi, ui].float() / 255.0
        depth = self.depth[slots, vi, ui]
        feat = self.bilinear_feat(slots, u / w, v / h)
        held = torch.tensor([self.held_out(s) for s in range(len(self))], dtype=torch.bool, device=self.device)
        return RayBatch(origins, dirs, rgb, depth, feat, (~held[slots]).float())

    def bilinear_feat(self, slots, x, y) -> torch.Tensor:
        """Teacher features at normalised image coords x, y in [0, 1) -> (N, D) float32."""
        fw, fh = self.feat_size
        gx = (x * fw - 0.5).clamp(0, fw - 1)
        gy = (y * fh - 0.5).clamp(0, fh - 1)
        x0, y0 = gx.floor().long(), gy.floor().long()
        x1, y1 = (x0 + 1).clamp(max=fw - 1), (y0 + 1).clamp(max=fh - 1)
        ax, ay = (gx - x0)[:, None], (gy - y0)[:, None]
        f = self.feat
        top = f[slots, y0, x0].float() * (1 - ax) + f[slots, y0, x1].float() * ax
        bot = f[slots, y1, x0].float() * (1 - ax) + f[slots, y1, x1].float() * ax
        return top * (1 - ay) + bot * ay

    def depth_points(self, stride: int = 1):
        """Back-projected stored depth of all keyframes: (points (N, 3), rgb (N, 3) uint8)."""
        from n3f_ros.core.camera import backproject_depth
        pts, cols = [], []
        for s in range(len(self)):
            d = self.depth[s].cpu().numpy()
            p, idx = backproject_depth(d, self.cameras[s], self.poses[s], stride=stride)
            pts.append(p)
            cols.append(self.rgb[s].cpu().numpy().reshape(-1, 3)[idx])
        if not pts:
            return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
        return np.concatenate(pts), np.concatenate(cols)

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        k = len(self)
        if k == 0:
            return {'count': 0}
        out = {
            'count': k, 'size': list(self.size), 'feat_size': list(self.feat_size),
            'rgb': self.rgb[:k].cpu(), 'depth': self.depth[:k].cpu(), 'feat': self.feat[:k].cpu(),
            'T': torch.as_tensor(np.stack(self.poses)), 'stamps': torch.tensor(self.stamps, dtype=torch.float64),
            'order': torch.tensor(self.order, dtype=torch.int64),
            'K': torch.tensor([[c.fx, c.fy, c.cx, c.cy] for c in self.cameras], dtype=torch.float64),
        }
        if self.patch is not None:
            out.update(patch_size=list(self.patch_size), patch=self.patch[:k].cpu(), has_patch=self.has_patch[:k].cpu())
        return out

    def load_state_dict(self, state: dict) -> None:
        self.clear()
        k = int(state['count'])
        if k == 0:
            return
        if k > self.config.max_keyframes:
            raise ValueError(f'map holds {k} keyframes, buffer allows {self.config.max_keyframes}')
        w, h = (int(v) for v in state['size'])
        D = state['feat'].shape[-1]
        fw, fh = (int(v) for v in state['feat_size'])
        for name, t, shape in (('rgb', state['rgb'], (k, h, w, 3)), ('depth', state['depth'], (k, h, w)),
                               ('feat', state['feat'], (k, fh, fw, D)), ('T', state['T'], (k, 4, 4)),
                               ('K', state['K'], (k, 4))):
            if tuple(t.shape) != shape:
                raise ValueError(f'keyframe {name} has shape {tuple(t.shape)}, expected {shape}')
        dummy = Frame(np.zeros((h, w, 3), np.uint8), PinholeCamera(1, 1, 0, 0, w, h), np.eye(4))
        self.config.width = w
        self._allocate(dummy, torch.zeros(fh, fw, D))
        self.rgb[:k] = state['rgb'].to(self.device)
        self.depth[:k] = state['depth'].to(self.device)
        self.feat[:k] = state['feat'].to(self.device)
        Ts = state['T'].numpy()
        Ks = state['K'].numpy()
        self._T[:k] = torch.as_tensor(Ts, dtype=torch.float32)
        self._K[:k] = torch.as_tensor(Ks, dtype=torch.float32)
        self.poses = [T.copy() for T in Ts]
        self.cameras = [PinholeCamera(*K, w, h) for K in Ks]
        self.stamps = state['stamps'].tolist()
        self.order = state['order'].tolist()
        if state.get('patch') is not None:           # maps saved before patch grids were kept have none
            pw, ph = (int(v) for v in state['patch_size'])
            if tuple(state['patch'].shape) != (k, ph, pw, D) or tuple(state['has_patch'].shape) != (k,):
                raise ValueError(f"keyframe patch has shape {tuple(state['patch'].shape)}, expected {(k, ph, pw, D)}")
            self._allocate_patches(pw, ph)
            self.patch[:k] = state['patch'].to(self.device)
            self.has_patch[:k] = state['has_patch'].to(self.device, torch.bool)
        self._count = max(self.order) + 1
