"""``n3f play``: a rosbag2 written here is republished over real DDS (loopback, per-run domain).

The bag is written with ``rosbags`` in ``tmp_path`` (a few Image, CameraInfo and PoseStamped
messages), ``n3f play`` runs as a subprocess like a user would start it, and an rclpy node in the
test receives the messages and compares content, header stamps, timing and ``/clock``.
"""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from n3f_ros.bag.reader import BagError, BagNotFoundError, BagReader, PlaybackSchedule, parse_remaps
from n3f_ros.cli.play import message_class, to_ros_message

TS = get_typestore(Stores.ROS2_KILTED)
T = TS.types
T0 = 1_700_000_000_000_000_000      # first recording time [ns]
DT = 100_000_000                    # 10 Hz
N = 5
TOPICS = {
    '/camera/color/image_raw': 'sensor_msgs/msg/Image',
    '/camera/color/camera_info': 'sensor_msgs/msg/CameraInfo',
    '/camera/pose': 'geometry_msgs/msg/PoseStamped',
}
REPO = Path(__file__).resolve().parents[2]


def unique_prefix():
    """Topic prefix of one test run: other DDS users on this machine never match our topics."""
    return f'/n3f_play_{os.getpid()}_{uuid.uuid4().hex[:8]}'


def remap_args(prefix, topics=(*TOPICS, '/clock')):
    """``--remap`` arguments moving ``topics`` under ``prefix``."""
    return ['--remap', *(f'{t}:={prefix}{t}' for t in topics)]


