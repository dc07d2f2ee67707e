"""decode.py: message -> numpy for every supported encoding, and every bad-input reason.

No rclpy.init: messages are plain objects (rclpy message classes and SimpleNamespace stand-ins for
rosbags' deserialised objects, which have the same field names).
"""
import io
from types import SimpleNamespace as NS

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from n3f_ros.core.camera import pose_from_xyz_quat
from n3f_ros.io import decode
from n3f_ros.io.decode import MessageError

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def _img(arr, encoding, pad=0, cls=Image, bigendian=0):
    """Image message of ``arr`` (H, W, C) or (H, W) with ``pad`` bytes of row padding."""
    h, w = arr.shape[:2]
    rows = arr.reshape(h, -1).view(np.uint8)
    rows = np.concatenate([rows, np.full((h, pad), 77, np.uint8)], axis=1)
    if cls is NS:
        return NS(height=h, width=w, encoding=encoding, is_bigendian=bigendian, step=rows.shape[1],
                  data=rows.reshape(-1))
    return Image(height=h, width=w, encoding=encoding, is_bigendian=bigendian, step=rows.shape[1],
                 data=rows.tobytes())


@pytest.mark.parametrize('cls', [Image, NS])
@pytest.mark.parametrize('pad', [0, 3])
def test_colour_encodings_round_trip(cls, pad):
    alpha = np.full((5, 7, 1), 9, np.uint8)
    cases = {'rgb8': RGB, 'bgr8': RGB[:, :, ::-1], 'rgba8': np.concatenate([RGB, alpha], 2),
             'bgra8': np.concatenate([RGB[:, :, ::-1], alpha], 2)}
    for enc, raw in cases.items():
        out = decode.decode_image(_img(np.ascontiguousarray(raw), enc, pad, cls))
        assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
        np.testing.assert_array_equal(out, RGB, err_msg=enc)
    mono = RGB[:, :, 0].copy()
    out = decode.decode_image(_img(mono, 'mono8', pad, cls))
    np.testing.assert_array_equal(out, np.repeat(mono[:, :, None], 3, 2))


def test_bgr_is_not_rgb():
    px = np.zeros((1, 1, 3), np.uint8)
    px[0, 0] = (255, 0, 0)
    assert decode.decode_image(_img(px, 'bgr8')).tolist() == [[[0, 0, 255]]]
    assert decode.decode_image(_img(px, 'rgb8')).tolist() == [[[255, 0, 0]]]


@pytest.mark.parametrize('fmt', ['jpeg', 'png'])
def test_compressed(fmt):
    from PIL import Image as PILImage
    yy, xx = np.mgrid[0:40, 0:56]
    big = np.stack([xx * 4, yy * 6, 255 - xx * 4], -1).astype(np.uint8)    # smooth: jpeg-friendly
    buf = io.BytesIO()
    PILImage.fromarray(big).save(buf, format=fmt.upper(), quality=95) if fmt == 'jpeg' else \
        PILImage.fromarray(big).save(buf, format='PNG')
    msg = CompressedImage(format=f'rgb8; {fmt} compressed bgr8', data=buf.getvalue())
    out = decode.decode_compressed_image(msg)
    assert out.shape == big.shape and out.flags.writeable        # torch.from_numpy warns on read-only
    err = np.abs(out.astype(int) - big)
    assert err.max() == 0 if fmt == 'png' else err.mean() < 4


def test_compressed_bad():
    with pytest.raises(MessageError) as e:
        decode.decode_compressed_image(CompressedImage(format='jpeg', data=b'not an image'))
    assert e.value.reason == 'decode_failed'
    with pytest.raises(MessageError) as e:
        decode.decode_compressed_image(CompressedImage(format='jpeg', data=b''))
    assert e.value.reason == 'empty'
    with pytest.raises(MessageError) as e:
        decode.decode_compressed_image(CompressedImage(format='16UC1; compressedDepth', data=b'x'))
    assert e.value.reason == 'unknown_encoding'


@pytest.mark.parametrize('bigendian', [0, 1])
@pytest.mark.parametrize('pad', [0, 2])
def test_depth_round_trip(bigendian, pad):
    mm = RNG.integers(0, 6000, (4, 6)).astype(np.uint16)
    raw = mm.astype('>u2' if bigendian else '<u2')
    out = decode.decode_depth(_img(raw, '16UC1', pad, bigendian=bigendian))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, mm / 1000.0, rtol=1e-6)
    m = (mm / 1000.0).astype('>f4' if bigendian else '<f4')
    m[0, 0] = np.nan
    out = decode.decode_depth(_img(m, '32FC1', pad, bigendian=bigendian))
    np.testing.assert_array_equal(out, m.astype(np.float32))


def test_camera_info():
    msg = CameraInfo(width=640, height=480, k=[500.0, 0, 320, 0, 510, 240, 0, 0, 1])
    cam = decode.decode_camera_info(msg)
    assert (cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height) == (500, 510, 320, 240, 640, 480)


