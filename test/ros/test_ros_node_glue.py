"""The node's ROS glue over real DDS, in process, with the real engine at toy sizes.

Checks SPEC §3 wiring (topics, types, frames, stamps, QoS, services, parameters), pairing
(odom + extrinsic, offset poses, scaled camera_info, bgr8, compressed) and SPEC §4 bad input
(each case counted by reason, node alive, valid stream afterwards).

Each node builds its own Mapper from parameters (random-init ViT-S at 64 px, 40 px keyframes,
64 rays per step), exactly as ``n3f_node`` does; the tests only spy on ``Mapper.submit`` to see
the frames the glue assembled, and compare query answers with the engine's own result. Whether
answers match the ground-truth object after training is checked in test_ros_node_dds.py.
"""
import threading
import time

import numpy as np
import pytest
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray, PoseStamped
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from ros_test_utils import CAM_FRAME, WORLD, ScenePlayer, camera_info_msg, wait_for
from scipy.spatial import cKDTree
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from n3f_ros.client import N3FClient
from n3f_ros.core.camera import interpolate_pose, pose_from_xyz_quat, rotation_angle
from n3f_ros.io import encode
from n3f_ros.ros.node import N3FNode

SIZE = (80, 60)
N_FRAMES = 12
#: the real engine, small enough to run beside the tests in this process
ENGINE_PARAMS = [('teacher_random_init', True), ('teacher_input_width', 64), ('device', 'cpu'),
                 ('feature_dim', 8), ('keyframe_width', 40), ('rays_per_step', 64), ('max_keyframes', 8),
                 ('scene_bounds', [-0.7, -0.55, -0.05, 0.7, 0.55, 0.3]), ('voxel_size', 0.01)]


@pytest.fixture(scope='module')
def scene():
    from n3f_ros.core.synth import make_sequence
    seq = make_sequence(1, N_FRAMES, *SIZE)
    frames = [seq[i] for i in range(N_FRAMES)]
    gt = seq.gt_points(voxel=0.01, frame_step=2)
    return seq, frames, gt


@pytest.fixture(scope='module')
def ros():
    rclpy.init()
    ex = MultiThreadedExecutor(num_threads=4)
    th = threading.Thread(target=ex.spin, daemon=True)
    helper = rclpy.create_node('n3f_test_helper')
    ex.add_node(helper)
    th.start()
    try:
        yield ex, helper
    finally:
        ex.shutdown()
        helper.destroy_node()
        rclpy.shutdown()
        th.join(5)


_count = iter(range(1000))


@pytest.fixture
def make_node(ros, scene):
    """Factory: an N3FNode (real engine, ``ENGINE_PARAMS`` + ``params``) in a fresh namespace
    + the list of frames it submitted to its Mapper + player + client."""
    ex, helper = ros
    made = []

    def factory(params=(), player_kw=None):
        ns = f'/g{next(_count)}'
        seq, frames, gt = scene
        node = N3FNode(namespace=ns, parameter_overrides=[Parameter(k, value=v)
                                                          for k, v in ENGINE_PARAMS + list(params)])
        submitted = _spy_on_submit(node.mapper)
        ex.add_node(node)
        client_node = rclpy.create_node('client', namespace=ns)
        ex.add_node(client_node)
        client = N3FClient(client_node, timeout=30.0, spin=False)
        player = ScenePlayer(helper, seq, ns=ns, **(player_kw or {}))
        made.append((node, client_node))
        time.sleep(0.3)                                       # discovery
        return node, submitted, player, client, ns

    yield factory
    for node, client_node in made:
        ex.remove_node(node)
        ex.remove_node(client_node)
        node.close()
        node.destroy_node()
        client_node.destroy_node()


def _spy_on_submit(mapper) -> list:
    """Frames handed to ``mapper.submit`` (accepted ones), recorded before the real submit runs."""
    frames, real_submit = [], mapper.submit

    def submit(frame):
        if not mapper.paused:
            frames.append(frame)
        return real_submit(frame)
    mapper.submit = submit
    return frames


