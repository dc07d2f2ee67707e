"""core/cloud/seed_threshold.py: the per-query automatic threshold of feature-only point queries
(the widest margin at the seed component's edge), against Otsu's over the whole cloud."""
import numpy as np
import pytest

from n3f_ros.core.cloud import query_by_point
from n3f_ros.core.cloud.graph import radius_pairs
from n3f_ros.core.cloud.metrics import iou
from n3f_ros.core.cloud.seed_threshold import join_levels, margin_threshold
from n3f_ros.core.cloud.threshold import auto_threshold


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _small_object_on_a_graded_table(seed=0):
    """A 1 cm grid table (61 x 61 points) whose features blend towards a 4 cm object's the nearer
    they lie (a teacher's patch blend): similarity to the object ~0.85 next to it, ~0.35 far away;
    the object (a dome of ~150 points) is itself sharp. Returns xyz, features, object mask, top."""
    rng = np.random.default_rng(seed)
    g = np.arange(-0.3, 0.301, 0.01)
    x, y = np.meshgrid(g, g)
    table = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], 1)
    u, v = np.meshgrid(np.linspace(-0.02, 0.02, 13), np.linspace(-0.02, 0.02, 13))
    keep = u ** 2 + v ** 2 <= 0.02 ** 2
    dome = np.stack([u[keep], v[keep], 0.005 + np.sqrt(np.maximum(0.0, 0.02 ** 2 - u[keep] ** 2 - v[keep] ** 2))], 1)
    xyz = np.concatenate([table, dome]).astype(np.float32)
    obj = np.zeros(len(xyz), bool)
    obj[len(table):] = True
    o, t = _unit(rng.standard_normal(8)), _unit(rng.standard_normal(8))
    t = _unit(t - (t @ o) * o)                                     # orthogonal: cos(o, t) = 0
    r = np.linalg.norm(table[:, :2], axis=1)
    a = np.clip(0.85 - (r - 0.02) * 2.0, 0.35, 0.85)               # similarity to o falls with distance
    f_table = a[:, None] * o + np.sqrt(1 - a ** 2)[:, None] * t
    f_obj = np.tile(o, (keep.sum(), 1))
    feats = _unit(np.concatenate([f_table, f_obj]) + 0.01 * rng.standard_normal((len(xyz), 8))).astype(np.float32)
    return xyz, feats, obj, dome[np.argmax(dome[:, 2])]


def test_a_small_object_on_a_blended_table_is_cut_at_its_edge_where_otsu_floods_the_table():
    xyz, feats, obj, top = _small_object_on_a_graded_table()
    r = query_by_point(xyz, feats, top, radius=0.015, max_share=None, min_spread=None)
    assert iou(r.mask(len(xyz)), obj) > 0.9, (r.threshold, len(r.indices), obj.sum())
    # the same query at Otsu's threshold over the cloud (the previous automatic rule) takes table with it
    otsu = auto_threshold(feats @ _unit(feats[obj].mean(0)))
    r_otsu = query_by_point(xyz, feats, top, radius=0.015, threshold=otsu, max_share=None, min_spread=None)
    assert len(r_otsu.indices) > 3 * obj.sum() and iou(r_otsu.mask(len(xyz)), obj) < 0.35
    assert r.threshold > otsu


def test_join_levels_are_the_thresholds_at_which_points_join_the_seed_component():
    # a chain 0-1-2-3 with similarities 1.0, 0.9, 0.5, 0.8 and an unconnected point 4
    xyz = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [9, 9, 9]], np.float32)
    sims = np.array([1.0, 0.9, 0.5, 0.8, 0.95])
    pairs = radius_pairs(xyz, 1.1)
    levels = join_levels(len(xyz), pairs, sims, root=0)
    assert levels[:4].tolist() == pytest.approx([1.0, 0.9, 0.5, 0.5]) and levels[4] == -np.inf
    # the widest margin: the highest grid step <= 0.9 (0.95 - 3 x 0.02) gives the component {0, 1},
    # whose boundary {2} lies at 0.5 -> margin 0.39; lower steps keep that component with less margin
    t = margin_threshold(levels, sims, pairs, min_size=2, fallback=0.3)
    assert t == pytest.approx(0.89) and set(np.flatnonzero(levels >= t)) == {0, 1}
    # no component of 5 points exists: the fallback
    assert margin_threshold(levels, sims, pairs, min_size=5, fallback=0.42) == 0.42
