"""core/teacher: DINO ViT teacher (random weights, local checkpoints, local cache only),
PCA projector, synthetic teacher. Small images only; no network (HF_HUB_OFFLINE=1)."""
import argparse
import math
import pickle

import numpy as np
import pytest
import torch

from n3f_ros.core.camera import PinholeCamera
from n3f_ros.core.frame import Frame
from n3f_ros.core.teacher import (
    CheckpointError,
    DinoTeacher,
    FeatureProjector,
    ProjectorError,
    SyntheticTeacher,
    TeacherInputError,
    WeightsUnavailableError,
    make_teacher,
)

S16 = 'vit_small_patch16_224.dino'


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """Never touch the network or the user's caches."""
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HOME', str(tmp_path / 'hf_home'))
    monkeypatch.delenv('HF_HUB_CACHE', raising=False)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    torch.manual_seed(0)


def make_frame(width, height, stamp=0.0, instance=None, seed=0):
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    cam = PinholeCamera(width, width, width / 2, height / 2, width, height)
    return Frame(rgb, cam, np.eye(4), stamp=stamp, instance=instance)


def assert_unit(feats):
    assert feats.dtype == torch.float32
    assert torch.isfinite(feats).all()
    assert torch.allclose(feats.norm(dim=-1), torch.ones(feats.shape[:-1]), atol=1e-4)


# --------------------------------------------------------------------------------------------
# DinoTeacher: shapes, strides, normalisation
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def s16():
    """One random-init ViT-S/16 shared by the tests (random init is the slow part: ~0.5-2 s)."""
    torch.manual_seed(123)
    return DinoTeacher(S16, random_init=True)


