"""Tests of n3f_ros.core.cloud on synthetic feature clouds (no ROS, a few seconds in all)."""
import json

import numpy as np
import pytest

from n3f_ros.core.cloud import (
    CloudError,
    EmptyCloudError,
    FeatureCloud,
    FeaturePCA,
    QueryError,
    auto_threshold,
    average_precision,
    edit_cloud,
    iou,
    kmeans_cosine,
    matched_ious,
    matched_miou,
    oriented_box,
    otsu_threshold,
    query_by_point,
    query_by_prototype,
    read_ply,
    save_cloud_views_png,
    segment,
    segment_purity,
    voxel_downsample,
    write_ply,
)

SPHERES = [(0.4, 0.4), (1.0, 0.4), (1.6, 0.4), (0.4, 1.0), (1.0, 1.0), (0.4, 1.6), (1.6, 1.6)]
RADIUS = 0.12
TWINS = (7, 8)  # GT ids of the two spheres sharing one prototype, 0.85 m apart


def make_scene(spacing=0.02, noise=0.3, dim=16, seed=0):
    """A 2 x 2 m plane (GT 1) with 7 spheres of radius 0.12 m resting on it (GT 2..8).

    Every instance has a random unit prototype feature, except the twins (GT 7 and 8) that share
    one. Point features = prototype + Gaussian noise (``noise`` = expected noise norm), then
    normalised. Returns xyz (N, 3) float32, features (N, D) float32, gt (N,) int64.
    """
    rng = np.random.default_rng(seed)
    g = np.arange(0.0, 2.0, spacing)
    X, Y = np.meshgrid(g, g)
    parts, gt = [np.stack([X.ravel(), Y.ravel(), np.zeros(X.size)], 1)], [np.ones(X.size, np.int64)]
    for i, (cx, cy) in enumerate(SPHERES):
        n = int(4 * np.pi * RADIUS ** 2 / spacing ** 2)
        v = rng.normal(size=(n, 3))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        parts.append(v * RADIUS + [cx, cy, RADIUS])
        gt.append(np.full(n, i + 2))
    xyz = np.concatenate(parts)
    xyz += rng.normal(scale=0.1 * spacing, size=xyz.shape)
    gt = np.concatenate(gt)
    protos = rng.normal(size=(9, dim))
    protos[TWINS[1]] = protos[TWINS[0]]
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    f = protos[gt] + rng.normal(scale=noise / np.sqrt(dim), size=(len(gt), dim))
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    return xyz.astype(np.float32), f.astype(np.float32), gt


@pytest.fixture(scope='module')
def scene():
    return make_scene()


def top_of(xyz, gt, obj):
    pts = xyz[gt == obj]
    return pts[np.argmax(pts[:, 2])]


def unit_rows(n, d, seed=0):
    f = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return f / np.linalg.norm(f, axis=1, keepdims=True)


# --------------------------------------------------------------------------------------------
# FeatureCloud
# --------------------------------------------------------------------------------------------

def make_cloud(n=10, d=4, labels=True):
    rng = np.random.default_rng(1)
    return FeatureCloud(rng.uniform(size=(n, 3)), rng.integers(0, 256, (n, 3), dtype=np.uint8),
                        unit_rows(n, d), np.zeros((n, 3), np.uint8),
                        np.arange(n, dtype=np.uint32) if labels else None)


def test_feature_cloud_casts_and_subsets():
    c = make_cloud()
    assert len(c) == 10 and c.dim == 4 and c.xyz.dtype == np.float32
    sub = c.subset(np.array([1, 3, 5]))
    assert len(sub) == 3 and np.array_equal(sub.labels, [1, 3, 5])
    assert np.array_equal(sub.xyz, c.xyz[[1, 3, 5]]) and np.array_equal(sub.features, c.features[[1, 3, 5]])
    mask = np.zeros(10, bool)
    mask[[0, 9]] = True
    assert np.array_equal(c.subset(mask).labels, [0, 9])
    assert len(c.subset(np.zeros(10, bool))) == 0
    assert len(FeatureCloud.empty(8)) == 0


