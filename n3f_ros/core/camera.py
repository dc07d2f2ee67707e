"""Pinhole cameras, rigid poses and rays.

Conventions used everywhere in n3f_ros:

* Camera frame: OpenCV optical frame, x right, y down, z forward (REP-103 ``*_optical_frame``).
* Poses are 4x4 float64 homogeneous matrices named ``T_a_b`` that map points in frame ``b``
  to frame ``a``: ``p_a = T_a_b @ p_b``. ``T_world_cam`` is the camera pose in the world.
* Units: metres, radians. Depth images hold z-depth (distance along the optical axis) in metres,
  0 or NaN where unknown.
* Pixel (u, v) = (column, row); the centre of the top-left pixel is (0.5, 0.5) in continuous
  coordinates, i.e. a ray through pixel index (u, v) uses (u + 0.5, v + 0.5).
* Quaternions are (x, y, z, w), as in geometry_msgs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class GeometryError(ValueError):
    """Invalid camera, pose or quaternion."""


@dataclass(frozen=True)
class PinholeCamera:
    """Pinhole intrinsics for an image of ``width`` x ``height`` pixels (no distortion)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self):
        vals = (self.fx, self.fy, self.cx, self.cy)
        if not all(np.isfinite(v) for v in vals):
            raise GeometryError(f'non-finite intrinsics {vals}')
        if self.fx <= 0 or self.fy <= 0:
            raise GeometryError(f'focal length must be positive, got fx={self.fx} fy={self.fy}')
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise GeometryError(f'image size must be positive, got {self.width}x{self.height}')

    @classmethod
    def from_K(cls, K, width: int, height: int) -> 'PinholeCamera':
        K = np.asarray(K, dtype=np.float64).reshape(3, 3)
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]),
                   int(width), int(height))

    @property
    def K(self) -> np.ndarray:
        """3x3 intrinsic matrix (float64)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.width), int(self.height)

    def scaled(self, width: int, height: int) -> 'PinholeCamera':
        """The same camera for an image resized to ``width`` x ``height``."""
        sx, sy = width / self.width, height / self.height
        return PinholeCamera(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy,
                             int(width), int(height))


# ---------------------------------------------------------------------------------------------
# Rotations and poses
# ---------------------------------------------------------------------------------------------

def quat_to_rot(q) -> np.ndarray:
    """Unit quaternion (x, y, z, w) -> 3x3 rotation. Raises GeometryError if not ~unit/finite."""
    q = np.asarray(q, dtype=np.float64).reshape(4)
    if not np.all(np.isfinite(q)):
        raise GeometryError(f'non-finite quaternion {q.tolist()}')
    n = np.linalg.norm(q)
    if abs(n - 1.0) > 1e-3:
        raise GeometryError(f'quaternion is not unit length (norm {n:.6f})')
    x, y, z, w = q / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def rot_to_quat(R) -> np.ndarray:
    """3x3 rotation -> unit quaternion (x, y, z, w) with w >= 0."""
    R = np.asarray(R, dtype=np.float64).reshape(3, 3)
    tr = np.trace(R)
    if tr > 0:
        s = np.sqrt(tr + 1.0) * 2
        w, x, y, z = 0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2]) * 2
        w, x, y, z = (R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s
    elif R[1, 1] > R[2, 2]:
        s = np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2]) * 2
        w, x, y, z = (R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s
    else:
        s = np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1]) * 2
        w, x, y, z = (R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s
    q = np.array([x, y, z, w])
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def pose_from_xyz_quat(xyz, quat) -> np.ndarray:
    """Translation (metres) + quaternion (x, y, z, w) -> 4x4 pose. Raises GeometryError."""
    t = np.asarray(xyz, dtype=np.float64).reshape(3)
    if not np.all(np.isfinite(t)):
        raise GeometryError(f'non-finite position {t.tolist()}')
    T = np.eye(4)
    T[:3, :3] = quat_to_rot(quat)
    T[:3, 3] = t
    return T


def pose_to_xyz_quat(T) -> tuple[np.ndarray, np.ndarray]:
    """4x4 pose -> (xyz (3,), quaternion (x, y, z, w) (4,))."""
    T = np.asarray(T, dtype=np.float64)
    return T[:3, 3].copy(), rot_to_quat(T[:3, :3])


def invert_pose(T) -> np.ndarray:
    """Inverse of a rigid 4x4 transform."""
    T = np.asarray(T, dtype=np.float64)
    Ti = np.eye(4)
    Ti[:3, :3] = T[:3, :3].T
    Ti[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return Ti


def slerp(q0, q1, alpha: float) -> np.ndarray:
    """Spherical interpolation between unit quaternions (x, y, z, w); alpha in [0, 1]."""
    q0 = np.asarray(q0, dtype=np.float64) / np.linalg.norm(q0)
    q1 = np.asarray(q1, dtype=np.float64) / np.linalg.norm(q1)
    d = float(np.dot(q0, q1))
    if d < 0.0:
        q1, d = -q1, -d
    if d > 0.9995:
        q = q0 + alpha * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(np.clip(d, -1.0, 1.0))
    s = np.sin(theta)
    return (np.sin((1 - alpha) * theta) * q0 + np.sin(alpha * theta) * q1) / s


def interpolate_pose(T0, T1, alpha: float) -> np.ndarray:
    """Pose between T0 (alpha=0) and T1 (alpha=1): linear translation, slerp rotation."""
    T = np.eye(4)
    T[:3, :3] = quat_to_rot(slerp(rot_to_quat(T0[:3, :3]), rot_to_quat(T1[:3, :3]), alpha))
    T[:3, 3] = (1 - alpha) * np.asarray(T0)[:3, 3] + alpha * np.asarray(T1)[:3, 3]
    return T


def rotation_angle(R) -> float:
    """Angle (radians) of a 3x3 rotation."""
    c = (np.trace(np.asarray(R)) - 1.0) / 2.0
    return float(np.arccos(np.clip(c, -1.0, 1.0)))


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """``T_world_cam`` of an OpenCV camera at ``eye`` whose z axis points at ``target``."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        x = np.cross(z, np.array([1.0, 0.0, 0.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, z, eye
    return T