@pytest.mark.parametrize('name, stride, grid', [
    (S16, 16, (5, 6)),                                   # 100x75 -> 96x80 input
    ('vit_small_patch8_224.dino', 8, (9, 12)),           # -> 96x72
    ('vit_small_patch14_dinov2.lvd142m', 14, (5, 7)),    # -> 98x70
])
def test_dino_random_init_shapes_at_non_multiple_size(name, stride, grid, s16):
    t = s16 if name == S16 else DinoTeacher(name, random_init=True)
    assert (t.name, t.dim, t.stride, t.device.type, t.weights_source) == (name, 384, stride, 'cpu', 'random')
    frame = make_frame(100, 75)
    assert t.grid_shape(100, 75) == grid
    feats = t(frame)
    assert feats.shape == (*grid, 384)
    assert feats.device == t.device and not feats.is_inference()
    assert_unit(feats)
    # the grid covers the image: the network input is the whole image rescaled to a patch multiple
    w_in, h_in = t.input_size(100, 75)
    assert (h_in // stride, w_in // stride) == grid
    assert abs(w_in - 100) < stride and abs(h_in - 75) < stride


def test_dino_input_width_keeps_aspect_and_small_images(s16):
    t = DinoTeacher(S16, random_init=True, input_width=112)
    assert t(make_frame(224, 160)).shape == (5, 7, 384)
    assert t.grid_shape(640, 480) == (5, 7)      # 112x84 -> 112x80
    assert s16(make_frame(9, 5)).shape == (1, 1, 384)      # at least one patch
    with pytest.raises(ValueError):
        DinoTeacher(S16, random_init=True, input_width=0)


def test_dino_features_depend_on_content_and_are_deterministic(s16):
    f = make_frame(64, 48)
    a, b = s16(f), s16(f)
    assert torch.equal(a, b)
    assert not torch.allclose(a, s16(make_frame(64, 48, seed=1)))


def test_dino_takes_read_only_images_without_warning(s16):
    import warnings
    rgb = make_frame(64, 48).rgb.copy()
    expected = s16.features(rgb)
    rgb.flags.writeable = False                   # e.g. decoded by PIL, or a bag's buffer
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert torch.equal(s16.features(rgb), expected)


# --------------------------------------------------------------------------------------------
# Weights: checkpoints, cache, errors
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def source_teacher(s16):
    return s16


@pytest.fixture(scope='module')
def probe_frame():
    return make_frame(80, 64, seed=5)


def dino_style(sd):
    """Nest like DINO's full training checkpoint (main_dino.py: student/teacher/args/epoch)."""
    nested = {f'module.backbone.{k}': v for k, v in sd.items()}
    nested['module.head.mlp.0.weight'] = torch.zeros(8, 384)       # DINO projection head: ignored
    nested['module.head.last_layer.weight_g'] = torch.ones(8, 1)
    return {'student': nested, 'teacher': nested, 'epoch': 100,
            'args': argparse.Namespace(arch='vit_small', patch_size=16)}


@pytest.mark.parametrize('layout', ['plain', 'model', 'dino', 'safetensors'])
def test_checkpoint_round_trip(tmp_path, source_teacher, probe_frame, layout):
    sd = {k: v.clone() for k, v in source_teacher.model.state_dict().items()}
    path = tmp_path / ('w.safetensors' if layout == 'safetensors' else 'w.pth')
    if layout == 'safetensors':
        from safetensors.torch import save_file
        save_file(sd, str(path))
    else:
        torch.save({'plain': sd, 'model': {'model': sd, 'epoch': 3}, 'dino': dino_style(sd)}[layout], path)
    loaded = DinoTeacher(S16, checkpoint=str(path))
    assert loaded.weights_source == str(path)
    assert torch.allclose(loaded(probe_frame), source_teacher(probe_frame), atol=1e-5)


def test_local_hf_cache_is_used_without_network(tmp_path, source_teacher, probe_frame):
    from safetensors.torch import save_file
    repo = tmp_path / 'hf_home' / 'hub' / f'models--timm--{S16}'
    (repo / 'refs').mkdir(parents=True)
    (repo / 'refs' / 'main').write_text('0123abcd')
    snap = repo / 'snapshots' / '0123abcd'
    snap.mkdir(parents=True)
    save_file(dict(source_teacher.model.state_dict()), str(snap / 'model.safetensors'))
    t = make_teacher(S16)                       # no checkpoint, no random_init: the cache
    assert t.weights_source.endswith('model.safetensors')
    assert torch.allclose(t(probe_frame), source_teacher(probe_frame), atol=1e-5)


def test_no_weights_raises_helpful_error():
    with pytest.raises(WeightsUnavailableError) as err:
        DinoTeacher(S16)
    msg = str(err.value)
    for needle in ('teacher_checkpoint', f'timm/{S16}', 'HF_HOME', 'internet', 'teacher_random_init'):
        assert needle in msg
    with pytest.raises(WeightsUnavailableError):
        make_teacher('vit_small_patch8_224.dino', checkpoint='')     # '' = no checkpoint


def test_bad_checkpoints_raise_clear_errors(tmp_path, source_teacher):
    sd = dict(source_teacher.model.state_dict())
    with pytest.raises(CheckpointError, match='does not exist'):
        DinoTeacher(S16, checkpoint=str(tmp_path / 'nope.pth'))
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'\x00not a checkpoint' * 100)
    with pytest.raises(CheckpointError, match='cannot read'):
        DinoTeacher(S16, checkpoint=str(garbage))
    bad_st = tmp_path / 'garbage.safetensors'
    bad_st.write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{not json}' * 3)
    with pytest.raises(CheckpointError, match='cannot read'):
        DinoTeacher(S16, checkpoint=str(bad_st))
    full = tmp_path / 'full.pth'
    torch.save(sd, full)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(CheckpointError, match='cannot read'):
        DinoTeacher(S16, checkpoint=str(truncated))
    # a pickle that would run code is refused by the weights-only loader
    evil = tmp_path / 'evil.pth'
    evil.write_bytes(pickle.dumps({'x': _Boom()}, protocol=2))
    with pytest.raises(CheckpointError, match='cannot read'):
        DinoTeacher(S16, checkpoint=str(evil))
    missing = tmp_path / 'missing.pth'
    torch.save({k: v for k, v in sd.items() if k != 'norm.weight'}, missing)
    with pytest.raises(CheckpointError, match=r'missing keys \[.norm.weight.\]'):
        DinoTeacher(S16, checkpoint=str(missing))
    extra = tmp_path / 'extra.pth'
    torch.save({**sd, 'foo.bar': torch.zeros(1)}, extra)
    with pytest.raises(CheckpointError, match='unexpected keys'):
        DinoTeacher(S16, checkpoint=str(extra))
    with pytest.raises(CheckpointError, match='patch embedding'):     # S/16 weights into S/8
        DinoTeacher('vit_small_patch8_224.dino', checkpoint=str(full))
    not_dict = tmp_path / 'list.pth'
    torch.save([torch.zeros(1)], not_dict)
    with pytest.raises(CheckpointError, match='expected a state dict'):
        DinoTeacher(S16, checkpoint=str(not_dict))


