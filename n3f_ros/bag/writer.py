"""Write posed camera streams to rosbag2 (mcap or sqlite3) with ``rosbags`` (no rclpy needed).

Two layers:

* :class:`BagWriter` serialises and writes single messages (sensor_msgs/Image, CompressedImage,
  CameraInfo, geometry_msgs/PoseStamped, nav_msgs/Odometry) with a ROS 2 typestore.
* :func:`write_synthetic_bag` writes a whole :class:`~n3f_ros.core.synth.SyntheticSequence` the
  way an RGB-D camera driver + localisation would publish it (see :class:`BagOptions`), plus a
  ``n3f_synth.json`` metadata file inside the bag folder.

Conventions: stamps are int nanoseconds (header stamp == bag log time); poses are ``T_world_cam``
(OpenCV optical camera in the world frame), metres, quaternions (x, y, z, w); depth is 16UC1 in
millimetres, aligned to the colour camera (same intrinsics and frame_id).

What rosbag2 itself writes, and so do these bags: ``ros_distro`` (metadata.yaml and the copy
embedded in the storage file) is the distro whose message definitions the bag uses, not
``rosbags``; each MCAP channel's metadata holds ``offered_qos_profiles`` *and* ``topic_type_hash``
(the type's RIHS01 hash, as rosbag2_storage_mcap's ``create_topic`` writes and ``read_metadata``
reads it back into ``type_description_hash``).
"""
from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import Channel, McapWriter, write_channel, write_string
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Writer
from rosbags.typesys import Stores, get_typestore

from n3f_ros.core.camera import PinholeCamera, invert_pose, pose_from_xyz_quat, pose_to_xyz_quat, rot_to_quat

STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
DISTROS = {'humble': Stores.ROS2_HUMBLE, 'jazzy': Stores.ROS2_JAZZY, 'kilted': Stores.ROS2_KILTED}
ENCODINGS = ('rgb8', 'bgr8')
POSE_SOURCES = ('pose', 'odom')
METADATA_FILE = 'n3f_synth.json'


def _default_extrinsic() -> np.ndarray:
    """T_base_cam: camera optical frame in a REP-103 base frame (x fwd, y left, z up), metres.

    Camera 10 cm ahead of and 25 cm above the base origin, 2 cm to the left, looking forward and
    pitched 15 degrees down.
    """
    pitch = np.deg2rad(15.0)
    z = np.array([np.cos(pitch), 0.0, -np.sin(pitch)])     # optical z: forward, down a bit
    x = np.array([0.0, -1.0, 0.0])                         # optical x: robot's right
    y = np.cross(z, x)                                     # optical y: down-ish
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], axis=1)
    T[:3, 3] = (0.10, 0.02, 0.25)
    return T


DEFAULT_EXTRINSIC = _default_extrinsic()


class BagWriteError(RuntimeError):
    """The bag cannot be written (bad options, existing output, ...)."""


@dataclass
class BagTopics:
    """Topic names (absolute, as a RealSense-style driver publishes them)."""

    image: str = '/camera/color/image_raw'
    compressed: str = ''                       # '' = image + '/compressed'
    camera_info: str = '/camera/color/camera_info'
    depth: str = '/camera/aligned_depth_to_color/image_raw'
    pose: str = '/camera/pose'
    odom: str = '/odom'

    @property
    def compressed_topic(self) -> str:
        return self.compressed or self.image.rstrip('/') + '/compressed'


