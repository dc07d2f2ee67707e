"""pose_buffer.py and validation.py (no rclpy)."""
import numpy as np
import pytest

from n3f_ros.core.camera import PinholeCamera, pose_from_xyz_quat, rot_to_quat, rotation_angle
from n3f_ros.io.decode import MessageError
from n3f_ros.io.pose_buffer import PoseBuffer
from n3f_ros.io.validation import StampMonitor, align_depth, check_depth, fit_camera


def _T(x, yaw):
    return pose_from_xyz_quat([x, 0, 0], [0, 0, np.sin(yaw / 2), np.cos(yaw / 2)])


def _reason(fn, *a, **kw):
    with pytest.raises(MessageError) as e:
        fn(*a, **kw)
    return e.value.reason


def test_slerp_half_way():
    b = PoseBuffer()
    b.add(1.0, _T(0.0, 0.0))
    b.add(1.1, _T(1.0, np.pi / 2))
    T = b.lookup(1.05, max_dt=0.05)
    np.testing.assert_allclose(T[:3, 3], [0.5, 0, 0], atol=1e-9)
    assert rotation_angle(T[:3, :3]) == pytest.approx(np.pi / 4)
    np.testing.assert_allclose(rot_to_quat(T[:3, :3]), [0, 0, np.sin(np.pi / 8), np.cos(np.pi / 8)],
                               atol=1e-9)
    T = b.lookup(1.075, max_dt=0.05)       # 3/4 of the way, nearer pose 25 ms away
    np.testing.assert_allclose(T[:3, 3], [0.75, 0, 0], atol=1e-9)


def test_exact_nearest_and_drop():
    b = PoseBuffer()
    b.add(1.0, _T(0.0, 0.0))
    b.add(2.0, _T(1.0, 0.0))
    np.testing.assert_allclose(b.lookup(2.0, 0.01), _T(1.0, 0.0))
    np.testing.assert_allclose(b.lookup(1.03, 0.05), _T(0.0, 0.0))   # gap 1 s: nearest, no interp
    np.testing.assert_allclose(b.lookup(2.04, 0.05), _T(1.0, 0.0))   # after newest: nearest
    assert _reason(b.lookup, 1.5, 0.05) == 'no_pose'
    assert _reason(b.lookup, 2.2, 0.05) == 'no_pose'
    assert _reason(b.lookup, 0.5, 0.05) == 'no_pose'
    assert _reason(PoseBuffer().lookup, 0.0, 1.0) == 'no_pose'


def test_backwards_and_bounds():
    b = PoseBuffer(max_age=1.0, max_size=5)
    b.add(1.0, _T(0, 0))
    b.add(0.9, _T(1, 0))                                    # out of order, within max_age: inserted
    np.testing.assert_allclose(b.lookup(0.95, 0.05), _T(0.5, 0))
    assert _reason(b.add, -0.1, _T(0, 0)) == 'stamp_backwards'   # older than what is kept
    b.add(1.0, _T(3, 0))                                    # same stamp replaces
    np.testing.assert_allclose(b.lookup(1.0, 0.01), _T(3, 0))
    for i in range(20):
        b.add(2.0 + 0.1 * i, _T(i, 0))
    assert len(b) == 5 and b.latest_stamp == pytest.approx(3.9)
    b2 = PoseBuffer(max_age=1.0)
    for t in np.arange(0, 5, 0.5):
        b2.add(t, _T(t, 0))
    assert len(b2) == 3                                      # 3.5, 4.0, 4.5


def test_stamp_monitor():
    m = StampMonitor(max_future_dt=1.0)
    m.check('image', 10.0, now=10.0)
    m.check('image', 10.0, now=10.0)                         # duplicate allowed
    m.check('depth', 5.0, now=10.0)                          # per topic
    assert _reason(m.check, 'image', 9.9, now=10.0) == 'stamp_backwards'
    assert _reason(m.check, 'image', 11.5, now=10.0) == 'stamp_future'
    m.check('image', 11.5, now=0.0)                          # clock not running: no future test
    m.reset()
    m.check('image', 1.0, now=10.0)
    # one stamp a little ahead of the clock (accepted) does not turn the next valid ones backwards
    m = StampMonitor(max_future_dt=1.0)
    m.check('pose', 10.9, now=10.0)
    m.check('pose', 10.05, now=10.05)
    assert _reason(m.check, 'pose', 9.9, now=10.1) == 'stamp_backwards'


def test_fit_camera_scales_k():
    cam = PinholeCamera(500, 500, 320, 240, 640, 480)
    assert fit_camera(cam, 640, 480) is cam
    half = fit_camera(cam, 320, 240)
    assert (half.fx, half.cx, half.cy, half.size) == (250, 160, 120, (320, 240))
    fit_camera(cam, 321, 240)                               # rounding: within a pixel
    assert _reason(fit_camera, cam, 320, 320) == 'size_mismatch'
    assert _reason(fit_camera, cam, 640, 360) == 'size_mismatch'


def test_depth_align_and_clean():
    d = np.arange(12, dtype=np.float32).reshape(3, 4)
    up = align_depth(d, 8, 6)
    assert up.shape == (6, 8) and up[0, 0] == d[0, 0] and up[5, 7] == d[2, 3]
    assert set(np.unique(up)) <= set(np.unique(d))            # nearest: no mixing
    assert _reason(align_depth, d, 8, 8) == 'size_mismatch'
    raw = np.array([[np.nan, -1.0, 0.0, 1.0], [2.0, 9.0, np.inf, 0.05]], np.float32)
    out, frac = check_depth(raw, 0.1, 5.0)
    assert out.tolist() == [[0, 0, 0, 1.0], [2.0, 0, 0, 0]] and frac == pytest.approx(0.25)
    assert _reason(check_depth, np.full((2, 2), np.nan, np.float32)) == 'bad_depth'
    assert _reason(check_depth, np.zeros((2, 2), np.float32)) == 'bad_depth'