def _sub(helper, typ, topic, qos=10):
    box = []
    helper.create_subscription(typ, topic, box.append, qos)
    return box


def _frame_index(player, frame):
    return dict(player.published)[min(dict(player.published), key=lambda s: abs(s - frame.stamp))]


def _play_until(player, submitted, n, frames, period=0.05):
    for i in range(N_FRAMES):
        player.publish_frame(i, frames[i])
        time.sleep(period)
        if len(submitted) >= n:
            return
    wait_for(lambda: len(submitted) >= n, 20.0, what=f'{n} frames submitted')


def test_frames_and_periodic_outputs(make_node, scene, ros):
    _, helper = ros
    seq, frames, gt = scene
    node, submitted, player, client, ns = make_node(params=[('cloud_rate', 10.0)])
    clouds = _sub(helper, PointCloud2, f'{ns}/feature_cloud')
    images = _sub(helper, Image, f'{ns}/feature_image')
    kfs = _sub(helper, PoseArray, f'{ns}/keyframes')
    _play_until(player, submitted, 4, frames)
    for f in submitted:
        i = _frame_index(player, f)
        np.testing.assert_allclose(f.T_world_cam, seq.poses[i], atol=1e-6)
        np.testing.assert_array_equal(f.rgb, frames[i].rgb)
        if f.depth is not None:           # None only before the first depth message arrived
            np.testing.assert_allclose(f.depth, np.where((frames[i].depth > 0.1) & (frames[i].depth < 5),
                                                         frames[i].depth, 0), atol=6e-4)
        assert f.camera == frames[i].camera
    assert sum(f.depth is not None for f in submitted) >= len(submitted) - 1
    wait_for(lambda: clouds and images and kfs and kfs[-1].poses, 30.0, what='periodic outputs')
    c = clouds[-1]
    assert c.header.frame_id == WORLD
    assert [(f.name, f.datatype) for f in c.fields] == [('x', 7), ('y', 7), ('z', 7), ('rgb', 7),
                                                         ('label', 6)]
    arr = encode.pointcloud2_to_array(c)
    xyz = np.stack([arr['x'], arr['y'], arr['z']], 1)
    # fused depth of correctly posed frames lands on the scene's surface (wrong poses would not)
    d, _ = cKDTree(gt.xyz).query(xyz)
    assert len(xyz) > 200 and np.percentile(d, 95) < 0.02, (len(xyz), np.percentile(d, 95))
    assert len(np.unique(arr['label'])) >= 2
    assert images[-1].header.frame_id == CAM_FRAME and images[-1].encoding == 'rgb8'
    assert kfs[-1].header.frame_id == WORLD and len(kfs[-1].poses) >= 1


def _object_center(gt, label):
    pts = gt.xyz[gt.labels == label]
    return pts[np.argmin(np.linalg.norm(pts - pts.mean(0), axis=1))]


def _click_on_map(node, gt, label):
    """The point of the node's current cloud nearest ground-truth object ``label``'s centre (what a
    user clicks in RViz: a point of the published cloud; after a few frames the object itself may
    not be mapped yet)."""
    xyz = wait_for(lambda: node.mapper.cloud(), 30.0, what='a map').xyz
    return xyz[np.argmin(np.linalg.norm(xyz - _object_center(gt, label), axis=1))].astype(np.float64)


