"""TfTree (n3f_ros/io/tf_tree.py): tree lookups, interpolation, static edges, the cache bound and
rejected transforms, without DDS (messages are real geometry_msgs / tf2_msgs objects)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from geometry_msgs.msg import TransformStamped

from n3f_ros.core.camera import invert_pose, pose_from_xyz_quat, quat_to_rot, rotation_angle
from n3f_ros.io.tf_tree import MAX_TRANSLATION, TRANSIENT_REASONS, TfTree
from n3f_ros.io.decode import MessageError


def rot_z(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1.0]])


def pose(xyz, R=None) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = np.eye(3) if R is None else R
    T[:3, 3] = xyz
    return T


# RealSense-like camera mount: camera_link x forward; optical frame z forward, x right, y down.
T_BASE_CAMLINK = pose([0.3, 0.0, 0.5], rot_z(10.0))
T_CAMLINK_OPT = pose_from_xyz_quat([0.0, 0.015, 0.0], [-0.5, 0.5, -0.5, 0.5])


def robot_tree(stamps=(100.0, 100.1, 100.2)) -> TfTree:
    """map -> base_link dynamic (x = t - 100 metres, yaw 30 deg per 0.1 s), then static camera."""
    tree = TfTree()
    for t in stamps:
        tree.add('map', 'base_link', t, pose([t - 100.0, 0.0, 0.0], rot_z(300.0 * (t - 100.0))))
    tree.add('base_link', 'camera_link', 0.0, T_BASE_CAMLINK, static=True)
    tree.add('camera_link', 'camera_color_optical_frame', 0.0, T_CAMLINK_OPT, static=True)
    return tree


def expect(reason: str, fn, *args, **kw):
    with pytest.raises(MessageError) as e:
        fn(*args, **kw)
    assert e.value.reason == reason, e.value
    return e.value


def test_chain_lookup_composes_the_path_and_its_inverse():
    tree = robot_tree()
    T_map_base = pose([0.1, 0.0, 0.0], rot_z(30.0))
    want = T_map_base @ T_BASE_CAMLINK @ T_CAMLINK_OPT
    got = tree.lookup('map', 'camera_color_optical_frame', 100.1)
    np.testing.assert_allclose(got, want, atol=1e-12)
    np.testing.assert_allclose(tree.lookup('camera_color_optical_frame', 'map', 100.1), invert_pose(want),
                               atol=1e-12)
    np.testing.assert_allclose(tree.lookup('/map', 'camera_link', 100.1), T_map_base @ T_BASE_CAMLINK,
                               atol=1e-12)             # a leading '/' is stripped, as in tf2
    np.testing.assert_allclose(tree.lookup('base_link', 'base_link', 5.0), np.eye(4))
    assert tree.frames() == {'map', 'base_link', 'camera_link', 'camera_color_optical_frame'}


def test_lookup_between_branches_goes_through_the_common_ancestor():
    tree = robot_tree()
    T_base_lidar = pose([-0.2, 0.0, 0.8], rot_z(-90.0))
    tree.add('base_link', 'lidar', 0.0, T_base_lidar, static=True)
    want = invert_pose(T_base_lidar) @ T_BASE_CAMLINK @ T_CAMLINK_OPT
    np.testing.assert_allclose(tree.lookup('lidar', 'camera_color_optical_frame', 100.05), want, atol=1e-12)


def test_dynamic_edge_is_interpolated_between_samples():
    tree = robot_tree()
    T = tree.lookup('map', 'base_link', 100.05)            # halfway between 100.0 and 100.1
    np.testing.assert_allclose(T[:3, 3], [0.05, 0.0, 0.0], atol=1e-9)
    assert math.degrees(rotation_angle(T[:3, :3])) == pytest.approx(15.0, abs=1e-6)
    T = tree.lookup('map', 'base_link', 100.175)
    np.testing.assert_allclose(T[:3, 3], [0.175, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(T[:3, :3], rot_z(52.5), atol=1e-9)
    # the static part rides along: optical frame = interpolated base pose x fixed mount
    np.testing.assert_allclose(tree.lookup('map', 'camera_color_optical_frame', 100.175),
                               T @ T_BASE_CAMLINK @ T_CAMLINK_OPT, atol=1e-9)


def test_static_edges_hold_at_any_time_and_dynamic_ones_never_extrapolate():
    tree = robot_tree()
    for t in (0.0, 100.0, 1e9):
        np.testing.assert_allclose(tree.lookup('base_link', 'camera_color_optical_frame', t),
                                   T_BASE_CAMLINK @ T_CAMLINK_OPT, atol=1e-12)
    err = expect('tf_extrapolation_future', tree.lookup, 'map', 'camera_color_optical_frame', 100.25)
    assert 'base_link' in err.text and '0.050 s after' in err.text
    expect('tf_extrapolation_past', tree.lookup, 'map', 'camera_color_optical_frame', 99.9)
    assert tree.check('map', 'camera_color_optical_frame', 100.25) == 'tf_extrapolation_future'
    assert tree.check('map', 'camera_color_optical_frame', 100.2) is None
    assert 'tf_extrapolation_future' in TRANSIENT_REASONS and 'tf_extrapolation_past' not in TRANSIENT_REASONS
    tree.add('map', 'base_link', 100.3, pose([0.3, 0.0, 0.0], rot_z(90.0)))      # the late transform
    assert tree.check('map', 'camera_color_optical_frame', 100.25) is None


def test_latest_common_time_of_a_path():
    tree = robot_tree()
    tree.add('map', 'odom_marker', 100.15, pose([1.0, 2.0, 3.0]))
    tree.add('map', 'odom_marker', 100.16, pose([1.0, 2.0, 4.0]))
    # base_link's newest is 100.2, odom_marker's 100.16: stamp=None looks up both at 100.16
    T = tree.lookup('odom_marker', 'base_link', None)
    np.testing.assert_allclose(T, invert_pose(pose([1.0, 2.0, 4.0])) @ tree.lookup('map', 'base_link', 100.16),
                               atol=1e-9)
    np.testing.assert_allclose(tree.lookup('base_link', 'camera_link', None), T_BASE_CAMLINK)


def test_unknown_and_disconnected_frames():
    tree = robot_tree()
    err = expect('tf_unknown_frame', tree.lookup, 'map', 'camera_depth_optical_frame', 100.1)
    assert 'camera_depth_optical_frame' in err.text
    tree.add('odom', 'wheel', 1.0, np.eye(4), static=True)
    expect('tf_disconnected', tree.lookup, 'map', 'wheel', 100.1)
    assert tree.check('map', 'nowhere', 100.1) == 'tf_unknown_frame'


def test_out_of_order_samples_duplicates_and_reparenting():
    tree = TfTree()
    for t, x in ((2.0, 2.0), (0.0, 0.0), (1.0, 1.0), (1.0, 10.0)):     # 1.0 re-sent: replaces
        tree.add('map', 'base', t, pose([x, 0, 0]))
    assert tree.lookup('map', 'base', 0.5)[0, 3] == pytest.approx(5.0)
    assert tree.lookup('map', 'base', 1.5)[0, 3] == pytest.approx(6.0)
    tree.add('odom', 'base', 3.0, pose([7.0, 0, 0]))       # new parent: the edge restarts from it
    expect('tf_unknown_frame', tree.lookup, 'map', 'base', 3.0)
    assert tree.lookup('odom', 'base', 3.0)[0, 3] == pytest.approx(7.0)
    tree.add('odom', 'base', 0.0, pose([1.0, 0, 0]), static=True)   # static replaces dynamic
    assert tree.lookup('odom', 'base', 123.0)[0, 3] == pytest.approx(1.0)


def test_history_is_bounded_by_cache_time_and_sample_count():
    tree = TfTree(cache_time=2.0, max_samples=50)
    for k in range(301):                                   # 30 s at 10 Hz
        tree.add('map', 'base', k * 0.1, pose([k * 0.1, 0, 0]))
    edge = tree._edges['base']
    assert edge.stamps[0] == pytest.approx(28.0) and edge.stamps[-1] == pytest.approx(30.0)
    assert len(edge.stamps) == 21
    expect('tf_extrapolation_past', tree.lookup, 'map', 'base', 27.9)
    assert tree.lookup('map', 'base', 28.05)[0, 3] == pytest.approx(28.05)
    expect('tf_old_data', tree.add, 'map', 'base', 27.5, pose([0, 0, 0]))
    tree.add('map', 'base', 29.05, pose([29.05, 0, 0]))      # late but inside the window: kept
    assert len(edge.stamps) == 22
    fast = TfTree(cache_time=10.0, max_samples=50)
    for k in range(200):                                   # 1 kHz: the count bound applies first
        fast.add('map', 'base', k * 1e-3, pose([0, 0, 0]))
    assert len(fast._edges['base'].stamps) == 50


def transform_msg(parent, child, sec, xyz, quat) -> TransformStamped:
    m = TransformStamped()
    m.header.frame_id, m.child_frame_id = parent, child
    m.header.stamp.sec, m.header.stamp.nanosec = int(sec), int(round((sec % 1) * 1e9))
    m.transform.translation.x, m.transform.translation.y, m.transform.translation.z = map(float, xyz)
    q = m.transform.rotation
    q.x, q.y, q.z, q.w = map(float, quat)
    return m


@pytest.mark.parametrize('parent, child, xyz, quat, why', [
    ('map', 'base', [math.nan, 0, 0], [0, 0, 0, 1], 'not finite'),
    ('map', 'base', [0, 0, 0], [0, 0, math.inf, 1], 'not finite'),
    ('map', 'base', [0, 0, 0], [0, 0, 0.5, 1], 'norm'),
    ('map', 'base', [0, 0, 0], [0, 0, 0, 0], 'norm'),
    ('map', 'base', [2 * MAX_TRANSLATION, 0, 0], [0, 0, 0, 1], 'exceeds'),
    ('', 'base', [0, 0, 0], [0, 0, 0, 1], 'empty'),
    ('base', '/base', [0, 0, 0], [0, 0, 0, 1], 'itself'),
])
def test_bad_transform_messages_are_rejected_and_the_good_ones_kept(parent, child, xyz, quat, why):
    from tf2_msgs.msg import TFMessage
    tree = TfTree()
    good = transform_msg('map', 'odom', 5.25, [1, 2, 3], [0, 0, math.sin(0.3), math.cos(0.3)])
    errors = tree.add_message(TFMessage(transforms=[transform_msg(parent, child, 5.0, xyz, quat), good]))
    assert [e.reason for e in errors] == ['tf_invalid'] and why in errors[0].text, errors
    T = tree.lookup('map', 'odom', 5.25)
    np.testing.assert_allclose(T[:3, 3], [1, 2, 3])
    np.testing.assert_allclose(T[:3, :3], quat_to_rot([0, 0, math.sin(0.3), math.cos(0.3)]), atol=1e-12)
    assert tree.frames() == {'map', 'odom'}


def test_bad_matrices_loops_and_stamps_are_rejected():
    tree = robot_tree()
    sheared = np.eye(4)
    sheared[0, 1] = 0.2
    expect('tf_invalid', tree.add, 'map', 'x', 1.0, sheared)
    mirror = np.diag([1.0, 1.0, -1.0, 1.0])
    expect('tf_invalid', tree.add, 'map', 'x', 1.0, mirror)
    expect('tf_invalid', tree.add, 'map', 'x', -1.0, np.eye(4))
    expect('tf_invalid', tree.add, 'map', 'x', math.nan, np.eye(4))
    err = expect('tf_invalid', tree.add, 'camera_color_optical_frame', 'map', 1.0, np.eye(4), static=True)
    assert 'loop' in err.text
    errors = tree.add_message(type('M', (), {'transforms': [object()]})())
    assert [e.reason for e in errors] == ['bad_type']
    np.testing.assert_allclose(tree.lookup('map', 'base_link', 100.1)[:3, 3], [0.1, 0, 0], atol=1e-12)
