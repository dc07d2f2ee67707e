"""core/mapping/map_file.py: a map file is validated completely before it replaces anything, so a
failed load leaves the map in use bit-for-bit as it was (SPEC §4, issue: maps bad input cannot poison)."""
import copy
import resource

import numpy as np
import pytest
import torch

from n3f_ros.core.field.model import FieldConfig
from n3f_ros.core.mapping import Mapper, MapperConfig
from n3f_ros.core.persistence import MapFileError, load_map_file, save_map_file
from n3f_ros.core.synth import make_sequence
from n3f_ros.core.teacher import SyntheticTeacher

SMALL_FIELD = FieldConfig(geo_levels=4, geo_log2_table=12, geo_max_resolution=64, feat_levels=2,
                          feat_log2_table=10, feat_max_resolution=32, hidden=16)


def _mapper(**kw):
    cfg = MapperConfig(teacher_model='synthetic', keyframe_translation=0.0, keyframe_rotation=0.0, max_keyframes=6,
                       keyframe_width=48, rays_per_step=64, bounds_keyframes=4, feature_dim=8,
                       field_config=SMALL_FIELD, **kw)
    return Mapper(cfg, teacher=SyntheticTeacher(seed=1, dim=16, stride=8))


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    """A small trained map with a prototype, saved; returns (path, the file dict)."""
    m = _mapper()
    for f in make_sequence(2, 4, 64, 48, shadows=False):
        m.integrate(f)
    m.train(5)
    cloud = m.cloud()
    m.save_prototype('cup', m.query_point(cloud.xyz[np.argmax(cloud.xyz[:, 2])]))
    path = tmp_path_factory.mktemp('map') / 'map.pt'
    m.save(str(path))
    return path, load_map_file(str(path))


def _state_of(m: Mapper):
    """Everything a load could change, copied."""
    return {'field': {k: v.clone() for k, v in m.field.state_dict().items()},
            'keyframes': copy.deepcopy(m.keyframes.state_dict()), 'steps': m.train_steps,
            'prototypes': m.prototypes.items(), 'pca': m.pca.state_dict(),
            'fused': copy.deepcopy(m.map.fused.state_dict()), 'sources': m.map.sources.state_dict()}


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a):
        return bool(np.isnan(b))
    return a == b


def test_round_trip_records_the_grid_and_restores_the_map(saved, tmp_path):
    path, raw = saved
    assert raw['version'] == 3 and raw['grid_impl'] == 'torch'
    m = _mapper()
    m.load(str(path))
    assert m.train_steps == raw['train_steps'] and len(m.keyframes) == 4
    assert np.allclose(m.prototypes.get('cup'), raw['prototypes']['cup'].numpy())
    assert len(m.cloud()) > 0
    # the fused-teacher layer comes back exactly, with the keyframes it holds and the feature choice
    fused = m.map.fused
    assert len(fused) == len(raw['fused']['keys']) > 0 and fused.fused_keyframes == 4
    assert np.array_equal(fused.keys, raw['fused']['keys'].numpy())
    assert np.array_equal(fused.feat_sum, raw['fused']['feat_sum'].numpy())
    assert m.map.fused_orders == set(raw['fused_orders'].tolist()) == {0, 1, 2, 3}
    assert m.map.sources.source == raw['sources']['source']
    # the teacher's patch grids (the trainer's patch loss) come back with the keyframes
    assert m.keyframes.has_patch[:4].all()
    assert torch.equal(m.keyframes.patch[:4], raw['keyframes']['patch'])


def test_a_loaded_map_resumes_its_learning_rate_schedule(tmp_path):
    """A settled map is not trained at the full rate again after a load: the file records how
    many steps the keyframes have been unchanged, and the rate continues from there."""
    m = _mapper(lr_half_life=2, lr_min_factor=0.01)
    for f in make_sequence(2, 4, 64, 48, shadows=False):
        m.integrate(f)
    m.train(6)
    assert m.trainer.steps_static == 6 and m.trainer.lr == pytest.approx(1e-2 * 0.5 ** 2.5)
    path = tmp_path / 'map.pt'
    m.save(str(path))
    assert load_map_file(str(path))['lr_steps_static'] == 6
    m2 = _mapper(lr_half_life=2, lr_min_factor=0.01)
    m2.load(str(path))
    assert m2.train_steps == 6 and m2.trainer.steps_static == 6
    m2.train(1)
    assert m2.trainer.lr == pytest.approx(1e-2 * 0.5 ** 3)     # step 7 of the schedule, not step 1
    # a map file without the key (written by an older version): full rate
    raw = load_map_file(str(path))
    del raw['lr_steps_static']
    save_map_file(str(path), raw)
    m3 = _mapper(lr_half_life=2, lr_min_factor=0.01)
    m3.load(str(path))
    m3.train(1)
    assert m3.trainer.lr == pytest.approx(1e-2)