@dataclass
class BagOptions:
    """How :func:`write_synthetic_bag` writes a sequence.

    storage:      'mcap' or 'sqlite3'.
    compressed:   colour as sensor_msgs/CompressedImage (jpeg) on ``topics.compressed_topic``
                  instead of a raw Image on ``topics.image``.
    encoding:     raw image encoding, 'rgb8' or 'bgr8'.
    pose_source:  'pose': geometry_msgs/PoseStamped of the camera optical frame on ``topics.pose``;
                  'odom': nav_msgs/Odometry of ``base_frame`` on ``topics.odom``, camera =
                  ``T_world_base @ extrinsic``.
    depth:        write the aligned 16UC1 (mm) depth image.
    pose_rate:    pose messages per image period (e.g. 3 = poses at 3x the image rate).
    pose_offset:  seconds added to the pose sampling times: pose k is stamped
                  ``k / (fps * pose_rate) + pose_offset`` and holds the true pose at that time,
                  so with an offset no pose shares an image stamp and consumers must interpolate.
    start_time:   seconds added to every stamp (sequence time 0 -> this ROS time).
    extrinsic:    T_base_cam (4, 4): camera optical frame in the odometry child frame.
    jpeg_quality: 1..95.
    distro:       message definitions of 'humble', 'jazzy' or 'kilted'.
    """

    storage: str = 'mcap'
    compressed: bool = False
    encoding: str = 'rgb8'
    pose_source: str = 'pose'
    depth: bool = True
    pose_rate: float = 3.0
    pose_offset: float = 0.0
    start_time: float = 1_700_000_000.0
    topics: BagTopics = field(default_factory=BagTopics)
    camera_frame: str = 'camera_color_optical_frame'
    world_frame: str = 'map'
    base_frame: str = 'base_link'
    extrinsic: np.ndarray = field(default_factory=lambda: DEFAULT_EXTRINSIC.copy())
    jpeg_quality: int = 90
    distro: str = 'jazzy'

    def __post_init__(self):
        for name, value, allowed in (('storage', self.storage, STORAGES), ('encoding', self.encoding, ENCODINGS),
                                     ('pose_source', self.pose_source, POSE_SOURCES),
                                     ('distro', self.distro, DISTROS)):
            if value not in allowed:
                raise ValueError(f'{name} must be one of {sorted(allowed)}, got {value!r}')
        if not (math.isfinite(self.pose_rate) and self.pose_rate > 0):
            raise ValueError(f'pose_rate must be positive, got {self.pose_rate}')
        if not math.isfinite(self.pose_offset):
            raise ValueError(f'pose_offset must be finite, got {self.pose_offset}')
        if not (math.isfinite(self.start_time) and self.start_time >= 0):
            raise ValueError(f'start_time must be >= 0, got {self.start_time}')
        if not 1 <= int(self.jpeg_quality) <= 95:
            raise ValueError(f'jpeg_quality must be in 1..95, got {self.jpeg_quality}')
        T = np.asarray(self.extrinsic, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise ValueError('extrinsic must be a finite 4x4 matrix')
        if not np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-6) or np.linalg.det(T[:3, :3]) < 0:
            raise ValueError('extrinsic rotation is not a proper rotation')
        self.extrinsic = T


def extrinsic_to_list(T) -> list[float]:
    """4x4 -> [x, y, z, qx, qy, qz, qw] (the ``camera_extrinsic`` parameter format)."""
    xyz, q = pose_to_xyz_quat(T)
    return [float(v) for v in (*xyz, *q)]


def extrinsic_from_list(values) -> np.ndarray:
    """[x, y, z, qx, qy, qz, qw] -> 4x4. Raises ValueError (GeometryError) if malformed."""
    vals = [float(v) for v in values]
    if len(vals) != 7:
        raise ValueError(f'extrinsic needs 7 numbers (x y z qx qy qz qw), got {len(vals)}')
    return pose_from_xyz_quat(vals[:3], vals[3:])


def to_ns(seconds: float) -> int:
    """Float seconds -> int nanoseconds (rounded)."""
    return round(float(seconds) * 1e9)


# ---------------------------------------------------------------------------------------------
# storage: what rosbag2 writes
# ---------------------------------------------------------------------------------------------

def with_ros_distro(metadata_yaml: str, distro: str) -> str:
    """A bag-metadata YAML text (rosbag2_bagfile_information content) with ``ros_distro`` set."""
    data = yaml.safe_load(metadata_yaml)
    data['ros_distro'] = distro
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).strip()


class _DistroMetadata:
    """Storage mixin: the metadata copy inside the storage file names ``ros_distro`` (set after open)."""

    ros_distro = ''

    def close(self, version: int, metadata: str) -> None:
        """Close the storage, embedding the metadata with our ``ros_distro``."""
        super().close(version, with_ros_distro(metadata, self.ros_distro))


class _Sqlite3Storage(_DistroMetadata, Sqlite3Writer):
    """rosbags' sqlite3 storage; its ``metadata`` table names the bag's distro."""