def test_query_service_and_topics_give_the_same_answers(make_node, scene, ros):
    """~/query (the client) and query/point (RViz) run the same query and answer with the same
    object; the service answer carries the request's stamp, mask, edit, box and score; bad requests
    are refused with the reason and counted, a query that finds nothing is an empty success."""
    from geometry_msgs.msg import PointStamped
    from visualization_msgs.msg import MarkerArray

    from n3f_ros.client import QueryRejected
    from n3f_ros.ros.queries import LATCHED
    _, helper = ros
    seq, frames, gt = scene
    node, submitted, player, client, ns = make_node()
    clouds, markers = _sub(helper, PointCloud2, f'{ns}/query/cloud', qos=LATCHED), \
        _sub(helper, MarkerArray, f'{ns}/query/markers', qos=LATCHED)
    empty = client.query_point([0.0, 0.0, 0.0], timeout=20.0)           # before any frame: empty
    assert empty.empty and empty.pose is None and empty.mask is None     # no image yet: a 0x0 mask
    assert empty.message == 'empty_map: the map is empty'
    _play_until(player, submitted, 2, frames)
    node.mapper.set_paused(True)                     # the map stays as it is: both paths see the same one
    label = int(np.unique(gt.labels)[-1])
    point = _click_on_map(node, gt, label)
    ans = client.query_point(point, frame_id=WORLD, with_mask=True, with_edit=True)
    engine = node.mapper.last_result                 # what the engine answered to that query
    assert not ans.empty and ans.frame_id == WORLD and len(ans) == len(engine.xyz)
    np.testing.assert_allclose(ans.xyz, engine.xyz, atol=1e-6)
    np.testing.assert_allclose(ans.similarity, engine.similarity, atol=1e-6)
    np.testing.assert_allclose(ans.centroid, engine.xyz.mean(0), atol=1e-4)
    np.testing.assert_allclose(sorted(ans.box_size), sorted(engine.box.extent), atol=1e-5)
    assert ans.score == pytest.approx(engine.score, abs=1e-5) and ans.threshold == pytest.approx(engine.threshold)
    assert ans.feature_source and 0.0 <= ans.confidence <= 1.0
    assert np.min(np.linalg.norm(ans.xyz - point, axis=1)) < 0.02     # the object around the point
    assert ans.mask.shape == (SIZE[1], SIZE[0]) and ans.mask.dtype == bool and ans.mask_frame_id == CAM_FRAME
    assert len(ans.edit_xyz) == len(engine.cloud) - len(engine.xyz)   # edit_mode remove
    # the same query from RViz's Publish Point: the same object, on the latched topics, with its stamp
    stamp = encode.make_header(123.25, WORLD)
    click = PointStamped(header=stamp)
    click.point.x, click.point.y, click.point.z = (float(v) for v in point)
    pub = helper.create_publisher(PointStamped, f'{ns}/query/point', 10)
    wait_for(lambda: pub.get_subscription_count() > 0, 5.0, what='query/point subscriber')
    pub.publish(click)
    mine = lambda m: (m.header.stamp.sec, m.header.stamp.nanosec) == (123, 250_000_000)   # noqa: E731
    wait_for(lambda: any(mine(c) for c in clouds), 30.0, what='query/cloud with the click stamp')
    topic = encode.pointcloud2_to_array(next(c for c in clouds if mine(c)))
    np.testing.assert_allclose(np.stack([topic['x'], topic['y'], topic['z']], 1), ans.xyz, atol=1e-6)
    wait_for(lambda: any(m.markers and mine(m.markers[0]) for m in markers), 10.0, what='markers')
    assert [m.type for m in next(m for m in markers if m.markers and mine(m.markers[0])).markers] == [0, 1, 2, 9]
    # prototypes by service and by topic
    assert 'thing' in client.save_prototype('thing')
    named = client.query_name('thing', with_mask=False)
    assert not named.empty and named.name == 'thing' and len(named) == len(node.mapper.last_result.xyz)
    save = helper.create_publisher(String, f'{ns}/prototypes/save', 10)
    wait_for(lambda: save.get_subscription_count() > 0, 5.0, what='prototypes/save subscriber')
    save.publish(String(data='thing2'))
    wait_for(lambda: 'thing2' in node.mapper.prototypes, 20.0, what='prototype saved from the topic')
    assert client.list_prototypes() == ['thing', 'thing2']
    # refused requests: the reason, counted; nothing found: an empty success
    with pytest.raises(QueryRejected, match='unknown_prototype'):
        client.query_name('nothing-of-that-name')
    with pytest.raises(QueryRejected, match='wrong_frame'):
        client.query_point(_object_center(gt, label), frame_id='odom')
    assert node.counters.get('rejected/wrong_frame') == 1 and node.counters.get('rejected/unknown_prototype') == 1
    assert client.query_point([50.0, 0, 0], with_mask=False).empty   # far from the map


