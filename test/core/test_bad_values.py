"""Absurd-but-finite and non-finite values through the core's public entry points (SPEC §4): each is
refused with a clear error or made harmless; none reaches an invalid index, none poisons the map,
and outputs never wait for a training step (issue: hardening)."""
import threading
import time

import numpy as np
import pytest
import torch

from n3f_ros.core.camera import PinholeCamera
from n3f_ros.core.cloud import CloudError, QueryError, query_by_point, voxel_downsample
from n3f_ros.core.field.hashgrid import HashGrid
from n3f_ros.core.field.model import FeatureField, FieldConfig
from n3f_ros.core.field.render import RenderSettings, render_rays
from n3f_ros.core.frame import Frame
from n3f_ros.core.mapping import FrameRejected, Mapper, MapperConfig
from n3f_ros.core.mapping.extraction import CloudCache
from n3f_ros.core.raster import clean_depth
from n3f_ros.core.synth import make_sequence
from n3f_ros.core.teacher import SyntheticTeacher

SMALL = FieldConfig(geo_levels=4, geo_log2_table=12, geo_max_resolution=64, feat_levels=2, feat_log2_table=10,
                    feat_max_resolution=32, hidden=16)
ABSURD = (1e38, -1e38, 1e20, float('nan'), float('inf'), -float('inf'))


def _mapper():
    cfg = MapperConfig(teacher_model='synthetic', keyframe_translation=0.0, keyframe_rotation=0.0, max_keyframes=6,
                       keyframe_width=48, rays_per_step=64, bounds_keyframes=4, feature_dim=8, field_config=SMALL)
    return Mapper(cfg, teacher=SyntheticTeacher(seed=1, dim=16, stride=8))


@pytest.fixture(scope='module')
def trained():
    m = _mapper()
    seq = make_sequence(2, 4, 64, 48, shadows=False)
    for f in seq:
        m.integrate(f)
    m.train(5)
    assert len(m.cloud()) > 0
    return m, seq


@pytest.mark.parametrize('value', ABSURD)
def test_hash_grid_and_field_never_index_out_of_range(value):
    grid = HashGrid(n_levels=4, log2_table=10, max_resolution=64)
    x = torch.tensor([[value, 0.5, 0.5], [0.5, value, value], [0.2, 0.3, 0.4]], dtype=torch.float32)
    assert torch.isfinite(grid(x)).all()
    fld = FeatureField(np.array([[-1.0, -1, -1], [1, 1, 1]]), SMALL)
    sigma, rgb, feat = fld(x)
    assert torch.isfinite(sigma).all() and torch.isfinite(rgb).all() and torch.isfinite(feat).all()
    assert sigma[0] == 0 and sigma[1] == 0                     # outside the box (or NaN): empty space
    o = torch.tensor([[value, 0.0, 0.0], [0.0, 0.0, -3.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [value, 0.0, 1.0]])
    out = render_rays(fld, o, d, RenderSettings(n_uniform=4, n_extra=2), depth=torch.tensor([value, 2.0]))
    assert torch.isfinite(out.rgb).all() and torch.isfinite(out.feat).all()


@pytest.mark.parametrize('value', ABSURD)
def test_implausible_frames_never_reach_the_map(trained, value):
    m, seq = trained
    steps, keyframes = m.train_steps, len(m.keyframes)
    f = seq[0]
    T = f.T_world_cam.copy()
    T[0, 3] = value
    with pytest.raises((FrameRejected, ValueError)):         # Frame itself refuses NaN / inf poses
        m.integrate(Frame(f.rgb, f.camera, T, f.stamp, f.depth, f.instance))
    bad_cam = PinholeCamera(abs(value) if np.isfinite(value) else 1e9, 50.0, 32, 24, 64, 48)
    with pytest.raises((FrameRejected, ValueError)):
        m.integrate(Frame(f.rgb, bad_cam, f.T_world_cam, f.stamp, f.depth, f.instance))
    assert len(m.keyframes) == keyframes
    m.train(2)                                                   # training still works
    assert m.train_steps == steps + 2 and np.isfinite(m.trainer.last['loss'])


def test_a_pose_far_outside_the_scene_is_refused_with_its_own_reason(trained):
    m, seq = trained
    f = seq[1]
    T = f.T_world_cam.copy()
    T[:3, 3] += [50.0, 0, 0]                                     # plausible metres, but 50 m from the map
    with pytest.raises(FrameRejected) as e:
        m.integrate(Frame(f.rgb, f.camera, T, f.stamp, f.depth, f.instance))
    assert e.value.reason == 'outside_scene'


def test_absurd_depth_is_unknown_not_geometry():
    d = np.array([[1e6, -1.0, np.nan], [np.inf, 0.5, 1e-9]], np.float32)
    assert np.array_equal(clean_depth(d, 0.1, 5.0), [[0, 0, 0], [0, 0.5, 0]])


@pytest.mark.parametrize('value', ABSURD)
def test_queries_refuse_absurd_points_and_pixels(trained, value):
    m, seq = trained
    with pytest.raises((QueryError, CloudError)):
        m.query_point([value, 0.0, 0.0])
    f = seq[0]
    with pytest.raises(QueryError):
        m.query_pixel(f.camera, f.T_world_cam, None, value, 10.0)
    cloud = m.cloud()
    with pytest.raises(CloudError):
        query_by_point(cloud.xyz, cloud.features, [0, 0, 0], radius=value if value > 0 else -1.0)
    with pytest.raises((CloudError, ValueError)):
        voxel_downsample(np.array([[value, 0, 0]], np.float32), 0.01)


def test_outputs_do_not_wait_for_a_training_step(trained):
    """A query and the diagnostics are answered while the map lock is held (a long training step)
    and while another thread is re-extracting the cloud."""
    m, seq = trained
    cloud = m.cloud()
    p = cloud.xyz[np.argmax(cloud.xyz[:, 2])]                # the top of an object
    held, release = threading.Event(), threading.Event()

    def long_step():
        with m._lock:
            held.set()
            release.wait(10.0)
    t = threading.Thread(target=long_step)
    t.start()
    held.wait(5.0)
    try:
        t0 = time.perf_counter()
        assert len(m.query_point(p)) > 0
        assert m.stats()['keyframes'] == len(m.keyframes)
        assert time.perf_counter() - t0 < 2.0                  # nothing waited for the 10 s step
    finally:
        release.set()
        t.join()
    # a rebuild in progress: the previous cloud answers meanwhile
    entered, go = threading.Event(), threading.Event()
    real = CloudCache.get.__globals__['extract_cloud']

    def slow_extract(*a, **kw):
        entered.set()
        go.wait(10.0)
        return real(*a, **kw)
    CloudCache.get.__globals__['extract_cloud'] = slow_extract
    try:
        m.train(60)                                              # stale: the next cloud() rebuilds
        before = m.latest_cloud()
        rebuild = threading.Thread(target=m.cloud)
        rebuild.start()
        entered.wait(5.0)
        t0 = time.perf_counter()
        assert m.cloud() is before and len(m.query_point(p)) > 0
        assert time.perf_counter() - t0 < 2.0
    finally:
        go.set()
        CloudCache.get.__globals__['extract_cloud'] = real
        rebuild.join()
    assert m.latest_cloud() is not before