class _Boom:
    def __reduce__(self):
        return (print, ('this must never run',))


def test_make_teacher_dispatch(s16):
    assert isinstance(make_teacher('synthetic', dim=8), SyntheticTeacher)
    torch.manual_seed(7)
    t = make_teacher(S16, random_init=True, input_width=64)
    assert isinstance(t, DinoTeacher) and t.input_width == 64 and t.weights_source == 'random'
    f = make_frame(64, 48)
    # random weights are seeded (dino.RANDOM_INIT_SEED): the same whatever the global seed, so runs repeat
    assert torch.allclose(t(f), s16(f), atol=1e-5)
    with pytest.raises(ValueError):
        make_teacher('')
    with pytest.raises(TypeError):
        make_teacher('synthetic', checkpoint='x')


# --------------------------------------------------------------------------------------------
# FeatureProjector
# --------------------------------------------------------------------------------------------

def random_feats(seed, h=6, w=8, C=48):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(C, generator=g) * 0.3
    return torch.nn.functional.normalize(base + torch.randn(h, w, C, generator=g), dim=-1)


def test_projector_fits_on_first_frames_then_stays_fixed():
    p = FeatureProjector(out_dim=8, fit_frames=3)
    assert p.dim is None and not p.fitted
    assert not p.observe(random_feats(0)) and not p.observe(random_feats(1))
    assert p.observe(random_feats(2)) and p.fitted and p.frames_seen == 3
    mean, comps = p.mean.clone(), p.components.clone()
    assert comps.shape == (8, 48) and p.dim == 8
    assert torch.allclose(comps @ comps.T, torch.eye(8), atol=1e-5)     # orthonormal basis
    out = p(random_feats(3))
    assert out.shape == (6, 8, 8)
    assert_unit(out)
    for s in range(4, 8):                                               # later frames: no change
        p.observe(random_feats(s))
        p(random_feats(s))
    assert torch.equal(p.mean, mean) and torch.equal(p.components, comps)


def test_projector_call_before_fit_freezes_on_what_it_has():
    p = FeatureProjector(out_dim=4, fit_frames=5)
    p.observe(random_feats(0))
    first = p(random_feats(1))            # fits on frames 0 and 1, then frozen
    assert p.fitted and p.frames_seen == 2
    assert torch.equal(p(random_feats(1)), first)


def test_projector_identity_when_not_reducing():
    p = FeatureProjector(out_dim=64, fit_frames=1)
    f = random_feats(0, C=16) * 3.0
    out = p(f)
    assert p.dim == 16 and torch.allclose(out, torch.nn.functional.normalize(f, dim=-1), atol=1e-6)


def test_projector_state_dict_round_trip_and_validation():
    p = FeatureProjector(out_dim=8, fit_frames=2)
    p.observe(random_feats(0))
    p.observe(random_feats(1))
    state = p.state_dict()
    assert set(state) == {'out_dim', 'fit_frames', 'fitted', 'in_dim', 'mean', 'components'}
    q = FeatureProjector(out_dim=3, fit_frames=9)
    q.load_state_dict(state)
    assert (q.out_dim, q.fit_frames, q.fitted, q.dim) == (8, 2, True, 8)
    f = random_feats(7)
    assert torch.allclose(q(f), p(f))
    unfitted = FeatureProjector(out_dim=8).state_dict()
    r = FeatureProjector()
    r.load_state_dict(unfitted)
    assert not r.fitted and r.out_dim == 8
    with pytest.raises(ProjectorError):
        q.load_state_dict({**state, 'components': torch.zeros(5, 48)})
    with pytest.raises(ProjectorError):
        q.load_state_dict({k: v for k, v in state.items() if k != 'mean'})
    with pytest.raises(ProjectorError):
        q.load_state_dict({**state, 'mean': torch.full((48,), math.nan)})
    with pytest.raises(ProjectorError):
        q(random_feats(0, C=32))                      # wrong C
    with pytest.raises(ProjectorError):
        FeatureProjector(out_dim=0)
    with pytest.raises(ProjectorError):
        FeatureProjector().fit()                      # nothing observed


# --------------------------------------------------------------------------------------------
# SyntheticTeacher
# --------------------------------------------------------------------------------------------

