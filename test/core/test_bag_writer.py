"""rosbag2 writer: bags written from a synthetic sequence read back with rosbags' Reader."""
import io
import json

import numpy as np
import pytest
from PIL import Image
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from n3f_ros.bag import (
    DEFAULT_EXTRINSIC,
    METADATA_FILE,
    BagOptions,
    BagWriteError,
    extrinsic_from_list,
    write_synthetic_bag,
)
from n3f_ros.bag.writer import pose_times
from n3f_ros.core.camera import interpolate_pose, pose_from_xyz_quat, rotation_angle
from n3f_ros.core.synth import make_sequence

W, H, N = 48, 32, 4
TS = get_typestore(Stores.ROS2_JAZZY)
IMG, INFO, DEPTH = '/camera/color/image_raw', '/camera/color/camera_info', '/camera/aligned_depth_to_color/image_raw'


@pytest.fixture(scope='module')
def seq():
    return make_sequence(11, N, W, H, fps=10.0)


@pytest.fixture(scope='module')
def frames(seq):
    return list(seq)


def read_bag(path):
    """{topic: [(log_time_ns, msg), ...]} and {topic: msgtype}."""
    out, types = {}, {}
    with Reader(path) as reader:
        for conn in reader.connections:
            types[conn.topic] = conn.msgtype
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, TS.deserialize_cdr(raw, conn.msgtype)))
    return out, types


def stamp_s(msg, start):
    return msg.header.stamp.sec - int(start) + msg.header.stamp.nanosec * 1e-9


def pose_of(p):
    return pose_from_xyz_quat([p.position.x, p.position.y, p.position.z],
                              [p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w])


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_raw_bag_round_trip(tmp_path, seq, frames, storage):
    opt = BagOptions(storage=storage)
    summary = write_synthetic_bag(seq, tmp_path / 'bag', opt)
    msgs, types = read_bag(tmp_path / 'bag')
    n_pose = len(pose_times(N, seq.fps, opt.pose_rate, opt.pose_offset))
    assert types == {IMG: 'sensor_msgs/msg/Image', INFO: 'sensor_msgs/msg/CameraInfo',
                     DEPTH: 'sensor_msgs/msg/Image', '/camera/pose': 'geometry_msgs/msg/PoseStamped'}
    assert {k: len(v) for k, v in msgs.items()} == {IMG: N, INFO: N, DEPTH: N, '/camera/pose': n_pose}
    assert summary.counts == {k: len(v) for k, v in msgs.items()}
    for i, ((t, img), (_, info), (_, dep)) in enumerate(zip(msgs[IMG], msgs[INFO], msgs[DEPTH])):
        f = frames[i]
        assert t == int(opt.start_time) * 10 ** 9 + round(f.stamp * 1e9)
        assert stamp_s(img, opt.start_time) == pytest.approx(f.stamp, abs=1e-9)
        assert img.header.frame_id == dep.header.frame_id == info.header.frame_id == 'camera_color_optical_frame'
        assert (img.encoding, img.width, img.height, img.step) == ('rgb8', W, H, 3 * W)
        assert np.array_equal(img.data.reshape(H, W, 3), f.rgb)
        assert (dep.encoding, dep.step) == ('16UC1', 2 * W)
        mm = dep.data.view('<u2').reshape(H, W)
        assert np.abs(mm / 1000.0 - f.depth).max() <= 0.0005 + 1e-6
        assert np.allclose(info.k.reshape(3, 3), seq.camera.K) and (info.width, info.height) == (W, H)
    # log times are sorted, poses bracket the images, and a pose exists at every image stamp
    all_t = [t for v in msgs.values() for t, _ in v]
    pose_msgs = msgs['/camera/pose']
    assert min(all_t) == pose_msgs[0][0] and max(all_t) == pose_msgs[-1][0]
    by_stamp = {round(stamp_s(m, opt.start_time), 6): m for _, m in pose_msgs}
    for f in frames:
        m = by_stamp[round(f.stamp, 6)]
        assert m.header.frame_id == 'map'
        assert np.allclose(pose_of(m.pose), f.T_world_cam, atol=1e-9)