def test_odom_with_extrinsic_offset_poses_and_scaled_info(make_node, scene):
    seq, frames, _ = scene
    T_child_cam = pose_from_xyz_quat([0.1, -0.05, 0.2], [0.5, -0.5, 0.5, -0.5])
    ext = [0.1, -0.05, 0.2, 0.5, -0.5, 0.5, -0.5]
    node, submitted, player, _, _ = make_node(
        params=[('pose_source', 'odom'), ('camera_extrinsic', ext)],
        player_kw={'pose_source': 'odom', 'T_child_cam': T_child_cam, 'pose_offsets': (-0.01, 0.015),
                   'info_scale': 2.0})
    _play_until(player, submitted, 4, frames)
    for f in submitted:
        i = _frame_index(player, f)
        t = seq.stamp(i)
        expected = interpolate_pose(seq.pose_at(t - 0.01), seq.pose_at(t + 0.015), 0.01 / 0.025)
        np.testing.assert_allclose(f.T_world_cam, expected, atol=1e-5)      # slerp of composed odom
        assert np.linalg.norm(f.T_world_cam[:3, 3] - seq.poses[i][:3, 3]) < 5e-3   # chord vs orbit arc
        assert rotation_angle(f.T_world_cam[:3, :3].T @ seq.poses[i][:3, :3]) < 5e-3
        assert f.camera.size == SIZE and f.camera.fx == pytest.approx(frames[i].camera.fx)


def test_bgr8_and_compressed(make_node, scene):
    seq, frames, _ = scene
    for params, kw in (([], {'encoding': 'bgr8', 'depth': False}),
                       ([('image_transport', 'compressed')], {'compressed': True})):
        node, submitted, player, _, _ = make_node(params=params, player_kw=kw)
        _play_until(player, submitted, 2, frames)
        for f in submitted:
            np.testing.assert_array_equal(f.rgb, frames[_frame_index(player, f)].rgb)
        assert (submitted[0].depth is None) == (not kw.get('compressed'))


