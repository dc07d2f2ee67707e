"""Online distillation of teacher features into the field (N3F), one optimisation step at a time.

Loss per step over rays sampled from the keyframes:

* colour: MSE between rendered and keyframe colour;
* depth (RGB-D mode): L1 between rendered and measured z-depth, plus an opacity term pulling
  rays with a measurement to full opacity; samples are depth-guided;
* feature: squared distance between the rendered student feature (composited with detached
  weights) and the teacher feature at that pixel, weighted by the detached opacity (and 0 on rays
  of held-out keyframes, see ``keyframes.py``);
* feature spread (colour-only maps: the trainer has no depth at all; weight ``w_feat_spread``):
  the spread ``sum_i w_i |f_i - f|^2`` of each ray's sample features around the rendered one,
  detached weights. With weight 1 the two terms are exactly ``sum_i w_i |f_i - t|^2``: *every*
  sample along the ray is fitted to the pixel's feature, by its share of the ray, instead of only
  their composite. Without depth the early geometry is fog spread along each ray, and a composite
  can be right with every sample wrong: with the composite alone the field fitted its rendered
  features ever better while its features at the true surface points got worse (DINOv2 colour-
  only, open3d scene: features-only mIoU 0.587 at 250 steps, 0.484 at 1500, bench/RESULTS.md stop
  23). Fitted per sample, a point's feature is the weighted vote of the pixels whose rays cross
  it, from every view: consistent only where the rays meet, at the surface (a 3D multi-view vote,
  as the fused layer is with depth). Weight 0.25 (measured, bench/RESULTS.md stop 25): the curve
  rises on both scenes (open3d 0.318 -> 0.512, pybullet 0.421 -> 0.465; 2D mAP 0.296 -> 0.455
  and 0.548 -> 0.614 at the end); weight 1 rose too but slowly (open3d 0.136 -> 0.393: the fog's
  occluded samples vote as well). Maps with depth (measured or stereo) keep the composite alone:
  their samples are concentrated at the depth.

* patch (``patch_weight`` > 0, keyframes with the teacher's patch grid): a share
  (``patch_share``) of the rays is drawn as groups of :data:`RAYS_PER_PATCH` spread uniformly over
  one teacher patch each (``KeyframeBuffer.sample_patches``); the student's rendered features of
  a group, averaged with the detached opacities and normalised, are compared with the patch's
  token by the same squared distance. This is the teacher's own forward model (a ViT token
  describes its whole patch; the synthetic teacher is exactly an average over its cells), so a
  patch that straddles a small object and the table asks only that the *mean* over the patch be
  the blend, not that every pixel be it: seen from many views whose patches fall differently on
  the object, the pure features satisfy all of them (multi-view super-resolution, as FeatUp's
  learned downsampler does in 2D). The per-pixel term runs on the other rays, on the upsampled
  features, unchanged. Off by default (``MapperConfig.patch_loss_weight`` 0). On the toy of
  test/core/test_patch_loss.py it lifts a sub-patch square's feature from cos 0.35 to 0.54. On
  the quality benchmark with the synthetic teacher (a pooling teacher exactly; open3d scene,
  RGB-D, weight 1) it un-blends the shapes one or two teacher cells wide: the student's
  features-only curve rises (0.531 -> 0.607, without the loss it falls 0.701 -> 0.483) and beats
  the fused teacher by +0.21. With DINOv2 (pybullet RGB-D) weight 1 costs 0.03 features-only
  mIoU and 0.20 2D mAP, and the held-out error says so too (0.122 vs 0.100; synthetic: 0.419 vs
  0.423, the right way round for both); with a held-out measurement in the patch domain (an
  experiment) the answering student was worse as well (0.590 vs 0.691). A ViT's token is not the
  mean of per-pixel features, and the product's teacher is a ViT, so the loss stays off
  (bench/RESULTS.md, stops 23 and 25). Nor can the held-out error choose it online: with a
  per-pixel and a patch feature branch trained side by side on the same rays it preferred the
  per-pixel one for the synthetic teacher as well (0.396 vs 0.410), whose curve then fell as
  before, and the shared rays cost DINOv2 0.03 mIoU (stop 26; the code is kept as a patch in
  bench/results/objective_auto/).

RGB-only mode ignores stored depth: geometry comes from colour alone, with importance sampling.

Learning rate: ``learning_rate`` while keyframes arrive; once the keyframe set stops changing it
halves every ``lr_half_life`` steps down to ``lr_min_factor`` of it (:func:`lr_factor`), and a
new keyframe restores it. (Stereo depth of RGB-only keyframes changes only within the insertion
that triggered it — ``Mapper.integrate`` triangulates and fuses before the next training step —
so the restart at the insertion covers it too.) An online map never ends training, and at a
constant rate the field's features keep wandering around the optimum of the same keyframes: on
the open3d scene (DINOv2, RGB-only) the features-only mIoU of successive evaluations moved
0.615, 0.587, 0.642, 0.603 while the held-out error kept falling. Decay makes the late field settle (issue 9 §5).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from n3f_ros.core.field.model import FeatureField
from n3f_ros.core.field.render import RenderSettings, render_rays
from n3f_ros.core.keyframes import KeyframeBuffer, RayBatch

#: rays drawn inside one teacher patch for the patch loss (their mean estimates the patch's mean)
RAYS_PER_PATCH = 16


@dataclass
class TrainerConfig:
    """What one trainer runs with. The product's values (rays, rate and its schedule, depth use)
    have their defaults in ``MapperConfig`` alone (``MapState.make_trainer`` copies them), so they
    have none here; the loss weights belong to the trainer only."""
    rays_per_step: int
    learning_rate: float
    lr_half_life: int                # steps; 0 = constant learning rate (see the module docstring)
    lr_min_factor: float             # lowest rate, as a share of learning_rate
    use_depth: bool
    render: RenderSettings
    w_rgb: float = 1.0
    w_depth: float = 0.5
    w_opacity: float = 0.05
    w_feat: float = 1.0
    w_feat_spread: float = 0.25      # colour-only maps: spread of the samples' features (docstring)
    patch_weight: float = 0.0        # weight of the patch loss (0 = off; see the module docstring)
    patch_share: float = 0.5         # share of rays_per_step drawn as whole patches


def patch_loss(feat: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, per_patch: int) -> torch.Tensor:
    """Squared distance between each patch's pooled student feature and its teacher token.

    feat (P * S, D) rendered features of the rays of P patches, S = ``per_patch`` each in order;
    weight (P * S,) their detached opacities (0 on held-out keyframes); target (P, D) unit tokens.
    The pool is the weighted mean over a patch's rays, normalised; a patch counts by its mean
    weight (a patch the field does not cover yet, or of a held-out keyframe, counts 0)."""
    P = target.shape[0]
    f = feat.reshape(P, per_patch, -1)
    w = weight.reshape(P, per_patch)
    pooled = (f * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp(min=1e-6)     # (P, D)
    pooled = pooled / pooled.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    wp = w.mean(1)                                                                   # (P,)
    return (wp * ((pooled - target) ** 2).sum(-1)).sum() / wp.sum().clamp(min=1e-6)


def lr_factor(steps_static: int, half_life: int, min_factor: float) -> float:
    """Learning-rate multiplier after ``steps_static`` steps without a new keyframe: halves every
    ``half_life`` steps, never below ``min_factor`` (``half_life`` 0: always 1)."""
    if half_life <= 0:
        return 1.0
    return max(float(min_factor), 0.5 ** (max(0, steps_static) / half_life))


class Trainer:
    def __init__(self, field_: FeatureField, keyframes: KeyframeBuffer, config: TrainerConfig, seed: int = 0):
        self.field = field_
        self.keyframes = keyframes
        self.config = config
        self.optimizer = torch.optim.Adam(field_.parameters(), lr=self.config.learning_rate,
                                          betas=(0.9, 0.99), eps=1e-15)
        self.generator = torch.Generator().manual_seed(seed)                          # ray sampling (CPU)
        self.jitter = torch.Generator(device=field_.device).manual_seed(seed + 1)     # sample jitter
        self.steps = 0
        self._schedule = (-1, 0)     # (keyframes inserted, step) when the keyframe set last changed
        self.last: dict[str, float] = {}
        self.seconds = 0.0

    def step(self) -> dict[str, float]:
        """One optimisation step. Returns the loss terms (floats)."""
        t0 = time.perf_counter()
        cfg = self.config
        self._set_learning_rate()
        n_patches = int(cfg.rays_per_step * cfg.patch_share) // RAYS_PER_PATCH if cfg.patch_weight > 0 else 0
        patches = self.keyframes.sample_patches(n_patches, RAYS_PER_PATCH, self.generator) if n_patches else None
        n_pix = cfg.rays_per_step - (len(patches.rays) if patches is not None else 0)
        batch = self.keyframes.sample(n_pix, self.generator)
        if patches is not None:
            batch = RayBatch.cat(batch, patches.rays)
        depth = batch.depth if cfg.use_depth else None
        spread = depth is None and cfg.w_feat_spread > 0     # colour alone: every sample fits (docstring)
        out = render_rays(self.field, batch.origins, batch.dirs, cfg.render, depth=depth, perturb=True,
                          generator=self.jitter, feature_spread=spread)
        loss_rgb = ((out.rgb - batch.rgb) ** 2).mean()
        loss = cfg.w_rgb * loss_rgb
        terms = {'rgb': loss_rgb.item()}
        if depth is not None:
            valid = depth > 0
            if valid.any():
                loss_depth = (out.depth[valid] - depth[valid]).abs().mean()
                loss_opacity = ((1.0 - out.acc[valid]) ** 2).mean()
                loss = loss + cfg.w_depth * loss_depth + cfg.w_opacity * loss_opacity
                terms['depth'] = loss_depth.item()
        wt = out.acc.detach().clamp(0, 1)
        if batch.feat_weight is not None:          # held-out keyframes teach geometry, not features
            wt = wt * batch.feat_weight
        wt_pix, feat_pix = wt[:n_pix], out.feat[:n_pix]
        per_ray = ((feat_pix - batch.feat[:n_pix]) ** 2).sum(-1)                   # (n_pix,)
        if spread:
            per_ray = per_ray + cfg.w_feat_spread * out.feat_spread[:n_pix]
            terms['feat_spread'] = float((wt_pix * out.feat_spread[:n_pix].detach()).sum()
                                         / wt_pix.sum().clamp(min=1e-6))
        loss_feat = (wt_pix * per_ray).sum() / wt_pix.sum().clamp(min=1e-6)
        loss = loss + cfg.w_feat * loss_feat
        terms['feat'] = loss_feat.item()
        if patches is not None:
            loss_patch = patch_loss(out.feat[n_pix:], wt[n_pix:], patches.target, patches.per_patch)
            loss = loss + cfg.patch_weight * loss_patch
            terms['patch'] = loss_patch.item()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        terms['loss'] = loss.item()
        self.steps += 1
        self.last = terms
        self.seconds += time.perf_counter() - t0
        return terms

    @property
    def lr(self) -> float:
        """The learning rate of the last step."""
        return float(self.optimizer.param_groups[0]['lr'])

    @property
    def steps_static(self) -> int:
        """Training steps since the keyframe set last changed (what the rate's decay counts)."""
        if self._schedule[0] != self.keyframes.inserted:
            return 0                 # a keyframe arrived since the last step: the next runs at full rate
        return self.steps - self._schedule[1]

    def resume(self, steps: int, steps_static: int) -> None:
        """Continue a saved map's training where it stopped: its step count and its place in the
        learning-rate schedule (``steps_static`` steps without a new keyframe, at most ``steps``),
        so a settled map is not shaken by the full rate again after a load."""
        self.steps = int(steps)
        self._schedule = (self.keyframes.inserted, self.steps - min(max(0, int(steps_static)), self.steps))

    def _set_learning_rate(self) -> None:
        cfg = self.config
        inserted = self.keyframes.inserted
        if inserted != self._schedule[0]:
            self._schedule = (inserted, self.steps)
        f = lr_factor(self.steps_static, cfg.lr_half_life, cfg.lr_min_factor)
        for g in self.optimizer.param_groups:
            g['lr'] = cfg.learning_rate * f
