"""Object queries on a feature cloud: by a 3D point (e.g. RViz click) or by a feature prototype.

A query turns a prototype feature into cosine similarities over the cloud and returns one
spatially connected set of points as the answer.

**With the cloud's geometry** (``geometry``: :class:`~n3f_ros.core.cloud.geometry.CloudGeometry`,
what the Mapper always passes), a point query answers one of two kinds:

* ``support`` — the point lies on the support plane (a click on the table): the answer is the
  plane's points connected to it (split by features only where they clearly differ, see below);
  it never contains points above the plane.
* ``object`` — the point lies above the plane: the answer grows from the seed's geometric piece
  (``geometry.py``: points above the plane, cut at concave creases) into adjacent pieces whose
  mean feature is similar enough, and never includes a point of the support. A seed on the flat
  foot layer of its piece (``geometry.foot_layer``: a domino lying against a jenga block, too thin
  for the crease test) starts from that layer; the rest of the piece joins only by features. The **automatic
  threshold is chosen per query**: a piece joins when its mean similarity to the query feature
  lies within :data:`PIECE_MARGIN` (a quarter) of the way down from the seed piece's own mean to
  the median similarity of everything outside the seed's piece — pieces of one object (cut at its
  own concave folds) agree that closely, an object blended into its touching neighbour by
  patch-sized teacher features usually does not; every point of the joined pieces belongs to the
  answer (the geometry bounds it; splitting a piece by point similarities cut homogeneous
  objects apart more often than it separated touching ones). A given ``threshold`` replaces the
  automatic choice for pieces and also drops the points below it; the seed's connected component
  is the answer. Points within a *wide* band (more than :data:`WIDE_BAND`: noisy, stereo depth; on
  measured depth the band is ~2 mm and height alone decides) are where height cannot tell object
  from support (e.g. a tray's floor lies in a 12 mm band): there the features decide — a band
  point within :data:`BAND_HOPS` graph edges of the answer joins it when its feature is closer
  to the answer's mean feature than to the support's in a ring around the answer (out to
  :data:`CLAIM_RING`) by :data:`BAND_MARGIN` (a few hops: the base of the object, not a path
  along a neighbour's base). A click on a band point is a support
  query unless at least :data:`MIN_BAND_OBJECT` band points connected to it look like it rather
  than like the support (a tray's floor) and touch an object piece (at least
  :data:`MIN_TOUCHED_PIECE` points) similar enough to join (as above): then they start an object
  answer with those pieces; otherwise it is a support query (patches of a textured table look more
  like each other than like the whole band's mean).

**Without geometry** (``geometry=None``, feature-only queries, used by the benchmark to measure
features alone), the points above the threshold (automatic: ``threshold.auto_threshold``) that are
connected to the seed form the object, as before.

**No whole-scene answers** (both ways): an object answer covering more than ``max_share`` of the
cloud (:data:`MAX_ANSWER_SHARE`), or a query whose similarities over the cloud spread less than
``min_spread`` (:data:`MIN_SIMILARITY_SPREAD`, 1st to 99th percentile: features that do not
discriminate yet, e.g. an untrained field) raises :class:`QueryError` with ``reason``
``too_large`` / ``not_converged``; the Mapper counts refusals by reason.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from n3f_ros.core.cloud.box import OrientedBox, oriented_box
from n3f_ros.core.cloud.errors import CloudError, EmptyCloudError, QueryError
from n3f_ros.core.cloud.geometry import foot_layer
from n3f_ros.core.cloud.graph import components_from_pairs, default_radius, radius_pairs, seed_component, \
    subgraph_components
from n3f_ros.core.cloud.threshold import auto_threshold, check_threshold
from n3f_ros.core.cloud.validate import check_features, check_point, check_positive, check_xyz, l2_normalize

#: Default largest distance (in multiples of ``radius``) between a query point and the cloud.
MAX_DISTANCE_FACTOR = 4.0
#: Largest connectivity radius, metres (the node uses 2 voxels, voxel_size <= 1 m): a larger one
#: would link every point to every other (memory quadratic in the cloud size)
MAX_RADIUS = 2.0
#: object answers covering more than this share of the cloud are refused (reason ``too_large``)
MAX_ANSWER_SHARE = 0.5
#: queries whose similarities spread (p99 - p1) less than this are refused (``not_converged``)
MIN_SIMILARITY_SPREAD = 0.1
#: a piece joins an object answer when its similarity is within this share of the way from the
#: seed piece's down to the rest's
PIECE_MARGIN = 0.25
#: a band point joins an object answer when it is this much more similar to it than to the support,
#: and at most this many graph edges away from it
BAND_MARGIN, BAND_HOPS = 0.05, 2
#: on a wide band, support answers link plane points this many graph radii apart (stereo tables have holes)
SUPPORT_LINK_FACTOR = 3.0
#: band points an object answer claims are compared with the support's points in a ring around the
#: answer: farther than one graph radius (its own base) and within this distance (metres); a textured
#: table's mean over the whole band is not what the table looks like next to the object
CLAIM_RING = 0.08
#: a band start becomes an object answer only through a touching piece of at least this many points
#: (stereo noise leaves few-point pieces of the table above the band)
MIN_TOUCHED_PIECE = 20
#: a seed in the band starts an object answer when at least this many band points connected to it
#: look like it rather than like the support
MIN_BAND_OBJECT = 5
#: bands wider than this (metres) are ambiguous: features decide between object and support there
#: (on measured depth the band is ~2 mm and the features of an object's base blend with the table's)
WIDE_BAND = 0.005
#: answer kinds
OBJECT, SUPPORT = 'object', 'support'


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
    kind:           'object' or 'support' (the support plane's region, see the module docstring).
    separation:     in [0, 1], how much the answer stands out: (score - s_rest) / (1 - s_rest)
                    with s_rest the median similarity of the other points, clipped.
    feature_source: which features answered ('fused' | 'student' | 'combined'; set by the
                    Mapper, '' for a bare query).
    confidence:     in [0, 1], set by the Mapper: the measured agreement of the feature source
                    with the teacher on views it did not learn from, times ``separation``.
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
    kind: str = OBJECT
    separation: float = 0.0
    feature_source: str = ''
    confidence: float = 0.0

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


def _result(xyz, f, sims, indices, threshold, radius, name=None, seed_index=None, kind=OBJECT,
            max_share: float | None = None) -> QueryResult:
    indices = np.sort(indices).astype(np.int64)
    share = len(indices) / len(xyz)
    if kind == OBJECT and max_share is not None and share > max_share:
        raise QueryError(f'the answer would cover {100 * share:.0f} % of the map ({len(indices)} of {len(xyz)} '
                         f'points; at most {100 * max_share:.0f} %): not an object', reason='too_large')
    pts = xyz[indices]
    sim = sims[indices]
    proto = l2_normalize(f[indices].astype(np.float64).mean(axis=0)).astype(np.float32)
    score = float(sim.mean())
    rest = np.ones(len(xyz), bool)
    rest[indices] = False
    s_rest = float(np.median(sims[rest])) if rest.any() else 0.0
    separation = float(np.clip((score - s_rest) / max(1.0 - s_rest, 1e-6), 0.0, 1.0))
    return QueryResult(indices=indices, xyz=pts, similarity=sim, all_similarity=sims,
                       centroid=pts.astype(np.float64).mean(axis=0), box=oriented_box(pts),
                       score=score, threshold=float(threshold), prototype=proto, name=name,
                       seed_index=seed_index, radius=float(radius), kind=kind, separation=separation)


def check_spread(sims: np.ndarray, min_spread: float | None) -> None:
    """Refuse (QueryError ``not_converged``) similarities that spread less than ``min_spread``."""
    if min_spread is None or len(sims) < 10:
        return
    lo, hi = np.percentile(sims, [1, 99])
    if hi - lo < min_spread:
        raise QueryError(f'map not converged yet: the features do not discriminate (similarity spread '
                         f'{hi - lo:.3f} < {min_spread:.3f})', reason='not_converged')


def _band_grow(geom, ok: np.ndarray, start: np.ndarray, hops: int) -> np.ndarray:
    """Points (indices) of ``ok`` (bool) reachable from ``start`` (bool) in at most ``hops`` graph
    edges through ``ok`` points (``start`` itself not included)."""
    if len(geom.pairs) == 0 or not ok.any():
        return np.zeros(0, np.int64)
    a = np.concatenate([geom.pairs[:, 0], geom.pairs[:, 1]])
    b = np.concatenate([geom.pairs[:, 1], geom.pairs[:, 0]])
    sel = ok[b] & ~start[b]
    a, b = a[sel], b[sel]
    claimed = np.zeros(len(ok), bool)
    frontier = start.copy()
    for _ in range(hops):
        new = b[frontier[a] & ~claimed[b]]
        if len(new) == 0:
            break
        claimed[new] = True
        frontier = np.zeros(len(ok), bool)
        frontier[new] = True
    return np.flatnonzero(claimed)


def _wide_band(geom) -> bool:
    """Whether the support plane's band is wide (noisy, stereo depth): there features decide."""
    return geom.plane is not None and geom.plane.band > WIDE_BAND