def test_services(make_node, scene, ros, tmp_path):
    _, helper = ros
    seq, frames, _ = scene
    stale = tmp_path / '.n3f_map_999999999_interrupted.tmp'          # left by a save killed mid-way
    stale.write_bytes(b'partial map')
    node, submitted, player, client, ns = make_node(params=[('map_path', str(tmp_path / 'm.pt'))])
    assert not stale.exists()                                        # removed when the node started

    def call(srv_type, name, **req):
        cli = helper.create_client(srv_type, f'{ns}/n3f/{name}')
        assert cli.wait_for_service(5.0), name
        fut = cli.call_async(srv_type.Request(**req))
        wait_for(fut.done, 30.0, what=name)
        helper.destroy_client(cli)
        return fut.result()

    assert call(Trigger, 'save').success is False                     # empty map: refused, no crash
    _play_until(player, submitted, 2, frames)
    assert call(SetBool, 'pause', data=True).success
    n = len(submitted)
    player.play(range(2, 6), period=0.05, frames=frames)
    time.sleep(0.3)
    assert len(submitted) == n and node.counters.get('frames_paused') >= 3
    assert call(SetBool, 'pause', data=False).success
    keyframes = node.mapper.stats()['keyframes']
    r = call(Trigger, 'save')
    assert r.success and (tmp_path / 'm.pt').stat().st_size > 0, r.message
    assert call(Trigger, 'reset').success
    assert node.mapper.stats()['keyframes'] == 0 and node.mapper.cloud() is None
    assert call(Trigger, 'load').success and node.mapper.stats()['keyframes'] == keyframes >= 1
    assert node.mapper.cloud() is not None
    (tmp_path / 'm.pt').write_bytes(b'not a map')                    # a bad file: refused, map kept
    assert call(Trigger, 'load').success is False and node.mapper.stats()['keyframes'] == keyframes
    # the n3f_interfaces file services, with a path (empty = map_path)
    from n3f_interfaces.srv import FilePath
    other = tmp_path / 'sub' / 'other.pt'
    r = call(FilePath, 'save_map', path=str(other))
    assert r.success and r.path == str(other) and other.stat().st_size > 0, r.message
    assert call(Trigger, 'reset').success and node.mapper.stats()['keyframes'] == 0
    r = call(FilePath, 'load_map', path=str(other))
    assert r.success and node.mapper.stats()['keyframes'] == keyframes, r.message
    r = call(FilePath, 'load_map', path='')                           # map_path holds garbage now
    assert not r.success and r.path == str(tmp_path / 'm.pt') and node.mapper.stats()['keyframes'] == keyframes
    assert not call(FilePath, 'load_map', path=str(tmp_path)).success   # a directory: refused
    # a map whose field weights hold a NaN: refused, the map in use unchanged
    from n3f_ros.core.persistence import load_map_file, save_map_file
    raw = load_map_file(str(other))
    k = next(iter(raw['field']))
    raw['field'][k].view(-1)[0] = float('nan')
    save_map_file(str(tmp_path / 'nan.pt'), raw)
    assert call(SetBool, 'pause', data=True).success                  # no training step changes the field
    time.sleep(0.5)                                                   # (the step in flight ends)
    before = {k: v.clone() for k, v in node.mapper.field.state_dict().items()}
    r = call(FilePath, 'load_map', path=str(tmp_path / 'nan.pt'))
    assert not r.success and 'NaN' in r.message
    assert all(torch.equal(v, node.mapper.field.state_dict()[k]) for k, v in before.items())
    assert node.counters.get('map_file_errors') >= 3


def test_parameters_live_and_rejected(make_node):
    node, *_ = make_node()
    ok = node.set_parameters([Parameter('query_threshold', value=0.7), Parameter('max_pose_dt', value=0.1)])
    assert all(r.successful for r in ok) and node.mapper.config.query_threshold == 0.7
    assert node.assembler.max_pose_dt == 0.1
    for prm in (Parameter('edit_mode', value='delete'), Parameter('min_depth', value=20.0),
                Parameter('queue_size', value=5), Parameter('max_depth', value=0.05)):
        assert not node.set_parameters([prm])[0].successful, prm.name


