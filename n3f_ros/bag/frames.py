"""rosbag2 recordings -> core :class:`~n3f_ros.core.frame.Frame` objects, offline (no rclpy, no DDS).

Used by ``n3f process``. Messages are ``rosbags`` dataclasses from :class:`~n3f_ros.bag.reader.BagReader`
and are decoded with the duck-typed decoders of :mod:`n3f_ros.io.decode` (the node uses the same),
so a bag and a live stream are judged by the same rules (SPEC §4).

Pairing of an image with intrinsics, pose and depth is the node's rule, :mod:`n3f_ros.io.pairing`,
with the whole bag known in advance: all poses (PoseStamped of the camera optical frame, or
Odometry composed with the extrinsic ``T_child_cam``) and camera_infos are read first, in stamp
order; an image is released once a depth stamped at or after it was read (later ones are farther
away), so it gets the nearest depth within the tolerance. Without one it goes on RGB-only and
``'depth_unmatched'`` is counted as a warning.

Every image message is one *frame read*; it is either *used* (yielded) or *dropped* with a reason
(a decode failure reason of :class:`~n3f_ros.io.decode.MessageError`, ``'no_pose'``,
``'no_camera_info'``, ``'size_mismatch'``, ``'bad_frame'``), so
``used + sum(dropped) == read``. Bad pose / camera_info / depth messages are counted per topic and
reason in :attr:`FrameStats.rejected`.
"""
from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from n3f_ros.bag.reader import BagError, BagReader, TopicNotFoundError
from n3f_ros.bag.writer import METADATA_FILE, BagTopics
from n3f_ros.core.frame import Frame
from n3f_ros.io.decode import (
    MessageError,
    decode_camera_info,
    decode_compressed_image,
    decode_depth,
    decode_extrinsic,
    decode_image,
    decode_odometry,
    decode_pose,
    header_sec,
)
from n3f_ros.io.pairing import CameraInfoHistory, PairingRule, assemble, depth_needed_after, match_depth
from n3f_ros.io.pose_buffer import PoseBuffer
from n3f_ros.io.validation import check_depth

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'
CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'
POSE_STAMPED = 'geometry_msgs/msg/PoseStamped'
ODOMETRY = 'nav_msgs/msg/Odometry'
#: accepted ROS types per input role
ROLE_TYPES = {
    'image': (IMAGE, COMPRESSED),
    'camera_info': (CAMERA_INFO,),
    'depth': (IMAGE,),
    'pose': (POSE_STAMPED,),
    'odom': (ODOMETRY,),
}

#: RealSense ROS 2 wrapper names (also what ``n3f synth --bag`` writes by default)
_T = BagTopics()
DEFAULT_TOPICS = {'image': _T.image, 'image_compressed': _T.compressed_topic, 'camera_info': _T.camera_info,
                  'depth': _T.depth, 'pose': _T.pose, 'odom': _T.odom}


class BagInputError(BagError):
    """The bag lacks a needed input or has it with the wrong type; the message lists its topics."""


class MissingTopicError(BagInputError, TopicNotFoundError):
    """A topic named for an input is not recorded in the bag; the message lists its topics."""


@dataclasses.dataclass
class BagInputs:
    """Which bag topics feed the frames (absolute names).

    image:       colour topic, sensor_msgs/Image or sensor_msgs/CompressedImage (decided by its type).
    camera_info: sensor_msgs/CameraInfo of the colour camera.
    depth:       sensor_msgs/Image (16UC1 mm or 32FC1 m) aligned to colour, or None for RGB-only.
    pose:        geometry_msgs/PoseStamped (T_world_cam) or nav_msgs/Odometry (T_world_child), per
                 ``pose_source``.
    pose_source: 'pose' or 'odom'.
    extrinsic:   T_child_cam (4, 4), metres: camera optical frame in the odometry child frame
                 (``pose_source == 'odom'`` only).
    """

    image: str
    camera_info: str
    depth: str | None
    pose: str
    pose_source: str = 'pose'
    extrinsic: np.ndarray | None = None

    def __post_init__(self):
        if self.pose_source not in ('pose', 'odom'):
            raise ValueError(f"pose_source must be 'pose' or 'odom', got {self.pose_source!r}")
        if self.pose_source == 'odom':
            if self.extrinsic is None:
                raise ValueError('odometry poses need the camera extrinsic T_child_cam (x y z qx qy qz qw)')
            T = np.asarray(self.extrinsic, dtype=np.float64)
            if T.shape != (4, 4) or not np.all(np.isfinite(T)):
                raise ValueError('extrinsic must be a finite 4x4 matrix')
            self.extrinsic = T

    def as_dict(self) -> dict:
        """JSON-able description (extrinsic as a nested list)."""
        d = dataclasses.asdict(self)
        d['extrinsic'] = None if self.extrinsic is None else np.asarray(self.extrinsic).round(9).tolist()
        return d


