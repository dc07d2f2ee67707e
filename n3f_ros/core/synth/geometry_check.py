"""Geometric consistency of a rendered sequence: does depth, pose and instance agree with the scene?

Three independent checks (any scene source; used by ``test/core/test_pybullet_scene.py`` and
``n3f synth --check``):

* **table plane**: on table pixels, the rendered z-depth equals the analytic z-depth of the
  pixel's ray (``core.camera.pixel_rays``) meeting the plane z = 0 (checks depth conversion,
  intrinsics, pixel-centre convention and ``T_world_cam`` at once).
* **two views**: points back-projected from one view lie on the surface back-projected from
  another: nearest-neighbour distances (metres, on the part of view A that view B sees; bounded
  below by the pixel footprint) and the depth residual of A's points reprojected into B (B's
  depth interpolated linearly in 1/z between four pixels of one surface: exact on planes).
* **object centres**: an object's known centre projects onto a pixel of its own instance id,
  unless something nearer covers it.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from n3f_ros.core.camera import backproject_depth, pixel_grid, pixel_rays, project_points
from n3f_ros.core.frame import Frame
from n3f_ros.core.synth.scene import TABLE_ID


def table_plane_error(frame: Frame, margin: int = 2) -> np.ndarray:
    """Absolute z-depth error (M,) in metres on table pixels at least ``margin`` pixels away from
    any other instance, against the ray / plane z = 0 intersection."""
    inst = frame.instance
    W, H = frame.size
    table = inst == TABLE_ID
    keep = table.copy()
    for dy in range(-margin, margin + 1):             # erode: drop pixels near object silhouettes
        for dx in range(-margin, margin + 1):
            keep &= np.roll(np.roll(table, dy, axis=0), dx, axis=1)
    o, d = pixel_rays(frame.camera, frame.T_world_cam, pixel_grid(W, H))   # d: unit camera z
    with np.errstate(divide='ignore', invalid='ignore'):
        z_plane = (-o[:, 2] / d[:, 2]).reshape(H, W)                           # ray parameter = z-depth
    return np.abs(frame.depth[keep].astype(np.float64) - z_plane[keep])


def view_agreement(a: Frame, b: Frame, occlusion_gap: float = 0.01, stride: int = 1) -> np.ndarray:
    """Nearest-neighbour distances (M,) in metres from the points of view ``a`` that view ``b``
    sees (inside its image, not hidden behind a surface more than ``occlusion_gap`` nearer) to
    the points of view ``b``. Empty if the views do not overlap."""
    pa, _ = backproject_depth(a.depth, a.camera, a.T_world_cam, stride=stride)   # (Na, 3) world
    pb, _ = backproject_depth(b.depth, b.camera, b.T_world_cam, stride=1)        # (Nb, 3) world
    if len(pa) == 0 or len(pb) == 0:
        return np.zeros(0)
    uv, z = project_points(pa, b.camera, b.T_world_cam)
    W, H = b.size
    u, v = np.floor(uv[:, 0]).astype(np.int64), np.floor(uv[:, 1]).astype(np.int64)
    inside = (z > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    db = np.zeros(len(pa))
    db[inside] = b.depth[v[inside], u[inside]]
    seen = inside & (db > 0) & (z < db + occlusion_gap)
    if not seen.any():
        return np.zeros(0)
    dist, _ = cKDTree(pb).query(pa[seen])
    return dist


def reprojection_residual(a: Frame, b: Frame, occlusion_gap: float = 0.01, stride: int = 1) -> np.ndarray:
    """|z_a->b - z_b| (M,) in metres: the z-depth in view ``b`` of view ``a``'s back-projected
    points against ``b``'s depth interpolated (in 1/z) at the projected position, where the four
    surrounding pixels of ``b`` hit one instance and lie within ``occlusion_gap`` of each other."""
    pa, idx = backproject_depth(a.depth, a.camera, a.T_world_cam, stride=stride)
    if len(pa) == 0:
        return np.zeros(0)
    uv, z = project_points(pa, b.camera, b.T_world_cam)
    W, H = b.size
    x, y = uv[:, 0] - 0.5, uv[:, 1] - 0.5                  # pixel-centre grid coordinates
    u0, v0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    ok = (z > 0) & (u0 >= 0) & (u0 + 1 < W) & (v0 >= 0) & (v0 + 1 < H)
    u0, v0, x, y, z = u0[ok], v0[ok], x[ok], y[ok], z[ok]
    ida = a.instance.reshape(-1)[idx][ok]
    corners = [(v0, u0), (v0, u0 + 1), (v0 + 1, u0), (v0 + 1, u0 + 1)]
    d = np.stack([b.depth[r, c] for r, c in corners], axis=1).astype(np.float64)      # (M, 4)
    ids = np.stack([b.instance[r, c] for r, c in corners], axis=1)
    same = (np.all(d > 0, axis=1) & np.all(ids == ids[:, :1], axis=1) & (ids[:, 0] == ida)
            & (d.max(axis=1) - d.min(axis=1) < occlusion_gap) & (z < d.min(axis=1) + occlusion_gap))
    if not same.any():
        return np.zeros(0)
    fx, fy = (x - u0)[same], (y - v0)[same]
    w = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], axis=1)
    zb = 1.0 / np.sum(w / d[same], axis=1)
    return np.abs(z[same] - zb)


def centre_hits(frame: Frame, objects) -> dict:
    """Per object (``SceneObject`` with ``center``, ``extent``): True if its centre projects on a
    pixel of its own instance id, False if on another surface at or behind the object, None if
    outside the image or covered by something nearer than the object's near side."""
    out = {}
    W, H = frame.size
    for o in objects:
        uv, z = project_points(np.asarray(o.center)[None], frame.camera, frame.T_world_cam)
        u, v = int(np.floor(uv[0, 0])), int(np.floor(uv[0, 1]))
        if not (z[0] > 0 and 0 <= u < W and 0 <= v < H):
            out[o.instance_id] = None
            continue
        if frame.instance[v, u] == o.instance_id:
            out[o.instance_id] = True
        elif 0 < frame.depth[v, u] < z[0] - 0.5 * max(o.extent):
            out[o.instance_id] = None            # occluded by something in front
        else:
            out[o.instance_id] = False
    return out


