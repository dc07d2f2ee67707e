"""Multi-view plane-sweep stereo: z-depth for RGB-only keyframes from their posed neighbours.

Without a depth camera the field has only colour to learn geometry from, and a hash-grid field
learns geometry from colour far slower than it learns features: after the few hundred training
steps a CPU affords it is still fog (the RGB-only query IoU of issue #3). The keyframes are posed,
so their depth can be triangulated directly, as multi-view stereo does: for every pixel of a
reference keyframe, hypothesise z-depths, warp the source keyframes onto the reference through
each hypothesis, and keep the depth at which the image windows agree best. Agreement is the
zero-mean normalised cross-correlation (ZNCC) of ``window`` x ``window`` grey-level windows, which
ignores exposure and gain changes; per hypothesis the best half of the sources are averaged, so a
source that sees the pixel occluded does not veto it. Hypotheses are swept coarse (uniform in
inverse depth between the near and far planes of the scene) then fine (around each pixel's coarse
winner), and the fine optimum is refined to sub-plane precision with a parabola.

A pixel keeps depth 0 (unknown) when its window has too little texture, its best agreement is
below ``min_score``, its best coarse hypothesis is not clearly better than a distant one
(repetitive texture), or fewer than ``min_sources`` sources see it. The trainer treats those
pixels as it treats RGB-only rays; the rest are supervised like measured depth.

Conventions: z-depth in metres along the OpenCV optical axis (x right, y down, z forward),
poses ``T_world_cam`` (4, 4), pixel centres at (u + 0.5, v + 0.5), images (H, W).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from n3f_ros.core.camera import PinholeCamera, camera_directions, invert_pose
from n3f_ros.core.options import option


@dataclass
class StereoConfig:
    num_planes: int = option(48, 'coarse depth hypotheses of the plane sweep, uniform in inverse depth',
                             range=(4, 512))
    refine_planes: int = option(9, 'fine hypotheses per pixel, spanning +-1 coarse step', range=(3, 64))
    window: int = option(5, 'side of the (odd) ZNCC window', 'px', (3, 31))
    min_score: float = option(0.6, 'ZNCC (-1..1) of the best half of the sources a pixel needs', range=(-1.0, 1.0))
    min_texture: float = option(0.02, 'standard deviation of grey level (0..1) a window needs', range=(0.0, 1.0))
    min_peak_margin: float = option(0.05, 'best coarse score minus the best one >= 3 planes away',
                                    range=(0.0, 2.0))
    max_sources: int = option(4, 'source keyframes per reference keyframe', range=(1, 16))
    min_sources: int = option(2, 'sources that must see a pixel (1 when only one exists)', range=(1, 16))
    target_angle_deg: float = option(10.0, 'preferred triangulation angle at the scene', 'deg', (0.1, 90.0))
    min_angle_deg: float = option(2.0, 'sources with a smaller triangulation angle are not used', 'deg',
                                  (0.0, 90.0))
    max_angle_deg: float = option(40.0, 'sources with a larger angle (or optical axes further apart) are not '
                                  'used', 'deg', (0.1, 180.0))
    plane_chunk: int = option(16, 'hypotheses warped at once (bounds memory at large sizes)', range=(1, 512))

    def __post_init__(self):
        if self.window < 3 or self.window % 2 == 0:
            raise ValueError(f'stereo window must be odd and >= 3, got {self.window}')
        if self.num_planes < 4 or self.refine_planes < 3:
            raise ValueError('stereo needs >= 4 coarse and >= 3 fine hypotheses')
        if not 1 <= self.min_sources <= self.max_sources:
            raise ValueError(f'need 1 <= min_sources ({self.min_sources}) <= max_sources ({self.max_sources})')


def grey(rgb: torch.Tensor) -> torch.Tensor:
    """(H, W, 3) uint8 or float [0, 1] -> (H, W) float32 luma in [0, 1]."""
    x = rgb.float()
    if rgb.dtype == torch.uint8:
        x = x / 255.0
    return x @ torch.tensor([0.299, 0.587, 0.114], device=x.device)


def camera_rays(camera: PinholeCamera, device) -> torch.Tensor:
    """(H, W, 3) float32 ray directions through the pixel centres, camera frame, unit z (a ray
    times a z-depth is the 3D point)."""
    return torch.as_tensor(camera_directions(camera), dtype=torch.float32, device=device)


def triangulation_angle(T_world_ref, T_world_src, depth: float) -> float:
    """Degrees between the rays from both camera centres to the point ``depth`` metres along the
    reference camera's optical axis."""
    T_r, T_s = np.asarray(T_world_ref), np.asarray(T_world_src)
    p = T_r[:3, 3] + depth * T_r[:3, 2]
    a, b = T_r[:3, 3] - p, T_s[:3, 3] - p
    c = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def select_sources(poses: list, ref: int, depth_hint: float, config: StereoConfig) -> list[int]:
    """Indices of up to ``max_sources`` poses to match keyframe ``ref`` against, best first.

    Good sources see the scene (``depth_hint`` metres in front of the reference) under a
    triangulation angle near ``target_angle_deg``, within [min_angle_deg, max_angle_deg], with
    optical axes no further apart than ``max_angle_deg``.
    """
    cand = []
    z_ref = np.asarray(poses[ref])[:3, 2]
    for i, T in enumerate(poses):
        if i == ref or T is None:
            continue
        axes = math.degrees(math.acos(float(np.clip(z_ref @ np.asarray(T)[:3, 2], -1.0, 1.0))))
        ang = triangulation_angle(poses[ref], T, depth_hint)
        if config.min_angle_deg <= ang <= config.max_angle_deg and axes <= config.max_angle_deg:
            cand.append((abs(ang - config.target_angle_deg), i))
    return [i for _, i in sorted(cand)[:config.max_sources]]