@dataclasses.dataclass
class FrameStats:
    """Counters of one pass over a bag (see the module docstring)."""

    frames_read: int = 0
    frames_used: int = 0
    dropped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    #: {'pose' | 'camera_info' | 'depth': Counter(reason -> n)} of rejected non-image messages
    rejected: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(collections.Counter))
    #: non-fatal pairing issues, e.g. 'depth_unmatched' (frame used RGB-only)
    warnings: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    poses: int = 0                 # poses accepted into the buffer
    camera_infos: int = 0          # camera_info messages accepted
    depths: int = 0                # depth images accepted
    frames_with_depth: int = 0

    @property
    def frames_dropped(self) -> int:
        return int(sum(self.dropped.values()))

    def as_dict(self) -> dict:
        """JSON-able counters."""
        return {
            'read': self.frames_read, 'used': self.frames_used, 'dropped': self.frames_dropped,
            'dropped_by_reason': dict(sorted(self.dropped.items())),
            'with_depth': self.frames_with_depth,
            'rejected_messages': {k: dict(sorted(v.items())) for k, v in sorted(self.rejected.items()) if v},
            'warnings': dict(sorted(self.warnings.items())),
            'poses': self.poses, 'camera_infos': self.camera_infos, 'depths': self.depths,
        }


def read_synth_metadata(bag_path) -> dict | None:
    """The ``n3f_synth.json`` written by ``n3f synth --bag`` next to the bag's metadata.yaml
    (for a single .mcap/.db3 file: in its folder), or None when there is none.

    Raises :class:`BagError` when the file exists but is not valid JSON.
    """
    p = Path(bag_path).expanduser()
    f = (p if p.is_dir() else p.parent) / METADATA_FILE
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError) as exc:
        raise BagError(f'{f} is not readable JSON: {exc}') from exc


def _bag_topics(reader: BagReader) -> dict[str, str]:
    return {t.name: t.msgtype for t in reader.topics()}


def check_inputs(reader: BagReader, inputs: BagInputs) -> None:
    """Raise :class:`BagInputError` (listing the bag's topics) when a topic of ``inputs`` is missing
    or has a type that cannot serve its role."""
    have = _bag_topics(reader)
    roles = [('image', inputs.image), ('camera_info', inputs.camera_info),
             (inputs.pose_source, inputs.pose)]
    if inputs.depth:
        roles.append(('depth', inputs.depth))
    missing, mistyped = [], []
    for role, topic in roles:
        if topic not in have:
            missing.append(f'{role} topic {topic} is not in the bag')
        elif have[topic] not in ROLE_TYPES[role]:
            mistyped.append(f'{role} topic {topic} is {have[topic]}, expected {" or ".join(ROLE_TYPES[role])}')
    if missing or mistyped:
        cls = MissingTopicError if missing else BagInputError
        raise cls('; '.join(missing + mistyped) + f'. Bag {reader.path} has:\n' + reader.describe_topics())