@pytest.mark.parametrize('field, value', [
    ('xyz', np.zeros((10, 2))),
    ('xyz', np.full((10, 3), np.nan)),
    ('rgb', np.zeros((9, 3), np.uint8)),
    ('rgb', np.full((10, 3), 300)),
    ('features', np.ones((10, 4), np.float32)),          # not unit length
    ('features', unit_rows(9, 4)),                       # wrong N
    ('pca_rgb', np.zeros((10, 3), np.float32)),
    ('labels', -np.ones(10, np.int64)),
])
def test_feature_cloud_rejects_bad_fields(field, value):
    c = make_cloud()
    kw = dict(xyz=c.xyz, rgb=c.rgb, features=c.features, pca_rgb=c.pca_rgb, labels=c.labels)
    kw[field] = value
    with pytest.raises(CloudError):
        FeatureCloud(**kw)


def test_subset_rejects_bad_selection():
    c = make_cloud()
    with pytest.raises(CloudError):
        c.subset(np.zeros(9, bool))
    with pytest.raises(CloudError):
        c.subset(np.array([10]))


# --------------------------------------------------------------------------------------------
# Voxel downsampling
# --------------------------------------------------------------------------------------------

def test_voxel_downsample_means_counts_and_alignment():
    xyz = np.array([[0.01, 0.01, 0.01], [0.03, 0.05, 0.02], [0.02, 0.09, 0.08],   # voxel (0, 0, 0)
                    [0.15, 0.01, 0.01], [0.19, 0.03, 0.05],                       # voxel (1, 0, 0)
                    [-0.05, 0.0, 0.0]], np.float32)                                # voxel (-1, 0, 0)
    rgb = np.array([[0, 0, 0], [1, 1, 1], [1, 1, 1], [10, 20, 30], [11, 21, 31], [5, 5, 5]], np.uint8)
    lab = np.array([3, 4, 4, 7, 7, 9], np.uint32)
    feats = np.eye(6, 4, dtype=np.float32)[[0, 0, 1, 2, 2, 3]]
    out, attrs, inv = voxel_downsample(xyz, 0.1, return_inverse=True, rgb=rgb, label=lab,
                                       features=feats, copy=xyz.astype(np.float64))
    assert out.shape == (3, 3) and out.dtype == np.float32
    # rows ordered by voxel index: (-1,0,0), (0,0,0), (1,0,0)
    assert np.array_equal(inv, [1, 1, 1, 2, 2, 0])
    np.testing.assert_allclose(out[1], xyz[:3].mean(0), atol=1e-6)
    np.testing.assert_allclose(out[2], xyz[3:5].mean(0), atol=1e-6)
    np.testing.assert_allclose(attrs['copy'], out, atol=1e-6)      # attributes stay aligned
    assert attrs['copy'].dtype == np.float64
    assert np.array_equal(attrs['rgb'], [[5, 5, 5], [1, 1, 1], [10, 20, 30]])  # 0.67 -> 1, 10.5 -> 10 (even)
    assert attrs['label'].dtype == np.uint32 and np.array_equal(attrs['label'], [9, 4, 7])  # majority
    f = attrs['features']
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(f[1], np.array([2, 1, 0, 0]) / np.sqrt(5), atol=1e-6)


def test_voxel_downsample_matches_open3d_means():
    o3d = pytest.importorskip('open3d')
    rng = np.random.default_rng(3)
    xyz = rng.uniform(-0.5, 0.5, (3000, 3)).astype(np.float32)
    attr = rng.normal(size=(3000, 5)).astype(np.float32)
    pc = o3d.t.geometry.PointCloud(o3d.core.Tensor(xyz))
    pc.point['attr'] = o3d.core.Tensor(attr)
    ref = pc.voxel_down_sample(0.1)
    ours, attrs = voxel_downsample(xyz, 0.1, normalize=(), attr=attr)
    rp, ra = ref.point.positions.numpy(), ref.point['attr'].numpy()
    assert len(rp) == len(ours)
    o1, o2 = np.lexsort(ours.T), np.lexsort(rp.T)
    np.testing.assert_allclose(ours[o1], rp[o2], atol=1e-5)
    np.testing.assert_allclose(attrs['attr'][o1], ra[o2], atol=1e-5)