def depth_range(camera: PinholeCamera, T_world_cam, bounds, min_depth: float, max_depth: float):
    """(near, far) z-depth metres of the axis-aligned box ``bounds`` (2, 3) seen from the camera,
    clipped to [min_depth, max_depth]."""
    b = np.asarray(bounds, dtype=np.float64).reshape(2, 3)
    corners = np.array([[b[i, 0], b[j, 1], b[k, 2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    T_cam_world = invert_pose(T_world_cam)
    z = corners @ T_cam_world[:3, :3].T[:, 2] + T_cam_world[2, 3]
    near = float(np.clip(z.min(), min_depth, max_depth))
    far = float(np.clip(z.max(), min_depth, max_depth))
    if far <= near * 1.01:
        raise ValueError(f'the scene bounds are not in front of the camera (z {z.min():.2f}..{z.max():.2f} m)')
    return near, far


class PlaneSweepStereo:
    """Depth of one reference image from posed source images (all on one torch device)."""

    def __init__(self, config: StereoConfig | None = None):
        self.config = config or StereoConfig()
        self._norm: dict = {}             # (H, W, device) -> 1 / pixels in each window (H, W)

    def _box(self, x: torch.Tensor) -> torch.Tensor:
        """Window means of every channel: (P, C, H, W) -> (P, C, H, W), windows clipped at the
        border (a grouped convolution: ~2x faster than avg_pool2d on a CPU)."""
        w, C, H, W = self.config.window, x.shape[1], x.shape[2], x.shape[3]
        k = torch.ones(C, 1, w, w, dtype=x.dtype, device=x.device)
        key = (H, W, x.device)
        if key not in self._norm:
            ones = torch.ones(1, 1, H, W, dtype=x.dtype, device=x.device)
            self._norm[key] = 1.0 / F.conv2d(ones, k[:1], padding=w // 2)[0, 0]
        return F.conv2d(x, k, padding=w // 2, groups=C) * self._norm[key]

    def _zncc(self, ref_stats, src: torch.Tensor, rays: torch.Tensor, R: torch.Tensor, t: torch.Tensor,
              K_src: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """ZNCC (P, H, W) of the reference with ``src`` (Hs, Ws) warped through per-pixel
        z-depths ``depth`` (P, H, W); -1 where the window leaves the source image."""
        ref, m_r, v_r = ref_stats
        Hs, Ws = src.shape
        fx, fy, cx, cy = K_src
        out = []
        for d in depth.split(self.config.plane_chunk):
            X = d[..., None] * rays                                        # (p, H, W, 3) ref camera
            Xs = X @ R.T + t                                               # (p, H, W, 3) src camera
            z = Xs[..., 2].clamp(min=1e-6)
            gx = 2.0 * (fx * Xs[..., 0] / z + cx) / Ws - 1.0
            gy = 2.0 * (fy * Xs[..., 1] / z + cy) / Hs - 1.0
            grid = torch.stack([gx, gy], -1)                                # (p, H, W, 2)
            warped = F.grid_sample(src[None, None].expand(len(d), 1, Hs, Ws), grid, mode='bilinear',
                                   padding_mode='border', align_corners=False)[:, 0]
            inside = ((gx.abs() <= 1) & (gy.abs() <= 1) & (Xs[..., 2] > 1e-3)).float()
            m_s, m_ss, m_rs, m_in = self._box(torch.stack([warped, warped * warped, warped * ref, inside],
                                                          1)).unbind(1)
            cov = m_rs - m_r * m_s
            v_s = (m_ss - m_s * m_s).clamp(min=0)
            zncc = cov / torch.sqrt(v_r * v_s + 1e-8)
            out.append(torch.where(m_in > 0.999, zncc, torch.full_like(zncc, -1.0)))
        return torch.cat(out)

    def _aggregate(self, ref_stats, sources, depth: torch.Tensor, keep: int):
        """Mean of the best ``keep`` source scores per hypothesis (P, H, W), and per hypothesis the
        number of sources that see it."""
        scores = torch.stack([self._zncc(ref_stats, *s, depth) for s in sources])   # (S, P, H, W)
        seen = (scores > -1).sum(0)
        return scores.topk(keep, dim=0).values.mean(0), seen

    @torch.no_grad()
    def compute(self, ref_grey: torch.Tensor, ref_camera: PinholeCamera, T_world_ref,
                src_greys: list[torch.Tensor], src_cameras: list[PinholeCamera], T_world_srcs: list,
                near: float, far: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Depth (H, W) metres (0 = unknown) and best score (H, W) of the reference image.

        ``ref_grey``/``src_greys``: (H, W) float grey levels in [0, 1]; cameras sized like them;
        ``near``/``far``: z-depth range of the hypotheses, metres.
        """
        cfg = self.config
        if not src_greys:
            raise ValueError('stereo needs at least one source image')
        if not 0 < near < far:
            raise ValueError(f'need 0 < near < far, got {near}, {far}')
        dev = ref_grey.device
        H, W = ref_grey.shape
        if (W, H) != ref_camera.size:
            raise ValueError(f'reference image is {W}x{H} but its camera is {ref_camera.size}')
        rays = camera_rays(ref_camera, dev)                                 # (H, W, 3) unit z
        ref = ref_grey[None].float()
        m_r, m_rr = self._box(torch.stack([ref, ref * ref], 1))[0]
        m_r, v_r = m_r[None], (m_rr - m_r * m_r).clamp(min=0)[None]
        ref_stats = (ref, m_r, v_r)
        sources = []
        for g, cam, T in zip(src_greys, src_cameras, T_world_srcs):
            T_src_ref = invert_pose(T) @ np.asarray(T_world_ref, dtype=np.float64)
            sources.append((g.float(), rays,
                            torch.as_tensor(T_src_ref[:3, :3], dtype=torch.float32, device=dev),
                            torch.as_tensor(T_src_ref[:3, 3], dtype=torch.float32, device=dev),
                            (cam.fx, cam.fy, cam.cx, cam.cy)))
        keep = max(1, math.ceil(len(sources) / 2))
        need = min(cfg.min_sources, len(sources))

        # coarse: fronto-parallel planes uniform in inverse depth
        inv = torch.linspace(1.0 / near, 1.0 / far, cfg.num_planes, device=dev)
        score, _ = self._aggregate(ref_stats, sources, (1.0 / inv)[:, None, None].expand(-1, H, W), keep)
        best, idx = score.max(0)                                           # (H, W)
        planes = torch.arange(cfg.num_planes, device=dev)[:, None, None]
        far_off = (planes - idx[None]).abs() >= 3
        margin = best - torch.where(far_off, score, torch.full_like(score, -1.0)).amax(0)

        # fine: per pixel, refine_planes hypotheses spanning +-1 coarse step around the winner
        step = float(inv[0] - inv[1])
        offs = torch.linspace(-step, step, cfg.refine_planes, device=dev)[:, None, None]
        inv_f = (inv[idx][None] + offs).clamp(min=0.5 / far)                # (R, H, W)
        score_f, seen = self._aggregate(ref_stats, sources, 1.0 / inv_f, keep)
        best_f, j = score_f.max(0)
        # sub-hypothesis parabola through the winner and its neighbours
        jc = j.clamp(1, cfg.refine_planes - 2)
        s0 = score_f.gather(0, (jc - 1)[None])[0]
        s1 = score_f.gather(0, jc[None])[0]
        s2 = score_f.gather(0, (jc + 1)[None])[0]
        den = s0 - 2 * s1 + s2
        shift = torch.where(den < -1e-6, 0.5 * (s0 - s2) / den, torch.zeros_like(den)).clamp(-1, 1)
        inv_best = inv_f.gather(0, jc[None])[0] + shift * float(offs[1, 0, 0] - offs[0, 0, 0])
        depth = 1.0 / inv_best.clamp(min=1e-6)

        texture = torch.sqrt(v_r[0])
        n_seen = seen.gather(0, j[None])[0]
        ok = ((best_f >= cfg.min_score) & (texture >= cfg.min_texture) & (margin >= cfg.min_peak_margin)
              & (n_seen >= need) & (depth >= near) & (depth <= far))
        return torch.where(ok, depth, torch.zeros_like(depth)), best_f



@torch.no_grad()
def consistent_views(depth: torch.Tensor, camera: PinholeCamera, T_world_cam, other_depths: list[torch.Tensor],
                     other_cameras: list[PinholeCamera], other_poses: list, rel_tol: float = 0.02) -> torch.Tensor:
    """Per pixel of ``depth`` (H, W) metres, the number of other depth maps that agree with it.

    A pixel's 3D point agrees with another view when it projects inside that view, in front of it,
    onto a known depth within ``rel_tol`` (relative) of the point's own z-depth there — the
    geometric consistency check of multi-view stereo fusion: a wrong match rarely lands on the
    same surface in an independently matched view. Returns (H, W) int64 counts (0 where depth is 0).
    """
    dev = depth.device
    H, W = depth.shape
    if (W, H) != camera.size:
        raise ValueError(f'depth is {W}x{H} but its camera is {camera.size}')
    X = camera_rays(camera, dev) * depth[..., None]                      # (H, W, 3) camera frame
    count = torch.zeros(H, W, dtype=torch.int64, device=dev)
    valid = depth > 0
    for d_o, cam, T in zip(other_depths, other_cameras, other_poses):
        T_o_r = invert_pose(T) @ np.asarray(T_world_cam, dtype=np.float64)
        R = torch.as_tensor(T_o_r[:3, :3], dtype=torch.float32, device=dev)
        t = torch.as_tensor(T_o_r[:3, 3], dtype=torch.float32, device=dev)
        Xo = X @ R.T + t
        z = Xo[..., 2]
        zs = z.clamp(min=1e-6)
        ui = torch.floor(cam.fx * Xo[..., 0] / zs + cam.cx).long()
        vi = torch.floor(cam.fy * Xo[..., 1] / zs + cam.cy).long()
        Ho, Wo = d_o.shape
        inside = valid & (z > 1e-3) & (ui >= 0) & (ui < Wo) & (vi >= 0) & (vi < Ho)
        d_there = d_o[vi.clamp(0, Ho - 1), ui.clamp(0, Wo - 1)]
        count += (inside & (d_there > 0) & ((d_there - z).abs() <= rel_tol * z)).long()
    return count