class _McapStorage(_DistroMetadata, McapWriter):
    """rosbags' MCAP storage writing channel metadata as rosbag2_storage_mcap does."""

    def add_connection(self, connection, offered_qos_profiles: str) -> None:
        """Channel record with ``offered_qos_profiles`` and ``topic_type_hash`` (RIHS01).

        Same record as rosbags' own ``McapWriter.add_connection`` (rosbags 0.11.9) plus the hash key;
        test/core/test_bag_writer.py reads it back with the independent ``mcap`` reader.
        """
        metadata = io.BytesIO()
        for key, value in (('offered_qos_profiles', offered_qos_profiles), ('topic_type_hash', connection.digest)):
            write_string(metadata, key)
            write_string(metadata, value)
        self.channels.append(Channel(connection.id, connection.msgtype, connection.topic,
                                     connection.ext.serialization_format, metadata.getvalue()))
        self.channel_stats[connection.id] = 0
        write_channel(self.chunk.bio, self.channels[-1], self.schemas)


class _Rosbag2Writer(Writer):
    """rosbags' Writer with the storages above."""

    STORAGE_PLUGINS = {StoragePlugin.SQLITE3: _Sqlite3Storage, StoragePlugin.MCAP: _McapStorage}


# ---------------------------------------------------------------------------------------------
# message level
# ---------------------------------------------------------------------------------------------

