"""The map seen from a camera: student features, their PCA colours, the surface, and 2D retrieval
masks, computed from a :class:`MapSnapshot` (outside the mapper's lock).

Views are ``render_width`` pixels wide at most (the camera scaled, aspect kept). With a depth
image of the camera (z-depth metres, any registered size) the field is read once per pixel at the
back-projected surface point, which keeps masks cheap on a CPU; without one, features and depth
are volume-rendered and a pixel is valid where the opacity exceeds 0.5.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from n3f_ros.core.camera import PinholeCamera, backproject_depth
from n3f_ros.core.cloud import FeaturePCA, QueryResult
from n3f_ros.core.field.render import render_image
from n3f_ros.core.mapping.config import MapperConfig
from n3f_ros.core.mapping.state import MapSnapshot, scaled_camera
from n3f_ros.core.raster import clean_depth, resize_nearest

#: volume-rendered pixels count as seeing a surface where the opacity exceeds this
VIEW_OPACITY = 0.5


@dataclass
class FeatureView:
    """Student features seen from a camera (h, w = the scaled camera's size).

    features: (h, w, D) float32 L2-normalised (with a depth image: 0 where invalid).
    valid:    (h, w) bool, the pixel sees a surface.
    points:   (h, w, 3) float64 world metres of that surface (NaN where invalid).
    camera:   the camera scaled to (w, h).
    """

    features: np.ndarray
    valid: np.ndarray
    points: np.ndarray
    camera: PinholeCamera


def render_features(snap: MapSnapshot, config: MapperConfig, camera: PinholeCamera, T_world_cam,
                    depth: np.ndarray | None = None) -> FeatureView:
    """The student's features seen by ``camera`` at ``T_world_cam`` (see the module docstring)."""
    cam = scaled_camera(camera, config.render_width)
    w, h = cam.width, cam.height
    field = snap.field
    if depth is not None:
        d = clean_depth(resize_nearest(np.asarray(depth, dtype=np.float32), w, h), config.min_depth,
                        config.max_depth)
        pts, idx = backproject_depth(d, cam, T_world_cam)
        feats = np.zeros((h * w, field.config.feature_dim), np.float32)
        feats[idx] = field.query_features(pts)
    else:
        r = render_image(field, cam, T_world_cam, config.render_config)
        d = np.where(r['acc'] > VIEW_OPACITY, r['depth'], 0.0)
        pts, idx = backproject_depth(d, cam, T_world_cam)
        f = r['feat'].reshape(h * w, -1)
        feats = f / np.maximum(np.linalg.norm(f, axis=-1, keepdims=True), 1e-6)
    valid = np.zeros(h * w, bool)
    valid[idx] = True
    points = np.full((h * w, 3), np.nan)
    points[idx] = pts
    return FeatureView(feats.reshape(h, w, -1), valid.reshape(h, w), points.reshape(h, w, 3), cam)


def surface_view(snap: MapSnapshot, config: MapperConfig, camera: PinholeCamera, T_world_cam,
                 depth: np.ndarray | None = None) -> FeatureView | None:
    """The surface seen by ``camera`` without features (``features`` is empty, (h, w, 0)): from
    ``depth`` (z-depth metres, any registered size) when given, else the field's rendered depth;
    None when neither exists."""
    cam = scaled_camera(camera, config.render_width)
    w, h = cam.width, cam.height
    if depth is not None:
        d = clean_depth(resize_nearest(np.asarray(depth, dtype=np.float32), w, h), config.min_depth,
                        config.max_depth)
    elif snap.field is not None:
        r = render_image(snap.field, cam, T_world_cam, config.render_config, with_features=False)
        d = np.where(r['acc'] > VIEW_OPACITY, r['depth'], 0.0)
    else:
        return None
    pts, idx = backproject_depth(d, cam, T_world_cam)
    valid = np.zeros(h * w, bool)
    valid[idx] = True
    points = np.full((h * w, 3), np.nan)
    points[idx] = pts
    return FeatureView(np.zeros((h, w, 0), np.float32), valid.reshape(h, w), points.reshape(h, w, 3), cam)


def feature_image(view: FeatureView, pca: FeaturePCA) -> np.ndarray:
    """(h, w, 3) uint8 PCA colours of a view (black where invalid)."""
    f = view.features
    img = pca.colors(f.reshape(-1, f.shape[-1])).reshape(*f.shape[:2], 3)
    return np.where(view.valid[..., None], img, 0).astype(np.uint8)


def retrieval_mask(view: FeatureView, result: QueryResult, radius: float, width: int, height: int,
                   plane=None) -> np.ndarray:
    """2D retrieval: (height, width) bool mask of the queried object in a view — the 3D answer
    carried into the image, then resized (nearest) to the camera's full size.

    A pixel belongs to the object when the surface it sees lies within ``radius`` metres of the
    answer's 3D points and on the answer's side of the support ``plane`` (object answers: above
    its band; support answers: within it), so the mask never bleeds into the table around an
    object. Without a plane, and when ``view`` has features, the pixel's feature must also reach the
    query's similarity threshold.
    """
    mask = view.valid.copy()
    if not len(result.xyz):
        mask[:] = False
        return resize_nearest(mask, width, height)
    if plane is not None:
        h = np.full(mask.shape, np.nan)
        h[mask] = plane.height(view.points[mask])
        mask &= (h > plane.band) if result.kind != 'support' else (np.abs(h) <= plane.band)
    elif view.features.shape[-1]:
        mask &= view.features @ np.asarray(result.prototype, dtype=np.float32) >= result.threshold
    if mask.any():
        d, _ = cKDTree(result.xyz).query(view.points[mask], distance_upper_bound=radius)
        mask[mask] = np.isfinite(d)
    return resize_nearest(mask, width, height)