class BagFrameSource:
    """Iterate the posed frames of an open bag (see the module docstring for the pairing rules).

    reader:       an open :class:`BagReader`.
    inputs:       topics and pose source (checked against the bag on construction).
    max_pose_dt:  [s] largest image-to-pose distance (PoseBuffer lookup tolerance).
    max_depth_dt: [s] largest image-to-depth stamp difference (None = ``max_pose_dt``, as the node).
    min_depth, max_depth: [m] valid depth range; an all-invalid depth image is rejected ('bad_depth').
    max_pending:  images held while waiting for their depth (bounds memory if depth stalls).

    Iterating yields :class:`Frame` (rgb, camera, T_world_cam, header stamp [s], depth or None) in
    recording order; :attr:`stats` holds the counters. A source can be iterated once.
    """

    def __init__(self, reader: BagReader, inputs: BagInputs, max_pose_dt: float = 0.05,
                 max_depth_dt: float | None = None, min_depth: float = 0.1, max_depth: float = 5.0,
                 max_pending: int = 32):
        self.rule = PairingRule(max_pose_dt=max_pose_dt, max_depth_dt=max_depth_dt)
        if not 0 <= min_depth < max_depth:
            raise ValueError(f'need 0 <= min_depth < max_depth, got {min_depth}, {max_depth}')
        check_inputs(reader, inputs)
        self.reader = reader
        self.inputs = inputs
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.max_pending = max(1, int(max_pending))
        self.stats = FrameStats()
        self.poses = PoseBuffer(max_age=float('inf'), max_size=2 ** 62)
        self.cameras = CameraInfoHistory(max_size=2 ** 62)
        self._used = False

    @property
    def image_count(self) -> int:
        """Number of image messages in the bag (= frames that will be read)."""
        return self.reader.count([self.inputs.image])

    @property
    def compressed(self) -> bool:
        return _bag_topics(self.reader)[self.inputs.image] == COMPRESSED

    # --- first pass: poses and intrinsics -------------------------------------------------------
    def _load_poses_and_infos(self) -> None:
        inp = self.inputs
        poses = []
        for m in self.reader.messages([inp.pose, inp.camera_info]):
            try:
                if m.topic == inp.camera_info:
                    self.cameras.add(header_sec(m.msg), decode_camera_info(m.msg), m.msg.header.frame_id)
                    self.stats.camera_infos += 1
                else:
                    stamp = header_sec(m.msg)
                    if inp.pose_source == 'odom':
                        T = decode_odometry(m.msg) @ inp.extrinsic
                    else:
                        T = decode_pose(m.msg)
                    poses.append((stamp, T))
            except MessageError as e:
                role = 'camera_info' if m.topic == inp.camera_info else inp.pose_source
                self.stats.rejected[role][e.reason] += 1
        # offline the whole stream is known: order by header stamp (log times may interleave them)
        for stamp, T in sorted(poses, key=lambda p: p[0]):
            self.poses.add(stamp, T)
        self.stats.poses = len(self.poses)

    # --- main pass: images and depth ------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        if self._used:
            raise RuntimeError('a BagFrameSource can be iterated only once')
        self._used = True
        self._load_poses_and_infos()
        inp = self.inputs
        topics = [inp.image] + ([inp.depth] if inp.depth else [])
        decode = decode_compressed_image if self.compressed else decode_image
        pending: collections.deque = collections.deque()      # (stamp, rgb, frame id)
        depths: collections.deque = collections.deque()       # (stamp, depth metres, frame id)
        for m in self.reader.messages(topics):
            if m.topic == inp.image:
                self.stats.frames_read += 1
                try:
                    stamp = header_sec(m.msg)
                    rgb = decode(m.msg)
                    if not rgb.flags.writeable:         # PIL-decoded arrays are read-only; torch warns
                        rgb = rgb.copy()
                    pending.append((stamp, rgb, m.msg.header.frame_id))
                except MessageError as e:
                    self.stats.dropped[e.reason] += 1
            else:
                try:
                    d, _ = check_depth(decode_depth(m.msg), self.min_depth, self.max_depth)
                    depths.append((header_sec(m.msg), d, m.msg.header.frame_id))
                    self.stats.depths += 1
                except MessageError as e:
                    self.stats.rejected['depth'][e.reason] += 1
            # release images whose depth is settled (pairing.match_depth), or too many are waiting
            while pending and (not inp.depth or len(pending) > self.max_pending
                               or match_depth(pending[0][0], depths, self.rule.depth_dt)[1]):
                frame = self._assemble(*pending.popleft(), depths)
                if frame is not None:
                    yield frame
            if pending:      # forget depth images that no waiting image can match any more
                cut = depth_needed_after(pending[0][0], self.rule)
                while len(depths) > 1 and depths[0][0] < cut:
                    depths.popleft()
        while pending:
            frame = self._assemble(*pending.popleft(), depths)
            if frame is not None:
                yield frame

    def _assemble(self, stamp: float, rgb: np.ndarray, frame_id: str, depths) -> Frame | None:
        depth = None
        if self.inputs.depth:
            depth, _ = match_depth(stamp, depths, self.rule.depth_dt)
            if depth is None:
                self.stats.warnings['depth_unmatched'] += 1
        try:
            frame = assemble(stamp, rgb, frame_id, self.cameras, self.poses, depth, self.rule)
        except MessageError as e:
            self.stats.dropped[e.reason] += 1
            return None
        self.stats.frames_used += 1
        self.stats.frames_with_depth += depth is not None
        return frame