def _bad(player, h):
    """(topic publisher, message, reason) for every SPEC §4 case."""
    seq = player.seq
    f = seq[0]
    img = encode.image_msg(f.rgb, h)
    cases = []

    def image(**kw):
        m = encode.image_msg(f.rgb, h)
        for k, v in kw.items():
            setattr(m, k, v)
        return m
    cases.append((player.pub_image, image(encoding='yuv422'), 'unknown_encoding'))
    cases.append((player.pub_image, image(data=bytes(img.data)[:-7]), 'bad_data_length'))
    cases.append((player.pub_image, image(width=0), 'bad_size'))
    cases.append((player.pub_image, image(data=b''), 'empty'))
    cases.append((player.pub_image, image(width=20000, height=20000, step=60000), 'too_large'))
    info = camera_info_msg(f.camera, h)
    info.k = [0.0] * 9
    cases.append((player.pub_info, info, 'bad_focal'))
    pose = encode.pose_stamped_msg(seq.poses[0], encode.make_header(h.stamp, WORLD))
    pose.pose.position.x = float('nan')
    cases.append((player.pub_pose, pose, 'non_finite'))
    pose = encode.pose_stamped_msg(seq.poses[0], encode.make_header(h.stamp, WORLD))
    pose.pose.orientation.w = 3.0
    cases.append((player.pub_pose, pose, 'bad_quaternion'))
    pose = encode.pose_stamped_msg(seq.poses[0], encode.make_header(h.stamp, WORLD))
    pose.pose.position.x = 1e38                                  # finite, absurd
    cases.append((player.pub_pose, pose, 'implausible_pose'))
    long_frame = encode.image_msg(f.rgb, encode.make_header(h.stamp, 'x' * 10_000))
    cases.append((player.pub_image, long_frame, 'bad_frame_id'))
    ansi = encode.image_msg(f.rgb, encode.make_header(h.stamp, '\x1b[31mred'))
    cases.append((player.pub_image, ansi, 'bad_frame_id'))
    d = encode.depth_msg(np.full(f.depth.shape, np.nan, np.float32), h, '32FC1')
    cases.append((player.pub_depth, d, 'bad_depth'))
    d = encode.depth_msg(f.depth, h, '16UC1')
    d.encoding = '8UC3'
    cases.append((player.pub_depth, d, 'unknown_encoding'))
    return cases


def test_bad_input_counted_node_survives(make_node, scene, ros):
    _, helper = ros
    seq, frames, _ = scene
    node, submitted, player, _, ns = make_node()
    diags = _sub(helper, DiagnosticArray, f'{ns}/diagnostics')
    _play_until(player, submitted, 2, frames)
    last = player.published[-1][0]
    h = encode.make_header(last + 0.01, CAM_FRAME)
    expected = {}
    for pub, msg, reason in _bad(player, h):
        pub.publish(msg)
        expected[reason] = expected.get(reason, 0) + 1
        time.sleep(0.03)
    # timing cases: stamps going backwards and from the future (image and pose), image without pose
    player.pub_image.publish(encode.image_msg(frames[0].rgb, encode.make_header(last - 5.0, CAM_FRAME)))
    player.pub_pose.publish(encode.pose_stamped_msg(seq.poses[0], encode.make_header(last - 5.0, WORLD)))
    future = time.time() + 100.0
    player.pub_image.publish(encode.image_msg(frames[0].rgb, encode.make_header(future, CAM_FRAME)))
    expected['stamp_backwards'] = 2
    expected['stamp_future'] = 1
    # camera_info of another aspect ratio: the image stamped with it is dropped as size_mismatch
    from n3f_ros.core.camera import PinholeCamera
    h_bad = encode.make_header(last + 0.02, CAM_FRAME)
    player.pub_info.publish(camera_info_msg(PinholeCamera(50, 50, 50, 50, 100, 100), h_bad))
    time.sleep(0.1)
    player.pose_offsets = (0.0,)
    player.publish_pose(last + 0.02 - player.t0)
    player.pub_image.publish(encode.image_msg(frames[0].rgb, h_bad))
    expected['size_mismatch'] = 1
    time.sleep(0.1)
    # an image far from every pose (after a good camera_info stamped after the bad one: an image
    # takes the latest camera_info stamped at or before it, io/pairing.py)
    player.pub_info.publish(camera_info_msg(frames[0].camera, encode.make_header(last + 0.03, CAM_FRAME)))
    time.sleep(0.1)
    # depth of another camera (frame id): the image it pairs with is dropped as frame_mismatch
    player.publish_pose(last + 0.035 - player.t0)
    player.pub_depth.publish(encode.depth_msg(frames[0].depth, encode.make_header(last + 0.035, 'other_cam'),
                                              '16UC1'))
    player.pub_image.publish(encode.image_msg(frames[0].rgb, encode.make_header(last + 0.035, CAM_FRAME)))
    expected['frame_mismatch'] = 1
    time.sleep(0.1)
    player.pub_image.publish(encode.image_msg(frames[0].rgb, encode.make_header(last + 2.0, CAM_FRAME)))
    expected['no_pose'] = 1

    def counted():
        return all(node.counters.get(f'rejected/{r}') >= n for r, n in expected.items())
    wait_for(counted, 20.0, what=lambda: f'rejections {expected}; got '
             f'{ {r: node.counters.get(f"rejected/{r}") for r in expected} }')
    assert node.counters.get('rejected/internal_error') == 0
    assert len(node.mapper.keyframes) <= len(submitted) and all(
        np.abs(T[:3, 3]).max() < 10 for T in node.mapper.keyframe_poses())   # no absurd pose became a keyframe
    # a valid stream afterwards still works
    n = len(submitted)
    player.t0 += 10.0
    player.play(range(N_FRAMES - 3, N_FRAMES), period=0.05, frames=frames)
    wait_for(lambda: len(submitted) >= n + 2, 20.0, what='frames after bad input')
    # and diagnostics report the counts by reason
    wait_for(lambda: diags and _diag_value(diags[-1], 'rejected/bad_focal') is not None, 3.0,
             what='diagnostics')
    assert int(_diag_value(diags[-1], 'rejected/bad_focal')) >= 1
    assert int(_diag_value(diags[-1], 'rejected/image/unknown_encoding')) >= 1


