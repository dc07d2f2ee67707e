"""Oriented bounding boxes of point sets (PCA axes), robust to tiny and degenerate sets."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from n3f_ros.core.cloud.validate import check_xyz


@dataclass(frozen=True)
class OrientedBox:
    """Box in the world frame: a point p is inside iff |R.T @ (p - center)| <= extent / 2.

    center: (3,) float64 metres; extent: (3,) float64 full side lengths, metres, along the box
    axes in decreasing order; R: (3, 3) float64 rotation whose columns are the box axes
    (right-handed, det +1).
    """

    center: np.ndarray
    extent: np.ndarray
    R: np.ndarray

    def contains(self, xyz) -> np.ndarray:
        """(N,) bool: which points (N, 3) lie in the box (with 1e-9 m tolerance)."""
        local = (np.asarray(xyz, dtype=np.float64) - self.center) @ self.R
        return np.all(np.abs(local) <= self.extent / 2 + 1e-9, axis=1)


def oriented_box(xyz) -> OrientedBox:
    """Tight box aligned with the principal axes of ``xyz`` (M, 3), M >= 1.

    Axes are the eigenvectors of the covariance in decreasing variance, each signed so its
    largest-magnitude coordinate is positive, the third being the cross product of the first
    two. One point (or coincident points) gives a zero-size box with R = I; collinear or planar
    sets give zero extents along the missing axes. Raises EmptyCloudError for M = 0.
    """
    p = check_xyz(xyz, 'box points').astype(np.float64)
    if len(p) == 1 or np.ptp(p, axis=0).max() == 0.0:
        return OrientedBox(p[0].copy(), np.zeros(3), np.eye(3))
    mean = p.mean(axis=0)
    q = p - mean
    _, evecs = np.linalg.eigh(q.T @ q)
    R = evecs[:, ::-1].copy()
    for c in (0, 1):
        if R[np.argmax(np.abs(R[:, c])), c] < 0:
            R[:, c] *= -1.0
    R[:, 2] = np.cross(R[:, 0], R[:, 1])
    local = q @ R
    lo, hi = local.min(axis=0), local.max(axis=0)
    return OrientedBox(mean + R @ ((lo + hi) / 2), hi - lo, R)
