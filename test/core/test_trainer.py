"""core/trainer: the learning-rate schedule (constant while keyframes arrive, halving once the
keyframe set is static, restored by a new keyframe) on a real field and keyframe buffer."""
import numpy as np
import pytest
import torch

from n3f_ros.core.camera import PinholeCamera, look_at
from n3f_ros.core.frame import Frame
from n3f_ros.core.field.model import FeatureField, FieldConfig
from n3f_ros.core.field.render import RenderSettings, render_rays
from n3f_ros.core.keyframes import KeyframeBuffer, KeyframeConfig
from n3f_ros.core.trainer import Trainer, TrainerConfig, lr_factor

CAM = PinholeCamera(fx=30.0, fy=28.0, cx=16.5, cy=11.0, width=32, height=24)


@pytest.fixture(autouse=True)
def _one_thread(torch_single_thread_seeded):
    """Every test here on one torch thread, seeded (conftest.py)."""


def test_lr_factor_halves_per_half_life_down_to_the_floor():
    assert lr_factor(0, 100, 0.1) == 1.0
    assert lr_factor(100, 100, 0.1) == pytest.approx(0.5)
    assert lr_factor(200, 100, 0.1) == pytest.approx(0.25)
    assert lr_factor(10_000, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(10_000, 0, 0.1) == 1.0          # 0: constant
    assert lr_factor(-5, 100, 0.1) == 1.0


def _add(buf, i):
    """Keyframe i: a random RGB-D frame from a pose inside the field's box, random teacher features."""
    rng = np.random.default_rng(i)
    T = look_at([0.3 * i, -1.0 + 0.2 * i, 0.4 * i - 2.0], [0.1 * i, 0.2, 0.5])
    frame = Frame(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), CAM, T, stamp=float(i),
                  depth=rng.uniform(1.0, 3.0, (24, 32)).astype(np.float32))
    buf.add(frame, torch.nn.functional.normalize(torch.as_tensor(rng.normal(size=(3, 4, 4)), dtype=torch.float32),
                                                 dim=-1))


def _trainer(half_life):
    buf = KeyframeBuffer(KeyframeConfig(max_keyframes=8, width=16))
    for i in range(2):
        _add(buf, i)
    cfg = FieldConfig(feature_dim=4, geo_levels=4, geo_log2_table=10, geo_max_resolution=32, feat_levels=2,
                      feat_log2_table=8, feat_max_resolution=16, hidden=16, geo_features=3)
    torch.manual_seed(0)
    field = FeatureField(np.array([[-3.0, -3.0, -3.0], [3.0, 3.0, 3.0]]), cfg)
    tcfg = TrainerConfig(rays_per_step=64, learning_rate=1e-2, lr_half_life=half_life, lr_min_factor=0.1,
                         use_depth=True, render=RenderSettings(n_uniform=8, n_extra=4))
    return Trainer(field, buf, tcfg), buf


def test_learning_rate_decays_while_keyframes_are_static_and_a_new_keyframe_restores_it():
    trainer, buf = _trainer(half_life=4)
    rates = []
    for _ in range(9):
        trainer.step()
        rates.append(trainer.lr)
    # step k (0-based) runs at 0.01 * 0.5 ** (k / 4)
    assert rates == pytest.approx([1e-2 * 0.5 ** (k / 4) for k in range(9)])
    trainer.step()
    assert trainer.lr < 3e-3
    _add(buf, 2)
    trainer.step()
    assert trainer.lr == pytest.approx(1e-2)          # new keyframe: full rate again
    for _ in range(40):
        trainer.step()
    assert trainer.lr == pytest.approx(1e-3)          # floor: lr_min_factor
    assert np.isfinite(trainer.last['loss'])


def test_zero_half_life_keeps_the_rate_constant():
    trainer, _ = _trainer(half_life=0)
    for _ in range(5):
        trainer.step()
        assert trainer.lr == pytest.approx(1e-2)


def _spread_of_keyframe_rays(trainer, buf) -> float:
    """Mean feature spread along the rays of every stored keyframe pixel (deterministic samples)."""
    rays = buf.sample(256, torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = render_rays(trainer.field, rays.origins, rays.dirs, trainer.config.render, perturb=False,
                          feature_spread=True)
    w = out.acc.clamp(0, 1)
    return float((w * out.feat_spread).sum() / w.sum())


def test_feature_spread_is_zero_for_features_constant_along_rays_and_positive_otherwise():
    trainer, buf = _trainer(half_life=0)
    for _ in range(20):            # a fresh field's features are nearly constant (tiny grid init)
        trainer.step()
    rays = buf.sample(64, torch.Generator().manual_seed(1))
    field = trainer.field
    with torch.no_grad():
        out = render_rays(field, rays.origins, rays.dirs, trainer.config.render, perturb=False, feature_spread=True)
        assert out.feat_spread.shape == (64,)
        assert float(out.feat_spread.min()) >= 0.0 and float(out.feat_spread.max()) > 1e-4
        field.feature_head[-1].weight.zero_()                 # the same feature at every point
        out = render_rays(field, rays.origins, rays.dirs, trainer.config.render, perturb=False, feature_spread=True)
    assert float(out.feat_spread.max()) < 1e-8
    assert render_rays(field, rays.origins, rays.dirs, trainer.config.render, perturb=False).feat_spread is None


@pytest.mark.parametrize('use_depth', [False, True])
def test_rays_without_depth_fit_every_sample_rays_with_depth_only_the_composite(use_depth):
    """Colour alone (no depth for the loss): with the spread term at the shipped weight the samples
    along each ray carry less spread of features than without it (more still at weight 1); with
    depth on every ray the term is not computed."""
    shipped = TrainerConfig.__dataclass_fields__['w_feat_spread'].default
    assert 0.0 < shipped < 1.0
    spreads = {}
    for w in (0.0, shipped, 1.0):
        trainer, buf = _trainer(half_life=0)
        trainer.config.use_depth = use_depth
        trainer.config.w_feat_spread = w
        for _ in range(60):
            terms = trainer.step()
        assert ('feat_spread' in terms) == (w > 0 and not use_depth)
        spreads[w] = _spread_of_keyframe_rays(trainer, buf)
    if use_depth:
        assert spreads[1.0] == pytest.approx(spreads[0.0])        # the same training: term not used
        assert spreads[shipped] == pytest.approx(spreads[0.0])
    else:
        assert spreads[1.0] < spreads[shipped] < 0.9 * spreads[0.0]
