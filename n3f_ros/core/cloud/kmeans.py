"""Spherical (cosine) k-means with k-means++ seeding, vectorised numpy, deterministic per seed."""
from __future__ import annotations

import numpy as np

from n3f_ros.core.cloud.errors import CloudError, EmptyCloudError
from n3f_ros.core.cloud.validate import check_features, l2_normalize


def _kmeanspp(f: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeds (k, D) on unit rows ``f`` with cosine distance 1 - f.c."""
    n = len(f)
    centers = np.empty((k, f.shape[1]), np.float32)
    centers[0] = f[rng.integers(n)]
    dist = 1.0 - f @ centers[0]
    for c in range(1, k):
        w = np.maximum(dist, 0.0).astype(np.float64) ** 2
        total = w.sum()
        i = rng.choice(n, p=w / total) if total > 0 else rng.integers(n)
        centers[c] = f[i]
        dist = np.minimum(dist, 1.0 - f @ centers[c])
    return centers


def _update(f: np.ndarray, assign: np.ndarray, k: int, sims_max: np.ndarray) -> np.ndarray:
    """New unit centroids (k, D); an empty cluster is re-seeded at the worst-fitting point."""
    onehot = np.zeros((len(f), k), np.float32)
    onehot[np.arange(len(f)), assign] = 1.0
    sums = onehot.T @ f
    norms = np.linalg.norm(sums, axis=1)
    empty = np.flatnonzero(norms < 1e-12)
    if len(empty):
        worst = np.argsort(sims_max, kind='stable')[:len(empty)]
        sums[empty] = f[worst]
        norms[empty] = 1.0
    return (sums / norms[:, None]).astype(np.float32)


def _lloyd(fit: np.ndarray, centers: np.ndarray, max_iter: int, tol: float) -> tuple[np.ndarray, float]:
    """Lloyd iterations from ``centers``; returns final centroids and the objective
    (mean cosine similarity of each row to its centroid, higher is better)."""
    k = len(centers)
    assign = None
    for _ in range(max_iter):
        sims = fit @ centers.T
        new = sims.argmax(axis=1)
        changed = len(fit) if assign is None else int(np.count_nonzero(new != assign))
        assign = new
        centers = _update(fit, assign, k, sims.max(axis=1))
        if changed <= tol * len(fit):
            break
    return centers, float((fit @ centers.T).max(axis=1).mean())


def kmeans_cosine(features, n_clusters: int, seed: int = 0, max_iter: int = 30, tol: float = 1e-3,
                  max_fit_samples: int = 20000, n_init: int = 4,
                  init_samples: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    """Cluster feature directions by cosine similarity (spherical k-means).

    features:        (N, D); rows are L2-normalised internally.
    n_clusters:      k >= 1 (clipped to N).
    n_init:          number of k-means++ initialisations, each run on ``init_samples`` rows; the
                     run with the best objective (mean cosine to the assigned centroid) wins and
                     is refined on up to ``max_fit_samples`` rows. A single run often splits a
                     dominant cluster (e.g. the floor) and merges two small ones.
    Then every row is assigned to its most similar centroid. Lloyd runs stop when fewer than
    ``tol`` x rows assignments change, or after ``max_iter`` iterations. Rows are drawn with
    ``seed``: the result is deterministic per seed.
    Returns labels (N,) int64 in 0..k-1 and unit centroids (k, D) float32.
    """
    f = l2_normalize(check_features(features))
    n = len(f)
    if n == 0:
        raise EmptyCloudError('cannot cluster zero features')
    if int(n_clusters) < 1 or int(n_init) < 1:
        raise CloudError(f'n_clusters and n_init must be >= 1, got {n_clusters}, {n_init}')
    k = min(int(n_clusters), n)
    rng = np.random.default_rng(seed)
    fit = f if n <= max_fit_samples else f[np.sort(rng.choice(n, max_fit_samples, replace=False))]
    small = fit if len(fit) <= init_samples else fit[rng.choice(len(fit), init_samples, replace=False)]
    runs = [_lloyd(small, _kmeanspp(small, k, rng), max_iter, tol) for _ in range(int(n_init))]
    centers = max(runs, key=lambda r: r[1])[0]
    if len(small) < len(fit):
        centers, _ = _lloyd(fit, centers, max_iter, tol)
    labels = (f @ centers.T).argmax(axis=1).astype(np.int64)
    return labels, centers
