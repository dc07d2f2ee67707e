"""The map seen from a camera: student features, their PCA colours, and 2D retrieval masks,
computed from a :class:`MapSnapshot` (outside the mapper's lock).

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


def feature_image(view: FeatureView, pca: FeaturePCA) -> np.ndarray:
    """(h, w, 3) uint8 PCA colours of a view (black where invalid)."""
    f = view.features
    img = pca.colors(f.reshape(-1, f.shape[-1])).reshape(*f.shape[:2], 3)
    return np.where(view.valid[..., None], img, 0).astype(np.uint8)


def retrieval_mask(view: FeatureView, result: QueryResult, radius: float, width: int, height: int) -> np.ndarray:
    """2D retrieval: (height, width) bool mask of the queried object in a view.

    A pixel belongs to the object when the surface it sees lies within ``radius`` metres of the
    object's 3D points and its student feature reaches the query's similarity threshold — the 3D
    answer carried into the image — then resized (nearest) to the camera's full size.
    """
    sim = view.features @ np.asarray(result.prototype, dtype=np.float32)
    mask = view.valid & (sim >= result.threshold)
    if mask.any() and len(result.xyz):
        d, _ = cKDTree(result.xyz).query(view.points[mask], distance_upper_bound=radius)
        mask[mask] = np.isfinite(d)
    elif not len(result.xyz):
        mask[:] = False
    return resize_nearest(mask, width, height)