class BagWriter:
    """Context manager writing ROS 2 messages to a new rosbag2 folder ``path``.

    Connections are created on first use of a topic. Every ``write_*`` takes the stamp as int
    nanoseconds (used for the header and as log time) and the header frame_id.
    """

    def __init__(self, path, storage: str = 'mcap', distro: str = 'jazzy'):
        if storage not in STORAGES:
            raise ValueError(f'storage must be one of {sorted(STORAGES)}, got {storage!r}')
        if distro not in DISTROS:
            raise ValueError(f'distro must be one of {sorted(DISTROS)}, got {distro!r}')
        self.path = Path(path)
        if self.path.exists():
            raise BagWriteError(f'{self.path} exists already; rosbag2 writers never overwrite')
        self.distro = distro
        self.ts = get_typestore(DISTROS[distro])
        self._writer = _Rosbag2Writer(self.path, version=9, storage_plugin=STORAGES[storage])
        self._conns: dict[str, object] = {}
        self.counts: dict[str, int] = {}
        self._t = self.ts.types

    def __enter__(self) -> "BagWriter":
        self._writer.open()
        self._writer.storage.ros_distro = self.distro
        return self

    def __exit__(self, exc_type, exc, tb):
        self._writer.__exit__(exc_type, exc, tb)
        if exc_type is None:
            self._set_metadata_distro()

    def _set_metadata_distro(self) -> None:
        """metadata.yaml names our distro (rosbags writes 'rosbags'); replaced atomically."""
        meta = self.path / 'metadata.yaml'
        data = yaml.safe_load(meta.read_text())
        data['rosbag2_bagfile_information']['ros_distro'] = self.distro
        tmp = meta.with_suffix('.yaml.tmp')
        tmp.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
        os.replace(tmp, meta)

    def set_custom_data(self, key: str, value: str) -> None:
        """Key/value stored in the bag's metadata.yaml (``custom_data``)."""
        self._writer.set_custom_data(key, value)

    # -----------------------------------------------------------------------------------------
    def _write(self, topic: str, msg, stamp_ns: int) -> None:
        msgtype = msg.__msgtype__
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=self.ts)
            self._conns[topic] = conn
            self.counts[topic] = 0
        elif conn.msgtype != msgtype:
            raise BagWriteError(f'topic {topic} already carries {conn.msgtype}, not {msgtype}')
        self._writer.write(conn, int(stamp_ns), self.ts.serialize_cdr(msg, msgtype))
        self.counts[topic] += 1

    def _header(self, stamp_ns: int, frame_id: str):
        if stamp_ns < 0:
            raise BagWriteError(f'negative stamp {stamp_ns} ns')
        Time, Header = self._t['builtin_interfaces/msg/Time'], self._t['std_msgs/msg/Header']
        return Header(stamp=Time(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000)),
                      frame_id=frame_id)

    def _pose_msg(self, T):
        xyz, q = pose_to_xyz_quat(T)
        P = self._t
        return P['geometry_msgs/msg/Pose'](
            position=P['geometry_msgs/msg/Point'](x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2])),
            orientation=P['geometry_msgs/msg/Quaternion'](x=float(q[0]), y=float(q[1]), z=float(q[2]),
                                                          w=float(q[3])))

    # -----------------------------------------------------------------------------------------
    def write_image(self, topic: str, stamp_ns: int, frame_id: str, rgb: np.ndarray, encoding: str = 'rgb8'):
        """sensor_msgs/Image from an (H, W, 3) uint8 RGB array, encoded as rgb8 or bgr8."""
        rgb = _check_rgb(rgb)
        if encoding not in ENCODINGS:
            raise ValueError(f'encoding must be one of {ENCODINGS}, got {encoding!r}')
        img = rgb if encoding == 'rgb8' else rgb[..., ::-1]
        H, W = rgb.shape[:2]
        msg = self._t['sensor_msgs/msg/Image'](
            header=self._header(stamp_ns, frame_id), height=H, width=W, encoding=encoding,
            is_bigendian=0, step=3 * W, data=np.ascontiguousarray(img).reshape(-1))
        self._write(topic, msg, stamp_ns)

    def write_compressed(self, topic: str, stamp_ns: int, frame_id: str, rgb: np.ndarray, quality: int = 90):
        """sensor_msgs/CompressedImage (jpeg) from an (H, W, 3) uint8 RGB array."""
        from PIL import Image as PILImage  # only needed for compressed images
        rgb = _check_rgb(rgb)
        buf = io.BytesIO()
        PILImage.fromarray(rgb).save(buf, format='JPEG', quality=int(quality))
        msg = self._t['sensor_msgs/msg/CompressedImage'](
            header=self._header(stamp_ns, frame_id), format='rgb8; jpeg compressed bgr8',
            data=np.frombuffer(buf.getvalue(), dtype=np.uint8))
        self._write(topic, msg, stamp_ns)

    def write_depth(self, topic: str, stamp_ns: int, frame_id: str, depth: np.ndarray):
        """sensor_msgs/Image 16UC1 (millimetres, 0 = unknown) from (H, W) float z-depth in metres."""
        depth = np.asarray(depth)
        if depth.ndim != 2:
            raise ValueError(f'depth must be (H, W), got {depth.shape}')
        d = np.nan_to_num(depth.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        mm = np.clip(np.round(np.where(d > 0, d, 0.0) * 1000.0), 0, 65535).astype('<u2')
        H, W = mm.shape
        msg = self._t['sensor_msgs/msg/Image'](
            header=self._header(stamp_ns, frame_id), height=H, width=W, encoding='16UC1',
            is_bigendian=0, step=2 * W, data=np.frombuffer(mm.tobytes(), dtype=np.uint8))
        self._write(topic, msg, stamp_ns)

    def write_camera_info(self, topic: str, stamp_ns: int, frame_id: str, camera: PinholeCamera):
        """sensor_msgs/CameraInfo of a distortion-free pinhole camera (plumb_bob, zero D)."""
        K = camera.K
        Pm = np.zeros((3, 4))
        Pm[:, :3] = K
        msg = self._t['sensor_msgs/msg/CameraInfo'](
            header=self._header(stamp_ns, frame_id), height=int(camera.height), width=int(camera.width),
            distortion_model='plumb_bob', d=np.zeros(5), k=K.reshape(-1), r=np.eye(3).reshape(-1),
            p=Pm.reshape(-1), binning_x=0, binning_y=0,
            roi=self._t['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0,
                                                            do_rectify=False))
        self._write(topic, msg, stamp_ns)

    def write_pose(self, topic: str, stamp_ns: int, frame_id: str, T):
        """geometry_msgs/PoseStamped: pose ``T`` (4, 4) of the tracked frame in ``frame_id``."""
        msg = self._t['geometry_msgs/msg/PoseStamped'](header=self._header(stamp_ns, frame_id),
                                                       pose=self._pose_msg(T))
        self._write(topic, msg, stamp_ns)

    def write_odometry(self, topic: str, stamp_ns: int, frame_id: str, child_frame_id: str, T,
                       linear=(0.0, 0.0, 0.0), angular=(0.0, 0.0, 0.0)):
        """nav_msgs/Odometry: pose ``T`` (4, 4) of ``child_frame_id`` in ``frame_id``; twist (m/s,
        rad/s) in ``child_frame_id``. Covariances are zero (exact synthetic poses)."""
        P = self._t
        V3 = P['geometry_msgs/msg/Vector3']
        twist = P['geometry_msgs/msg/Twist'](linear=V3(*(float(v) for v in linear)),
                                             angular=V3(*(float(v) for v in angular)))
        msg = P['nav_msgs/msg/Odometry'](
            header=self._header(stamp_ns, frame_id), child_frame_id=child_frame_id,
            pose=P['geometry_msgs/msg/PoseWithCovariance'](pose=self._pose_msg(T), covariance=np.zeros(36)),
            twist=P['geometry_msgs/msg/TwistWithCovariance'](twist=twist, covariance=np.zeros(36)))
        self._write(topic, msg, stamp_ns)


def _check_rgb(rgb) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f'rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}')
    return rgb