def _corrupt(raw, what):
    r = copy.deepcopy(raw)
    kf, fld = r['keyframes'], r['field']
    if what == 'train_steps':
        r['train_steps'] = 'abc'
    elif what == 'lr_steps_static':          # more static steps than training steps
        r['lr_steps_static'] = r['train_steps'] + 1
    elif what == 'prototype':
        r['prototypes']['cup'] = 'not a tensor'
    elif what == 'prototype_name':
        r['prototypes']['\x1b[31mred'] = r['prototypes']['cup']
    elif what == 'nan_field':
        k = next(iter(fld))
        fld[k] = fld[k].clone()
        fld[k].view(-1)[0] = float('nan')
    elif what == 'nan_pose':
        kf['T'] = kf['T'].clone()
        kf['T'][1, 0, 3] = float('nan')
    elif what == 'far_pose':
        kf['T'] = kf['T'].clone()
        kf['T'][1, 0, 3] = 1e20
    elif what == 'not_rigid':
        kf['T'] = kf['T'].clone()
        kf['T'][0, :3, :3] *= 2.0
    elif what == 'zero_stride':      # a 2000x2000 keyframe claim backed by one byte
        kf['size'] = [2000, 2000]
        kf['rgb'] = torch.zeros(1, dtype=torch.uint8).expand(4, 2000, 2000, 3)
    elif what == 'too_many':
        kf['count'] = 10_000
    elif what == 'field_shape':
        k = next(iter(fld))
        fld[k] = torch.zeros(3, 3)
    elif what == 'grid_tcnn':
        r['grid_impl'] = 'tcnn'
    elif what == 'bounds':
        r['bounds'] = torch.tensor([[0.0, 0, 0], [-1.0, 1, 1]])
    elif what == 'depth':
        kf['depth'] = kf['depth'].clone()
        kf['depth'][0, 0, 0] = -5.0
    elif what == 'field_config':
        r['field_config'] = dict(r['field_config'], geo_levels='many')
    elif what == 'fused_nan':
        r['fused']['feat_sum'] = r['fused']['feat_sum'].clone()
        r['fused']['feat_sum'][0, 0] = float('nan')
    elif what == 'fused_keys':
        r['fused']['keys'] = r['fused']['keys'].flip(0).clone()
    elif what == 'fused_shape':
        r['fused']['weight'] = r['fused']['weight'][:-1].clone()
    elif what == 'fused_orders':
        r['fused'] = {}
    elif what == 'patch_shape':
        kf['patch'] = kf['patch'][:, :-1].clone()
    elif what == 'patch_nan':
        kf['patch'] = kf['patch'].clone()
        kf['patch'][0, 0, 0, 0] = float('nan')
    elif what == 'sources':
        r['sources'] = dict(r['sources'], source='oracle')
    return r


CASES = {'train_steps': 'train_steps', 'lr_steps_static': 'lr_steps_static', 'prototype': 'prototypes',
         'prototype_name': 'control characters',
         'nan_field': 'NaN or inf', 'nan_pose': 'NaN or inf', 'far_pose': 'max_position', 'not_rigid': 'rigid',
         'zero_stride': 'keyframes', 'too_many': 'keyframes.count', 'field_shape': 'shape',
         'grid_tcnn': 'tiny-cuda-nn', 'bounds': 'bounds', 'depth': 'depth', 'field_config': 'field_config',
         'fused_nan': 'fused.feat_sum', 'fused_keys': 'sorted', 'fused_shape': 'fused layer weight',
         'fused_orders': 'fused_orders', 'sources': 'sources', 'patch_shape': 'keyframes.patch',
         'patch_nan': 'keyframes.patch'}


@pytest.mark.parametrize('what', sorted(CASES))
def test_a_failed_load_changes_nothing(saved, tmp_path, what):
    path, raw = saved
    m = _mapper()
    m.load(str(path))
    cloud = m.cloud()
    m.save_prototype('kept', m.query_point(cloud.xyz[np.argmax(cloud.xyz[:, 2])]))   # the top of an object
    before = _state_of(m)
    bad = tmp_path / f'{what}.pt'
    save_map_file(str(bad), _corrupt(raw, what))
    with pytest.raises(MapFileError, match=CASES[what]):
        m.load(str(bad))
    assert _same(_state_of(m), before)
    assert len(m.cloud()) > 0


def test_oversized_claims_are_refused_before_allocating(saved, tmp_path):
    path, raw = saved
    r = copy.deepcopy(raw)
    kf = r['keyframes']
    kf['count'], kf['size'] = 6, [1920, 1920]          # 6 x 1920^2 keyframes: ~150 MB claimed, 1 byte stored
    kf['rgb'] = torch.zeros(1, dtype=torch.uint8).expand(6, 1920, 1920, 3)
    bad = tmp_path / 'huge.pt'
    save_map_file(str(bad), r)
    assert bad.stat().st_size < 5 * 2 ** 20
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(MapFileError, match='zero-stride|storage|shape'):
        _mapper().load(str(bad))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 100 * 1024      # KiB: nothing expanded


def test_maps_without_grid_record_load_as_the_torch_grid(saved, tmp_path):
    """Format version 1 (before grid_impl was recorded) was always the PyTorch grid."""
    path, raw = saved
    r = copy.deepcopy(raw)
    r['version'] = 1
    del r['grid_impl']
    old = tmp_path / 'v1.pt'
    save_map_file(str(old), r)
    m = _mapper()
    m.load(str(old))
    assert m.field.grid_impl == 'torch'


def test_version_2_maps_load_with_the_fused_layer_rebuilt_from_their_keyframes(saved, tmp_path):
    path, raw = saved
    r = copy.deepcopy(raw)
    r['version'] = 2
    for k in ('fused', 'fused_orders', 'sources'):
        del r[k]
    old = tmp_path / 'v2.pt'
    save_map_file(str(old), r)
    m = _mapper()
    m.load(str(old))
    fused = m.map.fused
    assert m.map.fused_orders == {0, 1, 2, 3} and m.map.sources.source == 'fused'
    assert np.array_equal(fused.keys, raw['fused']['keys'].numpy())
    np.testing.assert_allclose(fused.feat_sum, raw['fused']['feat_sum'].numpy(), atol=1e-5)
