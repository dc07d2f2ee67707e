"""core/trainer: the patch loss (a student pooled over a teacher patch fitted to the patch's token).

The function alone: zero where the pool matches although no ray does, blind to patches of zero
weight. Then on a real field and keyframe buffer: a plane seen by views shifted by fractions of a
patch, with a small square (smaller than a patch) whose teacher tokens are always blended with the
plane around it; the patch loss recovers the square's own feature, the per-pixel loss on the same
(bilinear) tokens learns the blend."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from n3f_ros.core.camera import PinholeCamera
from n3f_ros.core.field.model import FeatureField, FieldConfig
from n3f_ros.core.field.render import RenderSettings, render_rays
from n3f_ros.core.frame import Frame
from n3f_ros.core.keyframes import KeyframeBuffer, KeyframeConfig
from n3f_ros.core.trainer import RAYS_PER_PATCH, Trainer, TrainerConfig, patch_loss

E1, E2 = torch.eye(4)[0], torch.eye(4)[1]


@pytest.fixture(autouse=True)
def _one_thread(torch_single_thread_seeded):
    """Every test here on one torch thread, seeded (conftest.py)."""


def test_a_pool_that_matches_the_token_costs_nothing_although_no_ray_matches_it():
    token = F.normalize(E1 + E2, dim=0)
    feat = torch.stack([E1, E2, E1, E2])                      # one patch, pure features
    w = torch.ones(4)
    assert float(patch_loss(feat, w, token[None], 4)) == pytest.approx(0.0, abs=1e-6)
    assert float(((feat - token) ** 2).sum(-1).mean()) > 0.5  # what the per-pixel loss would charge
    lopsided = torch.stack([E1, E1, E1, E2])
    assert float(patch_loss(lopsided, w, token[None], 4)) > 0.05


def test_patches_of_zero_weight_do_not_count_and_gradients_reach_the_features():
    token = torch.stack([E1, E2])
    feat = torch.stack([E1, E1, -E2, E2]).requires_grad_(True)    # second patch far from its token
    w = torch.tensor([1.0, 1.0, 0.0, 0.0])
    loss = patch_loss(feat, w, token, 2)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    w = torch.tensor([1.0, 1.0, 1.0, 1.0])
    loss = patch_loss(feat, w, token, 2)
    assert float(loss) > 0.1
    loss.backward()
    assert feat.grad[2:].abs().sum() > 0 and feat.grad[:2].abs().sum() == 0


# -- on a real field ------------------------------------------------------------------------------

W, H, FW, FH = 32, 24, 4, 3            # image pixels, teacher patch grid (8 px patches)
CAM = PinholeCamera(fx=30.0, fy=30.0, cx=16.0, cy=12.0, width=W, height=H)
Z = 2.0                                # the plane's depth, metres
HALF = 0.2                             # the square's half side: 0.4 m = 6 px < a patch (0.53 m)


def _frame_and_tokens(dx, dy):
    """View from (dx, dy, 0) looking down +z at the plane; tokens = mean over each patch of the
    true features (E1 in the square, E2 elsewhere), 4x supersampled, normalised."""
    T = np.eye(4)
    T[:2, 3] = (dx, dy)
    s = 4
    u = (np.arange(W * s) + 0.5) / s
    v = (np.arange(H * s) + 0.5) / s
    X = dx + (u[None, :] - CAM.cx) / CAM.fx * Z
    Y = dy + (v[:, None] - CAM.cy) / CAM.fy * Z
    inside = torch.as_tensor((np.abs(X) < HALF) & (np.abs(Y) < HALF), dtype=torch.float32)   # (H s, W s)
    fine = inside[..., None] * E1 + (1 - inside[..., None]) * E2
    tokens = F.avg_pool2d(fine.permute(2, 0, 1)[None], (H * s // FH, W * s // FW))[0].permute(1, 2, 0)
    rgb = np.full((H, W, 3), 128, np.uint8)          # colour says nothing about the square
    return Frame(rgb, CAM, T, stamp=dx + 10 * dy, depth=np.full((H, W), Z, np.float32)), F.normalize(tokens, dim=-1)


def _train(patch_weight, steps=300):
    buf = KeyframeBuffer(KeyframeConfig(max_keyframes=16, width=W))
    shifts = (-0.18, 0.0, 0.18)                      # a third of a patch
    for dx in shifts:
        for dy in shifts:
            frame, tokens = _frame_and_tokens(dx, dy)
            buf.add(frame, tokens, tokens)
    cfg = FieldConfig(feature_dim=4, geo_levels=4, geo_log2_table=12, geo_max_resolution=32, feat_levels=4,
                      feat_log2_table=12, feat_max_resolution=96, hidden=32, geo_features=3)
    torch.manual_seed(0)
    field = FeatureField(np.array([[-1.5, -1.2, 1.5], [1.5, 1.2, 2.5]]), cfg)
    tcfg = TrainerConfig(rays_per_step=512, learning_rate=2e-2, lr_half_life=0, lr_min_factor=1.0,
                         use_depth=True, render=RenderSettings(n_uniform=8, n_extra=8),
                         patch_weight=patch_weight, patch_share=0.75 if patch_weight else 0.0)
    trainer = Trainer(field, buf, tcfg)
    for _ in range(steps):
        terms = trainer.step()
    return field, terms


def test_patch_rays_are_part_of_the_step_budget_and_maps_without_grids_train_per_pixel():
    buf = KeyframeBuffer(KeyframeConfig(max_keyframes=4, width=W))
    frame, tokens = _frame_and_tokens(0.0, 0.0)
    buf.add(frame, tokens, tokens)
    cfg = FieldConfig(feature_dim=4, geo_levels=2, geo_log2_table=8, geo_max_resolution=16, feat_levels=2,
                      feat_log2_table=8, feat_max_resolution=16, hidden=8, geo_features=3)
    field = FeatureField(np.array([[-1.5, -1.2, 1.5], [1.5, 1.2, 2.5]]), cfg)
    tcfg = TrainerConfig(rays_per_step=128, learning_rate=1e-2, lr_half_life=0, lr_min_factor=1.0, use_depth=True,
                         render=RenderSettings(n_uniform=4, n_extra=2), patch_weight=1.0, patch_share=0.5)
    seen = []
    orig = buf.sample
    buf.sample = lambda n, g=None: seen.append(n) or orig(n, g)
    terms = Trainer(field, buf, tcfg).step()
    assert 'patch' in terms and seen == [128 - (64 // RAYS_PER_PATCH) * RAYS_PER_PATCH]
    plain = KeyframeBuffer(KeyframeConfig(max_keyframes=4, width=W))
    plain.add(frame, tokens)                          # no patch grid (e.g. a map saved before them)
    terms = Trainer(FeatureField(np.array([[-1.5, -1.2, 1.5], [1.5, 1.2, 2.5]]), cfg), plain, tcfg).step()
    assert 'patch' not in terms and np.isfinite(terms['loss'])


def _feature_at(field, x, y):
    o = torch.tensor([[x, y, 0.0]])
    d = torch.tensor([[0.0, 0.0, 1.0]])
    with torch.no_grad():
        f = render_rays(field, o, d, RenderSettings(n_uniform=8, n_extra=8), depth=torch.tensor([Z]),
                        perturb=False).feat[0]
    return F.normalize(f, dim=0)


@pytest.mark.slow
def test_patch_loss_recovers_an_object_smaller_than_a_patch_that_per_pixel_loss_blends():
    pooled, terms = _train(patch_weight=1.0)
    assert 'patch' in terms
    per_pixel, terms = _train(patch_weight=0.0)
    assert 'patch' not in terms
    centre_pooled = float(_feature_at(pooled, 0.0, 0.0) @ E1)
    centre_pixel = float(_feature_at(per_pixel, 0.0, 0.0) @ E1)
    far_pooled = float(_feature_at(pooled, 0.9, 0.6) @ E2)
    print(f'square centre cos to its feature: patch loss {centre_pooled:.3f}, per-pixel {centre_pixel:.3f}; '
          f'plane far from it: {far_pooled:.3f}')
    # measured: 0.54 against 0.35 (300 steps; 0.58 with unstratified rays), the plane 1.00
    assert centre_pooled > centre_pixel + 0.1
    assert far_pooled > 0.9
