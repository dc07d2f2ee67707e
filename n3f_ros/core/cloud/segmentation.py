"""Unsupervised 3D segmentation of a feature cloud: feature clusters split into spatial parts."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from n3f_ros.core.cloud.errors import CloudError, EmptyCloudError
from n3f_ros.core.cloud.graph import components_from_pairs, default_radius, radius_pairs
from n3f_ros.core.cloud.kmeans import kmeans_cosine
from n3f_ros.core.cloud.validate import check_features, check_positive, check_xyz, l2_normalize

#: Tiny parts are attached to a segment within this many ``radius`` of them, else unlabelled.
TINY_ATTACH_FACTOR = 2.0


def _pool(group: np.ndarray, count: int, values: np.ndarray) -> np.ndarray:
    """Sum of ``values`` (n, D) per group id (n,) in 0..count-1 -> (count, D) float64."""
    pool = sp.csr_matrix((np.ones(len(group)), (group, np.arange(len(group)))), shape=(count, len(group)))
    return np.asarray(pool @ values.astype(np.float64))


def _unique_edges(a: np.ndarray, b: np.ndarray, count: int) -> np.ndarray:
    """Distinct undirected edges (E, 2) between different nodes, smaller id first."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = np.unique((lo * count + hi)[lo != hi])
    return np.stack([key // count, key % count], axis=1)


def _merge_similar_neighbours(part, count, pairs, f, min_cos, max_rounds: int = 8):
    """Merge spatially adjacent parts whose mean features have cosine >= ``min_cos``; repeated
    (means recomputed) until nothing merges, since merged parts have less biased means."""
    adj = _unique_edges(part[pairs[:, 0]], part[pairs[:, 1]], count)
    sums = _pool(part, count, f)
    for _ in range(max_rounds):
        if len(adj) == 0:
            break
        pf = l2_normalize(sums)
        sel = np.einsum('ij,ij->i', pf[adj[:, 0]], pf[adj[:, 1]]) >= min_cos
        if not np.any(sel):
            break
        new_count, merged = components_from_pairs(count, adj[sel])
        sums = _pool(merged, new_count, sums)
        adj = _unique_edges(merged[adj[:, 0]], merged[adj[:, 1]], new_count)
        part, count = merged[part], new_count
    return part, count


def _attach_tiny(xyz, part, count, min_points, max_dist):
    """Points of parts smaller than ``min_points`` take the part of the nearest point of a kept
    part within ``max_dist`` metres; the rest get -1 (unlabelled)."""
    sizes = np.bincount(part, minlength=count)
    tiny = sizes[part] < min_points
    if not np.any(tiny):
        return part
    out = part.copy()
    kept = np.flatnonzero(~tiny)
    if len(kept) == 0:
        return np.full_like(part, -1)
    d, j = cKDTree(xyz[kept]).query(xyz[tiny], k=1, distance_upper_bound=max_dist)
    ok = np.isfinite(d)
    out[tiny] = np.where(ok, part[kept[np.minimum(j, len(kept) - 1)]], -1)
    return out


def _consecutive_by_size(part: np.ndarray) -> np.ndarray:
    """Map part ids (-1 = unlabelled) to labels 1..S ordered by decreasing size, 0 for -1."""
    labels = np.zeros(len(part), np.uint32)
    ok = part >= 0
    if not np.any(ok):
        return labels
    ids, inv, sizes = np.unique(part[ok], return_inverse=True, return_counts=True)
    rank = np.empty(len(ids), np.int64)
    rank[np.lexsort((ids, -sizes))] = np.arange(len(ids))
    labels[ok] = (rank[inv.reshape(-1)] + 1).astype(np.uint32)
    return labels


def segment(xyz, features, n_clusters: int = 8, radius: float | None = None, min_points: int = 20,
            seed: int = 0, merge_similarity: float | None = 0.8) -> np.ndarray:
    """Segment a feature cloud into feature-consistent, spatially connected parts.

    1. Spherical k-means (cosine, k-means++ seeded with ``seed``) groups points by feature.
    2. Each cluster is split into connected parts of the radius graph (points at most
       ``radius`` metres apart; default 2.5 x the median nearest-neighbour spacing), so two
       objects with the same features that are apart get different segments.
    3. Adjacent parts whose mean features have cosine >= ``merge_similarity`` are merged (this
       undoes the split of one object into interleaved clusters when ``n_clusters`` exceeds the
       number of distinct objects); None disables it.
    4. Parts with fewer than ``min_points`` points: each point joins the segment of the nearest
       point of a larger part within 2 x ``radius``; points with none stay unlabelled (0).
    xyz (N, 3) metres, features (N, D). Returns labels (N,) uint32: 0 = unlabelled, segments
    numbered 1..S consecutively by decreasing size. Deterministic for a given seed.
    Raises CloudError / EmptyCloudError on bad input.
    """
    xyz = check_xyz(xyz, allow_empty=True)
    f = l2_normalize(check_features(features, len(xyz)))
    if len(xyz) == 0:
        raise EmptyCloudError('cannot segment an empty cloud')
    if int(min_points) < 1:
        raise CloudError(f'min_points must be >= 1, got {min_points}')
    if merge_similarity is not None and not -1.0 <= float(merge_similarity) <= 1.0:
        raise CloudError(f'merge_similarity must lie in [-1, 1], got {merge_similarity}')
    tree = cKDTree(xyz)
    radius = default_radius(xyz, tree) if radius is None else check_positive(radius, 'radius')
    cluster, _ = kmeans_cosine(f, n_clusters, seed=seed)
    pairs = radius_pairs(xyz, radius, tree)
    same = pairs[cluster[pairs[:, 0]] == cluster[pairs[:, 1]]]
    count, part = components_from_pairs(len(xyz), same)
    if merge_similarity is not None:
        part, count = _merge_similar_neighbours(part, count, pairs, f, float(merge_similarity))
    part = _attach_tiny(xyz, part, count, int(min_points), TINY_ATTACH_FACTOR * radius)
    return _consecutive_by_size(part)