def resolve_inputs(reader: BagReader, image: str | None = None, camera_info: str | None = None,
                   depth: str | None = None, use_depth: bool = True, pose: str | None = None,
                   odom: str | None = None, pose_source: str | None = None, extrinsic=None,
                   metadata: dict | None = None) -> BagInputs:
    """Choose the bag topics: explicit arguments, else ``metadata`` (n3f_synth.json), else the
    RealSense defaults (:data:`DEFAULT_TOPICS`).

    image:       None -> the raw default, or its ``/compressed`` sibling when only that is recorded.
    depth:       None -> the default when the bag has it (RGB-only otherwise); an explicit topic
                 must exist. ``use_depth=False`` ignores depth altogether.
    pose_source: 'pose' | 'odom' | None (None: the metadata's, else whichever of the pose / odom
                 topics the bag has, PoseStamped preferred).
    extrinsic:   T_child_cam (4, 4) for odometry; None -> ``metadata['camera_extrinsic']``.

    Raises :class:`BagInputError` (listing the bag's topics) when nothing suitable is found;
    missing or mistyped explicit topics are reported by :func:`check_inputs`.
    """
    have = _bag_topics(reader)
    meta_topics = (metadata or {}).get('topics', {}) or {}

    def pick(explicit, *keys):
        if explicit:
            return explicit
        for k in keys:
            if meta_topics.get(k):
                return meta_topics[k]
        return None

    img = pick(image, 'image', 'image_compressed')
    if img is None:
        img = next((DEFAULT_TOPICS[k] for k in ('image', 'image_compressed') if DEFAULT_TOPICS[k] in have),
                   DEFAULT_TOPICS['image'])
    info = pick(camera_info, 'camera_info') or DEFAULT_TOPICS['camera_info']
    dep = None
    if use_depth:
        dep = pick(depth, 'depth')
        if dep is None and DEFAULT_TOPICS['depth'] in have:
            dep = DEFAULT_TOPICS['depth']
    source = pose_source or (metadata or {}).get('pose_source')
    if source is None:
        if pose or (DEFAULT_TOPICS['pose'] in have and not odom):
            source = 'pose'
        elif odom or DEFAULT_TOPICS['odom'] in have:
            source = 'odom'
        else:
            typed = sorted(t for t, ty in have.items() if ty in (POSE_STAMPED, ODOMETRY))
            hint = f' (candidates: {", ".join(typed)}; pass --pose-topic or --odom-topic)' if typed else ''
            raise BagInputError(f'no pose input: neither {DEFAULT_TOPICS["pose"]} (PoseStamped) nor '
                                f'{DEFAULT_TOPICS["odom"]} (Odometry) is in the bag{hint}. Bag {reader.path} '
                                f'has:\n' + reader.describe_topics())
    if source == 'pose':
        pose_topic = pick(pose, 'pose') or DEFAULT_TOPICS['pose']
        T = None
    else:
        pose_topic = pick(odom, 'odom') or DEFAULT_TOPICS['odom']
        T = extrinsic
        if T is None and (metadata or {}).get('camera_extrinsic') is not None:
            try:
                T = decode_extrinsic(metadata['camera_extrinsic'])
            except (MessageError, TypeError, ValueError) as exc:
                raise BagInputError(f"camera_extrinsic in {METADATA_FILE} is invalid: {exc}") from exc
        if T is None:
            raise BagInputError(f'odometry poses ({pose_topic}) need the camera extrinsic (pose of the camera '
                                'optical frame in the odometry child frame): pass --extrinsic x y z qx qy qz qw')
    return BagInputs(img, info, dep, pose_topic, source, T)


__all__ = ['DEFAULT_TOPICS', 'BagFrameSource', 'BagInputError', 'BagInputs', 'FrameStats', 'MissingTopicError',
           'check_inputs', 'read_synth_metadata', 'resolve_inputs']
