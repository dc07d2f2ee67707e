"""Axis-aligned scene bounds (metres, world frame) for the field, estimated from the first views."""
from __future__ import annotations

import numpy as np


def bounds_from_depth(points: np.ndarray, margin: float = 0.25, min_extent: float = 0.3) -> np.ndarray:
    """Bounds (2, 3) around back-projected depth points (N, 3), robust to outliers.

    Takes the 1st..99th percentile box, grows it by ``margin`` of its size on every side, and makes
    every side at least ``min_extent`` metres long.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) < 10:
        raise ValueError('not enough depth points to estimate scene bounds')
    lo, hi = np.percentile(pts, 1, axis=0), np.percentile(pts, 99, axis=0)
    c, ext = (lo + hi) / 2, np.maximum((hi - lo) * (1 + 2 * margin), min_extent)
    return np.stack([c - ext / 2, c + ext / 2])


def bounds_from_views(poses: list[np.ndarray], radius_factor: float = 0.6) -> np.ndarray:
    """Bounds (2, 3) for RGB-only mapping: a cube around the point the cameras look at.

    The look-at point is the least-squares closest point to the cameras' optical axes (needs
    >= 2 non-parallel views); the half-size is ``radius_factor`` x the median camera distance to it.
    """
    if len(poses) < 2:
        raise ValueError('need at least two views to estimate bounds without depth')
    A, b = np.zeros((3, 3)), np.zeros(3)
    for T in poses:
        o, d = T[:3, 3], T[:3, 2] / np.linalg.norm(T[:3, 2])
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ o
    if np.linalg.cond(A) > 1e8:
        raise ValueError('camera axes are parallel: cannot estimate the looked-at point')
    centre = np.linalg.solve(A, b)
    r = radius_factor * float(np.median([np.linalg.norm(T[:3, 3] - centre) for T in poses]))
    return np.stack([centre - r, centre + r])