def test_voxel_downsample_rejects_bad_input():
    xyz = np.zeros((4, 3), np.float32)
    with pytest.raises(CloudError):
        voxel_downsample(xyz, 0.0)
    with pytest.raises(CloudError):
        voxel_downsample(xyz, 0.1, features=np.zeros((3, 2)))
    bad = xyz.copy()
    bad[1, 2] = np.nan
    with pytest.raises(CloudError):
        voxel_downsample(bad, 0.1)
    out, attrs = voxel_downsample(np.zeros((0, 3)), 0.1, features=np.zeros((0, 4), np.float32))
    assert out.shape == (0, 3) and attrs['features'].shape == (0, 4)


# --------------------------------------------------------------------------------------------
# PCA colours
# --------------------------------------------------------------------------------------------

def test_pca_colours_are_stable_and_persistent(scene):
    xyz, f, gt = scene
    first = gt != TWINS[1]                               # the map before the last object was seen
    pca = FeaturePCA().fit(f[first])
    before = pca.colors(f[first])
    assert before.dtype == np.uint8 and before.shape == (first.sum(), 3)
    after = pca.colors(f)                                # map grew: no refit unless asked
    assert np.array_equal(after[first], before)
    # distinct objects get distinct mean colours
    means = np.stack([before[gt[first] == g].mean(0) for g in (2, 3, 4)])
    assert np.linalg.norm(means[0] - means[1]) > 20 and np.linalg.norm(means[1] - means[2]) > 20
    # an explicit refit on the same data is deterministic
    assert np.array_equal(FeaturePCA().fit(f[first]).colors(f), after)
    # state round trip through plain JSON-safe values, or numpy arrays
    state = json.loads(json.dumps(pca.state_dict()))
    arrays = {k: np.asarray(v) for k, v in state.items()}
    for s in (state, arrays):
        assert np.array_equal(FeaturePCA().load_state_dict(s).colors(f), after)
    assert not FeaturePCA().load_state_dict(FeaturePCA().state_dict()).fitted
    # feature images (H, W, D)
    img = f[:600].reshape(20, 30, -1)
    assert np.array_equal(pca.colors(img).reshape(-1, 3), after[:600])


def test_pca_rejects_bad_input(scene):
    _, f, _ = scene
    pca = FeaturePCA().fit(f)
    with pytest.raises(CloudError):
        pca.colors(f[:, :8])
    with pytest.raises(CloudError):
        pca.colors(f[0])
    with pytest.raises(CloudError):
        FeaturePCA().load_state_dict({'percentiles': [1, 99], 'mean': [0.0], 'components': [[1.0]],
                                      'lo': [0, 0, 0], 'hi': [1, 1, 1]})
    with pytest.raises(EmptyCloudError):
        FeaturePCA().fit(np.zeros((0, 4), np.float32))


# --------------------------------------------------------------------------------------------
# Segmentation
# --------------------------------------------------------------------------------------------

def test_kmeans_is_seeded_and_separates_modes(scene):
    _, f, gt = scene
    a, ca = kmeans_cosine(f, 7, seed=1)
    b, cb = kmeans_cosine(f, 7, seed=1)
    assert np.array_equal(a, b) and np.allclose(ca, cb)
    np.testing.assert_allclose(np.linalg.norm(ca, axis=1), 1.0, atol=1e-5)
    same_features = np.where(gt == TWINS[1], TWINS[0], gt)   # the twins are one feature mode
    assert segment_purity(a, same_features) > 0.95 and matched_miou(a + 1, same_features) > 0.95