def check_sequence(seq, frame_step: int = 4, pair_offset: int = 2) -> dict:
    """All three checks over every ``frame_step``-th frame of ``seq`` (pairs ``i``, ``i +
    pair_offset``). Returns JSON-able numbers: table depth error (median, p99, max; metres),
    two-view distances and depth residuals (median, p90; metres), centre hits (hit / tested)."""
    n = len(seq)
    frames = {}

    def frame(i):
        if i not in frames:
            frames[i] = seq[i]
        return frames[i]

    plane, pair, resid, hits, tested = [], [], [], 0, 0
    for i in range(0, n, frame_step):
        f = frame(i)
        plane.append(table_plane_error(f))
        if n > 1:
            g = frame((i + pair_offset) % n)
            pair.append(view_agreement(f, g, stride=2))
            resid.append(reprojection_residual(f, g, stride=2))
        res = [h for h in centre_hits(f, seq.scene.objects).values() if h is not None]
        hits += sum(res)
        tested += len(res)
    plane = np.concatenate(plane) if plane else np.zeros(0)
    pair = np.concatenate(pair) if pair else np.zeros(0)
    resid = np.concatenate(resid) if resid else np.zeros(0)

    def q(x, p):
        return float(np.percentile(x, p)) if len(x) else float('nan')

    return {'frames_checked': len(range(0, n, frame_step)),
            'table_depth_error_m': {'median': q(plane, 50), 'p99': q(plane, 99),
                                    'max': float(plane.max()) if len(plane) else float('nan'), 'pixels': len(plane)},
            'two_view_distance_m': {'median': q(pair, 50), 'p90': q(pair, 90), 'points': len(pair)},
            'two_view_depth_residual_m': {'median': q(resid, 50), 'p90': q(resid, 90), 'points': len(resid)},
            'centre_hits': {'hit': int(hits), 'tested': int(tested)}}
