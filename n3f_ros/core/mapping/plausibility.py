"""Physical plausibility of a frame before it may touch the map (SPEC §4: absurd-but-finite values
are bad input too).

A frame is rejected, with its own reason, when

* ``implausible_pose``: its pose is not a finite rigid transform, or the camera lies farther than
  ``max_position`` metres from the world origin (a pose at 1e20 m would otherwise become a keyframe
  and every ray sampled from it would be meaningless);
* ``outside_scene``: the field exists and the camera is farther from its bounds box than
  :func:`max_scene_distance` (a pose glitch, not a view of the mapped scene);
* ``implausible_camera``: non-finite or absurd intrinsics.

Depth values outside ``[min_depth, max_depth]`` are not a reason to reject: they are unknown
pixels (``core.raster.clean_depth``).
"""
from __future__ import annotations

import numpy as np

from n3f_ros.core.frame import Frame

#: a camera may be at most this many scene-box diagonals (and at least this many metres, below)
#: away from the box before its frame counts as ``outside_scene``
SCENE_DISTANCE_DIAGONALS = 3.0
MIN_SCENE_DISTANCE = 3.0
#: focal lengths and principal points beyond this many pixels are absurd
MAX_INTRINSIC_PX = 1e6


class FrameRejected(ValueError):
    """A frame the map must not take; ``reason`` is a stable diagnostics key."""

    def __init__(self, reason: str, text: str):
        super().__init__(f'{reason}: {text}')
        self.reason, self.text = reason, text


def max_scene_distance(bounds: np.ndarray) -> float:
    """Largest camera-to-box distance (metres) accepted for a scene box (2, 3)."""
    diag = float(np.linalg.norm(np.asarray(bounds)[1] - np.asarray(bounds)[0]))
    return max(MIN_SCENE_DISTANCE, SCENE_DISTANCE_DIAGONALS * diag)


def check_pose(T_world_cam, max_position: float) -> None:
    """Raise FrameRejected('implausible_pose') unless ``T_world_cam`` is a finite rigid transform
    within ``max_position`` metres of the origin."""
    T = np.asarray(T_world_cam, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise FrameRejected('implausible_pose', 'pose is not a finite 4x4 transform')
    R = T[:3, :3]
    if np.abs(R.T @ R - np.eye(3)).max() > 1e-3 or np.linalg.det(R) < 0.99 or np.abs(T[3] - [0, 0, 0, 1]).max() > 1e-9:
        raise FrameRejected('implausible_pose', 'pose is not a rigid transform')
    dist = float(np.linalg.norm(T[:3, 3]))
    if dist > max_position:
        raise FrameRejected('implausible_pose', f'camera is {dist:.3g} m from the world origin '
                                                f'(max_position {max_position:g} m)')


def check_frame(frame: Frame, config, bounds: np.ndarray | None = None) -> None:
    """Raise :class:`FrameRejected` for an implausible frame (see the module docstring).

    ``config``: anything with ``max_position`` (the MapperConfig); ``bounds``: the field's box
    (2, 3) metres, or None before the field exists."""
    check_pose(frame.T_world_cam, config.max_position)
    cam = frame.camera
    k = np.array([cam.fx, cam.fy, cam.cx, cam.cy], dtype=np.float64)
    if not np.all(np.isfinite(k)) or cam.fx <= 0 or cam.fy <= 0 or np.abs(k).max() > MAX_INTRINSIC_PX:
        raise FrameRejected('implausible_camera', f'intrinsics fx fy cx cy = {k.tolist()}')
    if bounds is not None:
        b = np.asarray(bounds, dtype=np.float64)
        c = np.asarray(frame.T_world_cam, dtype=np.float64)[:3, 3]
        gap = float(np.linalg.norm(np.maximum(0.0, np.maximum(b[0] - c, c - b[1]))))
        limit = max_scene_distance(b)
        if gap > limit:
            raise FrameRejected('outside_scene', f'camera is {gap:.3g} m outside the mapped scene box '
                                                 f'(at most {limit:.3g} m)')
