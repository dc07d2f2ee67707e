"""Scene editing with a query result: remove the object from the cloud, or keep only it."""
from __future__ import annotations

import numpy as np

from n3f_ros.core.cloud.errors import CloudError
from n3f_ros.core.cloud.pointcloud import FeatureCloud

EDIT_MODES = ('remove', 'extract')


def edit_mask(n_points: int, indices, mode: str) -> np.ndarray:
    """(N,) bool mask of the points to KEEP: all but ``indices`` ('remove') or only them ('extract')."""
    if mode not in EDIT_MODES:
        raise CloudError(f"edit mode must be one of {EDIT_MODES}, got {mode!r}")
    n = int(n_points)
    if n < 0:
        raise CloudError(f'n_points must be >= 0, got {n_points}')
    idx = np.asarray(indices)
    if idx.size and (idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer)
                     or idx.min() < 0 or idx.max() >= n):
        raise CloudError(f'object indices must be integers in [0, {n}) (result of another cloud?)')
    obj = np.zeros(n, bool)
    obj[idx.astype(np.int64)] = True
    return obj if mode == 'extract' else ~obj


def edit_cloud(n_points_or_cloud, result, mode: str):
    """Apply a ``QueryResult`` (or any object with ``.indices``) to a cloud.

    ``n_points_or_cloud``: an int N -> returns the (N,) bool mask of kept points;
    a ``FeatureCloud`` -> returns the edited ``FeatureCloud``.
    mode: 'remove' (the scene without the object) or 'extract' (only the object).
    The result must come from a query on this same cloud (same N). Raises CloudError
    (a ValueError) on an invalid mode or indices out of range.
    """
    indices = getattr(result, 'indices', None)
    if indices is None:
        raise CloudError('result must have an .indices array (a QueryResult)')
    if isinstance(n_points_or_cloud, FeatureCloud):
        return n_points_or_cloud.subset(edit_mask(len(n_points_or_cloud), indices, mode))
    n = n_points_or_cloud
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise CloudError(f'expected a point count or a FeatureCloud, got {type(n).__name__}')
    return edit_mask(int(n), indices, mode)
