"""Voxel-grid downsampling that averages arbitrary per-point attributes (vectorised numpy/scipy).

Why numpy and not open3d: open3d 0.20's tensor ``PointCloud.voxel_down_sample`` does average
custom attributes, but it truncates integer attributes (uint8 colours are floored, not rounded),
averages label ids (meaningless for labels), returns points in an unspecified order and gives
no point -> voxel map. The implementation below is as fast (about 0.15 s for 200k points with
64-D features on one core, open3d took 0.3-0.4 s), uses the same world-aligned grid
(voxel index = floor(xyz / voxel_size)), and its float means agree with open3d's (tested).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from n3f_ros.core.cloud.errors import CloudError
from n3f_ros.core.cloud.validate import check_positive, check_xyz, l2_normalize

#: largest voxel, metres (the node's voxel_size parameter range)
MAX_VOXEL = 1.0


def voxel_indices(xyz: np.ndarray, voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Group points by voxel of a world-aligned grid.

    Returns ``inverse`` (N,) int64: voxel number of each point (voxels numbered 0..M-1 in
    increasing lexicographic order of their integer (i, j, k) coordinates), and ``counts`` (M,).
    """
    v = np.floor(xyz.astype(np.float64) / voxel_size).astype(np.int64)
    if len(v) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    v -= v.min(axis=0)
    dims = v.max(axis=0) + 1
    if float(dims[0]) * float(dims[1]) * float(dims[2]) < 2.0 ** 62:
        key = (v[:, 0] * dims[1] + v[:, 1]) * dims[2] + v[:, 2]
        _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    else:  # grid too large for one int64 key: slower row-wise unique
        _, inverse, counts = np.unique(v, axis=0, return_inverse=True, return_counts=True)
    return inverse.reshape(-1).astype(np.int64), counts.astype(np.int64)


def _mean_per_voxel(values: np.ndarray, pool: sp.csr_matrix, counts: np.ndarray) -> np.ndarray:
    """Mean of ``values`` (N, ...) per voxel with the (M, N) 0/1 pooling matrix, as float64."""
    flat = values.reshape(len(values), int(np.prod(values.shape[1:], dtype=np.int64)))
    dtype = np.float64 if flat.dtype == np.float64 else np.float32
    sums = pool.astype(dtype) @ flat.astype(dtype, copy=False)
    return (np.asarray(sums, dtype=np.float64) / counts[:, None]).reshape((len(counts),) + values.shape[1:])


def _majority_per_voxel(values: np.ndarray, inverse: np.ndarray, n_vox: int) -> np.ndarray:
    """Most frequent value (N,) per voxel; ties go to the smallest value."""
    uniq, codes = np.unique(values, return_inverse=True)
    codes = codes.reshape(-1)
    k = len(uniq)
    pair, cnt = np.unique(inverse * k + codes, return_counts=True)
    vox, code = pair // k, pair % k
    order = np.lexsort((code, -cnt, vox))  # per voxel: highest count first, then smallest code
    vox, code = vox[order], code[order]
    first = np.ones(len(vox), bool)
    first[1:] = vox[1:] != vox[:-1]
    out = np.empty(n_vox, dtype=values.dtype)
    out[vox[first]] = uniq[code[first]]
    return out


def voxel_downsample(xyz, voxel_size: float, normalize=('features',), return_inverse: bool = False,
                     **attrs):
    """Average points and attributes in each occupied voxel of size ``voxel_size`` metres.

    xyz:        (N, 3) points, metres.
    voxel_size: voxel edge, metres (> 0). The grid is aligned with the world origin, so a voxel
                keeps its place as the map grows.
    normalize:  names of attributes to L2-normalise after averaging (default: ``features``).
    attrs:      per-point arrays (N, ...) reduced per voxel by dtype:
                floating -> mean (same dtype); uint8 (colours) -> rounded mean;
                other integers and bool (labels) -> majority vote (ties: smallest value).
    Returns ``(xyz_ds (M, 3) float32, {name: (M, ...) array})`` and, with ``return_inverse``,
    also ``inverse`` (N,) int64: the output row of each input point. Rows are ordered by voxel.
    Raises CloudError on bad shapes, NaN/inf points or a non-positive voxel size.
    """
    xyz = check_xyz(xyz, allow_empty=True)
    voxel_size = check_positive(voxel_size, 'voxel_size', MAX_VOXEL)
    n = len(xyz)
    normalize = (normalize,) if isinstance(normalize, str) else tuple(normalize or ())
    for name, a in attrs.items():
        a = np.asarray(a)
        if a.ndim == 0 or len(a) != n:
            raise CloudError(f'attribute {name!r} has shape {a.shape}, expected ({n}, ...)')
        attrs[name] = a
    inverse, counts = voxel_indices(xyz, voxel_size)
    m = len(counts)
    pool = sp.csr_matrix((np.ones(n, np.float32), (inverse, np.arange(n))), shape=(m, n))
    xyz_ds = _mean_per_voxel(xyz.astype(np.float64), pool, counts).astype(np.float32)
    out = {}
    for name, a in attrs.items():
        if np.issubdtype(a.dtype, np.floating):
            out[name] = _mean_per_voxel(a, pool, counts).astype(a.dtype)
        elif a.dtype == np.uint8:
            out[name] = np.clip(np.rint(_mean_per_voxel(a, pool, counts)), 0, 255).astype(np.uint8)
        elif (np.issubdtype(a.dtype, np.integer) or a.dtype == bool) and a.ndim == 1:
            out[name] = _majority_per_voxel(a, inverse, m)
        else:
            raise CloudError(f'attribute {name!r}: cannot reduce dtype {a.dtype} with shape {a.shape}')
        if name in normalize:
            out[name] = l2_normalize(out[name]).astype(out[name].dtype)
    if return_inverse:
        return xyz_ds, out, inverse
    return xyz_ds, out