def test_compressed_bgr8_no_depth(tmp_path, seq, frames):
    write_synthetic_bag(seq, tmp_path / 'c', BagOptions(compressed=True, depth=False))
    msgs, types = read_bag(tmp_path / 'c')
    assert set(types) == {IMG + '/compressed', INFO, '/camera/pose'}
    assert types[IMG + '/compressed'] == 'sensor_msgs/msg/CompressedImage'
    for (_, m), f in zip(msgs[IMG + '/compressed'], frames):
        assert 'jpeg' in m.format
        rgb = np.asarray(Image.open(io.BytesIO(m.data.tobytes())).convert('RGB'))
        assert rgb.shape == f.rgb.shape and np.abs(rgb.astype(int) - f.rgb).mean() < 12
    write_synthetic_bag(seq, tmp_path / 'b', BagOptions(encoding='bgr8', storage='sqlite3'))
    msgs, _ = read_bag(tmp_path / 'b')
    img = msgs[IMG][0][1]
    assert img.encoding == 'bgr8' and np.array_equal(img.data.reshape(H, W, 3)[..., ::-1], frames[0].rgb)


def test_odom_with_offset_needs_interpolation(tmp_path):
    seq = make_sequence(11, 40, 24, 16)       # 9 degrees of orbit per image, 3 degrees per pose
    frames = list(seq)
    opt = BagOptions(pose_source='odom', pose_offset=0.013, pose_rate=3.0)
    write_synthetic_bag(seq, tmp_path / 'o', opt)
    msgs, types = read_bag(tmp_path / 'o')
    assert types['/odom'] == 'nav_msgs/msg/Odometry' and '/camera/pose' not in types
    meta = json.loads((tmp_path / 'o' / METADATA_FILE).read_text())
    T_base_cam = extrinsic_from_list(meta['camera_extrinsic'])
    assert np.allclose(T_base_cam, DEFAULT_EXTRINSIC, atol=1e-9)
    odom = [(stamp_s(m, opt.start_time), m) for _, m in msgs['/odom']]
    stamps = np.array([s for s, _ in odom])
    assert np.allclose(np.diff(stamps), 1 / 30, atol=1e-6)
    for s, m in odom:
        assert m.header.frame_id == 'map' and m.child_frame_id == 'base_link'
        assert np.allclose(pose_of(m.pose.pose) @ T_base_cam, seq.pose_at(s), atol=1e-8)
    for f in frames:           # no pose at an image stamp, but interpolating the bracketing two is exact enough
        assert np.min(np.abs(stamps - f.stamp)) > 0.005
        k = int(np.searchsorted(stamps, f.stamp))
        (s0, m0), (s1, m1) = odom[k - 1], odom[k]
        T = interpolate_pose(pose_of(m0.pose.pose), pose_of(m1.pose.pose), (f.stamp - s0) / (s1 - s0)) @ T_base_cam
        assert np.linalg.norm(T[:3, 3] - f.T_world_cam[:3, 3]) < 0.002
        assert rotation_angle(T[:3, :3].T @ f.T_world_cam[:3, :3]) < np.deg2rad(0.5)
    # twist: linear velocity in the base frame matches finite differences of consecutive poses
    (s0, m0), (s1, m1) = odom[2], odom[3]
    v_world = (pose_of(m1.pose.pose)[:3, 3] - pose_of(m0.pose.pose)[:3, 3]) / (s1 - s0)
    lin = m0.twist.twist.linear
    speed = np.linalg.norm([lin.x, lin.y, lin.z])
    assert speed == pytest.approx(np.linalg.norm(v_world), rel=0.2) and speed > 0.1


def test_bad_options_and_existing_output(tmp_path, seq):
    with pytest.raises(ValueError):
        BagOptions(storage='rosbag1')
    with pytest.raises(ValueError):
        BagOptions(encoding='mono8')
    with pytest.raises(ValueError):
        BagOptions(pose_rate=0.0)
    with pytest.raises(ValueError):
        BagOptions(extrinsic=np.diag([1.0, 1.0, -1.0, 1.0]))
    (tmp_path / 'x').mkdir()
    with pytest.raises(BagWriteError):
        write_synthetic_bag(seq, tmp_path / 'x')


def test_cli_bag_prints_extrinsic(tmp_path, capsys):
    from n3f_ros.cli.main import main
    out = tmp_path / 'cli_bag'
    assert main(['synth', str(out), '--bag', '--frames', '2', '--size', '32x24', '--quiet',
                 '--storage', 'sqlite3', '--pose-source', 'odom', '--no-depth', '--odom-topic', '/robot/odom']) == 0
    text = capsys.readouterr().out
    meta = json.loads((out / METADATA_FILE).read_text())
    assert 'camera_extrinsic' in text and meta['topics']['odom'] == '/robot/odom'
    _, types = read_bag(out)
    assert set(types) == {IMG, INFO, '/robot/odom'}
