"""Image / camera_info / depth / pose synchronisation into core Frames (no rclpy here).

The node's message callbacks decode and validate, then hand numpy data to a
:class:`FrameAssembler`; :meth:`FrameAssembler.poll` returns the frames that are complete.

Pairing rules for an image stamped ``t`` (seconds), received at wall time ``w``:

* **pose**: looked up in the :class:`PoseBuffer` at ``t`` (interpolated, see pose_buffer.py) once a
  pose at or after ``t`` has arrived, or once the image has waited ``hold_time`` seconds (then the
  nearest pose within ``max_pose_dt`` is used). No pose -> dropped with ``'no_pose'``.
* **depth** (only while ``use_depth`` and the depth topic is *active*, i.e. a depth image arrived
  within ``depth_timeout`` wall seconds): the buffered depth whose stamp is nearest ``t`` and within
  ``max_pose_dt``; the image waits for it up to ``hold_time``. Depth still missing then: the frame
  goes on RGB-only and ``'depth_unmatched'`` is counted as a warning.
* **intrinsics**: the latest camera_info received before the image, K scaled to the image size
  (validation.fit_camera). None received yet -> ``'no_camera_info'``.

Images wait in a bounded FIFO (``max_pending``, the oldest is dropped as ``'input_overflow'``);
they are released in arrival order.
"""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

import numpy as np

from n3f_ros.core.camera import GeometryError, PinholeCamera
from n3f_ros.core.frame import Frame
from n3f_ros.ros.decode import MessageError
from n3f_ros.ros.pose_buffer import PoseBuffer
from n3f_ros.ros.validation import align_depth, clean_depth, fit_camera


@dataclass
class PendingImage:
    stamp: float                 # header stamp, seconds
    rgb: np.ndarray              # (H, W, 3) uint8
    frame_id: str                # camera optical frame of the image
    received: float              # wall time of arrival, seconds
    camera: PinholeCamera | None  # the latest camera_info when the image arrived


@dataclass
class AssembledFrame:
    frame: Frame
    frame_id: str


class FrameAssembler:
    """Thread-safe pairing of images with intrinsics, depth and poses (see module docstring)."""

    def __init__(self, max_pose_dt: float = 0.05, use_depth: bool = True, min_depth: float = 0.1,
                 max_depth: float = 5.0, hold_time: float = 0.5, max_pending: int = 4,
                 depth_timeout: float = 2.0, depth_buffer: int = 8):
        self.max_pose_dt = float(max_pose_dt)
        self.use_depth = bool(use_depth)
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.hold_time = float(hold_time)
        self.depth_timeout = float(depth_timeout)
        self.poses = PoseBuffer()
        self.camera: PinholeCamera | None = None
        self._depths: collections.deque = collections.deque(maxlen=depth_buffer)  # (stamp, depth)
        self._last_depth_wall = -np.inf
        self._pending: collections.deque[PendingImage] = collections.deque()
        self._max_pending = int(max_pending)
        self._lock = threading.Lock()
        self.warnings: collections.Counter = collections.Counter()

    # --- inputs ---------------------------------------------------------------------------------
    def set_camera(self, camera: PinholeCamera) -> None:
        self.camera = camera

    def add_pose(self, stamp: float, T_world_cam) -> None:
        """Raises MessageError('stamp_backwards')."""
        self.poses.add(stamp, T_world_cam)

    def add_depth(self, stamp: float, depth: np.ndarray, wall: float) -> float:
        """Buffer a decoded depth image (metres). Invalid pixels are masked to 0; raises
        MessageError('bad_depth') when none is valid. Returns the valid fraction."""
        d, frac = clean_depth(depth, self.min_depth, self.max_depth)
        with self._lock:
            self._depths.append((float(stamp), d))
            self._last_depth_wall = wall
        return frac

    def add_image(self, stamp: float, rgb: np.ndarray, frame_id: str, wall: float) -> list[MessageError]:
        """Queue an image; returns the errors of images pushed out of the full queue."""
        dropped = []
        with self._lock:
            self._pending.append(PendingImage(float(stamp), rgb, frame_id, wall, self.camera))
            while len(self._pending) > self._max_pending:
                old = self._pending.popleft()
                dropped.append(MessageError('input_overflow', f'image at {old.stamp:.3f} dropped: '
                                                              'waiting images exceed the queue'))
        return dropped

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()
            self._depths.clear()
            self._last_depth_wall = -np.inf
        self.poses.clear()
        self.camera = None

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
                latest = self.poses.latest_stamp
                pose_ready = latest is not None and latest >= img.stamp
                depth = None
                need_depth = self.depth_active(wall)
                if need_depth:
                    depth, depth_final = self._match_depth(img.stamp)
                    if depth is None and not depth_final and not timed_out:
                        break
                if not (pose_ready or timed_out):
                    break
                self._pending.popleft()
                try:
                    frames.append(self._assemble(img, depth, need_depth))
                except MessageError as e:
                    errors.append(e)
        return frames, errors

    def _match_depth(self, t: float) -> tuple[np.ndarray | None, bool]:
        """Nearest buffered depth within max_pose_dt of ``t``; ``final`` when none can come later."""
        if not self._depths:
            return None, False
        stamps = np.array([s for s, _ in self._depths])
        i = int(np.argmin(np.abs(stamps - t)))
        if abs(stamps[i] - t) <= self.max_pose_dt + 1e-9:
            return self._depths[i][1], True
        return None, bool(stamps.max() > t + self.max_pose_dt)

    def _assemble(self, img: PendingImage, depth: np.ndarray | None, need_depth: bool) -> AssembledFrame:
        if img.camera is None:
            raise MessageError('no_camera_info', 'no valid camera_info received before the image')
        h, w = img.rgb.shape[:2]
        camera = fit_camera(img.camera, w, h)
        T = self.poses.lookup(img.stamp, self.max_pose_dt)
        if depth is not None:
            depth = align_depth(depth, w, h)
        elif need_depth:
            self.warnings['depth_unmatched'] += 1
        try:
            frame = Frame(img.rgb, camera, T, img.stamp, depth)
        except GeometryError as e:
            raise MessageError('bad_frame', str(e)) from e
        return AssembledFrame(frame, img.frame_id)