def test_segmentation_separates_objects_and_splits_twins(scene):
    xyz, f, gt = scene
    labels = segment(xyz, f)                             # default n_clusters=8 > 7 distinct features
    assert labels.dtype == np.uint32 and labels.shape == gt.shape
    ids = np.unique(labels[labels > 0])
    assert np.array_equal(ids, np.arange(1, len(ids) + 1))   # consecutive from 1
    assert matched_miou(labels, gt, ignore=()) > 0.95
    assert segment_purity(labels, gt) > 0.95
    # same features, spatially apart -> different segments
    t7 = np.bincount(labels[gt == TWINS[0]]).argmax()
    t8 = np.bincount(labels[gt == TWINS[1]]).argmax()
    assert t7 != t8 and t7 > 0 and t8 > 0
    assert np.array_equal(segment(xyz, f), labels)           # deterministic


def test_segmentation_over_clustering_is_merged_back():
    xyz, f, gt = make_scene(noise=0.8, seed=2)
    labels = segment(xyz, f, n_clusters=14)
    assert matched_miou(labels, gt, ignore=()) > 0.9


def test_segmentation_tiny_isolated_part_is_unlabelled(scene):
    xyz, f, _ = scene
    far = np.array([[5.0, 5.0, 5.0]], np.float32)
    labels = segment(np.concatenate([xyz, far]), np.concatenate([f, f[:1]]), min_points=20)
    assert labels[-1] == 0 and np.all(labels[:-1] > 0)


def test_segmentation_rejects_bad_input(scene):
    xyz, f, _ = scene
    with pytest.raises(EmptyCloudError):
        segment(np.zeros((0, 3)), np.zeros((0, 4)))
    with pytest.raises(CloudError):
        segment(xyz, f[:-1])
    with pytest.raises(CloudError):
        segment(xyz, f, radius=-1.0)
    bad = f.copy()
    bad[3, 0] = np.nan
    with pytest.raises(CloudError):
        segment(xyz, bad)


# --------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('obj', [2, 3, 6, TWINS[0]])
def test_query_by_point_recovers_the_object(scene, obj):
    xyz, f, gt = scene
    r = query_by_point(xyz, f, top_of(xyz, gt, obj))
    assert iou(r.mask(), gt == obj) > 0.95               # clean data: near 1
    assert np.count_nonzero(gt[r.indices] == (TWINS[1] if obj == TWINS[0] else TWINS[0])) == 0
    assert gt[r.seed_index] == obj
    n, m = len(xyz), len(r)
    assert r.indices.dtype == np.int64 and np.all(np.diff(r.indices) > 0)
    assert r.xyz.shape == (m, 3) and r.similarity.shape == (m,) and r.all_similarity.shape == (n,)
    assert r.similarity.dtype == np.float32 and r.all_similarity.dtype == np.float32
    assert np.all(r.similarity >= r.threshold) and 0.3 <= r.threshold <= 0.95
    np.testing.assert_allclose(r.centroid, xyz[gt == obj].mean(0), atol=0.01)
    assert np.all(r.box.contains(r.xyz))
    np.testing.assert_allclose(r.box.R.T @ r.box.R, np.eye(3), atol=1e-9)
    assert np.linalg.det(r.box.R) == pytest.approx(1.0)
    assert np.all(r.box.extent <= 2 * RADIUS + 0.03) and np.all(r.box.extent > RADIUS)
    assert r.score == pytest.approx(float(r.similarity.mean()))
    assert r.prototype.shape == (f.shape[1],) and np.linalg.norm(r.prototype) == pytest.approx(1, abs=1e-5)


def test_query_by_point_noisy_features_and_given_threshold():
    xyz, f, gt = make_scene(noise=0.9, seed=4)
    r = query_by_point(xyz, f, top_of(xyz, gt, 4))
    assert iou(r.mask(), gt == 4) >= 0.5
    r2 = query_by_point(xyz, f, top_of(xyz, gt, 4), threshold=0.5, radius=0.05)
    assert r2.threshold == 0.5 and r2.radius == 0.05 and iou(r2.mask(), gt == 4) >= 0.5


