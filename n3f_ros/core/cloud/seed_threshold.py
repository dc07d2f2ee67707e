"""The automatic threshold of a feature-only point query: the sharpest edge around the seed.

A point query without geometry answers the seed's connected component (radius graph) of the
points whose cosine similarity to the query feature is at least a threshold ``t``; lowering ``t``
grows it. Otsu's threshold over the whole cloud's similarities (``threshold.auto_threshold``)
ignores that growth: once features sharpen, a small object's component stays small down to some
``t`` and then floods what it stands on. Measured on the open3d scene with the synthetic teacher
(RGB-D, student after 750 steps): a 5.7 cm sphere's component holds 313 points (the sphere has
119) at 0.76, 1,117 at 0.74 and 3,277 at 0.72, while Otsu put the threshold at 0.58.

The rule (:func:`margin_threshold`): for ``t`` on a grid of :data:`STEP` over
[``AUTO_MIN``, ``AUTO_MAX``], take the component ``C(t)`` and its boundary ``B(t)`` (the points
outside it with an edge into it); the threshold is the ``t`` of the widest **margin**
``t - median similarity over B(t)``, among components of at least ``min_size`` points: the
answer's edge is where the similarity drops furthest below the threshold just outside it. A
component that has no boundary at any ``t`` (it is all its connected cloud) keeps Otsu's
threshold. All components at once come from one maximum-bottleneck spanning tree
(:func:`join_levels`), so the cost is one spanning tree plus a pass over the edges per grid step:
on the development CPU ~0.17 s per query on the benchmark's 25k-point clouds and ~1.1 s on a
random 200k-point cloud (0.18 s there with a given threshold). The node's queries use the
cloud's geometry (``query.py``) and do not pay it.
"""
from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order, minimum_spanning_tree

from n3f_ros.core.cloud.threshold import AUTO_MAX, AUTO_MIN

#: spacing of the candidate thresholds (cosine similarity)
STEP = 0.02
#: smallest candidate component, points (a query also needs at least its seed neighbourhood)
MIN_COMPONENT = 10


def join_levels(n: int, pairs: np.ndarray, similarity: np.ndarray, root: int) -> np.ndarray:
    """Per point, the highest threshold ``t`` at which it lies in ``root``'s connected component
    of {similarity >= t} (the bottleneck similarity of its best path from ``root``); ``-inf``
    where it is not connected to ``root`` at all.

    n: points; pairs (P, 2) int64 edges (radius graph); similarity (n,) in [-1, 1]."""
    levels = np.full(n, -np.inf)
    levels[root] = similarity[root]
    if len(pairs) == 0:
        return levels
    i, j = pairs[:, 0], pairs[:, 1]
    cost = 2.0 - np.minimum(similarity[i], similarity[j])     # > 0: scipy drops zero weights
    tree = minimum_spanning_tree(coo_matrix((cost, (i, j)), shape=(n, n)).tocsr())
    tree = (tree + tree.T).tocsr()
    order, pred = breadth_first_order(tree, root, directed=False, return_predecessors=True)
    child = order[1:]
    parent = pred[child]
    edge = (2.0 - np.asarray(tree[parent, child]).ravel()).tolist()
    lv = levels.tolist()
    for c, p, w in zip(child.tolist(), parent.tolist(), edge):   # parents come first in BFS order
        lv[c] = min(lv[p], w)
    return np.asarray(lv)


def margin_threshold(levels: np.ndarray, similarity: np.ndarray, pairs: np.ndarray, min_size: int,
                     fallback: float) -> float:
    """The threshold of the widest margin (module docstring); ``fallback`` when no candidate
    component of at least ``min_size`` points has a boundary.

    levels (n,) from :func:`join_levels`; similarity (n,); pairs (P, 2) the same graph's edges."""
    best, chosen = -np.inf, float(fallback)
    i, j = pairs[:, 0], pairs[:, 1]
    for t in np.arange(AUTO_MAX, AUTO_MIN - 1e-9, -STEP):
        inside = levels >= t
        if inside.sum() < min_size:
            continue
        cut = inside[i] != inside[j]
        if not cut.any():
            continue
        boundary = np.unique(np.where(inside[i[cut]], j[cut], i[cut]))
        margin = t - float(np.median(similarity[boundary]))
        if margin > best:
            best, chosen = margin, float(t)
    return chosen
