"""Geometry of a feature cloud that queries respect: the support plane, normals, geometric pieces.

Computed once per cloud (:func:`analyse_geometry`, ~0.1 s for 30k points on one CPU core) and
used by every query on it (``query.py``):

* **support plane** (:func:`fit_support_plane`): RANSAC (open3d ``segment_plane``, seeded) for
  the dominant plane whose normal is within :data:`MAX_TILT_DEG` of ``up`` (world z, REP 103) and
  that holds at least :data:`MIN_SUPPORT_SHARE` of the points, refined by least squares on its
  inliers. Its *band* — the heights that count as "on the plane" — is 3 robust standard
  deviations (1.4826 x MAD) of the heights of the points near it, clamped to
  [:data:`MIN_BAND`, :data:`MAX_BAND`]: about 2 mm on measured depth, wider on noisy stereo depth.
  Height is the signed distance to the plane, positive on the side the cameras look from.
* **normals**: open3d's PCA normals (radius 1.25 x the graph radius, at most 30 neighbours),
  flipped to face the point's viewing direction (``view_dirs``, from the point towards the cameras
  that saw it; without them towards ``up``).
* **pieces**: the points above the band, split where the surface folds *inwards*. A point lies on
  a concave crease when the centroid of its neighbours within :data:`CREASE_RADIUS` x ``radius``
  lies in front of it, along its normal, by more than :data:`CREASE_DEPTH` x that neighbourhood's
  radius (on a flat patch the centroid lies on the
  surface, at a convex edge behind it). Two objects touching, or an object and what it stands on,
  meet at such creases; the faces of one convex object meet at convex edges and stay together.
  The other points above the plane form pieces (connected parts of the radius graph); crease
  points then join the piece of their nearest neighbour that has one. Pieces that touch through
  crease points are listed in ``adjacency``; a query joins them only when their features agree
  (``query.py``). (A per-edge test of the two normals, as in LCCP, left crease bands connected
  wherever PCA normals blur across the crease.)
* **foot layers** (:func:`foot_layer`): a flat object lying against a taller one (a domino
  pushed against a jenga block) is thinner than the crease test can resolve at the cloud's voxel
  size, so both end up in one piece. When a query's seed lies on an upward-facing flat layer of
  its piece (heights within :data:`LAYER_TOLERANCE` of the seed's, normals within
  :data:`LAYER_MAX_TILT_DEG` of the plane normal) that borders the support plane for at least
  :data:`LAYER_SUPPORT_SHARE` of its points, is at most :data:`LAYER_MAX_SHARE` of the piece, and
  the piece rises more than 2 x ``LAYER_TOLERANCE`` above it, that layer is the seed's own piece
  and the rest of the piece is a neighbouring piece that joins the answer only when the features
  agree (``query.py``). The top of a box or a ball never qualifies (nothing of its piece rises
  above it), nor does a tray's floor: its piece borders it from more than
  :data:`LAYER_MAX_ENCLOSURE` of the directions around it (walls all round, a foot has its object
  on one side).

Frames and units: world frame, metres; ``xyz`` (N, 3).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from n3f_ros.core.cloud.graph import radius_pairs, seed_component, subgraph_components
from n3f_ros.core.cloud.validate import check_positive, check_xyz

#: the support plane's normal may be tilted this much from ``up`` (degrees)
MAX_TILT_DEG = 30.0
#: a plane is the support only when at least this share of the cloud lies on it
MIN_SUPPORT_SHARE = 0.15
#: limits of the plane's band (metres): measured depth gives ~MIN_BAND, noisy stereo more
MIN_BAND, MAX_BAND = 0.002, 0.012
#: RANSAC inlier distance (metres) and iterations
RANSAC_DISTANCE, RANSAC_ITERATIONS = 0.005, 400
#: neighbourhood of the crease test (x the graph radius: the crease band must be wider than a graph
#: edge, or the pieces stay linked across it) and the centroid offset that marks a crease (x its radius)
CREASE_RADIUS, CREASE_DEPTH = 2.0, 0.05
#: most neighbours used by the crease test
CREASE_NEIGHBOURS = 48
#: foot layers: height tolerance (metres), largest tilt of their normals from the plane's (degrees),
#: least share of their points with a support-plane neighbour, largest share of their piece
LAYER_TOLERANCE, LAYER_MAX_TILT_DEG, LAYER_SUPPORT_SHARE, LAYER_MAX_SHARE = 0.006, 30.0, 0.25, 0.5
#: a layer its piece borders in more than this share of ENCLOSURE_BINS directions is a floor, not a foot
LAYER_MAX_ENCLOSURE, ENCLOSURE_BINS = 0.5, 12
#: planes tried (each time without the previous one's inliers) before giving up on a support
MAX_PLANES = 3


@dataclass(frozen=True)
class SupportPlane:
    """The plane objects stand on: points with ``|height| <= band`` lie on it.

    normal: (3,) unit vector, pointing to the side objects stand on.
    offset: metres; ``height(x) = normal . x + offset``.
    band:   metres, half-thickness of the plane's inlier band.
    share:  fraction of the cloud within the band.
    """

    normal: np.ndarray
    offset: float
    band: float
    share: float

    def height(self, xyz: np.ndarray) -> np.ndarray:
        """Signed height (N,) float64 of points (N, 3) above the plane, metres."""
        return np.asarray(xyz, dtype=np.float64) @ self.normal + self.offset


def _o3d_cloud(xyz: np.ndarray):
    import open3d as o3d
    return o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(xyz, dtype=np.float64)))


def fit_support_plane(xyz, up=(0.0, 0.0, 1.0), seed: int = 0) -> SupportPlane | None:
    """The support plane of ``xyz`` (N, 3) metres (see the module docstring), or None when no
    plane near-perpendicular to ``up`` holds :data:`MIN_SUPPORT_SHARE` of the points."""
    import open3d as o3d
    xyz = check_xyz(xyz, allow_empty=True).astype(np.float64)
    n = len(xyz)
    if n < 10:
        return None
    up = np.asarray(up, dtype=np.float64)
    up = up / np.linalg.norm(up)
    remaining = np.arange(n)
    for attempt in range(MAX_PLANES):
        if len(remaining) < max(10, MIN_SUPPORT_SHARE * n):
            return None
        o3d.utility.random.seed(int(seed) + attempt)
        _, inl = _o3d_cloud(xyz[remaining]).segment_plane(RANSAC_DISTANCE, 3, RANSAC_ITERATIONS)
        inl = remaining[np.asarray(inl, dtype=np.int64)]
        if len(inl) < 3:
            return None
        c = xyz[inl].mean(axis=0)
        normal = np.linalg.svd(xyz[inl] - c, full_matrices=False)[2][2]
        if normal @ up < 0:
            normal = -normal
        if np.degrees(np.arccos(np.clip(normal @ up, -1.0, 1.0))) <= MAX_TILT_DEG:
            h = (xyz - c) @ normal
            near = np.abs(h) < 2 * RANSAC_DISTANCE
            sigma = 1.4826 * float(np.median(np.abs(h[near]))) if near.any() else MIN_BAND
            band = float(np.clip(3.0 * sigma, MIN_BAND, MAX_BAND))
            share = float(np.mean(np.abs(h) <= band))
            if share >= MIN_SUPPORT_SHARE:
                return SupportPlane(normal, float(-normal @ c), band, share)
        remaining = np.setdiff1d(remaining, inl)
    return None


def estimate_normals(xyz: np.ndarray, radius: float, view_dirs: np.ndarray | None = None,
                     up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Unit normals (N, 3) float64 of points (N, 3), facing ``view_dirs`` (N, 3) (or ``up``)."""
    import open3d as o3d
    if len(xyz) == 0:
        return np.zeros((0, 3))
    pcd = _o3d_cloud(xyz)
    pcd.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=1.25 * radius, max_nn=30))
    nrm = np.asarray(pcd.normals).copy()
    ref = np.broadcast_to(np.asarray(up, dtype=np.float64), nrm.shape) if view_dirs is None else view_dirs
    nrm[np.einsum('ij,ij->i', nrm, ref) < 0] *= -1.0
    return nrm


