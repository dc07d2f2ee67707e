"""Guided upsampling of teacher patch features (core/teacher/upsample.py)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from n3f_ros.core.mapping import Mapper, MapperConfig
from n3f_ros.core.synth import make_sequence
from n3f_ros.core.teacher import SyntheticTeacher, TeacherInputError
from n3f_ros.core.teacher.upsample import UpsampleConfig, guided_upsample

P = 16                      # patch size of the toy teacher
GRID = (4, 6)               # (h, w) patches -> a 64 x 96 frame
EDGE = 40                   # the two regions meet at x = 40: inside patch column 2 (32..48)


def _two_regions(colour_differs=True, depth_differs=True):
    """A frame whose left part (x < EDGE) and right part differ in colour and/or depth, and the
    patch features of a teacher that averages a one-hot feature per region over each patch (the
    synthetic teacher's model: border patches blend). Returns rgb, depth, feats (h, w, 2), region."""
    h, w = GRID
    H, W = h * P, w * P
    region = np.zeros((H, W), int)
    region[:, EDGE:] = 1
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[region == 0] = (200, 40, 40)
    rgb[region == 1] = (40, 40, 200) if colour_differs else (200, 40, 40)
    depth = np.where(region == 0, 0.6, 0.9 if depth_differs else 0.6).astype(np.float32)
    onehot = torch.as_tensor(np.eye(2)[region], dtype=torch.float32)                    # (H, W, 2)
    feats = F.avg_pool2d(onehot.permute(2, 0, 1)[None], P)[0].permute(1, 2, 0)          # (h, w, 2)
    return rgb, depth, feats, region


def _own_cosine(out, region):
    """Mean cosine of each output pixel's feature with its own region's one-hot feature."""
    H, W = region.shape
    oh, ow = out.shape[:2]
    ys, xs = ((np.arange(oh) + 0.5) * H / oh).astype(int), ((np.arange(ow) + 0.5) * W / ow).astype(int)
    lab = torch.as_tensor(region[ys][:, xs])
    return float(torch.gather(F.normalize(out, dim=-1), 2, lab[..., None])[..., 0].mean())


def _bilinear(feats, factor):
    h, w, _ = feats.shape
    up = F.interpolate(feats.permute(2, 0, 1)[None], size=(h * factor, w * factor), mode='bilinear',
                       align_corners=False)[0].permute(1, 2, 0)
    return F.normalize(up, dim=-1)


@pytest.mark.parametrize('colour_differs, depth_differs', [(True, True), (True, False), (False, True)])
def test_border_pixels_take_their_own_regions_features(colour_differs, depth_differs):
    rgb, depth, feats, region = _two_regions(colour_differs, depth_differs)
    out = guided_upsample(feats, rgb, depth, UpsampleConfig(factor=4))
    assert out.shape == (GRID[0] * 4, GRID[1] * 4, 2)
    assert torch.allclose(out.norm(dim=-1), torch.ones(out.shape[:2]), atol=1e-5)
    guided, bilinear = _own_cosine(out, region), _own_cosine(_bilinear(feats, 4), region)
    assert guided > bilinear + 0.02, (guided, bilinear)
    # the output pixel just left of the border (x 36..40) is the left region's, not a blend
    col = EDGE // (P // 4) - 1
    assert float(F.normalize(out[:, col], dim=-1)[:, 0].min()) > 0.9


def test_uniform_guide_interpolates_and_keeps_constant_features():
    rgb, depth, feats, _ = _two_regions(colour_differs=False, depth_differs=False)
    const = torch.tensor([0.6, 0.8]).expand(*GRID, 2).contiguous()
    out = guided_upsample(const, rgb, depth)
    assert torch.allclose(out, const[0, 0].expand_as(out), atol=1e-6)
    # with nothing to guide it (uniform colour and depth), the border is a smooth blend
    out = guided_upsample(feats, rgb, depth)
    row = F.normalize(out[0], dim=-1)[:, 0]
    assert bool((row[1:] <= row[:-1] + 1e-6).all())           # the left feature fades monotonically
    assert 0.2 < float(row[EDGE // 4]) < 0.95


def test_without_depth_it_is_bilinear_unless_colour_alone_is_asked_for():
    rgb, depth, feats, region = _two_regions(colour_differs=True, depth_differs=True)
    for no_depth in (None, np.zeros_like(depth), np.full_like(depth, np.nan)):
        out = guided_upsample(feats, rgb, no_depth, UpsampleConfig(factor=4))
        assert out.shape == (GRID[0] * 4, GRID[1] * 4, 2)
        assert torch.allclose(out, _bilinear(feats, 4), atol=1e-6)
    colour = guided_upsample(feats, rgb, None, UpsampleConfig(factor=4, colour_only=True))
    assert torch.allclose(colour, guided_upsample(feats, rgb, np.zeros_like(depth),
                                                  UpsampleConfig(factor=4, colour_only=True)), atol=1e-6)
    assert _own_cosine(colour, region) > _own_cosine(_bilinear(feats, 4), region) + 0.02
    # some depth known: guided (colour everywhere, depth where both footprints have it)
    part = depth.copy()
    part[:, : EDGE // 2] = 0
    assert _own_cosine(guided_upsample(feats, rgb, part), region) > _own_cosine(_bilinear(feats, 4), region) + 0.02


def test_factor_one_is_identity():
    rgb, depth, feats, _ = _two_regions()
    same = guided_upsample(feats, rgb, depth, UpsampleConfig(factor=1))
    assert torch.allclose(same, F.normalize(feats, dim=-1))


def test_extreme_guide_differences_do_not_underflow():
    rgb, depth, feats, _ = _two_regions()
    depth[:, ::2] = 1e6                                       # absurd but finite depths
    out = guided_upsample(feats, rgb, depth, UpsampleConfig(sigma_colour=0.001, sigma_depth=0.001))
    assert bool(torch.isfinite(out).all())
    assert torch.allclose(out.norm(dim=-1), torch.ones(out.shape[:2]), atol=1e-5)


@pytest.mark.parametrize('bad', ['feats_2d', 'feats_int', 'rgb_gray', 'rgb_small', 'depth_shape'])
def test_inconsistent_input_is_rejected(bad):
    rgb, depth, feats, _ = _two_regions()
    kw = dict(feats=feats, rgb=rgb, depth=depth)
    if bad == 'feats_2d':
        kw['feats'] = feats[0]
    elif bad == 'feats_int':
        kw['feats'] = feats.long()
    elif bad == 'rgb_gray':
        kw['rgb'] = rgb[..., 0]
    elif bad == 'rgb_small':
        kw['rgb'] = rgb[:2, :2]
    else:
        kw['depth'] = depth[:-1]
    with pytest.raises(TeacherInputError):
        guided_upsample(**kw)


def test_keyframes_store_the_upsampled_grid():
    seq = make_sequence(0, 2, 160, 120)
    teacher = SyntheticTeacher(seed=0)
    cfg = dict(teacher_model='synthetic', keyframe_translation=0.0, keyframe_rotation=0.0, max_keyframes=4,
               keyframe_width=80, bounds_keyframes=1)
    grid = tuple(teacher(seq[0]).shape[:2])                                     # (h, w) patches
    for factor in (1, 3):
        m = Mapper(MapperConfig(**cfg, upsample_config=UpsampleConfig(factor=factor)), teacher=teacher)
        assert m.integrate(seq[0])
        assert m.map.keyframes.feat_size == (grid[1] * factor, grid[0] * factor)


def test_rgb_only_keyframes_are_upsampled_again_once_stereo_gives_them_depth():
    """Stored without depth (bilinear), an RGB-only keyframe's features are upsampled again from
    its patch grid, guided by its colour and stereo depth, when stereo writes its depth."""
    seq = make_sequence(0, 24, 160, 120)
    teacher = SyntheticTeacher(seed=0)
    cfg = MapperConfig(teacher_model='synthetic', keyframe_translation=0.0, keyframe_rotation=0.0,
                       max_keyframes=8, keyframe_width=80, feature_dim=8)
    m = Mapper(cfg, teacher=teacher)
    for i in range(0, 12, 2):
        f = seq[i]
        m.integrate(type(f)(f.rgb, f.camera, f.T_world_cam, f.stamp, None, f.instance))   # no depth image
    kf = m.map.keyframes
    assert m.stats()['stereo_reguided'] >= 1
    reguided = 0
    for s in range(len(kf)):
        patch = kf.patch[s].float()
        flat = _bilinear(patch, cfg.upsample_config.factor)
        assert flat.shape[:2] == kf.feat.shape[1:3]
        stored = kf.feat[s].float()
        if (kf.depth[s] > 0).any():
            guided = guided_upsample(patch, kf.rgb[s].numpy(), kf.depth[s].numpy(), cfg.upsample_config)
            assert torch.allclose(stored, guided, atol=2e-3)
            assert float((stored - flat).norm(dim=-1).max()) > 0.05    # depth and colour moved borders
            reguided += 1
        else:
            assert torch.allclose(stored, flat, atol=2e-3)
    assert reguided >= 1
