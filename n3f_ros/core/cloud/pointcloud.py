"""``FeatureCloud``: a 3D point cloud carrying colours, distilled features and segment labels."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from n3f_ros.core.cloud.errors import CloudError
from n3f_ros.core.cloud.validate import check_features, check_labels, check_uint8_colors, check_xyz


@dataclass
class FeatureCloud:
    """N points in the world frame with per-point attributes.

    xyz:      (N, 3) float32, metres, world frame.
    rgb:      (N, 3) uint8, observed colour.
    features: (N, D) float32, L2-normalised rows (checked to 1e-2).
    pca_rgb:  (N, 3) uint8, PCA colouring of ``features`` (see ``FeaturePCA``).
    labels:   (N,) uint32 segment ids, 0 = unlabelled (None given: all 0).
    feature_source: what ``features`` are ('fused' | 'student' | 'combined'; see
              ``core/mapping/sources.py``).
    geometry: the cloud's ``CloudGeometry`` (support plane, normals, pieces) when computed, which
              queries respect; None otherwise (subsets drop it).

    Inputs are validated and cast in ``__post_init__`` (CloudError on bad shapes, NaN/inf,
    non-unit features, out-of-range colours). An empty cloud (N = 0) is allowed.
    """

    xyz: np.ndarray
    rgb: np.ndarray
    features: np.ndarray
    pca_rgb: np.ndarray
    labels: np.ndarray | None = None
    feature_source: str = 'student'
    geometry: object = None

    def __post_init__(self):
        self.xyz = check_xyz(self.xyz, 'xyz', allow_empty=True)
        n = len(self.xyz)
        self.rgb = check_uint8_colors(self.rgb, n, 'rgb')
        self.features = check_features(self.features, n, 'features', require_unit=True)
        self.pca_rgb = check_uint8_colors(self.pca_rgb, n, 'pca_rgb')
        self.labels = check_labels(np.zeros(n, np.uint32) if self.labels is None else self.labels, n, 'labels')
        if self.geometry is not None and len(self.geometry) != n:
            raise CloudError(f'geometry describes {len(self.geometry)} points, the cloud has {n}')

    def __len__(self) -> int:
        return len(self.xyz)

    @property
    def dim(self) -> int:
        """Feature dimension D."""
        return int(self.features.shape[1])

    @classmethod
    def empty(cls, dim: int) -> FeatureCloud:
        """A cloud with no point and feature dimension ``dim``."""
        return cls(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8),
                   np.zeros((0, int(dim)), np.float32), np.zeros((0, 3), np.uint8))

    def subset(self, indices_or_mask) -> FeatureCloud:
        """A new cloud holding the selected points (copies).

        ``indices_or_mask``: (N,) bool mask, or integer indices in [-N, N) (any order, repeats
        allowed). Raises CloudError on a wrong-length mask or out-of-range index.
        """
        sel = as_index(indices_or_mask, len(self))
        return FeatureCloud(self.xyz[sel], self.rgb[sel], self.features[sel], self.pca_rgb[sel], self.labels[sel],
                            self.feature_source)


def as_index(indices_or_mask, n: int) -> np.ndarray:
    """Validate a selection of ``n`` points: returns int64 indices (M,). Raises CloudError."""
    sel = np.asarray(indices_or_mask)
    if sel.dtype == bool:
        if sel.shape != (n,):
            raise CloudError(f'mask must have shape ({n},), got {sel.shape}')
        return np.flatnonzero(sel)
    if sel.size == 0:
        return np.zeros(0, np.int64)
    if sel.ndim != 1 or not np.issubdtype(sel.dtype, np.integer):
        raise CloudError(f'indices must be a 1-D integer array or a bool mask, got {sel.dtype} {sel.shape}')
    if sel.min() < -n or sel.max() >= n:
        raise CloudError(f'indices out of range for a cloud of {n} points')
    return sel.astype(np.int64) % max(n, 1)
