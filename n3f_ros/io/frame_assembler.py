"""Streaming pairing of image / camera_info / depth / pose messages into core Frames (no rclpy).

The node's message callbacks decode and validate, then hand numpy data to a
:class:`FrameAssembler`; :meth:`FrameAssembler.poll` returns the frames that are complete. The
pairing itself (which intrinsics, pose and depth an image gets) is :mod:`n3f_ros.io.pairing`, the
rule the offline bag reader uses too; this module only decides *when* an image is settled.

An image stamped ``t`` (seconds), received at wall time ``w``, waits until

* a pose at or after ``t`` has arrived (so interpolation can bracket it), or it has waited
  ``hold_time`` seconds (then the nearest pose within ``max_pose_dt`` is used, or it is dropped
  as ``'no_pose'``) — or, with a ``tf_poses`` source (``pose_source: tf``), until that source
  resolves the image's frame at ``t`` (it says how long to wait for late transforms);
* a camera_info has arrived (drivers may publish the first one just after its image), or
  ``hold_time`` passed (then ``'no_camera_info'``);
* and, only while ``use_depth`` and the depth topic is *active* (a depth image arrived within
  ``depth_timeout`` wall seconds), its depth is settled (``pairing.match_depth``) or
  ``hold_time`` passed; depth still missing then: the frame goes on RGB-only and
  ``'depth_unmatched'`` is counted as a warning.

Images wait in a bounded FIFO (``max_pending``, the oldest is dropped as ``'input_overflow'``);
they are released in arrival order.
"""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

import numpy as np

from n3f_ros.core.frame import Frame
from n3f_ros.io.decode import MessageError
from n3f_ros.io.pairing import (CameraInfoHistory, FixedPose, PairingRule, assemble, depth_needed_after,
                                match_depth)
from n3f_ros.io.pose_buffer import PoseBuffer
from n3f_ros.io.validation import check_depth

#: shortest wait (seconds) for an image's pose / depth, whatever max_pose_dt is
MIN_HOLD_TIME = 0.3


def hold_time_for(max_pose_dt: float) -> float:
    """How long (seconds) an image waits for its pose and depth: 4 pose tolerances, at least
    :data:`MIN_HOLD_TIME` (a pose stream at 10 Hz delivers the bracketing pose well within it)."""
    return max(MIN_HOLD_TIME, 4.0 * float(max_pose_dt))


@dataclass
class PendingImage:
    stamp: float                 # header stamp, seconds
    rgb: np.ndarray              # (H, W, 3) uint8
    frame_id: str                # camera optical frame of the image
    received: float              # wall time of arrival, seconds


@dataclass
class AssembledFrame:
    frame: Frame
    frame_id: str


