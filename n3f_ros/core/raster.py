"""Pixel-grid helpers every stage shares, so images are resampled and depth is judged one way.

* :func:`resize_nearest` — nearest-neighbour resize with the pixel-centre convention of
  ``core/camera.py`` (pixel ``(u, v)`` covers ``[u, u + 1) x [v, v + 1)``, centre at ``+ 0.5``):
  output pixel ``i`` of ``n`` reads input pixel ``floor((i + 0.5) * N / n)``. Used for depth
  alignment, masks and label images (never mixes values across an edge).
* :func:`clean_depth` — z-depth in metres with every invalid pixel (NaN, inf, <= 0, outside
  ``[min_depth, max_depth]``) set to 0, the project's "unknown" value.
"""
from __future__ import annotations

import numpy as np


def nearest_indices(n_out: int, n_in: int) -> np.ndarray:
    """(n_out,) int64 source index of each output pixel (pixel-centre convention)."""
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)


def resize_nearest(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, ...) array -> (height, width, ...) by nearest neighbour (see the module docstring)."""
    h, w = img.shape[:2]
    if (w, h) == (width, height):
        return img
    return img[nearest_indices(height, h)[:, None], nearest_indices(width, w)[None, :]]


def valid_depth(depth: np.ndarray, min_depth: float = 0.0, max_depth: float = np.inf) -> np.ndarray:
    """(H, W) bool: finite, positive and within ``[min_depth, max_depth]`` metres."""
    d = np.asarray(depth)
    with np.errstate(invalid='ignore'):
        return np.isfinite(d) & (d > 0) & (d >= min_depth) & (d <= max_depth)


def clean_depth(depth: np.ndarray, min_depth: float = 0.0, max_depth: float = np.inf) -> np.ndarray:
    """(H, W) float32 metres with invalid pixels (see :func:`valid_depth`) set to 0."""
    d = np.asarray(depth, dtype=np.float32)
    return np.where(valid_depth(d, min_depth, max_depth), d, np.float32(0.0)).astype(np.float32, copy=False)