# ---------------------------------------------------------------------------------------------
# Pixels, rays, depth
# ---------------------------------------------------------------------------------------------

def pixel_grid(width: int, height: int, stride: int = 1) -> np.ndarray:
    """Pixel centres (N, 2) float64 as (u + 0.5, v + 0.5), row-major, every ``stride`` pixels."""
    us = np.arange(0, width, stride, dtype=np.float64) + 0.5
    vs = np.arange(0, height, stride, dtype=np.float64) + 0.5
    uu, vv = np.meshgrid(us, vs)
    return np.stack([uu.ravel(), vv.ravel()], axis=1)


def camera_directions(camera: PinholeCamera, uv=None) -> np.ndarray:
    """Ray directions in the camera frame (OpenCV optical), unit z, through continuous pixel
    coordinates ``uv`` (N, 2) -> (N, 3); ``uv`` None: through every pixel centre -> (H, W, 3).
    A direction times a z-depth is the 3D point."""
    grid = uv is None
    uv = pixel_grid(camera.width, camera.height) if grid else np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    d = np.stack([(uv[:, 0] - camera.cx) / camera.fx, (uv[:, 1] - camera.cy) / camera.fy, np.ones(len(uv))], axis=1)
    return d.reshape(camera.height, camera.width, 3) if grid else d


def pixel_rays(camera: PinholeCamera, T_world_cam, uv) -> tuple[np.ndarray, np.ndarray]:
    """Rays through continuous pixel coordinates ``uv`` (N, 2).

    Returns origins (N, 3) and directions (N, 3) in the world frame. Directions are NOT
    normalised: they have unit z in the camera frame, so the ray parameter ``t`` equals
    z-depth: ``p = o + t * d`` lies at depth ``t``.
    """
    T = np.asarray(T_world_cam, dtype=np.float64)
    d_world = camera_directions(camera, uv) @ T[:3, :3].T
    o_world = np.broadcast_to(T[:3, 3], d_world.shape).copy()
    return o_world, d_world


def backproject_depth(depth, camera: PinholeCamera, T_world_cam, stride: int = 1):
    """Valid depth pixels -> world points.

    depth: (H, W) z-depth in metres; pixels with 0, NaN, inf or negative depth are skipped.
    Returns points (N, 3) float64 in the world frame and their flat pixel indices (N,) into the
    (H, W) image, so per-pixel attributes can be gathered with ``img.reshape(H*W, ...)[idx]``.
    """
    depth = np.asarray(depth)
    H, W = depth.shape
    if (W, H) != camera.size:
        raise GeometryError(f'depth is {W}x{H} but camera is {camera.width}x{camera.height}')
    vs, us = np.mgrid[0:H:stride, 0:W:stride]
    us, vs = us.ravel(), vs.ravel()
    z = depth[vs, us].astype(np.float64)
    ok = np.isfinite(z) & (z > 0)
    us, vs, z = us[ok], vs[ok], z[ok]
    o, d = pixel_rays(camera, T_world_cam, np.stack([us + 0.5, vs + 0.5], axis=1))
    return o + d * z[:, None], vs * W + us


def project_points(points_world, camera: PinholeCamera, T_world_cam):
    """World points (N, 3) -> pixel coords uv (N, 2) (continuous) and z-depth (N,).

    Points behind the camera get z <= 0; callers mask with ``z > 0`` and the image bounds.
    """
    P = np.asarray(points_world, dtype=np.float64).reshape(-1, 3)
    T_cam_world = invert_pose(T_world_cam)
    pc = P @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
    z = pc[:, 2]
    zs = np.where(np.abs(z) < 1e-12, 1e-12, z)
    uv = np.stack([camera.fx * pc[:, 0] / zs + camera.cx, camera.fy * pc[:, 1] / zs + camera.cy],
                  axis=1)
    return uv, z
