"""Joint bilateral upsampling of a teacher's patch features, guided by the frame's colour and depth.

A ViT gives one feature per 14-16 px patch; a patch that straddles an object's border carries a
blend of the object and what lies behind it, and bilinear interpolation spreads that blend over
the neighbouring pixels: a halo of object-like features on the table around every object, which
the fused layer and the student then learn in 3D. Joint bilateral upsampling (Kopf et al., 2007)
gives each output pixel a weighted mean of the patch features around it, weighted by distance
*and* by how much the pixel looks like each patch (colour, depth), so a table pixel takes the
table's patches and an object pixel the object's.

For an output grid ``factor`` times the patch grid (``(h * f, w * f)``), output pixel ``p`` with
centre ``x_p`` in patch units:

    F(p) = normalize( sum_q  F_q  exp(-|x_p - c_q|^2 / 2 s^2)
                              exp(-|I_p - I_q|^2 / 2 sc^2)  exp(-(d_p - d_q)^2 / 2 (sd d_p)^2) )

over the ``(2 r + 1)^2`` patches ``q`` nearest ``p`` (``r`` = :attr:`UpsampleConfig.radius`), with
``c_q`` the patch centre, ``I`` colour in [0, 1] (RGB), ``d`` depth in metres. ``I_p``, ``d_p``
are the means over the output pixel's footprint in the frame and ``I_q``, ``d_q`` over the patch's
(the patch feature describes its whole footprint). Depth is relative (``sd`` a share of ``d_p``:
a depth sensor's noise grows with range) and only counts where both means are known (pixels
with depth 0 are unknown).

Without any depth (no depth image, or none of its pixels valid: RGB-only, before stereo) the
output is bilinear between the patches, at the same ``(h * f, w * f)`` size, unless
``colour_only`` is set: colour alone guides texture edges as well as object borders, and measured
worse than bilinear (below). An RGB-only keyframe is upsampled again, from the patch grid it
keeps, with colour and its stereo depth once stereo has triangulated it (``MapState.reguide``).
On the pybullet benchmark, DINOv2, RGB-only (stereo), the student's features-only mIoU: colour
alone 0.681, bilinear 0.567, bilinear then stereo-guided 0.691 (answers 0.604 / 0.713 / 0.699;
``bench/RESULTS.md``).

Measured on the quality benchmark's 24 training views (fused teacher over views, features-only
mIoU with the benchmark's automatic threshold / averaged over thresholds / best threshold per
object; `/tmp` experiment at the defaults, radius 1): DINOv2 on pybullet, 64-D PCA features,
bilinear 0.574 / 0.572 / 0.700, upsampled 0.704 / 0.696 / 0.782 (duck 0.77 -> 0.94, jenga 0.65
-> 0.86, lego 0.02 -> 0.29); the synthetic teacher on the open3d scene 0.279 / 0.362 / 0.685 ->
0.400 / 0.474 / 0.752. Depth alone as the guide did worse than bilinear (0.327 on pybullet: a
slanted table's depth changes across a patch), colour alone a little worse than both (0.487).
Radius 2 gave the same as radius 1 at twice the cost; factor 2 about half the gain.

Cost: ``(2 r + 1)^2`` weighted sums of D-dim features per output pixel: 22 ms per frame measured
for a 23x17 DINOv2 grid at factor 4, D = 64, on 2 CPU threads.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from n3f_ros.core.options import option
from n3f_ros.core.raster import valid_depth
from n3f_ros.core.teacher.base import TeacherInputError, l2_normalize


@dataclass
class UpsampleConfig:
    """Settings of :func:`guided_upsample` (node parameters ``upsample.*``)."""

    factor: int = option(4, 'teacher feature grids are upsampled this many times, guided by colour and depth, '
                         'before keyframes store them (1 = off: bilinear between patches)', range=(1, 16))
    radius: int = option(1, 'patches on each side of an output pixel that contribute', 'patches', (1, 4))
    sigma_space: float = option(0.6, 'spatial weight: Gaussian width', 'patches', (0.05, 10.0))
    sigma_colour: float = option(0.1, 'colour weight: Gaussian width in RGB (0..1 per channel)', range=(0.001, 10.0))
    sigma_depth: float = option(0.04, 'depth weight: Gaussian width as a share of the pixel depth',
                                range=(0.001, 10.0))
    colour_only: bool = option(False, 'frames without depth (RGB-only) are upsampled guided by colour alone; '
                               'off: bilinear between patches (colour alone measured worse than bilinear)')


def _footprint_means(img: torch.Tensor, valid: torch.Tensor, size: tuple[int, int]):
    """Means of ``img`` (C, H, W) over the valid pixels (H, W bool) of each cell of a ``size``
    (h, w) grid -> (h, w, C), and whether a cell had any valid pixel (h, w)."""
    v = valid[None].float()
    num = F.adaptive_avg_pool2d((img * v)[None], size)[0]
    den = F.adaptive_avg_pool2d(v[None], size)[0]
    return (num / den.clamp_min(1e-12)).permute(1, 2, 0), den[0] > 0


def guided_upsample(feats: torch.Tensor, rgb, depth=None, config: UpsampleConfig | None = None) -> torch.Tensor:
    """Patch features ``(h, w, D)`` of a frame -> ``(h * factor, w * factor, D)`` L2-normalised
    float32 on the features' device (see the module docstring). ``rgb``: the frame's ``(H, W, 3)``
    uint8 colour; ``depth``: its ``(H, W)`` depth in metres (0 = unknown) or None. ``factor`` 1
    returns the features normalised. Raises :class:`TeacherInputError` on inconsistent input."""
    cfg = config or UpsampleConfig()
    if not isinstance(feats, torch.Tensor) or feats.ndim != 3 or not feats.is_floating_point():
        raise TeacherInputError('features to upsample must be a floating-point (h, w, D) tensor')
    h, w, _ = feats.shape
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < h or rgb.shape[1] < w:
        raise TeacherInputError(f'guide image must be (H, W, 3) and at least the feature grid {h}x{w}, '
                                f'got {rgb.shape}')
    if depth is not None and np.shape(depth) != rgb.shape[:2]:
        raise TeacherInputError(f'guide depth {np.shape(depth)} does not match the image {rgb.shape[:2]}')
    f = int(cfg.factor)
    feats = feats.float()
    if f <= 1:
        return l2_normalize(feats)
    dev = feats.device
    oh, ow = h * f, w * f
    if depth is not None:
        depth = np.asarray(depth, dtype=np.float32)
        known = torch.as_tensor(valid_depth(depth), device=dev)
        if not bool(known.any()):
            depth = None
    if depth is None and not cfg.colour_only:
        # pixel centres in patch units are (i + 0.5) / f - 0.5: what align_corners=False samples
        up = F.interpolate(feats.permute(2, 0, 1)[None], size=(oh, ow), mode='bilinear', align_corners=False)
        return l2_normalize(up[0].permute(1, 2, 0))
    colour = torch.as_tensor(rgb, device=dev).permute(2, 0, 1).float()[None] / 255.0      # (1, 3, H, W)
    col_out = F.adaptive_avg_pool2d(colour, (oh, ow))[0].permute(1, 2, 0)                   # (oh, ow, 3)
    col_q = F.adaptive_avg_pool2d(colour, (h, w))[0].permute(1, 2, 0)                       # (h, w, 3)
    if depth is not None:
        d = torch.where(known, torch.as_tensor(depth, device=dev), torch.zeros((), device=dev))[None]
        d_out, k_out = _footprint_means(d, known, (oh, ow))                                 # (oh, ow, 1)
        d_q, k_q = _footprint_means(d, known, (h, w))                                       # (h, w, 1)
        d_out, d_q = d_out[..., 0], d_q[..., 0]
    # output pixel centres in patch units, and the nearest patch
    cy = (torch.arange(oh, device=dev) + 0.5) / f - 0.5
    cx = (torch.arange(ow, device=dev) + 0.5) / f - 0.5
    by, bx = torch.round(cy).long(), torch.round(cx).long()
    r = int(cfg.radius)
    taps, logws = [], []
    for dy in range(-r, r + 1):
        qy = (by + dy).clamp(0, h - 1)
        for dx in range(-r, r + 1):
            qx = (bx + dx).clamp(0, w - 1)
            dist2 = (cy - qy.float())[:, None] ** 2 + (cx - qx.float())[None, :] ** 2       # (oh, ow)
            logw = -dist2 / (2 * cfg.sigma_space ** 2)
            logw = logw - ((col_out - col_q[qy][:, qx]) ** 2).sum(-1) / (2 * cfg.sigma_colour ** 2)
            if depth is not None:
                both = k_out & k_q[qy][:, qx]
                rel = (d_out - d_q[qy][:, qx]) / d_out.clamp_min(1e-6)
                logw = logw - torch.where(both, rel ** 2 / (2 * cfg.sigma_depth ** 2), torch.zeros_like(rel))
            taps.append((qy, qx))
            logws.append(logw)
    logws = torch.stack(logws)                                                              # (T, oh, ow)
    weights = torch.exp(logws - logws.amax(0, keepdim=True))   # the best tap weighs 1: no underflow
    acc = torch.zeros(oh, ow, feats.shape[2], device=dev)
    for (qy, qx), wt in zip(taps, weights):
        acc += wt[..., None] * feats[qy][:, qx]
    return l2_normalize(acc / weights.sum(0)[..., None])