def bands(width, height, ids):
    inst = np.zeros((height, width), np.int32)
    step = width // len(ids)
    for n, k in enumerate(ids):
        inst[:, n * step:(n + 1) * step] = k
    return inst


def test_synthetic_shapes_determinism_and_errors():
    inst = bands(100, 75, [0, 1, 2, 3, 4])
    t = SyntheticTeacher(dim=16, stride=16, seed=3)
    f = make_frame(100, 75, stamp=1.25, instance=inst)
    a = t(f)
    assert a.shape == (5, 6, 16) and t.grid_shape(100, 75) == (5, 6)
    assert_unit(a)
    assert torch.equal(a, t(f))
    assert torch.equal(a, SyntheticTeacher(dim=16, stride=16, seed=3)(f))          # seed-deterministic
    assert not torch.allclose(a, SyntheticTeacher(dim=16, stride=16, seed=4)(f))
    assert np.allclose(t.prototype(57), SyntheticTeacher(dim=16, seed=3).prototype(57))   # lazy ids
    with pytest.raises(TeacherInputError, match='instance'):
        t(make_frame(100, 75))
    with pytest.raises(TeacherInputError):
        t(make_frame(100, 75, instance=np.zeros((10, 10), np.int32)))
    with pytest.raises(TeacherInputError):
        t(make_frame(100, 75, instance=-np.ones((75, 100), np.int32)))
    with pytest.raises(ValueError):
        SyntheticTeacher(noise=-1.0)


def test_synthetic_family_prototypes_are_correlated():
    t = SyntheticTeacher(dim=64, family_correlation=0.6)
    P = t.prototypes(range(2, 8)).double()
    sim = P @ P.T
    siblings = [sim[0, 1], sim[2, 3], sim[4, 5]]
    strangers = [sim[0, 2], sim[0, 4], sim[2, 5]]
    assert min(siblings) > 0.3 and max(abs(s) for s in strangers) < min(siblings)


def test_synthetic_is_view_inconsistent_but_averages_to_prototype():
    ids = [0, 1, 2, 3]
    inst = bands(128, 32, ids)               # 4 bands of 32 px = 2 cells each, no mixing
    t = SyntheticTeacher(dim=32, stride=16)
    views = torch.stack([t(make_frame(128, 32, stamp=0.1 * i, instance=inst)) for i in range(16)])
    assert not torch.allclose(views[0], views[1], atol=0.05)
    labels = torch.tensor(np.repeat(ids, 2))
    own = t.prototypes(ids)[labels]                          # (w, C) prototype of each column
    single = (views * own).sum(-1).mean()
    mean = torch.nn.functional.normalize(views.mean(0), dim=-1)
    averaged = (mean * own).sum(-1).mean()
    assert single < 0.7 and averaged > 0.9 and averaged > single + 0.25


def test_synthetic_cells_mix_at_boundaries_and_follow_grid_centres():
    inst = np.full((32, 48), 2, np.int32)
    inst[:, 24:] = 3                          # boundary in the middle of cell column 1 (px 16..32)
    t = SyntheticTeacher(dim=32, stride=16, noise=0.0, view_noise=0.0)
    f = t(make_frame(48, 32, instance=inst))
    p2, p3 = t.prototypes([2, 3])
    mid = torch.nn.functional.normalize(p2 + p3, dim=0)
    assert torch.allclose(f[:, 0], p2.expand(2, -1), atol=1e-5)
    assert torch.allclose(f[:, 2], p3.expand(2, -1), atol=1e-5)
    assert torch.allclose(f[:, 1], mid.expand(2, -1), atol=1e-5)


def test_synthetic_noise_calibration_single_view_imperfect_15_views_near_perfect():
    """Nearest-prototype accuracy on interior cells of 8 instances (documented in synthetic.py)."""
    ids = list(range(8))
    inst = bands(256, 64, ids)
    t = SyntheticTeacher()                    # defaults
    P = t.prototypes(ids)
    labels = torch.tensor(np.repeat(ids, 2)).expand(4, -1)
    views = torch.stack([t(make_frame(256, 64, stamp=0.1 * i, instance=inst)) for i in range(30)])
    acc1 = ((views @ P.T).argmax(-1) == labels).float().mean().item()
    avg = views.reshape(2, 15, 4, 16, 32).mean(1)
    acc15 = ((avg @ P.T).argmax(-1) == labels).float().mean().item()
    assert 0.75 < acc1 < 0.97 and acc15 > 0.99