def _diag_value(msg, key):
    for st in msg.status:
        for kv in st.values:
            if kv.key == key:
                return kv.value
    return None


def test_qos_of_outputs(make_node, ros):
    _, helper = ros
    node, *_ , ns = make_node()
    infos = helper.get_publishers_info_by_topic(f'{ns}/query/cloud')
    assert infos and infos[0].qos_profile.durability.name == 'TRANSIENT_LOCAL'
    subs = helper.get_subscriptions_info_by_topic(f'{ns}/image')
    assert subs[0].qos_profile.reliability == qos_profile_sensor_data.reliability
    pose_type = helper.get_publishers_info_by_topic(f'{ns}/query/pose')[0].topic_type
    assert pose_type == 'geometry_msgs/msg/PoseStamped' and PoseStamped.__name__ in pose_type


def test_input_qos_parameter(make_node, scene, ros):
    """input_qos / input_qos_depth set the QoS of image, depth and camera_info (default: best effort,
    depth 5, as qos_profile_sensor_data); reliable subscriptions still get the (reliable) player's
    frames; both are fixed at start (read-only)."""
    _, helper = ros
    seq, frames, _ = scene
    node, submitted, player, _, ns = make_node([('input_qos', 'reliable'), ('input_qos_depth', 3)])
    own = {sub.topic_name: sub.qos_profile for sub in node.subscriptions}
    for topic in ('image', 'depth', 'camera_info'):
        [info] = helper.get_subscriptions_info_by_topic(f'{ns}/{topic}')      # as DDS discovery sees it
        assert info.qos_profile.reliability.name == 'RELIABLE', topic
        assert own[f'{ns}/{topic}'].depth == 3, topic                      # history depth is not on the wire
    _play_until(player, submitted, 2, frames)
    assert not node.set_parameters([Parameter('input_qos', value='sensor_data')])[0].successful
    node, *_, ns = make_node()
    [info] = helper.get_subscriptions_info_by_topic(f'{ns}/image')
    assert info.qos_profile.reliability.name == 'BEST_EFFORT'
    own = {sub.topic_name: sub.qos_profile for sub in node.subscriptions}
    assert own[f'{ns}/image'].depth == qos_profile_sensor_data.depth


