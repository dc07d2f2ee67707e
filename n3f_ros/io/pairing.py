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
* **frames**: camera_info and depth must be in the image's frame (``header.frame_id``; aligned
  depth is published in the colour optical frame). A different non-empty frame id ->
  ``'frame_mismatch'`` (the intrinsics or depth belong to another camera).

Everything here is pure (no threads, no rclpy); callers own buffering and waiting.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from n3f_ros.core.camera import GeometryError, PinholeCamera
from n3f_ros.core.frame import Frame
from n3f_ros.io.decode import MessageError
from n3f_ros.io.validation import align_depth, fit_camera, safe_text

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
    """Stamp-ordered intrinsics (with their frame id), looked up by image stamp (see the module docstring).

    ``max_size`` bounds memory on a live stream (the oldest entries go first); offline every
    camera_info of a bag fits.
    """

    def __init__(self, max_size: int = 64):
        self.max_size = int(max_size)
        self._stamps: list[float] = []
        self._cameras: list[PinholeCamera] = []
        self._frames: list[str] = []

    def __len__(self) -> int:
        return len(self._stamps)

    def add(self, stamp: float, camera: PinholeCamera, frame_id: str = '') -> None:
        i = bisect.bisect_right(self._stamps, float(stamp))
        self._stamps.insert(i, float(stamp))
        self._cameras.insert(i, camera)
        self._frames.insert(i, frame_id)
        if len(self._stamps) > self.max_size:
            del self._stamps[0], self._cameras[0], self._frames[0]

    @property
    def latest(self) -> tuple[PinholeCamera, str] | None:
        """The newest (camera, frame id), or None."""
        return (self._cameras[-1], self._frames[-1]) if self._cameras else None

    def clear(self) -> None:
        self._stamps.clear()
        self._cameras.clear()
        self._frames.clear()

    def at(self, stamp: float) -> tuple[PinholeCamera, str]:
        """(intrinsics, frame id) for an image at ``stamp``; raises MessageError('no_camera_info')."""
        if not self._cameras:
            raise MessageError('no_camera_info', f'no valid camera_info received for the image at {stamp:.6f}')
        i = bisect.bisect_right(self._stamps, float(stamp) + STAMP_EPS)
        i = i - 1 if i > 0 else 0
        return self._cameras[i], self._frames[i]


def match_depth(stamp: float, depths, max_dt: float):
    """Nearest depth to ``stamp`` among ``depths`` (sequence of (stamp, depth, frame id)) within
    ``max_dt``: ``((depth, frame id) or None, settled)``.

    Returns ``(depth or None, settled)``: ``settled`` is True when the answer cannot change as more
    depth arrives, i.e. a depth stamped at or after ``stamp`` is already there (depth streams come
    in stamp order, so later ones are farther away).
    """
    if not depths:
        return None, False
    stamps = np.fromiter((d[0] for d in depths), dtype=np.float64, count=len(depths))
    i = int(np.argmin(np.abs(stamps - stamp)))
    settled = bool(stamps.max() >= stamp - STAMP_EPS)
    if abs(stamps[i] - stamp) <= max_dt + STAMP_EPS:
        return (depths[i][1], depths[i][2]), settled
    return None, settled


def depth_needed_after(stamp: float, rule: PairingRule) -> float:
    """Depth stamped before this (seconds) can no longer pair with an image at ``stamp`` or later."""
    return stamp - rule.depth_dt - STAMP_EPS


def _same_frame(what: str, frame_id: str, image_frame: str) -> None:
    if frame_id and image_frame and frame_id != image_frame:
        raise MessageError('frame_mismatch', f'{what} is in frame {safe_text(frame_id)!r}, the image in '
                                             f'{safe_text(image_frame)!r} (another camera?)')


def assemble(stamp: float, rgb: np.ndarray, image_frame: str, cameras: CameraInfoHistory, poses,
             depth, rule: PairingRule) -> Frame:
    """The core Frame of an image (rgb (H, W, 3) uint8) at ``stamp`` in frame ``image_frame`` with
    its matched ``depth`` ((metres any registered size, frame id) or None). ``poses``: a
    :class:`PoseBuffer` or anything with its ``lookup(stamp, max_dt)``. Raises MessageError:
    ``no_camera_info``, ``frame_mismatch``, ``size_mismatch``, ``no_pose``, ``bad_frame``."""
    h, w = rgb.shape[:2]
    info, info_frame = cameras.at(stamp)
    _same_frame('camera_info', info_frame, image_frame)
    camera = fit_camera(info, w, h)
    T = poses.lookup(stamp, rule.max_pose_dt)
    if depth is not None:
        depth, depth_frame = depth
        _same_frame('depth', depth_frame, image_frame)
        depth = align_depth(depth, w, h)
    try:
        return Frame(rgb, camera, T, stamp, depth)
    except GeometryError as e:
        raise MessageError('bad_frame', str(e)) from e


class FixedPose:
    """A pose already resolved for one image (e.g. from TF), with :class:`PoseBuffer`'s ``lookup``."""

    def __init__(self, T_world_cam):
        self.T = np.asarray(T_world_cam, dtype=np.float64)

    def lookup(self, stamp: float, max_dt: float) -> np.ndarray:
        return self.T.copy()