def test_query_by_prototype_finds_the_saved_object(scene):
    xyz, f, gt = scene
    saved = query_by_point(xyz, f, top_of(xyz, gt, 3))
    r = query_by_prototype(xyz, f, saved.prototype, name='mug')
    assert r.name == 'mug' and r.seed_index is None
    assert iou(r.mask(), gt == 3) > 0.95
    twin = query_by_prototype(xyz, f, query_by_point(xyz, f, top_of(xyz, gt, TWINS[0])).prototype)
    best = max(iou(twin.mask(), gt == TWINS[0]), iou(twin.mask(), gt == TWINS[1]))
    assert best > 0.95                                   # one of the twins, not both


def test_query_errors(scene):
    xyz, f, gt = scene
    with pytest.raises(QueryError):
        query_by_point(xyz, f, [10.0, 10.0, 10.0])       # far from the cloud
    with pytest.raises(CloudError):
        query_by_point(xyz, f, [np.nan, 0.0, 0.0])
    with pytest.raises(CloudError):
        query_by_point(xyz, f[:-1], xyz[0])
    with pytest.raises(EmptyCloudError):
        query_by_point(np.zeros((0, 3)), np.zeros((0, 16)), [0.0, 0.0, 0.0])
    with pytest.raises(CloudError):
        query_by_point(xyz, f, xyz[0], threshold=1.5)
    with pytest.raises(CloudError):
        query_by_prototype(xyz, f, np.ones(8))          # wrong dimension
    with pytest.raises(CloudError):
        query_by_prototype(xyz, f, np.zeros(16))
    with pytest.raises(QueryError):
        query_by_prototype(xyz, f, -f[gt == 2].mean(0), threshold=0.99)
    assert issubclass(QueryError, ValueError)


def test_thresholds():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(0.2, 0.05, 5000), rng.normal(0.85, 0.03, 500)])
    assert 0.35 < otsu_threshold(v) < 0.75
    assert 0.35 < auto_threshold(v) < 0.75
    assert otsu_threshold(np.full(5, 0.4)) == pytest.approx(0.4)
    assert auto_threshold(np.full(5, 0.1)) == pytest.approx(0.3)


def test_oriented_box_degenerate_sets():
    one = oriented_box(np.array([[1.0, 2.0, 3.0]]))
    assert np.allclose(one.center, [1, 2, 3]) and np.allclose(one.extent, 0) and np.allclose(one.R, np.eye(3))
    line = oriented_box(np.array([[0.0, 0, 0], [1, 1, 0], [2, 2, 0]]))
    assert line.extent[0] == pytest.approx(np.sqrt(8)) and np.allclose(line.extent[1:], 0)
    assert np.allclose(line.center, [1, 1, 0])
    with pytest.raises(EmptyCloudError):
        oriented_box(np.zeros((0, 3)))


# --------------------------------------------------------------------------------------------
# Edits
# --------------------------------------------------------------------------------------------

def test_edit_remove_and_extract_are_complementary(scene):
    xyz, f, gt = scene
    r = query_by_point(xyz, f, top_of(xyz, gt, 5))
    keep = edit_cloud(len(xyz), r, 'remove')
    only = edit_cloud(len(xyz), r, 'extract')
    assert keep.dtype == bool and np.array_equal(keep, ~only) and only.sum() == len(r)
    cloud = FeatureCloud(xyz, np.zeros((len(xyz), 3), np.uint8), f, np.zeros((len(xyz), 3), np.uint8),
                         gt.astype(np.uint32))
    removed, extracted = edit_cloud(cloud, r, 'remove'), edit_cloud(cloud, r, 'extract')
    assert len(removed) + len(extracted) == len(cloud)
    assert np.array_equal(extracted.xyz, r.xyz)
    assert np.count_nonzero(removed.labels == 5) < 0.05 * np.count_nonzero(gt == 5)
    with pytest.raises(ValueError):
        edit_cloud(cloud, r, 'delete')
    with pytest.raises(ValueError):
        edit_cloud(10, r, 'remove')                      # result of a bigger cloud


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------