def test_pose_and_odometry():
    T = pose_from_xyz_quat([1, 2, 3], [0.0, 0.0, np.sin(0.3), np.cos(0.3)])
    msg = PoseStamped()
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = 1.0, 2.0, 3.0
    msg.pose.orientation.z, msg.pose.orientation.w = np.sin(0.3), np.cos(0.3)
    np.testing.assert_allclose(decode.decode_pose(msg), T, atol=1e-12)
    np.testing.assert_allclose(decode.decode_pose(msg.pose), T, atol=1e-12)
    odom = Odometry()
    odom.pose.pose = msg.pose
    np.testing.assert_allclose(decode.decode_odometry(odom), T, atol=1e-12)


def test_stamps():
    s = NS(sec=12, nanosec=500_000_000)
    assert decode.stamp_to_sec(s) == 12.5
    assert decode.stamp_to_ns(s) == 12_500_000_000
    with pytest.raises(MessageError) as e:
        decode.stamp_to_sec(NS(sec=1, nanosec=2_000_000_000))
    assert e.value.reason == 'bad_stamp'


def _reason(fn, *args):
    with pytest.raises(MessageError) as e:
        fn(*args)
    assert e.value.text and e.value.reason in str(e.value)
    return e.value.reason


def test_bad_images():
    good = _img(RGB, 'rgb8')
    assert _reason(decode.decode_image, NS(**{**_fields(good), 'encoding': 'yuv422'})) == 'unknown_encoding'
    assert _reason(decode.decode_image, NS(**{**_fields(good), 'data': good.data[:-1]})) == 'bad_data_length'
    assert _reason(decode.decode_image, NS(**{**_fields(good), 'width': 0})) == 'bad_size'
    assert _reason(decode.decode_image, NS(**{**_fields(good), 'height': -1})) == 'bad_size'
    assert _reason(decode.decode_image, NS(**{**_fields(good), 'step': 3})) == 'bad_size'
    assert _reason(decode.decode_image, NS(**{**_fields(good), 'data': b''})) == 'empty'
    huge = NS(**{**_fields(good), 'width': 100000, 'height': 100000, 'step': 300000})
    assert _reason(decode.decode_image, huge) == 'too_large'
    assert _reason(decode.decode_depth, NS(**{**_fields(good), 'encoding': 'rgb8'})) == 'unknown_encoding'


def _fields(msg):
    return {k: getattr(msg, k) for k in ('height', 'width', 'encoding', 'is_bigendian', 'step', 'data')}


def test_bad_camera_info():
    ok = {'width': 640, 'height': 480, 'k': [500.0, 0, 320, 0, 500, 240, 0, 0, 1]}
    assert _reason(decode.decode_camera_info, NS(**{**ok, 'k': [0.0] * 9})) == 'bad_focal'
    neg = [-5.0, 0, 1, 0, 5, 1, 0, 0, 1]
    assert _reason(decode.decode_camera_info, NS(**{**ok, 'k': neg})) == 'bad_focal'
    assert _reason(decode.decode_camera_info, NS(**{**ok, 'width': 0})) == 'bad_size'
    assert _reason(decode.decode_camera_info, NS(**{**ok, 'k': [np.nan] + ok['k'][1:]})) == 'non_finite'


def _pose(x=0.0, q=(0.0, 0.0, 0.0, 1.0)):
    return NS(position=NS(x=x, y=0.0, z=0.0), orientation=NS(x=q[0], y=q[1], z=q[2], w=q[3]))


def test_bad_poses():
    assert _reason(decode.decode_pose, _pose(x=np.nan)) == 'non_finite'
    assert _reason(decode.decode_pose, _pose(x=np.inf)) == 'non_finite'
    assert _reason(decode.decode_pose, _pose(q=(0, 0, 0, 0))) == 'bad_quaternion'
    assert _reason(decode.decode_pose, _pose(q=(0, 0, 0.5, 0.5))) == 'bad_quaternion'
    assert _reason(decode.decode_pose, _pose(q=(0, 0, np.nan, 1))) == 'non_finite'
    assert _reason(decode.decode_point, NS(point=NS(x=1.0, y=np.nan, z=0.0))) == 'non_finite'
    assert _reason(decode.decode_extrinsic, [0, 0, 0, 0, 0, 0]) == 'bad_data_length'
    assert _reason(decode.decode_extrinsic, [0, 0, 0, 0, 0, 0, 2]) == 'bad_quaternion'


def test_rosbags_messages():
    """The bag tool passes rosbags' deserialised messages (numpy ``data``): same results."""
    from rosbags.typesys import Stores, get_typestore
    ts = get_typestore(Stores.ROS2_HUMBLE)
    img = _img(RGB[:, :, ::-1].copy(), 'bgr8', pad=1)
    Hdr, Time = ts.types['std_msgs/msg/Header'], ts.types['builtin_interfaces/msg/Time']
    bag = ts.types['sensor_msgs/msg/Image'](
        header=Hdr(stamp=Time(sec=3, nanosec=250_000_000), frame_id='cam'), height=img.height,
        width=img.width, encoding='bgr8', is_bigendian=0, step=img.step,
        data=np.frombuffer(bytes(img.data), np.uint8))
    bag = ts.deserialize_cdr(ts.serialize_cdr(bag, 'sensor_msgs/msg/Image'), 'sensor_msgs/msg/Image')
    np.testing.assert_array_equal(decode.decode_image(bag), RGB)
    assert decode.header_sec(bag) == 3.25
