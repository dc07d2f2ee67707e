"""The one rule that pairs an image with its intrinsics, pose and depth (SPEC §3).

Used by the node while messages stream in (:mod:`n3f_ros.io.frame_assembler`) and by the offline
bag reader (:mod:`n3f_ros.bag.frames`), so a live stream and a recording of it give the same frames.
For an image stamped ``t`` (header stamp, seconds):

* **intrinsics**: the latest camera_info stamped at or before ``t``, else the earliest one after
  it (drivers publish the info just after its image); K is scaled when the image was resized
  (:func:`~n3f_ros.io.validation.fit_camera`). None at all -> ``'no_camera_info'``.
* **pose**: :meth:`PoseBuffer.lookup` at ``t`` with ``max_pose_dt`` (interpolated between
  bracketing poses, never extrapolated). No pose -> ``'no_pose'``.
* **depth** (optional): the depth image whose stamp is nearest ``t`` within ``max_depth_dt``
  (default: ``max_pose_dt``), resized to the image (nearest). None -> the frame goes on RGB-only
  and the caller counts ``'depth_unmatched'``.

Everything here is pure (no threads, no rclpy); callers own buffering and waiting.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from n3f_ros.core.camera import GeometryError, PinholeCamera
from n3f_ros.core.frame import Frame
from n3f_ros.io.decode import MessageError
from n3f_ros.io.pose_buffer import PoseBuffer
from n3f_ros.io.validation import align_depth, fit_camera

#: stamps closer than this (seconds) count as equal
STAMP_EPS = 1e-9


@dataclass(frozen=True)
class PairingRule:
    """Tolerances of the pairing, seconds. ``max_depth_dt`` None = ``max_pose_dt``."""

    max_pose_dt: float = 0.05
    max_depth_dt: float | None = None

    def __post_init__(self):
        if not self.max_pose_dt > 0 or (self.max_depth_dt is not None and not self.max_depth_dt >= 0):
            raise ValueError(f'need max_pose_dt > 0 and max_depth_dt >= 0 s, got {self.max_pose_dt}, '
                             f'{self.max_depth_dt}')

    @property
    def depth_dt(self) -> float:
        return self.max_pose_dt if self.max_depth_dt is None else self.max_depth_dt


class CameraInfoHistory:
    """Stamp-ordered intrinsics, looked up by image stamp (see the module docstring).

    ``max_size`` bounds memory on a live stream (the oldest entries go first); offline every
    camera_info of a bag fits.
    """

    def __init__(self, max_size: int = 64):
        self.max_size = int(max_size)
        self._stamps: list[float] = []
        self._cameras: list[PinholeCamera] = []

    def __len__(self) -> int:
        return len(self._stamps)

    def add(self, stamp: float, camera: PinholeCamera) -> None:
        i = bisect.bisect_right(self._stamps, float(stamp))
        self._stamps.insert(i, float(stamp))
        self._cameras.insert(i, camera)
        if len(self._stamps) > self.max_size:
            del self._stamps[0], self._cameras[0]

    @property
    def latest(self) -> PinholeCamera | None:
        return self._cameras[-1] if self._cameras else None

    def clear(self) -> None:
        self._stamps.clear()
        self._cameras.clear()

    def at(self, stamp: float) -> PinholeCamera:
        """Intrinsics for an image at ``stamp``; raises MessageError('no_camera_info')."""
        if not self._cameras:
            raise MessageError('no_camera_info', f'no valid camera_info received for the image at {stamp:.6f}')
        i = bisect.bisect_right(self._stamps, float(stamp) + STAMP_EPS)
        return self._cameras[i - 1] if i > 0 else self._cameras[0]


def match_depth(stamp: float, depths, max_dt: float) -> tuple[np.ndarray | None, bool]:
    """Nearest depth to ``stamp`` among ``depths`` (sequence of (stamp, depth)) within ``max_dt``.

    Returns ``(depth or None, settled)``: ``settled`` is True when the answer cannot change as more
    depth arrives, i.e. a depth stamped at or after ``stamp`` is already there (depth streams come
    in stamp order, so later ones are farther away).
    """
    if not depths:
        return None, False
    stamps = np.fromiter((s for s, _ in depths), dtype=np.float64, count=len(depths))
    i = int(np.argmin(np.abs(stamps - stamp)))
    settled = bool(stamps.max() >= stamp - STAMP_EPS)
    if abs(stamps[i] - stamp) <= max_dt + STAMP_EPS:
        return depths[i][1], settled
    return None, settled


def depth_needed_after(stamp: float, rule: PairingRule) -> float:
    """Depth stamped before this (seconds) can no longer pair with an image at ``stamp`` or later."""
    return stamp - rule.depth_dt - STAMP_EPS


def assemble(stamp: float, rgb: np.ndarray, cameras: CameraInfoHistory, poses: PoseBuffer,
             depth: np.ndarray | None, rule: PairingRule) -> Frame:
    """The core Frame of an image (rgb (H, W, 3) uint8) at ``stamp`` with its matched ``depth``
    (metres, any registered size, or None). Raises MessageError: ``no_camera_info``,
    ``size_mismatch``, ``no_pose``, ``bad_frame``."""
    h, w = rgb.shape[:2]
    camera = fit_camera(cameras.at(stamp), w, h)
    T = poses.lookup(stamp, rule.max_pose_dt)
    if depth is not None:
        depth = align_depth(depth, w, h)
    try:
        return Frame(rgb, camera, T, stamp, depth)
    except GeometryError as e:
        raise MessageError('bad_frame', str(e)) from e