def concavity(xyz: np.ndarray, normals: np.ndarray, radius: float) -> np.ndarray:
    """(N,) metres: how far the centroid of each point's neighbours within ``radius`` (at most
    :data:`CREASE_NEIGHBOURS`, the point included) lies in front of it along its normal (> 0: a
    concave fold)."""
    from scipy.spatial import cKDTree
    if len(xyz) == 0:
        return np.zeros(0)
    k = min(CREASE_NEIGHBOURS, len(xyz))
    d, j = cKDTree(xyz).query(xyz, k=k, distance_upper_bound=radius)
    ok = np.isfinite(d)
    jj = np.where(ok, j, 0)
    cent = (xyz[jj] * ok[..., None]).sum(1) / ok.sum(1, keepdims=True)
    return np.einsum('ij,ij->i', cent - xyz, normals)


def _attach(piece: np.ndarray, todo: np.ndarray, xyz: np.ndarray, pairs: np.ndarray, rounds: int = 8) -> np.ndarray:
    """Points in ``todo`` (bool) take the piece of their nearest graph neighbour that has one,
    repeated so bands wider than one edge fill in."""
    piece = piece.copy()
    for _ in range(rounds):
        need = todo & (piece < 0)
        if not need.any() or len(pairs) == 0:
            break
        a = np.concatenate([pairs[:, 0], pairs[:, 1]])
        b = np.concatenate([pairs[:, 1], pairs[:, 0]])
        sel = need[a] & (piece[b] >= 0)
        if not sel.any():
            break
        a, b = a[sel], b[sel]
        d = np.linalg.norm(xyz[a] - xyz[b], axis=1)
        order = np.lexsort((d, a))
        first = np.ones(len(order), bool)
        first[1:] = a[order][1:] != a[order][:-1]
        piece[a[order][first]] = piece[b[order][first]]
    return piece