def _object_like(geom, f, proto: np.ndarray, near: np.ndarray | None = None) -> np.ndarray:
    """(N,) bool: band points whose feature is closer to ``proto`` than to the support's mean
    feature by BAND_MARGIN (where height cannot tell, the features decide); ``near`` (N,) bool:
    the band points that mean is taken over (default: the whole band)."""
    band = geom.on_plane
    if not band.any() or not _wide_band(geom):
        return np.zeros(len(band), bool)
    ref = band & near if near is not None and (band & near).any() else band
    support = l2_normalize(f[ref].astype(np.float64).mean(axis=0))
    return band & (f @ proto > f @ support + BAND_MARGIN)


def _support_answer(geom, xyz, sims, seed: int, threshold: float | None) -> tuple[np.ndarray, float, str]:
    """(indices, effective threshold, SUPPORT): the support-plane points (and below it) connected to
    ``seed``; on a wide band (sparse, noisy stereo clouds) they link across gaps of up to
    SUPPORT_LINK_FACTOR graph radii. (The band points that look like the click look like the
    support: none is left out.)"""
    support = ~geom.above
    if threshold is not None:
        support &= sims >= threshold
    if not support[seed]:
        raise QueryError('the point on the support plane does not reach the similarity threshold',
                         reason='below_threshold')
    if _wide_band(geom):
        members = np.flatnonzero(support)
        _, comp = _components(xyz, members, SUPPORT_LINK_FACTOR * geom.radius)
        out = members[comp == comp[np.searchsorted(members, seed)]]
    else:
        out = seed_component(support, geom.pairs, seed)
    return out, float(sims[out].min() if threshold is None else threshold), SUPPORT