def test_interface_matches_the_documented_tables(make_node, ros):
    """The running node's topics/types/services equal n3f_ros/ros/interface.py (the README source)."""
    from n3f_ros.ros import interface
    _, helper = ros
    node, *_, ns = make_node()
    name = node.get_name()

    def ours(pairs):
        return {(t, tuple(types)) for t, types in pairs if t.startswith(ns + '/')}
    wait_for(lambda: len(ours(helper.get_publisher_names_and_types_by_node(name, ns))) >= len(interface.PUBLISHED),
             20.0, what='node graph')
    pubs = ours(helper.get_publisher_names_and_types_by_node(name, ns))
    subs = ours(helper.get_subscriber_names_and_types_by_node(name, ns))
    srvs = ours(helper.get_service_names_and_types_by_node(name, ns))
    assert pubs == {(f'{ns}/{t}', (ty,)) for t, ty, _ in interface.PUBLISHED}
    inactive = {'image/compressed', 'odom', '/tf', '/tf_static'}   # image_transport raw, pose_source pose
    assert subs == {(f'{ns}/{t}', (ty,)) for t, ty, _ in interface.SUBSCRIBED if t not in inactive}
    assert {(f"{ns}/{name}/{t[2:]}", (ty,)) for t, ty, _ in interface.SERVICES + interface.QUERY_SERVICES} <= srvs


def test_client_spinning_itself_and_bad_requests(make_node, scene, ros):
    """N3FClient(spin=True) on a node nobody else spins; NaN points, unknown modes, bad thresholds
    and pixels outside the image are refused with the reason and counted; BY_PIXEL answers."""
    from n3f_interfaces.srv import QueryObject

    from n3f_ros.client import QueryRejected
    _, helper = ros
    seq, frames, gt = scene
    node, submitted, player, _, ns = make_node()
    _play_until(player, submitted, 1, frames)
    own = rclpy.create_node('own_client', namespace=ns)
    try:
        client = N3FClient(own, timeout=10.0, with_mask=False)   # spin=True: spins ``own`` itself
        label = int(np.unique(gt.labels)[-1])
        ans = client.query_point(_click_on_map(node, gt, label))
        assert not ans.empty and len(ans) == len(node.mapper.last_result.xyz)
        with pytest.raises(QueryRejected, match='non_finite'):
            client.query_point([float('nan'), 0.0, 0.0])
        with pytest.raises(QueryRejected, match='bad_threshold'):
            client.query_point([0.0, 0.0, 0.0], threshold=1.5)
        with pytest.raises(QueryRejected, match='bad_pixel'):
            client.query_pixel(SIZE[0], 0)
        px = client.query_pixel(SIZE[0] // 2, SIZE[1] // 2)          # answered (maybe empty, with its reason)
        assert px.message
        raw = own.create_client(QueryObject, f'{ns}/n3f/query')
        fut = raw.call_async(QueryObject.Request())                   # mode 0: a request left at its defaults
        rclpy.spin_until_future_complete(own, fut, executor=client._executor, timeout_sec=10.0)
        assert fut.result().success is False and 'bad_mode' in fut.result().message
        for reason in ('non_finite', 'bad_threshold', 'bad_pixel', 'bad_mode'):
            assert node.counters.get(f'rejected/{reason}') == 1, reason
        with pytest.raises(TimeoutError):
            N3FClient(own, namespace='/nobody', timeout=0.3).query_point([0, 0, 0])
        client.close()
    finally:
        own.destroy_node()


@pytest.mark.parametrize('override,message', [('pose_source:=gps', 'expected one of pose, odom, tf'),
                                              ('input_qos:=best_effort', 'expected one of sensor_data, reliable'),
                                              ('min_depth:=1', "expecting type 'DOUBLE'"),
                                              ('camera_extrinsic:=[0.0]', 'camera_extrinsic needs 7 values')])
def test_bad_parameters_stop_the_node_with_a_clear_message(override, message):
    import subprocess

    from n3f_ros.bench.node_process import node_command
    cmd = node_command({}, '/bad_params')
    cmd[cmd.index('--params-file'):cmd.index('--params-file') + 2] = []
    r = subprocess.run(cmd + ['-p', override], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and message in r.stdout + r.stderr, r.stdout + r.stderr
