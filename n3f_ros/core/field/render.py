"""Differentiable volume rendering of colour, depth and features from a FeatureField.

Rays are ``p(t) = o + t * d`` with ``d`` of unit z in the camera frame, so ``t`` is z-depth in
metres (see ``core.camera.pixel_rays``). Sampling:

* uniform stratified samples between the ray's entry and exit of the scene bounds, plus
* **depth-guided** samples around the measured depth (RGB-D mode), or **importance** samples
  drawn from a no-grad pass over the uniform samples (RGB-only mode, or rays without depth).

Features are composited with *detached* weights (normalised by the opacity), so the feature loss
cannot move geometry.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from n3f_ros.core.camera import PinholeCamera, pixel_grid, pixel_rays
from n3f_ros.core.options import option


@dataclass
class RenderSettings:
    n_uniform: int = option(16, 'stratified samples per ray between its entry and exit of the scene box',
                            range=(2, 512))
    n_extra: int = option(12, 'depth-guided (RGB-D) or importance (RGB-only) samples per ray', range=(0, 512))
    depth_sigma: float = option(0.015, 'spread of the depth-guided samples around the measured depth', 'm',
                                (0.0001, 1.0))
    near: float = option(0.05, 'no sample closer than this z-depth', 'm', (0.0, 10.0))
    feature_weight_min: float = option(1e-3, 'samples with less normalised weight skip the feature head',
                                       range=(0.0, 1.0))


#: rays whose origin or direction coordinates exceed this (metres) are absurd: rendered empty
MAX_RAY_COORD = 1e6


@dataclass
class RenderOut:
    rgb: torch.Tensor            # (N, 3) colour composited over black
    depth: torch.Tensor          # (N,) expected z-depth in metres (un-normalised: sum w t)
    acc: torch.Tensor            # (N,) opacity in [0, 1]
    feat: torch.Tensor | None    # (N, D) opacity-normalised feature (weights detached)
    feat_spread: torch.Tensor | None = None   # (N,) sum_i w_i |f_i - feat|^2 over the ray's samples


def ray_box(origins: torch.Tensor, dirs: torch.Tensor, bounds: torch.Tensor):
    """Slab test. Returns near, far (N,) in ray parameter t, and hit (N,) bool."""
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0 = (bounds[0] - origins) * inv
    t1 = (bounds[1] - origins) * inv
    near = torch.minimum(t0, t1).amax(-1)
    far = torch.maximum(t0, t1).amin(-1)
    return near, far, far > near


def _stratified(near, far, n, perturb: bool, generator=None):
    # near, far (N,) -> (N, n) sorted t
    u = torch.linspace(0.0, 1.0, n + 1, device=near.device)[:-1]
    u = u[None].expand(len(near), n)
    u = u + (torch.rand(u.shape, generator=generator, device=u.device) if perturb else 0.5) / n
    return near[:, None] + (far - near)[:, None] * u


def _importance(t, weights, n, perturb: bool, generator=None):
    """Inverse-CDF samples (N, n) from piecewise-constant weights on intervals of t (N, S)."""
    mids = 0.5 * (t[:, 1:] + t[:, :-1])
    w = weights[:, 1:-1] + 1e-5
    cdf = torch.cumsum(w / w.sum(-1, keepdim=True), -1)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], -1)           # (N, S-1)
    u = torch.rand(len(t), n, generator=generator, device=t.device) if perturb else \
        torch.linspace(0.0, 1.0, n, device=t.device)[None].expand(len(t), n)
    u = u.contiguous()
    idx = torch.searchsorted(cdf, u, right=True).clamp(1, cdf.shape[1] - 1)
    c0, c1 = cdf.gather(1, idx - 1), cdf.gather(1, idx)
    b0, b1 = mids.gather(1, idx - 1), mids.gather(1, idx)
    frac = (u - c0) / torch.where(c1 - c0 < 1e-5, torch.ones_like(c0), c1 - c0)
    return b0 + frac * (b1 - b0)


def composite(sigma, t, dirs_norm, far):
    """Alpha compositing weights (N, S) from densities (N, S) at sorted t (N, S)."""
    delta = torch.cat([t[:, 1:] - t[:, :-1], (far[:, None] - t[:, -1:]).clamp(min=1e-3)], -1)
    alpha = 1.0 - torch.exp(-sigma * delta * dirs_norm[:, None])
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha + 1e-10], -1), -1)[:, :-1]
    return alpha * trans


def render_rays(field, origins: torch.Tensor, dirs: torch.Tensor, settings: RenderSettings,
                depth: torch.Tensor | None = None, perturb: bool = True,
                with_features: bool = True, generator: torch.Generator | None = None,
                feature_spread: bool = False) -> RenderOut:
    """Render N rays (origins, dirs (N, 3) world). ``depth`` (N,) metres, <= 0 where unknown.
    ``generator`` (on the rays' device): the random source of the sample jitter (``perturb``).
    ``feature_spread``: also return ``feat_spread``, the spread of the samples' features around
    the rendered one (weights detached and opacity-normalised as the feature's; samples skipped by
    ``feature_weight_min`` count 0), what ``core/trainer.py`` penalises on rays without depth.
    Rays with a non-finite or absurd origin, direction or depth (beyond :data:`MAX_RAY_COORD`) are
    rendered as empty (zero colour, depth, opacity and feature) instead of producing NaN."""
    ok = (torch.isfinite(origins).all(-1) & torch.isfinite(dirs).all(-1)
          & (origins.abs() < MAX_RAY_COORD).all(-1) & (dirs.abs() < MAX_RAY_COORD).all(-1))
    if not bool(ok.all()):
        out = render_rays(field, torch.where(ok[:, None], origins, 0.0),
                          torch.where(ok[:, None], dirs, torch.tensor([0.0, 0.0, 1.0], device=dirs.device)),
                          settings, None if depth is None else torch.where(ok, depth, 0.0), perturb,
                          with_features, generator, feature_spread)
        z = ok.to(out.acc.dtype)
        return RenderOut(out.rgb * z[:, None], out.depth * z, out.acc * z,
                         None if out.feat is None else out.feat * z[:, None],
                         None if out.feat_spread is None else out.feat_spread * z)
    if depth is not None:
        depth = torch.where(torch.isfinite(depth) & (depth.abs() < MAX_RAY_COORD), depth, torch.zeros_like(depth))
    near, far, hit = ray_box(origins, dirs, field.bounds)
    near = near.clamp(min=settings.near)
    far = torch.where(hit & (far > near), far, near + 1e-3)
    t_uni = _stratified(near, far, settings.n_uniform, perturb, generator)   # (N, U)
    has_depth = depth > 0 if depth is not None else torch.zeros_like(near, dtype=torch.bool)
    t_extra = torch.empty(len(near), settings.n_extra, device=near.device)
    if settings.n_extra > 0:
        if has_depth.any():
            s = settings.depth_sigma
            offs = torch.linspace(-2.5 * s, 2.5 * s, settings.n_extra, device=near.device)[None]
            if perturb:
                offs = offs + (torch.rand(int(has_depth.sum()), settings.n_extra, generator=generator,
                                          device=near.device) - 0.5) \
                    * (5.0 * s / settings.n_extra)
            t_extra[has_depth] = (depth[has_depth, None] + offs).clamp(min=settings.near)
        nd = ~has_depth
        if nd.any():
            with torch.no_grad():
                n, u = int(nd.sum()), settings.n_uniform
                pts = origins[nd, None] + t_uni[nd, :, None] * dirs[nd, None]
                sig = field.density(pts.reshape(-1, 3)).reshape(n, u)
                w = composite(sig, t_uni[nd], dirs[nd].norm(dim=-1), far[nd])
                t_extra[nd] = _importance(t_uni[nd], w, settings.n_extra, perturb, generator)
    t, _ = torch.sort(torch.cat([t_uni, t_extra], -1), -1)             # (N, S)
    n, s = t.shape
    pts = (origins[:, None] + t[..., None] * dirs[:, None]).reshape(-1, 3)   # (N*S, 3)
    sigma, rgb, enc = field.geometry(pts)
    w = composite(sigma.reshape(n, s), t, dirs.norm(dim=-1), far)        # (N, S)
    acc = w.sum(-1)
    out_rgb = (w[..., None] * rgb.reshape(n, s, 3)).sum(1)
    out_depth = (w * t).sum(-1)
    out_feat = spread = None
    if with_features:
        # features only where the (detached) weight matters: most samples are in free space
        wd = (w.detach() / (acc.detach()[:, None] + 1e-6)).reshape(-1)
        keep = wd > settings.feature_weight_min
        feat = torch.zeros(n * s, field.config.feature_dim, device=pts.device)
        if keep.any():
            feat[keep] = field.features(pts[keep], enc[keep].detach())
        out_feat = (wd[:, None] * feat).reshape(n, s, -1).sum(1)                # (N, D)
        if feature_spread:
            dev = ((feat.reshape(n, s, -1) - out_feat[:, None]) ** 2).sum(-1)    # (N, S)
            spread = ((wd * keep).reshape(n, s) * dev).sum(-1)                  # (N,)
    return RenderOut(out_rgb, out_depth, acc, out_feat, spread)


@torch.no_grad()
def render_image(field, camera: PinholeCamera, T_world_cam, settings: RenderSettings,
                 width: int | None = None, with_features: bool = True, chunk: int = 4096):
    """Render a whole view at ``width`` (aspect kept; default camera width).

    Returns dict of numpy arrays: rgb (h, w, 3) float32, depth (h, w) metres (expected depth
    divided by opacity), acc (h, w), feat (h, w, D) float32 (if with_features), and the camera
    used (scaled to (w, h)).
    """
    if width is not None and width != camera.width:
        height = max(1, int(round(camera.height * width / camera.width)))
        camera = camera.scaled(width, height)
    w, h = camera.size
    o, d = pixel_rays(camera, T_world_cam, pixel_grid(w, h))
    o = torch.as_tensor(o, dtype=torch.float32, device=field.device)
    d = torch.as_tensor(d, dtype=torch.float32, device=field.device)
    outs = [render_rays(field, o[i:i + chunk], d[i:i + chunk], settings, perturb=False,
                        with_features=with_features) for i in range(0, len(o), chunk)]
    acc = torch.cat([x.acc for x in outs]).reshape(h, w)
    res = {
        'rgb': torch.cat([x.rgb for x in outs]).reshape(h, w, 3).cpu().numpy(),
        'depth': (torch.cat([x.depth for x in outs]).reshape(h, w) / acc.clamp(min=1e-6)).cpu().numpy(),
        'acc': acc.cpu().numpy(),
        'camera': camera,
    }
    if with_features:
        res['feat'] = torch.cat([x.feat for x in outs]).reshape(h, w, -1).cpu().numpy()
    return res


def to_tensor(a, device, dtype=torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)
