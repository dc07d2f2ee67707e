"""core/scene_bounds: field bounds from depth points (robust) and from camera views (RGB-only)."""
import math

import numpy as np
import pytest

from n3f_ros.core.camera import look_at
from n3f_ros.core.scene_bounds import bounds_from_depth, bounds_from_views


def inside(b, pts):
    return np.all((pts >= b[0]) & (pts <= b[1]), axis=1)


def test_bounds_contain_points_with_margin():
    rng = np.random.default_rng(0)
    lo, hi = np.array([-1.0, 0.5, 0.0]), np.array([2.0, 1.5, 0.8])
    pts = rng.uniform(lo, hi, (5000, 3))
    b = bounds_from_depth(pts, margin=0.25)
    assert b.shape == (2, 3)
    assert inside(b, pts).all()
    size = hi - lo
    # grown by ~25 % of the size on each side, centred on the data
    np.testing.assert_allclose(b[1] - b[0], 1.5 * size, rtol=0.03)
    np.testing.assert_allclose((b[0] + b[1]) / 2, (lo + hi) / 2, atol=0.02)


def test_bounds_robust_to_outliers():
    rng = np.random.default_rng(1)
    pts = rng.uniform(-0.5, 0.5, (4000, 3))
    outliers = rng.normal(0, 1, (20, 3)) * 100 + 500      # 0.5 % far-away spurious depth
    b = bounds_from_depth(np.concatenate([pts, outliers]))
    assert inside(b, pts).mean() > 0.995
    assert not inside(b, outliers).any()
    assert np.all(b[1] - b[0] < 2.0)
    nan_pts = np.concatenate([pts, np.full((10, 3), np.nan), np.full((5, 3), np.inf)])
    b2 = bounds_from_depth(nan_pts)
    assert np.all(np.isfinite(b2))
    np.testing.assert_allclose(b2, bounds_from_depth(pts), atol=1e-9)


def test_min_extent_for_flat_scenes():
    rng = np.random.default_rng(2)
    pts = np.c_[rng.uniform(0, 2, 1000), rng.uniform(0, 1, 1000), np.full(1000, 0.7)]   # a flat table top
    b = bounds_from_depth(pts, min_extent=0.3)
    ext = b[1] - b[0]
    assert ext[2] == pytest.approx(0.3)
    assert (b[0][2] + b[1][2]) / 2 == pytest.approx(0.7)
    assert ext[0] > 2.0 and ext[1] > 1.0


def test_too_few_points_raises():
    with pytest.raises(ValueError):
        bounds_from_depth(np.zeros((5, 3)))
    with pytest.raises(ValueError):
        bounds_from_depth(np.full((100, 3), np.nan))


def test_bounds_from_orbit_views_centre_on_target():
    target = np.array([0.4, -0.3, 0.2])
    poses = []
    for i in range(12):
        a = 2 * math.pi * i / 12
        eye = target + [1.5 * math.cos(a), 1.5 * math.sin(a), 0.8 + 0.1 * (i % 3)]
        poses.append(look_at(eye, target))
    b = bounds_from_views(poses, radius_factor=0.6)
    np.testing.assert_allclose((b[0] + b[1]) / 2, target, atol=1e-9)
    dist = np.median([np.linalg.norm(T[:3, 3] - target) for T in poses])
    np.testing.assert_allclose(b[1] - b[0], 2 * 0.6 * dist, rtol=1e-9)


def test_bounds_from_two_views_of_a_point():
    target = np.array([1.0, 2.0, 0.0])
    b = bounds_from_views([look_at([3.0, 2.0, 1.0], target), look_at([1.0, -1.0, 2.0], target)])
    np.testing.assert_allclose((b[0] + b[1]) / 2, target, atol=1e-9)


def test_bounds_from_views_least_squares_with_noisy_axes():
    rng = np.random.default_rng(3)
    target = np.zeros(3)
    poses = []
    for i in range(30):
        a = 2 * math.pi * i / 30
        eye = np.array([2 * math.cos(a), 2 * math.sin(a), 1.0])
        poses.append(look_at(eye, target + rng.normal(0, 0.03, 3)))
    b = bounds_from_views(poses)
    assert np.linalg.norm((b[0] + b[1]) / 2 - target) < 0.05


def test_parallel_cameras_raise():
    poses = [look_at([x, 0.0, 0.0], [x, 5.0, 0.0]) for x in (0.0, 1.0, 2.0)]
    with pytest.raises(ValueError):
        bounds_from_views(poses)
    with pytest.raises(ValueError):
        bounds_from_views([look_at([0, 0, 0], [1, 0, 0])])