@dataclass
class CloudGeometry:
    """Geometry of one cloud (see the module docstring); arrays are indexed like the cloud.

    plane:     the SupportPlane, or None (then every point is an object candidate).
    height:    (N,) float64 metres above the plane (0 without a plane).
    on_plane:  (N,) bool, within the plane's band.
    above:     (N,) bool, object candidates: above the band (all points without a plane).
    normals:   (N, 3) unit normals facing the viewer.
    radius:    metres, the radius graph's linking distance.
    pairs:     (P, 2) int64 radius-graph edges (i < j) between any points.
    piece:     (N,) int64 geometric piece of each candidate (-1 for non-candidates).
    crease:    (N,) bool, candidates on a concave crease (see the module docstring).
    adjacency: (A, 2) int64 pairs of distinct pieces linked by an edge through crease points.
    """

    plane: SupportPlane | None
    height: np.ndarray
    on_plane: np.ndarray
    above: np.ndarray
    normals: np.ndarray
    radius: float
    pairs: np.ndarray
    piece: np.ndarray
    crease: np.ndarray
    adjacency: np.ndarray

    def __len__(self) -> int:
        return len(self.height)


def analyse_geometry(xyz, radius: float, view_dirs=None, up=(0.0, 0.0, 1.0), seed: int = 0) -> CloudGeometry:
    """:class:`CloudGeometry` of ``xyz`` (N, 3) metres; ``radius``: graph linking distance
    (metres, e.g. 2 voxels); ``view_dirs`` (N, 3) optional, towards the cameras that saw each point."""
    xyz = check_xyz(xyz, allow_empty=True).astype(np.float64)
    radius = check_positive(radius, 'radius')
    n = len(xyz)
    if view_dirs is not None:
        view_dirs = np.asarray(view_dirs, dtype=np.float64).reshape(n, 3)
    plane = fit_support_plane(xyz, up, seed)
    height = plane.height(xyz) if plane is not None else np.zeros(n)
    on_plane = np.abs(height) <= plane.band if plane is not None else np.zeros(n, bool)
    above = height > plane.band if plane is not None else np.ones(n, bool)
    normals = estimate_normals(xyz, radius, view_dirs, up)
    pairs = radius_pairs(xyz, radius)
    r_crease = CREASE_RADIUS * radius
    crease = above & (concavity(xyz, normals, r_crease) > CREASE_DEPTH * r_crease)
    core = above & ~crease
    _, comp = subgraph_components(core, pairs)
    piece = np.full(n, -1, np.int64)
    piece[core] = comp
    above_pairs = pairs[above[pairs[:, 0]] & above[pairs[:, 1]]] if len(pairs) else pairs
    piece = _attach(piece, crease, xyz, above_pairs)
    left = above & (piece < 0)                   # crease points with no piece near: their own pieces
    if left.any():
        _, c2 = subgraph_components(left, above_pairs)
        piece[left] = c2 + (piece.max() + 1 if (piece >= 0).any() else 0)
    a, b = piece[above_pairs[:, 0]], piece[above_pairs[:, 1]]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    adjacency = np.unique(np.stack([lo, hi], 1)[lo != hi], axis=0) if len(lo) else np.zeros((0, 2), np.int64)
    return CloudGeometry(plane, height, on_plane, above, normals, float(radius), pairs, piece, crease,
                         adjacency.reshape(-1, 2).astype(np.int64))


