"""Input checks shared by the cloud modules: shapes, dtypes, finiteness (vectorised)."""
from __future__ import annotations

import numpy as np

from n3f_ros.core.cloud.errors import CloudError, EmptyCloudError

#: Allowed deviation of a feature's L2 norm from 1 (fp16 storage rounds at ~1e-3).
UNIT_NORM_TOL = 1e-2


#: coordinates beyond this many metres are absurd for a mapped scene (float32 keeps ~mm there)
MAX_COORD = 1e6


def check_xyz(xyz, name: str = 'xyz', allow_empty: bool = False) -> np.ndarray:
    """Return ``xyz`` as a finite (N, 3) float32 array in metres, |coordinates| <= MAX_COORD.
    Raises CloudError."""
    a = np.asarray(xyz)
    if a.ndim != 2 or a.shape[1] != 3:
        raise CloudError(f'{name} must have shape (N, 3), got {a.shape}')
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise CloudError(f'{name} must be numeric, got dtype {a.dtype}')
    if len(a) == 0 and not allow_empty:
        raise EmptyCloudError(f'{name} is empty')
    if not np.all(np.isfinite(a)):
        raise CloudError(f'{name} contains NaN or inf')
    if a.size and np.abs(a).max() > MAX_COORD:
        raise CloudError(f'{name} has coordinates beyond {MAX_COORD:g} m')
    return a.astype(np.float32, copy=False)


def check_point(point, name: str = 'point') -> np.ndarray:
    """Return a finite (3,) float64 point. Raises CloudError."""
    p = np.asarray(point, dtype=np.float64)
    if p.shape != (3,):
        raise CloudError(f'{name} must have shape (3,), got {p.shape}')
    if not np.all(np.isfinite(p)):
        raise CloudError(f'{name} contains NaN or inf')
    return p


def check_features(features, n: int | None = None, name: str = 'features',
                   require_unit: bool = False) -> np.ndarray:
    """Return ``features`` as a finite (N, D) float32 array, D >= 1, N == ``n`` when given.

    With ``require_unit`` every row must have L2 norm 1 (within ``UNIT_NORM_TOL``).
    """
    f = np.asarray(features)
    if f.ndim != 2 or f.shape[1] < 1:
        raise CloudError(f'{name} must have shape (N, D) with D >= 1, got {f.shape}')
    if n is not None and len(f) != n:
        raise CloudError(f'{name} has {len(f)} rows but the cloud has {n} points')
    if not (np.issubdtype(f.dtype, np.floating) or np.issubdtype(f.dtype, np.integer)):
        raise CloudError(f'{name} must be numeric, got dtype {f.dtype}')
    f = f.astype(np.float32, copy=False)
    if not np.all(np.isfinite(f)):
        raise CloudError(f'{name} contains NaN or inf')
    if require_unit and len(f):
        norms = np.sqrt(np.einsum('ij,ij->i', f, f))
        bad = np.abs(norms - 1.0) > UNIT_NORM_TOL
        if np.any(bad):
            raise CloudError(f'{name} must be L2-normalised: {int(bad.sum())} rows have norm != 1 '
                             f'(e.g. {float(norms[bad][0]):.4f})')
    return f


def check_uint8_colors(rgb, n: int, name: str = 'rgb') -> np.ndarray:
    """Return (N, 3) uint8 colours; integer input in 0..255 is accepted and cast. Raises CloudError."""
    c = np.asarray(rgb)
    if c.shape != (n, 3):
        raise CloudError(f'{name} must have shape ({n}, 3), got {c.shape}')
    if c.dtype == np.uint8:
        return c
    if not np.issubdtype(c.dtype, np.integer):
        raise CloudError(f'{name} must be uint8 (or integers in 0..255), got dtype {c.dtype}')
    if len(c) and (c.min() < 0 or c.max() > 255):
        raise CloudError(f'{name} values must lie in 0..255')
    return c.astype(np.uint8)


def check_labels(labels, n: int, name: str = 'labels') -> np.ndarray:
    """Return (N,) uint32 labels; non-negative integer input is accepted and cast. Raises CloudError."""
    lab = np.asarray(labels)
    if lab.shape != (n,):
        raise CloudError(f'{name} must have shape ({n},), got {lab.shape}')
    if lab.dtype == np.uint32:
        return lab
    if not np.issubdtype(lab.dtype, np.integer):
        raise CloudError(f'{name} must be integers, got dtype {lab.dtype}')
    if len(lab) and (lab.min() < 0 or lab.max() > np.iinfo(np.uint32).max):
        raise CloudError(f'{name} must lie in 0..2**32-1')
    return lab.astype(np.uint32)


def check_positive(value, name: str, upper: float | None = None) -> float:
    """Return ``value`` as a finite float > 0 (and <= ``upper`` when given). Raises CloudError."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise CloudError(f'{name} must be a number, got {value!r}') from exc
    if not np.isfinite(v) or v <= 0:
        raise CloudError(f'{name} must be a finite positive number, got {value!r}')
    if upper is not None and v > upper:
        raise CloudError(f'{name} must be at most {upper:g}, got {value!r}')
    return v


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` (..., D) scaled to unit L2 norm (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, eps)