def _header(ns, frame):
    """rosbags std_msgs/Header at ``ns``."""
    return T['std_msgs/msg/Header'](
        stamp=T['builtin_interfaces/msg/Time'](sec=ns // 10**9, nanosec=ns % 10**9), frame_id=frame)


def _image_data(i):
    """Pixel bytes of image ``i`` (4x6 rgb8)."""
    return (np.arange(72, dtype=np.uint16) * 3 + i).astype(np.uint8)


def write_bag(path: Path, storage: str = 'mcap') -> Path:
    """Tiny synthetic bag: N images, camera infos and poses (poses recorded 5 ms after images)."""
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {topic: writer.add_connection(topic, msgtype, typestore=TS)
                 for topic, msgtype in TOPICS.items()}
        for i in range(N):
            ns = T0 + i * DT
            image = T['sensor_msgs/msg/Image'](header=_header(ns, 'camera_color_optical_frame'), height=4,
                                               width=6, encoding='rgb8', is_bigendian=0, step=18,
                                               data=_image_data(i))
            info = T['sensor_msgs/msg/CameraInfo'](
                header=_header(ns, 'camera_color_optical_frame'), height=4, width=6,
                distortion_model='plumb_bob', d=np.array([0.1, -0.2, 0.0, 0.0, 0.01 * i]),
                k=np.array([5.0, 0, 3, 0, 5, 2, 0, 0, 1]), r=np.eye(3).ravel(), p=np.zeros(12),
                binning_x=0, binning_y=0,
                roi=T['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0,
                                                          do_rectify=False))
            pose = T['geometry_msgs/msg/PoseStamped'](
                header=_header(ns, 'map'),
                pose=T['geometry_msgs/msg/Pose'](
                    position=T['geometry_msgs/msg/Point'](x=0.1 * i, y=-0.5, z=1.25),
                    orientation=T['geometry_msgs/msg/Quaternion'](x=0.0, y=0.0, z=0.0, w=1.0)))
            for topic, msg, t in (('/camera/color/image_raw', image, ns),
                                  ('/camera/color/camera_info', info, ns),
                                  ('/camera/pose', pose, ns + 5_000_000)):
                writer.write(conns[topic], t, TS.serialize_cdr(msg, TOPICS[topic]))
    return path


def run_play(*args, timeout=60, **popen):
    """Start ``n3f play ARGS`` the way the CLI is installed (``python -m n3f_ros.cli.main``)."""
    return subprocess.Popen([sys.executable, '-m', 'n3f_ros.cli.main', 'play', *map(str, args)],
                            cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


@pytest.fixture
def ros():
    """An rclpy context and node of this test (own context: never shares global state)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('n3f_play_test', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)


def _subscribe(node, topic_types, received):
    """Reliable subscriptions that append ``(monotonic time, msg)`` to ``received[topic]``."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    for topic, msgtype in topic_types.items():
        received[topic] = []
        node.create_subscription(message_class(msgtype), topic,
                                 lambda msg, t=topic: received[t].append((time.monotonic(), msg)), qos)


def _spin_until(executor, proc, done, timeout):
    """Spin until ``done()``, the timeout, or 2 s after the player exited; then drain in-flight messages."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and not done():
        if proc.poll() is not None:
            end = min(end, time.monotonic() + 2.0)
        executor.spin_once(timeout_sec=0.05)
    for _ in range(20):
        executor.spin_once(timeout_sec=0.01)


def _stamp_ns(msg):
    """Header stamp in ns."""
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_play_republishes_content_stamps_and_timing(tmp_path, ros, storage):
    """Every message arrives once, equal to the recorded one, in order, spaced as recorded / rate."""
    bag = write_bag(tmp_path / 'bag', storage)
    node, executor = ros
    received = {}
    p = unique_prefix()
    image_t, info_t, pose_t, clock_t = (p + '/camera/color/image_raw', p + '/camera/color/camera_info',
                                        p + '/pose', p + '/clock')
    expected_topics = {image_t: TOPICS['/camera/color/image_raw'],
                       info_t: TOPICS['/camera/color/camera_info'],
                       pose_t: TOPICS['/camera/pose'],
                       clock_t: 'rosgraph_msgs/msg/Clock'}
    _subscribe(node, expected_topics, received)
    rate = 2.0
    proc = run_play(bag, '--rate', rate, '--clock', '100', '--wait-subscribers', 20, '--delay', 0.3,
                    *remap_args(p, ('/camera/color/image_raw', '/camera/color/camera_info', '/clock')),
                    f'/camera/pose:={pose_t}')
    try:
        _spin_until(executor, proc, lambda: all(len(received[t]) >= N for t in expected_topics
                                                if t != clock_t), timeout=30)
        _out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    images = [m for _, m in received[image_t]]
    infos = [m for _, m in received[info_t]]
    poses = [m for _, m in received[pose_t]]
    assert (len(images), len(infos), len(poses)) == (N, N, N), err
    for i, (image, info, pose) in enumerate(zip(images, infos, poses)):
        ns = T0 + i * DT
        assert _stamp_ns(image) == ns and _stamp_ns(info) == ns and _stamp_ns(pose) == ns
        assert image.header.frame_id == 'camera_color_optical_frame' and pose.header.frame_id == 'map'
        assert (image.height, image.width, image.encoding, image.step) == (4, 6, 'rgb8', 18)
        assert bytes(image.data) == _image_data(i).tobytes()
        assert info.distortion_model == 'plumb_bob'
        np.testing.assert_allclose(info.k, [5.0, 0, 3, 0, 5, 2, 0, 0, 1])
        np.testing.assert_allclose(info.d, [0.1, -0.2, 0.0, 0.0, 0.01 * i])
        assert (pose.pose.position.x, pose.pose.position.y, pose.pose.position.z) == \
            pytest.approx((0.1 * i, -0.5, 1.25))
        assert pose.pose.orientation.w == 1.0
    # Timing: recorded span of the images is (N-1)*DT; played at `rate`.
    arrivals = [t for t, _ in received[image_t]]
    span = arrivals[-1] - arrivals[0]
    expected = (N - 1) * DT * 1e-9 / rate
    assert 0.7 * expected < span < expected + 1.0, (span, expected)
    # /clock carries bag time, never backwards, within the recorded span.
    clocks = [m.clock.sec * 10**9 + m.clock.nanosec for _, m in received[clock_t]]
    assert clocks, 'no /clock message'
    assert all(b >= a for a, b in itertools.pairwise(clocks))
    assert T0 <= clocks[0] and clocks[-1] <= T0 + (N - 1) * DT + 5_000_000


def test_play_topics_subset_and_loop(tmp_path, ros):
    """--topics plays only those topics; --loop starts again until stopped."""
    bag = write_bag(tmp_path / 'bag')
    node, executor = ros
    received = {}
    p = unique_prefix()
    pose_t, image_t = p + '/camera/pose', p + '/camera/color/image_raw'
    _subscribe(node, {pose_t: TOPICS['/camera/pose'], image_t: TOPICS['/camera/color/image_raw']}, received)
    proc = run_play(bag, '--topics', '/camera/pose', '--loop', '--rate', 4, '--wait-subscribers', 20,
                    '--quiet', *remap_args(p))
    try:
        _spin_until(executor, proc, lambda: len(received[pose_t]) >= 2 * N + 1, timeout=30)
        running = proc.poll() is None
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=10)
    assert running, f'a --loop player must keep playing: {err}'
    assert proc.returncode == 0, err
    stamps = [_stamp_ns(m) for _, m in received[pose_t]]
    assert len(stamps) >= 2 * N + 1
    assert stamps[:2 * N] == [T0 + (i % N) * DT for i in range(2 * N)]
    assert received[image_t] == []


def test_missing_topic_error_lists_bag_topics(tmp_path):
    """A requested topic not in the bag: exit 2 and an error naming it and listing the bag's topics."""
    bag = write_bag(tmp_path / 'bag', 'sqlite3')
    proc = run_play(bag, '--topics', '/camera/pose', '/does/not/exist')
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert '/does/not/exist' in err and 'not in bag' in err
    for topic, msgtype in TOPICS.items():
        assert topic in err and msgtype in err
    assert 'Traceback' not in err


def test_missing_bag_and_bad_arguments(tmp_path):
    """Non-existent path, folder that is not a bag, malformed --remap, bad --rate: clear errors, exit 2."""
    cases = [
        ([tmp_path / 'nope'], 'bag not found'),
        ([tmp_path], 'metadata.yaml'),
        ([write_bag(tmp_path / 'bag'), '--remap', '/camera/pose'], 'OLD:=NEW'),
        ([tmp_path / 'bag', '--rate', '0'], '--rate'),
        ([tmp_path / 'bag', '--remap', '/not/recorded:=/x'], '/not/recorded'),
    ]
    for args, text in cases:
        proc = run_play(*args)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, (args, err)
        assert text in err and 'Traceback' not in err, (args, err)


# --- in-process pieces (no DDS) -----------------------------------------------------------------

def test_bag_reader_topics_and_errors(tmp_path):
    """BagReader lists topics with counts and raises specific errors."""
    bag = write_bag(tmp_path / 'bag')
    with BagReader(bag) as reader:
        assert [(t.name, t.msgtype, t.count) for t in reader.topics()] == sorted(
            (topic, msgtype, N) for topic, msgtype in TOPICS.items())
        assert reader.count(['/camera/pose']) == N
        stamps = [m.timestamp_ns for m in reader.messages(['/camera/color/image_raw'])]
        assert stamps == [T0 + i * DT for i in range(N)]
        with pytest.raises(BagError, match='/camera/pose'):
            reader.connections(['/nope'])
    with pytest.raises(BagNotFoundError):
        BagReader(tmp_path / 'missing')
    assert parse_remaps(['/a:=/b', 'c:=d']) == {'/a': '/b', 'c': 'd'}
    with pytest.raises(ValueError):
        parse_remaps(['/a=/b'])


def test_playback_schedule():
    """Deadlines scale with 1/rate and restart per loop; bag time inverts the mapping."""
    sched = PlaybackSchedule(T0, 2.0, wall_start=100.0)
    assert sched.deadline(T0) == 100.0
    assert sched.deadline(T0 + 10**9) == pytest.approx(100.5)
    assert sched.bag_time_ns(100.5) == T0 + 10**9
    sched.restart(200.0)
    assert sched.deadline(T0 + 2 * 10**9) == pytest.approx(201.0)
    with pytest.raises(ValueError):
        PlaybackSchedule(T0, 0.0, 0.0)


def test_to_ros_message_nested_arrays_strings_bytes():
    """The generic copier handles nested message sequences, strings, colours, octets and Time."""
    pc = T['sensor_msgs/msg/PointCloud2'](
        header=_header(T0, 'map'), height=1, width=2,
        fields=[T['sensor_msgs/msg/PointField'](name=n, offset=4 * k, datatype=7, count=1)
                for k, n in enumerate('xyz')],
        is_bigendian=False, point_step=12, row_step=24,
        data=np.arange(24, dtype=np.uint8), is_dense=True)
    ros_pc = to_ros_message(TS.deserialize_cdr(TS.serialize_cdr(pc, 'sensor_msgs/msg/PointCloud2'),
                                               'sensor_msgs/msg/PointCloud2'))
    assert type(ros_pc).__name__ == 'PointCloud2' and [f.name for f in ros_pc.fields] == ['x', 'y', 'z']
    assert [f.offset for f in ros_pc.fields] == [0, 4, 8] and bytes(ros_pc.data) == bytes(range(24))
    assert ros_pc.is_dense is True and _stamp_ns(ros_pc) == T0

    kv = T['diagnostic_msgs/msg/KeyValue']
    status = T['diagnostic_msgs/msg/DiagnosticStatus'](level=b'\x01'[0], name='n3f', message='ok',
                                                       hardware_id='', values=[kv(key='a', value='1')])
    diag = T['diagnostic_msgs/msg/DiagnosticArray'](header=_header(T0, ''), status=[status])
    ros_diag = to_ros_message(diag)
    assert ros_diag.status[0].level == b'\x01' and ros_diag.status[0].values[0].key == 'a'

    layout = T['std_msgs/msg/MultiArrayLayout'](dim=[], data_offset=0)
    octets = to_ros_message(T['std_msgs/msg/ByteMultiArray'](layout=layout,
                                                             data=np.array([1, 2, 255], np.uint8)))
    assert list(octets.data) == [b'\x01', b'\x02', b'\xff']

    color = T['std_msgs/msg/ColorRGBA'](r=1.0, g=0.5, b=0.0, a=1.0)
    marker = T['visualization_msgs/msg/Marker']
    zero = T['builtin_interfaces/msg/Duration'](sec=0, nanosec=0)
    pt = T['geometry_msgs/msg/Point']
    m = marker(header=_header(T0, 'map'), ns='q', id=3, type=8, action=0,
               pose=T['geometry_msgs/msg/Pose'](position=pt(x=1.0, y=2.0, z=3.0),
                                                orientation=T['geometry_msgs/msg/Quaternion'](x=0.0, y=0.0,
                                                                                              z=0.0, w=1.0)),
               scale=T['geometry_msgs/msg/Vector3'](x=0.1, y=0.1, z=0.1), color=color, lifetime=zero,
               frame_locked=False, points=[pt(x=0.0, y=0.0, z=0.0), pt(x=1.0, y=1.0, z=1.0)],
               colors=[color, color], texture_resource='', texture=T['sensor_msgs/msg/CompressedImage'](
                   header=_header(0, ''), format='', data=np.zeros(0, np.uint8)),
               uv_coordinates=[], text='cup 0.9', mesh_resource='',
               mesh_file=T['visualization_msgs/msg/MeshFile'](filename='', data=np.zeros(0, np.uint8)),
               mesh_use_embedded_materials=False)
    arr = to_ros_message(T['visualization_msgs/msg/MarkerArray'](markers=[m]))
    got = arr.markers[0]
    assert got.text == 'cup 0.9' and got.id == 3 and got.points[1].z == 1.0 and got.colors[0].g == 0.5


# --- readiness: --wait-topic ------------------------------------------------------------------------

def test_wait_topic_plays_once_a_late_subscriber_appears(tmp_path, ros):
    """The player waits for the (late) image subscriber, then every image arrives; a listed topic the
    bag lacks (the compressed one) is skipped (issue 13: the node needs 10-20 s before it listens)."""
    bag = write_bag(tmp_path / 'bag')
    node, executor = ros
    p = unique_prefix()
    image_t = p + '/camera/color/image_raw'
    proc = run_play(bag, '--wait-topic', '/camera/color/image_raw', '/camera/color/image_raw/compressed',
                    '--wait-subscribers', 60, *remap_args(p))
    try:
        time.sleep(3.0)                       # the subscriber comes late, like a node loading its model
        assert proc.poll() is None, proc.communicate()[1]
        received = {}
        _subscribe(node, {image_t: TOPICS['/camera/color/image_raw']}, received)
        _spin_until(executor, proc, lambda: len(received[image_t]) >= N, timeout=30)
        _out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert [_stamp_ns(m) for _, m in received[image_t]] == [T0 + i * DT for i in range(N)], err
    assert 'waiting up to 60 s for a subscriber on ' + image_t in err


def test_wait_topic_without_subscriber_fails_clearly(tmp_path):
    """Nobody subscribes: exit 3 after the timeout with a message naming the topic; nothing played.
    None of the --wait-topic names in the bag: exit 2, listing the bag's topics."""
    bag = write_bag(tmp_path / 'bag')
    p = unique_prefix()
    proc = run_play(bag, '--wait-topic', '/camera/color/image_raw', '--wait-subscribers', 1, *remap_args(p))
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert f'no subscriber on {p}/camera/color/image_raw after 1 s' in err and 'Nothing was played' in err
    assert 'done:' not in err and 'Traceback' not in err
    proc = run_play(bag, '--wait-topic', '/not/in/bag')
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and 'none of the --wait-topic topics' in err and '/camera/pose' in err, err


def test_wait_topic_counts():
    from n3f_ros.cli.play import parse_wait_topics
    assert parse_wait_topics(['/a', '/b=2']) == {'/a': 1, '/b': 2}
    assert parse_wait_topics(None) == {}
    for bad in ('/a=0', '/a=x'):
        with pytest.raises(ValueError, match='TOPIC=N'):
            parse_wait_topics([bad])
