"""Object queries on a feature cloud: by a 3D point (e.g. RViz click) or by a feature prototype.

A query turns a prototype feature into cosine similarities over the cloud, keeps the points
above a threshold (automatic: Otsu, see ``threshold.py``) and returns one spatially connected
component of them (radius graph) as the object.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from n3f_ros.core.cloud.box import OrientedBox, oriented_box
from n3f_ros.core.cloud.errors import CloudError, EmptyCloudError, QueryError
from n3f_ros.core.cloud.graph import components_from_pairs, default_radius, radius_pairs
from n3f_ros.core.cloud.threshold import auto_threshold, check_threshold
from n3f_ros.core.cloud.validate import check_features, check_point, check_positive, check_xyz, l2_normalize

#: Default largest distance (in multiples of ``radius``) between a query point and the cloud.
MAX_DISTANCE_FACTOR = 4.0
#: Largest connectivity radius, metres (the node uses 2 voxels, voxel_size <= 1 m): a larger one
#: would link every point to every other (memory quadratic in the cloud size)
MAX_RADIUS = 2.0


@dataclass
class QueryResult:
    """The object found by a query.

    indices:        (M,) int64, sorted indices of the object's points in the queried cloud.
    xyz:            (M, 3) float32 metres, the object's points.
    similarity:     (M,) float32 cosine similarity of those points to the query prototype.
    all_similarity: (N,) float32 similarity of every cloud point.
    centroid:       (3,) float64 metres, mean of ``xyz``.
    box:            ``OrientedBox`` of ``xyz`` (center, extent, R).
    score:          mean of ``similarity``.
    threshold:      similarity threshold used (automatic or given).
    prototype:      (D,) float32 unit vector, normalised mean feature of the object's points
                    (what ``query_by_prototype`` takes to find it again).
    name:           prototype name for named queries, else None.
    seed_index:     for point queries, index of the cloud point the object was grown from.
    radius:         neighbourhood radius (metres) of the connectivity graph.
    cloud:          the FeatureCloud the query ran on, when the caller attaches it (the Mapper
                    does, so an edit uses the same snapshot as the query).
    """

    indices: np.ndarray
    xyz: np.ndarray
    similarity: np.ndarray
    all_similarity: np.ndarray
    centroid: np.ndarray
    box: OrientedBox
    score: float
    threshold: float
    prototype: np.ndarray
    name: str | None = None
    seed_index: int | None = None
    radius: float = float('nan')
    cloud: object = None

    def __len__(self) -> int:
        return len(self.indices)

    def mask(self, n_points: int | None = None) -> np.ndarray:
        """(N,) bool mask of the object in the queried cloud (N defaults to its size)."""
        n = len(self.all_similarity) if n_points is None else int(n_points)
        m = np.zeros(n, bool)
        m[self.indices] = True
        return m


def cosine_similarity(features: np.ndarray, prototype: np.ndarray) -> np.ndarray:
    """(N,) float32 cosine similarity of rows of ``features`` (N, D) to ``prototype`` (D,)."""
    norms = np.sqrt(np.einsum('ij,ij->i', features, features))
    return (features @ prototype / np.maximum(norms, 1e-12)).astype(np.float32)


def _inputs(xyz, features):
    xyz = check_xyz(xyz, 'cloud_xyz', allow_empty=True)
    f = check_features(features, len(xyz), 'cloud_features')
    if len(xyz) == 0:
        raise EmptyCloudError('cannot query an empty cloud')
    return xyz, f


def _threshold(similarity, threshold) -> float:
    return auto_threshold(similarity) if threshold is None else check_threshold(threshold)


def _components(xyz: np.ndarray, members: np.ndarray, radius: float) -> tuple[int, np.ndarray]:
    """Connected components (radius graph) of the points ``members`` (indices)."""
    sub = xyz[members]
    return components_from_pairs(len(sub), radius_pairs(sub, radius))


def _result(xyz, f, sims, indices, threshold, radius, name=None, seed_index=None) -> QueryResult:
    indices = np.sort(indices).astype(np.int64)
    pts = xyz[indices]
    sim = sims[indices]
    proto = l2_normalize(f[indices].astype(np.float64).mean(axis=0)).astype(np.float32)
    return QueryResult(indices=indices, xyz=pts, similarity=sim, all_similarity=sims,
                       centroid=pts.astype(np.float64).mean(axis=0), box=oriented_box(pts),
                       score=float(sim.mean()), threshold=float(threshold), prototype=proto, name=name,
                       seed_index=seed_index, radius=float(radius))


def query_by_point(cloud_xyz, cloud_features, point, threshold: float | None = None,
                   radius: float | None = None, seed_radius: float | None = None,
                   max_distance: float | None = None, name: str | None = None) -> QueryResult:
    """The object under a 3D point (metres, world frame), e.g. a point clicked in RViz.

    cloud_xyz (N, 3) metres, cloud_features (N, D).
    radius:       connectivity radius, metres; default 2.5 x median nearest-neighbour spacing.
    seed_radius:  the query feature is the normalised mean feature of the cloud points within
                  this distance of ``point`` (default ``radius``), or of the nearest point.
    max_distance: QueryError if no cloud point is this close to ``point``
                  (default ``MAX_DISTANCE_FACTOR`` x ``radius``).
    threshold:    cosine similarity in [0, 1]; None = ``auto_threshold``: Otsu on the similarity
                  histogram of the points >= 0.3, clamped to [0.3, 0.95].
    The object is the connected component (points above threshold, linked when at most
    ``radius`` apart) containing the above-threshold seed-neighbourhood point nearest to
    ``point``. Raises QueryError if the point is too far or no nearby point passes the
    threshold; CloudError / EmptyCloudError on bad input.
    """
    xyz, f = _inputs(cloud_xyz, cloud_features)
    p = check_point(point).astype(np.float32)
    radius = default_radius(xyz, cKDTree(xyz)) if radius is None else check_positive(radius, 'radius', MAX_RADIUS)
    seed_radius = radius if seed_radius is None else check_positive(seed_radius, 'seed_radius', MAX_RADIUS)
    max_distance = (MAX_DISTANCE_FACTOR * radius if max_distance is None
                    else check_positive(max_distance, 'max_distance'))
    d2 = np.einsum('ij,ij->i', xyz - p, xyz - p)
    nearest = int(np.argmin(d2))
    dmin = float(np.sqrt(d2[nearest]))
    if dmin > max_distance:
        raise QueryError(f'query point is {dmin:.3f} m from the cloud (max {max_distance:.3f} m)')
    near = np.flatnonzero(d2 <= seed_radius ** 2)
    if len(near) == 0:
        near = np.array([nearest])
    seed_feature = l2_normalize(f[near].astype(np.float64).mean(axis=0))
    sims = cosine_similarity(f, seed_feature)
    thr = _threshold(sims, threshold)
    ok_near = near[sims[near] >= thr]
    if len(ok_near) == 0:
        raise QueryError(f'no point near the query point reaches similarity {thr:.3f} '
                         f'(best {float(sims[near].max()):.3f})')
    seed = int(ok_near[np.argmin(d2[ok_near])])
    members = np.flatnonzero(sims >= thr)
    _, comp = _components(xyz, members, radius)
    seed_comp = comp[np.searchsorted(members, seed)]
    return _result(xyz, f, sims, members[comp == seed_comp], thr, radius, name=name, seed_index=seed)


def query_by_prototype(cloud_xyz, cloud_features, prototype, threshold: float | None = None,
                       radius: float | None = None, name: str | None = None) -> QueryResult:
    """The object best matching a saved feature ``prototype`` (D,) (normalised internally).

    Points with cosine similarity >= threshold (None = automatic, as in ``query_by_point``) are
    linked when at most ``radius`` metres apart; the object is the LARGEST connected component
    (most points; ties broken by higher mean similarity): a real object beats scattered
    look-alike points, and of two instances the better-observed one wins.
    Raises QueryError if no point passes the threshold; CloudError on bad input (including a
    prototype whose dimension differs from the cloud's or whose norm is zero).
    """
    xyz, f = _inputs(cloud_xyz, cloud_features)
    proto = np.asarray(prototype, dtype=np.float64)
    if proto.shape != (f.shape[1],) or not np.all(np.isfinite(proto)):
        raise CloudError(f'prototype must be a finite ({f.shape[1]},) vector, got shape {proto.shape}')
    if np.linalg.norm(proto) < 1e-12:
        raise CloudError('prototype has zero norm')
    radius = default_radius(xyz, cKDTree(xyz)) if radius is None else check_positive(radius, 'radius', MAX_RADIUS)
    sims = cosine_similarity(f, l2_normalize(proto))
    thr = _threshold(sims, threshold)
    members = np.flatnonzero(sims >= thr)
    if len(members) == 0:
        raise QueryError(f'no point reaches similarity {thr:.3f} (best {float(sims.max()):.3f})')
    count, comp = _components(xyz, members, radius)
    sizes = np.bincount(comp, minlength=count)
    mean_sim = np.bincount(comp, weights=sims[members], minlength=count) / sizes
    best = int(np.lexsort((-mean_sim, -sizes))[0])
    return _result(xyz, f, sims, members[comp == best], thr, radius, name=name)