def _split_piece(geom, layer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(piece, adjacency) with ``layer`` (indices, a foot layer of one piece) as a new piece that
    is adjacent to the rest of its old piece and to that piece's neighbours."""
    piece = geom.piece.copy()
    old, new = int(piece[layer[0]]), int(piece.max()) + 1
    piece[layer] = new
    adj = geom.adjacency
    linked = np.unique(np.concatenate([adj[adj[:, 0] == old, 1], adj[adj[:, 1] == old, 0], [old]]))
    extra = np.stack([linked, np.full(len(linked), new)], 1)
    return piece, np.concatenate([adj, extra]).astype(np.int64)


def _geometric_answer(geom, xyz, f, sims, seed: int, threshold: float | None,
                      proto: np.ndarray) -> tuple[np.ndarray, float, str]:
    """(indices, effective threshold, kind) of the answer grown from ``seed`` (module docstring);
    ``proto`` (D,) is the query feature and ``sims`` the cloud's similarities to it."""
    n = len(sims)
    start = np.zeros(n, bool)
    piece, adj = geom.piece, geom.adjacency
    rest = -1                                    # the rest of a piece split at a foot layer
    if geom.above[seed]:
        layer = foot_layer(geom, xyz, seed)
        if layer is not None:                    # a thin object against a taller one: split the piece
            rest = int(geom.piece[seed])
            piece, adj = _split_piece(geom, layer)
        start[piece == piece[seed]] = True
    else:
        like = _object_like(geom, f, proto)
        if like[seed]:                           # a seed in the band that looks like an object, not the support
            start[seed] = True
            start[_band_grow(geom, like, start, n)] = True
        if start.sum() < MIN_BAND_OBJECT:
            return _support_answer(geom, xyz, sims, seed, threshold)
    cand = np.flatnonzero(geom.above)
    n_pieces = int(piece[cand].max()) + 1 if len(cand) else 0
    piece_size = np.bincount(piece[cand], minlength=n_pieces)
    piece_sim = np.bincount(piece[cand], weights=sims[cand], minlength=n_pieces) / np.maximum(piece_size, 1)
    if threshold is None:
        s_other = float(np.median(sims[~start])) if (~start).any() else 0.0
        s_self = float(sims[start].mean())
        thr_piece = s_self - PIECE_MARGIN * (s_self - s_other)
    else:
        thr_piece = threshold
    thr_of = np.full(n_pieces, thr_piece)        # (pieces,) the similarity each piece needs to join
    other_objects = geom.above & ~start
    if rest >= 0 and threshold is None and other_objects.any():
        # the rest of a split piece is measured against the other objects, not the whole scene:
        # it joins only when it agrees with the layer as closely as one object's pieces do
        s_objects = float(np.median(sims[other_objects]))
        thr_of[rest] = max(thr_piece, s_self - PIECE_MARGIN * (s_self - s_objects))
    accepted = np.zeros(n_pieces, bool)
    if geom.above[seed]:
        accepted[piece[seed]] = True
    elif n_pieces and len(geom.pairs):          # a band start: the pieces it touches, if similar
        e = geom.pairs
        touch = np.concatenate([piece[e[start[e[:, 0]], 1]], piece[e[start[e[:, 1]], 0]]])
        touch = np.unique(touch[touch >= 0])
        touch = touch[piece_size[touch] >= MIN_TOUCHED_PIECE]
        accepted[touch[piece_sim[touch] >= thr_of[touch]]] = True
        if not accepted.any():                   # band points like each other, but no object's: the support
            return _support_answer(geom, xyz, sims, seed, threshold)
    while len(adj) and accepted.any():
        grow = (accepted[adj[:, 0]] != accepted[adj[:, 1]])
        new = np.unique(np.where(accepted[adj[grow, 0]], adj[grow, 1], adj[grow, 0]))
        new = new[piece_sim[new] >= thr_of[new]]
        if len(new) == 0:
            break
        accepted[new] = True
    inside = start.copy()
    if n_pieces:
        inside[cand[accepted[piece[cand]]]] = True
    if threshold is not None:
        inside &= sims >= threshold
        if not inside[seed]:
            raise QueryError(f'the query point does not reach similarity {threshold:.3f}', reason='below_threshold')
    out = seed_component(inside, geom.pairs, seed)
    region = np.zeros(n, bool)
    region[out] = True
    near = None                                  # band points in a ring around the answer, beyond its own base
    if CLAIM_RING > 0 and _wide_band(geom) and geom.on_plane.any():
        band = np.flatnonzero(geom.on_plane)
        d, _ = cKDTree(xyz[out]).query(xyz[band], distance_upper_bound=CLAIM_RING)
        near = np.zeros(n, bool)
        near[band[np.isfinite(d) & (d > geom.radius)]] = True
    claims = _band_grow(geom, _object_like(geom, f, l2_normalize(f[out].astype(np.float64).mean(axis=0)), near),
                        region, BAND_HOPS)
    if threshold is not None:
        claims = claims[sims[claims] >= threshold]
    out = np.union1d(out, claims)
    return out, float(sims[out].min() if threshold is None else threshold), OBJECT


def query_by_point(cloud_xyz, cloud_features, point, threshold: float | None = None,
                   radius: float | None = None, seed_radius: float | None = None,
                   max_distance: float | None = None, name: str | None = None, geometry=None,
                   max_share: float | None = MAX_ANSWER_SHARE,
                   min_spread: float | None = MIN_SIMILARITY_SPREAD) -> QueryResult:
    """The object (or support region) under a 3D point (metres, world frame), e.g. an RViz click.

    cloud_xyz (N, 3) metres, cloud_features (N, D).
    geometry:     the cloud's ``CloudGeometry`` (support plane, pieces): answers respect it (see
                  the module docstring); None = feature-only query.
    radius:       connectivity radius, metres; default the geometry's, else 2.5 x median
                  nearest-neighbour spacing.
    seed_radius:  the query feature is the normalised mean feature of the cloud points within
                  this distance of ``point`` (default ``radius``; with geometry only points of
                  the seed's kind, above or on the plane), or of the nearest point.
    max_distance: QueryError if no cloud point is this close to ``point``
                  (default ``MAX_DISTANCE_FACTOR`` x ``radius``).
    threshold:    cosine similarity in [0, 1]; None = automatic (module docstring).
    max_share, min_spread: the whole-scene guards (module docstring); None disables one.
    Raises QueryError (with ``reason``) if the query cannot be answered; CloudError /
    EmptyCloudError on bad input.
    """
    xyz, f = _inputs(cloud_xyz, cloud_features)
    if geometry is not None and len(geometry) != len(xyz):
        raise CloudError(f'geometry describes {len(geometry)} points, the cloud has {len(xyz)}')
    p = check_point(point).astype(np.float32)
    if radius is None:
        radius = geometry.radius if geometry is not None else default_radius(xyz, cKDTree(xyz))
    radius = check_positive(radius, 'radius', MAX_RADIUS)
    seed_radius = radius if seed_radius is None else check_positive(seed_radius, 'seed_radius', MAX_RADIUS)
    max_distance = (MAX_DISTANCE_FACTOR * radius if max_distance is None
                    else check_positive(max_distance, 'max_distance'))
    d2 = np.einsum('ij,ij->i', xyz - p, xyz - p)
    nearest = int(np.argmin(d2))
    dmin = float(np.sqrt(d2[nearest]))
    if dmin > max_distance:
        raise QueryError(f'query point is {dmin:.3f} m from the cloud (max {max_distance:.3f} m)', reason='far')
    near = np.flatnonzero(d2 <= seed_radius ** 2)
    if geometry is not None:
        near = near[geometry.above[near] == geometry.above[nearest]]
    if len(near) == 0:
        near = np.array([nearest])
    seed_feature = l2_normalize(f[near].astype(np.float64).mean(axis=0))
    sims = cosine_similarity(f, seed_feature)
    check_spread(sims, min_spread)
    if threshold is not None:
        threshold = check_threshold(threshold)
    if geometry is not None:
        members, thr, kind = _geometric_answer(geometry, xyz, f, sims, nearest, threshold, seed_feature)
        return _result(xyz, f, sims, members, thr, radius, name=name, seed_index=nearest, kind=kind,
                       max_share=max_share)
    thr = _threshold(sims, threshold)
    ok_near = near[sims[near] >= thr]
    if len(ok_near) == 0:
        raise QueryError(f'no point near the query point reaches similarity {thr:.3f} '
                         f'(best {float(sims[near].max()):.3f})', reason='below_threshold')
    seed = int(ok_near[np.argmin(d2[ok_near])])
    members = np.flatnonzero(sims >= thr)
    _, comp = _components(xyz, members, radius)
    seed_comp = comp[np.searchsorted(members, seed)]
    return _result(xyz, f, sims, members[comp == seed_comp], thr, radius, name=name, seed_index=seed,
                   max_share=max_share)


def query_by_prototype(cloud_xyz, cloud_features, prototype, threshold: float | None = None,
                       radius: float | None = None, name: str | None = None, geometry=None,
                       max_share: float | None = MAX_ANSWER_SHARE,
                       min_spread: float | None = MIN_SIMILARITY_SPREAD) -> QueryResult:
    """The object best matching a saved feature ``prototype`` (D,) (normalised internally).

    Points with cosine similarity >= threshold (None = automatic, ``threshold.auto_threshold``)
    are linked when at most ``radius`` metres apart (with ``geometry``: only points above the
    support plane, not across concave creases); the object is the LARGEST connected component
    (most points; ties broken by higher mean similarity): a real object beats scattered
    look-alike points, and of two instances the better-observed one wins. The whole-scene guards
    (``max_share``, ``min_spread``) apply as for point queries.
    Raises QueryError if no point passes the threshold; CloudError on bad input (including a
    prototype whose dimension differs from the cloud's or whose norm is zero).
    """
    xyz, f = _inputs(cloud_xyz, cloud_features)
    if geometry is not None and len(geometry) != len(xyz):
        raise CloudError(f'geometry describes {len(geometry)} points, the cloud has {len(xyz)}')
    proto = np.asarray(prototype, dtype=np.float64)
    if proto.shape != (f.shape[1],) or not np.all(np.isfinite(proto)):
        raise CloudError(f'prototype must be a finite ({f.shape[1]},) vector, got shape {proto.shape}')
    if np.linalg.norm(proto) < 1e-12:
        raise CloudError('prototype has zero norm')
    if radius is None:
        radius = geometry.radius if geometry is not None else default_radius(xyz, cKDTree(xyz))
    radius = check_positive(radius, 'radius', MAX_RADIUS)
    sims = cosine_similarity(f, l2_normalize(proto))
    check_spread(sims, min_spread)
    allowed = np.ones(len(xyz), bool) if geometry is None else geometry.above
    thr = _threshold(sims[allowed], threshold) if allowed.any() else _threshold(sims, threshold)
    members = np.flatnonzero((sims >= thr) & allowed)
    if len(members) == 0:
        raise QueryError(f'no point reaches similarity {thr:.3f} (best {float(sims.max()):.3f})',
                         reason='below_threshold')
    if geometry is None:
        count, comp = _components(xyz, members, radius)
    else:
        pairs = geometry.pairs
        inside = np.zeros(len(xyz), bool)
        inside[members] = True
        count, comp = subgraph_components(inside, pairs[geometry.piece[pairs[:, 0]] == geometry.piece[pairs[:, 1]]])
    sizes = np.bincount(comp, minlength=count)
    mean_sim = np.bincount(comp, weights=sims[members], minlength=count) / sizes
    best = int(np.lexsort((-mean_sim, -sizes))[0])
    return _result(xyz, f, sims, members[comp == best], thr, radius, name=name, max_share=max_share)
