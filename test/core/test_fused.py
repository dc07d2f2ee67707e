"""The fused-teacher layer (core/mapping/fused.py) and the measured choice of features
(core/mapping/sources.py), at toy sizes."""
import numpy as np
import pytest

from n3f_ros.core.mapping.fused import FusedLayer, FusedLayerError, voxel_keys
from n3f_ros.core.mapping.sources import FeatureSources, SourceErrors, combine

VOX = 0.01


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_running_mean_one_observation_per_keyframe_and_voxel():
    layer = FusedLayer(VOX, 4, 1000)
    a, b = _unit(np.array([1.0, 0, 0, 0])), _unit(np.array([0, 1.0, 0, 0]))
    # keyframe 0: ten samples of one voxel (one observation), one sample of another
    pts = np.array([[0.001 * i, 0.0005, 0.0005] for i in range(10)] + [[0.055, 0.0, 0.0]])
    feats = np.array([a] * 10 + [b], np.float32)
    assert layer.integrate(pts, feats, np.full((11, 3), 100, np.uint8), [0, 0, 1.0], tick=0) == 2
    # keyframe 1 sees the first voxel with feature b, from another camera
    layer.integrate(np.array([[0.005, 0.005, 0.005]]), np.array([b], np.float32), np.full((1, 3), 200, np.uint8),
                    [1.0, 0, 0], tick=1)
    assert len(layer) == 2 and layer.fused_keyframes == 2
    row = layer.lookup(np.array([[0.002, 0.002, 0.002], [0.051, 0.001, 0.001], [0.5, 0.5, 0.5]]))
    assert row[2] == -1 and row[0] >= 0 and row[1] >= 0
    np.testing.assert_allclose(layer.features(row[:1])[0], _unit(a + b), atol=1e-6)   # each keyframe weighs 1
    assert layer.weight[row[0]] == 2 and layer.weight[row[1]] == 1
    p = layer.points()
    np.testing.assert_allclose(p['rgb'][row[0]], [150, 150, 150])
    assert np.all(np.floor(p['xyz'][row[0]] / VOX) == 0)                             # mean position in its voxel
    np.testing.assert_allclose(np.linalg.norm(p['view'], axis=1), 1.0, atol=1e-5)
    assert p['view'][row[0]] @ _unit(np.array([1.0, 0, 1.0])) > 0.9                 # towards both cameras


def test_bounded_memory_evicts_the_least_recently_seen():
    layer = FusedLayer(VOX, 3, 100)
    rng = np.random.default_rng(0)
    for tick in range(8):                        # each keyframe sees 30 new voxels along x
        pts = np.stack([(np.arange(30) + 30 * tick) * VOX + 0.005, np.full(30, 0.005), np.full(30, 0.005)], 1)
        layer.integrate(pts, _unit(rng.normal(size=(30, 3))).astype(np.float32), np.zeros((30, 3), np.uint8),
                        [0, 0, 1.0], tick)
        assert len(layer) <= 100
    assert layer.evicted == 8 * 30 - len(layer)
    assert layer.last.min() >= 5                 # only the newest keyframes' voxels are left
    first = np.array([[0.005, 0.005, 0.005]])
    assert layer.lookup(first)[0] == -1


def test_state_round_trip_and_validation():
    layer = FusedLayer(VOX, 3, 50)
    rng = np.random.default_rng(1)
    layer.integrate(rng.uniform(0, 0.1, (40, 3)), _unit(rng.normal(size=(40, 3))).astype(np.float32),
                    np.zeros((40, 3), np.uint8), [0, 0, 1.0], 3)
    st = layer.state_dict()
    back = FusedLayer.from_state(st, 50, 10.0)
    assert np.array_equal(back.keys, layer.keys) and np.array_equal(back.feat_sum, layer.feat_sum)
    for bad, match in ((dict(st, weight=st['weight'][:-1]), 'weight'),
                       (dict(st, keys=st['keys'][::-1].copy()), 'sorted'),
                       (dict(st, feat_sum=np.full_like(st['feat_sum'], np.nan)), 'NaN'),
                       (dict(st, xyz_sum=st['xyz_sum'] * 1e6), 'max_position'),
                       (dict(st, voxel_size='big'), 'malformed')):
        with pytest.raises(FusedLayerError, match=match):
            FusedLayer.from_state(bad, 50, 10.0)
    with pytest.raises(FusedLayerError, match='more than'):
        FusedLayer.from_state(st, len(layer) - 1, 10.0)
    with pytest.raises(FusedLayerError):
        voxel_keys(np.array([[1e5, 0, 0]]), VOX)            # beyond the packed grid


def test_feature_choice_follows_the_held_out_errors_with_a_margin():
    src = FeatureSources()
    assert src.source == 'fused' and src.agreement() == 0.0
    e = SourceErrors(100, 2, 500, fused=0.30, student=0.299, combined=0.31, alpha=0.5)
    assert src.update(e, student_available=True) == 'fused'               # within the margin: keep
    assert src.update(SourceErrors(200, 2, 500, 0.30, 0.25, 0.22, 0.75), True) == 'combined'
    assert src.alpha == 0.75 and src.agreement() == pytest.approx(0.78)
    assert src.update(SourceErrors(300, 2, 500, 0.30, 0.20, 0.21, 0.75), True) == 'student'
    assert src.update(SourceErrors(400, 0, 500, 0.30, np.nan, np.nan, np.nan), False) == 'fused'
    f, s = _unit(np.array([[1.0, 0], [0, 1.0]])), _unit(np.array([[0, 1.0], [0, 1.0]]))
    out, name = src.select(f, s)
    assert name == 'fused' and np.array_equal(out, f)
    np.testing.assert_allclose(combine(f, s, 0.5)[0], _unit(np.array([1.0, 1.0])))
    forced = FeatureSources('student')
    assert forced.update(SourceErrors(1, 1, 1, 0.1, 0.5, 0.5, 0.5), True) == 'student'
    with pytest.raises(ValueError):
        FeatureSources('oracle')
