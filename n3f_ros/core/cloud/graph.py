"""Spatial neighbourhoods: point spacing and radius-graph connected components (scipy)."""
from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

#: Default neighbourhood radius, in multiples of the median nearest-neighbour spacing.
RADIUS_FACTOR = 2.5
#: Smallest radius used when the spacing is zero (all points identical), metres.
MIN_RADIUS = 1e-6


def estimate_spacing(xyz: np.ndarray, tree: cKDTree | None = None, sample: int = 4096,
                     seed: int = 0) -> float:
    """Median distance (metres) from a point to its nearest distinct neighbour.

    Estimated on at most ``sample`` points drawn with ``seed``; 0.0 for fewer than 2 points or
    when all points coincide.
    """
    n = len(xyz)
    if n < 2:
        return 0.0
    tree = cKDTree(xyz) if tree is None else tree
    idx = np.arange(n) if n <= sample else np.random.default_rng(seed).choice(n, sample, replace=False)
    d, _ = tree.query(xyz[idx], k=min(n, 4))
    d = np.where(d[:, 1:] > 0, d[:, 1:], np.inf).min(axis=1)  # skip exact duplicates
    d = d[np.isfinite(d)]
    return float(np.median(d)) if len(d) else 0.0


def default_radius(xyz: np.ndarray, tree: cKDTree | None = None) -> float:
    """``RADIUS_FACTOR`` x median nearest-neighbour spacing, at least ``MIN_RADIUS`` (metres)."""
    return max(RADIUS_FACTOR * estimate_spacing(xyz, tree), MIN_RADIUS)


def radius_pairs(xyz: np.ndarray, radius: float, tree: cKDTree | None = None) -> np.ndarray:
    """All pairs (P, 2) int64 (i < j) of points at most ``radius`` metres apart."""
    if len(xyz) < 2:
        return np.zeros((0, 2), np.int64)
    tree = cKDTree(xyz) if tree is None else tree
    return tree.query_pairs(float(radius), output_type='ndarray').astype(np.int64).reshape(-1, 2)


def components_from_pairs(n: int, pairs: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components of the undirected graph on ``n`` nodes with edges ``pairs`` (P, 2).

    Returns (number of components, component id (n,) int64 in 0..count-1).
    """
    if n == 0:
        return 0, np.zeros(0, np.int64)
    g = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    count, comp = connected_components(g, directed=False)
    return int(count), comp.astype(np.int64)


def subgraph_components(mask: np.ndarray, pairs: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components of the points where ``mask`` (N,) bool is set, linked by the edges of
    ``pairs`` (P, 2) that join two of them. Returns (count, component id (M,) int64 of each masked
    point, in index order)."""
    members = np.flatnonzero(mask)
    e = pairs[mask[pairs[:, 0]] & mask[pairs[:, 1]]]
    local = np.full(len(mask), -1, np.int64)
    local[members] = np.arange(len(members))
    return components_from_pairs(len(members), local[e].reshape(-1, 2))


def seed_component(mask: np.ndarray, pairs: np.ndarray, seed: int) -> np.ndarray:
    """Indices (sorted) of the masked points connected to ``seed`` (a masked point) by ``pairs``."""
    members = np.flatnonzero(mask)
    _, comp = subgraph_components(mask, pairs)
    return members[comp == comp[np.searchsorted(members, seed)]]


def radius_components(xyz: np.ndarray, radius: float) -> tuple[int, np.ndarray]:
    """Connected components of the graph linking points at most ``radius`` metres apart."""
    return components_from_pairs(len(xyz), radius_pairs(xyz, radius))