def test_iou():
    assert iou(np.array([1, 1, 0, 0], bool), np.array([0, 1, 1, 0], bool)) == pytest.approx(1 / 3)
    assert iou(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    with pytest.raises(CloudError):
        iou(np.zeros(3, bool), np.zeros(4, bool))


def test_average_precision_hand_computed():
    # ranks: 0.8 (+) P=1 R=.5 | 0.4 (-) | 0.35 (+) P=2/3 R=1 | 0.1 (-): AP = .5*1 + .5*2/3
    assert average_precision([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.5 + 1 / 3)
    # tied scores form one threshold: {0.5, 0.5}: P=1/2 R=1/2, then 0.2: P=2/3 R=1
    assert average_precision([0.5, 0.5, 0.2], [True, False, True]) == pytest.approx(0.25 + 1 / 3)
    assert average_precision([0.9, 0.1], [1, 0]) == 1.0
    assert np.isnan(average_precision([0.9, 0.1], [0, 0]))
    with pytest.raises(CloudError):
        average_precision([0.1, np.nan], [1, 0])
    with pytest.raises(CloudError):
        average_precision([0.1, 0.2], [1, 0, 1])


def test_matched_miou_and_purity():
    gt = np.array([1, 1, 1, 2, 2, 2, 0, 0])
    pred = np.array([5, 5, 5, 9, 9, 9, 1, 1])            # permuted ids, perfect on GT != 0
    assert matched_miou(pred, gt) == 1.0
    pred2 = np.array([5, 5, 9, 9, 9, 9, 0, 0])           # segment 9 covers one point of GT 1
    ious = matched_ious(pred2, gt)
    assert ious[1] == pytest.approx(2 / 3) and ious[2] == pytest.approx(3 / 4)
    assert matched_miou(np.zeros(8, int), gt) == 0.0      # unlabelled everywhere
    assert segment_purity(pred2, gt) == pytest.approx((1 + 3 / 4) / 2)
    assert segment_purity(pred2, gt, weighted=True) == pytest.approx(5 / 6)
    with pytest.raises(CloudError):
        matched_miou(pred[:-1], gt)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------

def test_ply_round_trip(tmp_path, scene):
    xyz, f, gt = scene
    rgb = FeaturePCA().colors(f)
    sim = f @ f[0]
    path = tmp_path / 'cloud.ply'
    write_ply(path, xyz, rgb, gt.astype(np.uint32), extra={'similarity': sim})
    head = path.read_bytes()[:400]
    assert head.startswith(b'ply\nformat binary_little_endian 1.0\n') and b'property uint label' in head
    data = read_ply(path)
    assert list(data) == ['x', 'y', 'z', 'red', 'green', 'blue', 'label', 'similarity']
    assert np.array_equal(np.stack([data['x'], data['y'], data['z']], 1), xyz)
    assert np.array_equal(np.stack([data['red'], data['green'], data['blue']], 1), rgb)
    assert data['label'].dtype == np.uint32 and np.array_equal(data['label'], gt)
    assert np.array_equal(data['similarity'], sim.astype(np.float32))
    only_xyz = tmp_path / 'xyz.ply'
    write_ply(only_xyz, xyz[:5])
    assert list(read_ply(only_xyz)) == ['x', 'y', 'z']
    truncated = tmp_path / 'bad.ply'
    truncated.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(CloudError):
        read_ply(truncated)
    with pytest.raises(CloudError):
        write_ply(tmp_path / 'x.ply', xyz, extra={'bad name': sim})


def test_cloud_views_png(tmp_path, scene):
    xyz, f, _ = scene
    path = tmp_path / 'views.png'
    save_cloud_views_png(path, xyz, FeaturePCA().colors(f), 'synthetic scene', max_points=3000)
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