def foot_layer(geom: CloudGeometry, xyz: np.ndarray, seed: int) -> np.ndarray | None:
    """Indices (sorted) of the flat foot layer of ``seed``'s piece that ``seed`` (an index of the
    cloud ``xyz`` (N, 3), metres) lies on, or None
    when there is none (module docstring: a thin object lying against a taller one)."""
    if geom.plane is None or not geom.above[seed] or len(geom.pairs) == 0:
        return None
    piece = np.flatnonzero(geom.piece == geom.piece[seed])
    h0 = geom.height[seed]
    if geom.height[piece].max() <= h0 + 2 * LAYER_TOLERANCE:
        return None                                      # nothing of the piece rises above the seed
    cos_max = np.cos(np.radians(LAYER_MAX_TILT_DEG))
    flat = np.zeros(len(geom), bool)
    flat[piece] = ((np.abs(geom.height[piece] - h0) <= LAYER_TOLERANCE)
                   & (geom.normals[piece] @ geom.plane.normal >= cos_max))
    if not flat[seed]:
        return None
    layer = seed_component(flat, geom.pairs, seed)
    if len(layer) < 3 or len(layer) > LAYER_MAX_SHARE * len(piece):
        return None
    in_layer = np.zeros(len(geom), bool)
    in_layer[layer] = True
    a = np.concatenate([geom.pairs[:, 0], geom.pairs[:, 1]])
    b = np.concatenate([geom.pairs[:, 1], geom.pairs[:, 0]])
    touches = np.zeros(len(geom), bool)
    touches[a[in_layer[a] & geom.on_plane[b]]] = True
    if touches[layer].mean() < LAYER_SUPPORT_SHARE:
        return None
    if _enclosure(geom, xyz, layer, in_layer, a, b) > LAYER_MAX_ENCLOSURE:
        return None                                      # a floor (a tray's), not a foot
    return layer


def _enclosure(geom: CloudGeometry, xyz: np.ndarray, layer: np.ndarray, in_layer: np.ndarray,
               a: np.ndarray, b: np.ndarray) -> float:
    """Share of :data:`ENCLOSURE_BINS` directions (around the layer's centre, in the support plane)
    in which the layer's piece borders it: ~1 for a floor enclosed by walls, small for a foot."""
    piece = geom.piece[layer[0]]
    rim = b[in_layer[a] & ~in_layer[b] & (geom.piece[b] == piece)]
    if len(rim) == 0:
        return 0.0
    n = geom.plane.normal
    u = np.cross(n, [1.0, 0.0, 0.0] if abs(n[0]) < 0.9 else [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(n, u)
    d = xyz[rim] - xyz[layer].mean(axis=0)
    ang = np.arctan2(d @ v, d @ u)
    bins = np.floor((ang + np.pi) / (2 * np.pi) * ENCLOSURE_BINS).astype(int) % ENCLOSURE_BINS
    return len(np.unique(bins)) / ENCLOSURE_BINS
