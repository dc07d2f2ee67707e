"""One posed camera frame, the unit of input of the core engine (no ROS types)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from n3f_ros.core.camera import GeometryError, PinholeCamera


@dataclass
class Frame:
    """A posed RGB(-D) image.

    rgb:         (H, W, 3) uint8, RGB order.
    camera:      intrinsics for the (W, H) of ``rgb``.
    T_world_cam: (4, 4) float64, OpenCV optical camera frame -> world frame, metres.
    stamp:       seconds (ROS time as float).
    depth:       optional (H, W) float32 z-depth in metres, aligned to ``rgb``; 0 or NaN = unknown.
    instance:    optional (H, W) int32 ground-truth instance ids (synthetic scenes only;
                 0 = no hit, 1 = support plane, >= 2 objects).
    """

    rgb: np.ndarray
    camera: PinholeCamera
    T_world_cam: np.ndarray
    stamp: float = 0.0
    depth: np.ndarray | None = None
    instance: np.ndarray | None = None

    def __post_init__(self):
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise GeometryError(f'rgb must be (H, W, 3) uint8, got {self.rgb.shape} {self.rgb.dtype}')
        H, W = self.rgb.shape[:2]
        if (W, H) != self.camera.size:
            raise GeometryError(f'rgb is {W}x{H} but camera is {self.camera.width}x{self.camera.height}')
        T = np.asarray(self.T_world_cam, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise GeometryError('T_world_cam must be a finite 4x4 matrix')
        self.T_world_cam = T
        if self.depth is not None and self.depth.shape != (H, W):
            raise GeometryError(f'depth shape {self.depth.shape} != image shape {(H, W)}')

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.camera.size
