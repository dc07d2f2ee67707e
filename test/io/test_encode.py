"""encode.py: numpy -> messages and the pure-numpy PointCloud2 reader (no rclpy.init)."""
import numpy as np
import pytest
from sensor_msgs.msg import PointField
from visualization_msgs.msg import Marker

from n3f_ros.core.camera import look_at
from n3f_ros.io import decode, encode


def test_time_and_header():
    t = encode.to_time_msg(12.25)
    assert (t.sec, t.nanosec) == (12, 250_000_000)
    t = encode.to_time_msg(1_700_000_000_123_456_789)
    assert (t.sec, t.nanosec) == (1_700_000_000, 123_456_789)
    h = encode.make_header(t, 'map')
    assert h.stamp is t and h.frame_id == 'map'


def test_image_round_trip():
    rgb = np.random.default_rng(1).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    h = encode.make_header(0.0, 'cam')
    msg = encode.image_msg(rgb, h)
    assert (msg.encoding, msg.step, msg.width, msg.height) == ('rgb8', 27, 9, 6)
    np.testing.assert_array_equal(decode.decode_image(msg), rgb)
    msg = encode.image_msg(rgb, h, encoding='bgr8')
    assert bytes(msg.data[:3]) == bytes(rgb[0, 0, ::-1])
    np.testing.assert_array_equal(decode.decode_image(msg), rgb)
    mask = np.zeros((4, 5), bool)
    mask[1, 2] = True
    msg = encode.image_msg(mask, h)
    assert msg.encoding == 'mono8' and msg.step == 5
    assert np.frombuffer(msg.data, np.uint8).reshape(4, 5)[1, 2] == 255


@pytest.mark.parametrize('enc', ['16UC1', '32FC1'])
def test_depth_round_trip(enc):
    d = np.array([[0.5, 1.234], [0.0, 4.0]], np.float32)
    out = decode.decode_depth(encode.depth_msg(d, encode.make_header(0.0, 'cam'), enc))
    np.testing.assert_allclose(out, d, atol=1e-3 if enc == '16UC1' else 0)


def test_rgb_packing_matches_rviz():
    rgb = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [1, 2, 3]], np.uint8)
    packed = encode.pack_rgb(rgb)
    assert packed.dtype == np.float32
    assert packed.view(np.uint32).tolist() == [0xFF0000, 0x00FF00, 0x0000FF, 0x010203]
    np.testing.assert_array_equal(encode.unpack_rgb(packed), rgb)


def test_pointcloud2_fields_and_round_trip():
    n = 50
    rng = np.random.default_rng(2)
    xyz = rng.normal(size=(n, 3))
    rgb = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    label = rng.integers(0, 9, n)
    sim = rng.random(n)
    msg = encode.pointcloud2_msg({'xyz': xyz, 'rgb': rgb, 'label': label, 'similarity': sim},
                                 encode.make_header(1.0, 'map'))
    fields = [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
    assert fields == [('x', 0, PointField.FLOAT32, 1), ('y', 4, PointField.FLOAT32, 1),
                      ('z', 8, PointField.FLOAT32, 1), ('rgb', 12, PointField.FLOAT32, 1),
                      ('label', 16, PointField.UINT32, 1), ('similarity', 20, PointField.FLOAT32, 1)]
    assert msg.point_step == 24 and msg.row_step == 24 * n and msg.height == 1 and msg.width == n
    assert len(msg.data) == 24 * n and msg.is_dense and not msg.is_bigendian
    arr = encode.pointcloud2_to_array(msg)
    np.testing.assert_allclose(np.stack([arr['x'], arr['y'], arr['z']], 1), xyz.astype(np.float32))
    np.testing.assert_array_equal(encode.unpack_rgb(arr['rgb']), rgb)
    np.testing.assert_array_equal(arr['label'], label)
    np.testing.assert_allclose(arr['similarity'], sim.astype(np.float32))


def test_pointcloud2_reader_padding_and_endianness():
    """A foreign cloud: padded point_step, row_step padding, big-endian, organised 2x3."""
    h, w, step = 2, 3, 16
    dt = np.dtype({'names': ['x', 'y', 'z'], 'formats': ['>f4'] * 3, 'offsets': [0, 4, 8],
                   'itemsize': step})
    pts = np.zeros(h * w, dt)
    pts['x'] = np.arange(6)
    rows = np.concatenate([pts.view(np.uint8).reshape(h, w * step), np.zeros((h, 8), np.uint8)], 1)
    from types import SimpleNamespace as NS
    fields = [NS(name=c, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, c in enumerate('xyz')]
    msg = NS(height=h, width=w, fields=fields, is_bigendian=True, point_step=step,
             row_step=w * step + 8, data=rows.reshape(-1))
    arr = encode.pointcloud2_to_array(msg)
    assert arr.shape == (6,) and arr['x'].tolist() == list(range(6))


def test_empty_cloud():
    msg = encode.pointcloud2_msg({'xyz': np.zeros((0, 3)), 'rgb': np.zeros((0, 3), np.uint8)},
                                 encode.make_header(0.0, 'map'))
    assert msg.width == 0 and len(msg.data) == 0 and len(msg.fields) == 4
    assert encode.pointcloud2_to_array(msg).shape == (0,)


def test_pose_messages():
    T = look_at([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    h = encode.make_header(0.0, 'map')
    np.testing.assert_allclose(decode.decode_pose(encode.pose_stamped_msg(T, h)), T, atol=1e-9)
    pa = encode.pose_array_msg([T, np.eye(4)], h)
    assert len(pa.poses) == 2 and pa.header.frame_id == 'map'


def test_query_markers():
    h = encode.make_header(3.0, 'map')
    R = look_at([0, 0, 0], [1, 1, 0])[:3, :3]
    ma = encode.query_markers(h, box_center=[1, 2, 3], box_extent=[0.1, 0.2, 0.3], box_R=R,
                              centroid=[1, 2, 3.1], text='mug 0.87')
    types = [m.type for m in ma.markers]
    assert ma.markers[0].action == Marker.DELETEALL
    assert types[1:] == [Marker.CUBE, Marker.SPHERE, Marker.TEXT_VIEW_FACING]
    cube = ma.markers[1]
    q = cube.pose.orientation
    from n3f_ros.core.camera import quat_to_rot
    np.testing.assert_allclose(quat_to_rot([q.x, q.y, q.z, q.w]), R, atol=1e-9)
    assert (cube.scale.x, cube.scale.y, cube.scale.z) == pytest.approx((0.1, 0.2, 0.3))
    assert ma.markers[3].text == 'mug 0.87'
    assert all(m.header.stamp == h.stamp for m in ma.markers)
    assert len(encode.query_markers(h).markers) == 1


def test_diagnostics():
    msg = encode.diagnostic_array_msg(encode.make_header(0.0, ''),
                                      [('n3f: input', 'warn', 'drops', {'rejected/bad_size': 3, 'fps': 1.5},
                                        'n3f')])
    s = msg.status[0]
    assert s.level == b'\x01' and {kv.key: kv.value for kv in s.values} == {
        'rejected/bad_size': '3', 'fps': '1.5'}