# ---------------------------------------------------------------------------------------------
# sequence level
# ---------------------------------------------------------------------------------------------

def pose_times(n_frames: int, fps: float, rate: float, offset: float) -> np.ndarray:
    """Sequence times (s) of the pose messages: a grid of period ``1 / (fps * rate)`` shifted by
    ``offset`` that brackets every image time ``i / fps`` (one extra sample on each side)."""
    dt = 1.0 / (fps * rate)
    last = (n_frames - 1) / fps
    k0 = math.floor((0.0 - offset) / dt + 1e-9) - 1
    k1 = math.ceil((last - offset) / dt - 1e-9) + 1
    return np.arange(k0, k1 + 1) * dt + offset


def _body_twist(seq, T_cam_base, t: float, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Linear (m/s) and angular (rad/s) velocity of the base at time ``t``, in the base frame
    (central differences of the continuous path with step ``h`` seconds)."""
    T0 = seq.pose_at(t - h) @ T_cam_base
    T1 = seq.pose_at(t + h) @ T_cam_base
    R = (seq.pose_at(t) @ T_cam_base)[:3, :3]
    v = R.T @ (T1[:3, 3] - T0[:3, 3]) / (2 * h)
    w = _rotvec(T0[:3, :3].T @ T1[:3, :3]) / (2 * h)
    return v, w


def _rotvec(R) -> np.ndarray:
    """Rotation vector (axis * angle, radians) of a 3x3 rotation."""
    q = rot_to_quat(R)                      # (x, y, z, w), w >= 0
    s = np.linalg.norm(q[:3])
    if s < 1e-12:
        return np.zeros(3)
    return q[:3] / s * 2.0 * np.arctan2(s, q[3])


@dataclass
class BagSummary:
    """What :func:`write_synthetic_bag` wrote: folder, message counts per topic, metadata dict."""

    path: Path
    counts: dict
    metadata: dict


def write_synthetic_bag(seq, out, options: BagOptions | None = None,
                        progress: Callable[[Iterable], Iterable] | None = None) -> BagSummary:
    """Write ``seq`` (SyntheticSequence: ``camera``, ``fps``, ``pose_at``, frames) as rosbag2 ``out``.

    Per image (stamp ``start_time + i / fps``): colour (raw or jpeg), camera_info, depth (unless
    disabled). Poses (PoseStamped of the camera, or Odometry of the base) at ``pose_rate`` x the
    image rate, offset by ``pose_offset``, sampled from the continuous camera path. Messages are
    written in stamp order. ``progress`` wraps the frame iterator (e.g. tqdm).
    """
    opt = options or BagOptions()
    out = Path(out)
    T_base_cam = opt.extrinsic
    T_cam_base = invert_pose(T_base_cam)
    start_ns = to_ns(opt.start_time)
    times = pose_times(len(seq), seq.fps, opt.pose_rate, opt.pose_offset)
    times = times[start_ns + np.round(times * 1e9) >= 0]        # no negative ROS time
    meta = _metadata(seq, opt)
    tp = opt.topics
    h = 0.25 / (seq.fps * opt.pose_rate)

    with BagWriter(out, opt.storage, opt.distro) as bw:
        for key, value in _custom_data(meta).items():
            bw.set_custom_data(key, value)
        k = 0

        def flush_poses(until_ns: int):
            nonlocal k
            while k < len(times) and start_ns + to_ns(times[k]) <= until_ns:
                t = float(times[k])
                ns = start_ns + to_ns(t)
                T_world_cam = seq.pose_at(t)
                if opt.pose_source == 'pose':
                    bw.write_pose(tp.pose, ns, opt.world_frame, T_world_cam)
                else:
                    v, w = _body_twist(seq, T_cam_base, t, h)
                    bw.write_odometry(tp.odom, ns, opt.world_frame, opt.base_frame, T_world_cam @ T_cam_base,
                                      v, w)
                k += 1

        frames = iter(seq) if progress is None else progress(iter(seq))
        for f in frames:
            ns = start_ns + to_ns(f.stamp)
            flush_poses(ns)
            if opt.compressed:
                bw.write_compressed(tp.compressed_topic, ns, opt.camera_frame, f.rgb, opt.jpeg_quality)
            else:
                bw.write_image(tp.image, ns, opt.camera_frame, f.rgb, opt.encoding)
            bw.write_camera_info(tp.camera_info, ns, opt.camera_frame, f.camera)
            if opt.depth and f.depth is not None:
                bw.write_depth(tp.depth, ns, opt.camera_frame, f.depth)
        flush_poses(2 ** 63 - 1)
        counts = dict(bw.counts)
    meta['counts'] = counts
    (out / METADATA_FILE).write_text(json.dumps(meta, indent=2) + '\n')
    return BagSummary(out, counts, meta)


def _custom_data(meta: dict) -> dict[str, str]:
    """The few metadata entries also stored in the bag's metadata.yaml ``custom_data``."""
    out = {'n3f.generator': str(meta['generator']), 'n3f.seed': str(meta['seed']),
           'n3f.pose_source': str(meta['pose_source']), 'n3f.metadata_file': METADATA_FILE}
    if 'camera_extrinsic' in meta:
        out['n3f.camera_extrinsic'] = ' '.join(f'{v:.9g}' for v in meta['camera_extrinsic'])
    return out


def _metadata(seq, opt: BagOptions) -> dict:
    """JSON-able description of the bag: how it was made and how to consume it."""
    cam = seq.camera
    tp = opt.topics
    topics = {'camera_info': tp.camera_info}
    topics['image_compressed' if opt.compressed else 'image'] = tp.compressed_topic if opt.compressed else tp.image
    if opt.depth:
        topics['depth'] = tp.depth
    topics[opt.pose_source] = tp.pose if opt.pose_source == 'pose' else tp.odom
    scene = getattr(seq, 'scene', None)
    meta = {
        'generator': 'n3f synth', 'seed': getattr(seq, 'seed', None), 'scene': getattr(scene, 'SOURCE', None),
        'frames': len(seq), 'fps': seq.fps,
        'camera': {'fx': cam.fx, 'fy': cam.fy, 'cx': cam.cx, 'cy': cam.cy, 'width': cam.width,
                   'height': cam.height},
        'topics': topics, 'storage': opt.storage, 'distro': opt.distro,
        'compressed': opt.compressed, 'encoding': 'jpeg' if opt.compressed else opt.encoding,
        'depth': opt.depth, 'depth_encoding': '16UC1 (mm)',
        'pose_source': opt.pose_source, 'pose_rate': opt.pose_rate, 'pose_offset': opt.pose_offset,
        'start_time': opt.start_time,
        'frame_ids': {'camera': opt.camera_frame, 'world': opt.world_frame,
                      'base': opt.base_frame if opt.pose_source == 'odom' else None},
        'objects': [o.to_dict() for o in scene.objects] if scene is not None else [],
    }
    if opt.pose_source == 'odom':
        meta['camera_extrinsic'] = extrinsic_to_list(opt.extrinsic)
        meta['camera_extrinsic_doc'] = (f'x y z qx qy qz qw: pose of {opt.camera_frame} in {opt.base_frame} '
                                        f'(T_base_cam); T_world_cam = T_world_base @ T_base_cam')
    return meta


__all__ = [
    'DEFAULT_EXTRINSIC',
    'METADATA_FILE',
    'BagOptions',
    'BagSummary',
    'BagTopics',
    'BagWriteError',
    'BagWriter',
    'extrinsic_from_list',
    'extrinsic_to_list',
    'pose_times',
    'to_ns',
    'write_synthetic_bag',
]
