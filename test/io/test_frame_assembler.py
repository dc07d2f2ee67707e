"""sync.FrameAssembler: image/depth/pose/camera pairing by stamp (no rclpy)."""
import numpy as np
import pytest

from n3f_ros.core.camera import PinholeCamera, pose_from_xyz_quat
from n3f_ros.io.frame_assembler import FrameAssembler

CAM = PinholeCamera(80.0, 80.0, 40.0, 30.0, 80, 60)
RGB = np.zeros((30, 40, 3), np.uint8)          # half the camera_info size: K is scaled


def _T(x):
    return pose_from_xyz_quat([x, 0, 0], [0, 0, 0, 1])


def _depth(value=1.0, shape=(60, 80)):
    return np.full(shape, value, np.float32)


def test_pose_arrives_after_image_then_interpolated():
    a = FrameAssembler(max_pose_dt=0.05, hold_time=0.5)
    a.set_camera(CAM)
    a.add_pose(1.0, _T(0.0))
    a.add_image(1.02, RGB, 'cam', wall=0.0)
    assert a.poll(wall=0.1) == ([], [])                  # waits for a pose after 1.02
    a.add_pose(1.04, _T(1.0))
    frames, errors = a.poll(wall=0.15)
    assert errors == [] and len(frames) == 1
    f = frames[0].frame
    assert f.T_world_cam[0, 3] == pytest.approx(0.5) and f.depth is None
    assert f.camera.size == (40, 30) and f.camera.fx == 40.0 and frames[0].frame_id == 'cam'


def test_timeout_uses_nearest_or_drops():
    a = FrameAssembler(max_pose_dt=0.05, hold_time=0.5)
    a.set_camera(CAM)
    a.add_pose(1.0, _T(0.0))
    a.add_image(1.03, RGB, 'cam', wall=0.0)
    a.add_image(1.5, RGB, 'cam', wall=0.0)
    assert a.poll(wall=0.2) == ([], [])
    frames, errors = a.poll(wall=0.6)
    assert len(frames) == 1 and frames[0].frame.T_world_cam[0, 3] == 0.0
    assert [e.reason for e in errors] == ['no_pose']


def test_depth_pairing_and_rgb_only_fallback():
    a = FrameAssembler(max_pose_dt=0.05, hold_time=0.5)
    a.set_camera(CAM)
    for t in (1.0, 1.1, 1.2):
        a.add_pose(t, _T(t))
    a.add_depth(0.99, _depth(2.0), wall=0.0)              # depth now active
    a.add_image(1.1, RGB, 'cam', wall=0.0)
    assert a.poll(wall=0.1) == ([], [])                  # waits for depth near 1.1
    d = _depth(3.0)
    d[:2] = np.nan
    a.add_depth(1.1, d, wall=0.1)
    frames, _ = a.poll(wall=0.1)
    d = frames[0].frame.depth
    assert d.shape == (30, 40) and d.max() == 3.0 and d[0, 0] == 0.0   # NaN masked to 0, resized
    a.add_image(1.2, RGB, 'cam', wall=0.2)
    frames, errors = a.poll(wall=0.8)                     # no depth came: RGB-only after hold_time
    assert frames[0].frame.depth is None and a.warnings['depth_unmatched'] == 1 and not errors


def test_errors_are_reported_not_raised():
    a = FrameAssembler()
    a.add_pose(1.0, _T(0.0))
    a.add_image(1.0, RGB, 'cam', wall=0.0)
    assert [e.reason for e in a.poll(1.0)[1]] == ['no_camera_info']
    a.set_camera(CAM)
    a.add_image(1.0, np.zeros((60, 60, 3), np.uint8), 'cam', wall=0.0)
    assert [e.reason for e in a.poll(1.0)[1]] == ['size_mismatch']
    with pytest.raises(Exception) as e:
        a.add_depth(1.0, np.zeros((4, 4), np.float32), wall=0.0)
    assert e.value.reason == 'bad_depth'
    dropped = [a.add_image(2.0 + i, RGB, 'cam', wall=1.0) for i in range(6)]
    assert sum(len(d) for d in dropped) == 2 and a.pending == 4


def test_an_image_waits_for_a_camera_info_that_comes_just_after_it():
    a = FrameAssembler(max_pose_dt=0.05, hold_time=0.5)
    a.add_pose(1.0, _T(0.0))
    a.add_image(1.0, RGB, 'cam', wall=0.0)
    assert a.poll(wall=0.1) == ([], [])                  # no intrinsics yet: it waits
    a.set_camera(CAM, 1.0, 'cam')
    frames, errors = a.poll(wall=0.15)
    assert len(frames) == 1 and not errors
    a.add_image(2.0, RGB, 'cam', wall=1.0)
    a.add_pose(2.0, _T(1.0))
    a.clear()
    a.add_pose(3.0, _T(1.0))
    a.add_image(3.0, RGB, 'cam', wall=2.0)
    assert [e.reason for e in a.poll(wall=2.6)[1]] == ['no_camera_info']   # never came: dropped after hold_time