class FrameAssembler:
    """Thread-safe pairing of images with intrinsics, depth and poses (see module docstring).

    ``hold_time`` None = :func:`hold_time_for` ``(max_pose_dt)``. ``tf_poses``: None (poses come
    from :meth:`add_pose`) or ``f(frame_id, stamp, waited) -> T_world_cam | None`` (None = not yet;
    raises MessageError when it never will), e.g. ``TfPoseLookup.poll`` bound to the world frame.
    """

    def __init__(self, max_pose_dt: float = 0.05, use_depth: bool = True, min_depth: float = 0.1,
                 max_depth: float = 5.0, hold_time: float | None = None, max_pending: int = 4,
                 depth_timeout: float = 2.0, depth_buffer: int = 8, tf_poses=None):
        self.tf_poses = tf_poses
        self.depth_timeout = float(depth_timeout)
        self.poses = PoseBuffer()
        self.cameras = CameraInfoHistory()
        self._depths: collections.deque = collections.deque(maxlen=depth_buffer)  # (stamp, depth)
        self._last_depth_wall = -np.inf
        self._pending: collections.deque[PendingImage] = collections.deque()
        self._max_pending = int(max_pending)
        self._lock = threading.Lock()
        self.warnings: collections.Counter = collections.Counter()
        self.configure(max_pose_dt=max_pose_dt, use_depth=use_depth, min_depth=min_depth, max_depth=max_depth,
                       hold_time=hold_time)

    def configure(self, max_pose_dt: float, use_depth: bool, min_depth: float, max_depth: float,
                  hold_time: float | None = None) -> None:
        """(Re)set the tolerances (seconds) and the valid depth range (metres), e.g. from the node's
        parameter callback."""
        with self._lock:
            self.rule = PairingRule(max_pose_dt=float(max_pose_dt))
            self.use_depth = bool(use_depth)
            self.min_depth, self.max_depth = float(min_depth), float(max_depth)
            self.hold_time = hold_time_for(max_pose_dt) if hold_time is None else float(hold_time)

    @property
    def max_pose_dt(self) -> float:
        return self.rule.max_pose_dt

    @property
    def camera(self):
        """The newest intrinsics received (PinholeCamera) or None."""
        latest = self.cameras.latest
        return latest[0] if latest is not None else None

    # --- inputs ---------------------------------------------------------------------------------
    def set_camera(self, camera, stamp: float = -np.inf, frame_id: str = '') -> None:
        """Intrinsics from camera_info stamped ``stamp`` seconds (-inf: valid for every image)."""
        with self._lock:
            self.cameras.add(stamp, camera, frame_id)

    def add_pose(self, stamp: float, T_world_cam) -> None:
        """Raises MessageError('stamp_backwards')."""
        self.poses.add(stamp, T_world_cam)

    def add_depth(self, stamp: float, depth: np.ndarray, wall: float, frame_id: str = '') -> float:
        """Buffer a decoded depth image (metres). Invalid pixels are masked to 0; raises
        MessageError('bad_depth') when none is valid. Returns the valid fraction."""
        d, frac = check_depth(depth, self.min_depth, self.max_depth)
        with self._lock:
            self._depths.append((float(stamp), d, frame_id))
            self._last_depth_wall = wall
        return frac

    def add_image(self, stamp: float, rgb: np.ndarray, frame_id: str, wall: float) -> list[MessageError]:
        """Queue an image; returns the errors of images pushed out of the full queue."""
        dropped = []
        with self._lock:
            self._pending.append(PendingImage(float(stamp), rgb, frame_id, wall))
            while len(self._pending) > self._max_pending:
                old = self._pending.popleft()
                dropped.append(MessageError('input_overflow', f'image at {old.stamp:.3f} dropped: '
                                                              'waiting images exceed the queue'))
        return dropped

    def clear(self, keep_camera: bool = False) -> None:
        """Forget waiting images, depth and poses (and the intrinsics unless ``keep_camera``)."""
        with self._lock:
            self._pending.clear()
            self._depths.clear()
            self._last_depth_wall = -np.inf
            latest = self.cameras.latest
            self.cameras.clear()
            if keep_camera and latest is not None:
                self.cameras.add(-np.inf, *latest)
        self.poses.clear()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def depth_active(self, wall: float) -> bool:
        return self.use_depth and wall - self._last_depth_wall <= self.depth_timeout

    # --- output ---------------------------------------------------------------------------------
    def poll(self, wall: float) -> tuple[list[AssembledFrame], list[MessageError]]:
        """Frames whose pose (and depth) are settled, and the errors of images dropped."""
        frames, errors = [], []
        with self._lock:
            while self._pending:
                img = self._pending[0]
                timed_out = wall - img.received >= self.hold_time
                poses = self.poses
                if self.tf_poses is not None:
                    try:
                        T = self.tf_poses(img.frame_id, img.stamp, wall - img.received)
                    except MessageError as e:
                        self._pending.popleft()
                        errors.append(e)
                        continue
                    pose_ready = T is not None
                    timed_out = timed_out and pose_ready        # TF decides how long to wait
                    poses = FixedPose(T) if pose_ready else None
                else:
                    latest = self.poses.latest_stamp
                    pose_ready = latest is not None and latest >= img.stamp
                depth = None
                need_depth = self.depth_active(wall)
                if need_depth:
                    depth, settled = match_depth(img.stamp, self._depths, self.rule.depth_dt)
                    if not settled and not timed_out:
                        break
                if not (pose_ready or timed_out) or (not len(self.cameras) and not timed_out):
                    break                           # (the first camera_info may come just after its image)
                self._pending.popleft()
                if need_depth and depth is None:
                    self.warnings['depth_unmatched'] += 1
                try:
                    frame = assemble(img.stamp, img.rgb, img.frame_id, self.cameras, poses, depth, self.rule)
                    frames.append(AssembledFrame(frame, img.frame_id))
                except MessageError as e:
                    errors.append(e)
            if self._pending:     # depth no waiting image can match any more
                cut = depth_needed_after(self._pending[0].stamp, self.rule)
                while len(self._depths) > 1 and self._depths[0][0] < cut:
                    self._depths.popleft()
        return frames, errors
