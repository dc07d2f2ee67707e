"""The feature cloud of a map: surface points with the best available features, stable PCA colours,
segment labels and the geometry queries respect — computed from a :class:`MapSnapshot`, outside the
mapper's lock.

Points: the fused-teacher layer's voxels (``voxel_size``; every keyframe with measured or stereo
depth fused so far, within its memory bound) — so a cloud exists from the first keyframe with depth,
before the field. When no keyframe had measured depth (RGB-only, stereo), a voxel counts once
:data:`STEREO_MIN_OBSERVATIONS` keyframes triangulated a point in it: a wrong stereo match rarely
repeats in another keyframe (on the pybullet scenes this drops the share of points more than 1.5 cm
from the true surface from ~25 % to ~5 %). Without any depth (RGB-only with ``stereo_depth`` off) the field's rendered
surface, voxel-downsampled. Features: chosen by ``sources.FeatureSources`` from the fused layer's
and the student's features at the points (the fused one where the field has none: before it
exists, outside its bounds). Geometry: ``core.cloud.geometry.analyse_geometry`` (support plane,
normals facing the keyframes that saw each voxel, pieces). Labels: the support plane is one segment,
the points above it are segmented by ``core.cloud.segment``.

:class:`CloudCache` keeps the latest cloud and decides when it is stale (a new keyframe, or
``cloud_refresh_steps`` training steps since it was built). Extraction is serialised by the cache's
own lock; a caller that finds a (possibly stale) cloud while another thread is extracting gets that
cloud at once instead of waiting (queries must stay fast while a cloud is being rebuilt).
"""
from __future__ import annotations

import threading
import time

import numpy as np
import torch

from n3f_ros.core.camera import backproject_depth
from n3f_ros.core.cloud import FeatureCloud, FeaturePCA, segment, voxel_downsample
from n3f_ros.core.cloud.geometry import analyse_geometry
from n3f_ros.core.field.render import render_image
from n3f_ros.core.mapping.config import MapperConfig
from n3f_ros.core.mapping.state import MapSnapshot

#: RGB-only clouds: depth is rendered at this many keyframes (spread over the buffer), this wide
SURFACE_VIEWS, SURFACE_WIDTH = 8, 96
#: rendered pixels count as surface where the opacity exceeds this
SURFACE_OPACITY = 0.5
#: keyframes that must have triangulated a voxel before it enters an RGB-only (stereo) cloud
STEREO_MIN_OBSERVATIONS = 2


def query_radius(config: MapperConfig) -> float:
    """Connectivity radius (metres) of segments and object queries: 2 voxels links a voxel to its
    face and edge neighbours (and most corners) without jumping gaps."""
    return 2.0 * config.voxel_size


def surface_points(snap: MapSnapshot, config: MapperConfig) -> tuple[np.ndarray, np.ndarray]:
    """Surface samples (N, 3) world metres and colours (N, 3) uint8 of the keyframes.

    With depth supervision (measured or stereo): the stored depth back-projected. Colour-only
    fields: depth rendered at up to :data:`SURFACE_VIEWS` spread keyframes where the opacity
    exceeds :data:`SURFACE_OPACITY`.
    """
    if snap.use_depth:
        return snap.depth_points()
    pts, cols = [], []
    k = len(snap.poses)
    slots = np.unique(np.linspace(0, k - 1, min(SURFACE_VIEWS, k)).round().astype(int))
    for s in slots:
        cam = snap.cameras[s]
        r = render_image(snap.field, cam, snap.poses[s], config.render_config,
                         width=min(cam.width, SURFACE_WIDTH), with_features=False)
        d = np.where(r['acc'] > SURFACE_OPACITY, r['depth'], 0.0)
        p, idx = backproject_depth(d, r['camera'], snap.poses[s])
        pts.append(p)
        cols.append(np.clip(r['rgb'].reshape(-1, 3)[idx] * 255, 0, 255).astype(np.uint8))
    return np.concatenate(pts), np.concatenate(cols)


def _segments(xyz: np.ndarray, feats: np.ndarray, geometry, config: MapperConfig) -> np.ndarray:
    """Segment labels (N,) uint32: the support plane (and below it) one segment, the rest by
    ``segment`` (feature clusters split into connected parts); ordered by size as ``segment``."""
    labels = np.zeros(len(xyz), np.uint32)
    above = geometry.above if geometry is not None else np.ones(len(xyz), bool)
    if above.sum() > 1:
        labels[above] = segment(xyz[above], feats[above], n_clusters=config.num_segments,
                                radius=query_radius(config), seed=config.seed)
    elif above.any():
        labels[above] = 1
    if not above.all():
        labels[above & (labels > 0)] += 1          # the plane is the largest part: segment 1
        labels[~above] = 1
    return labels


def extract_cloud(snap: MapSnapshot, config: MapperConfig, pca: FeaturePCA | None
                  ) -> tuple[FeatureCloud, FeaturePCA | None]:
    """The feature cloud of ``snap`` (see the module docstring) coloured by ``pca``, or by a PCA
    fitted on its features when ``pca`` is None. Returns (cloud, the PCA used; None for an empty
    cloud)."""
    field, fused = snap.field, snap.fused
    view = None
    if fused is not None and len(fused):
        p = fused.points()
        keep = p['weight'] >= (1 if snap.measured else STEREO_MIN_OBSERVATIONS)
        if not keep.any():
            return FeatureCloud.empty(fused.dim), pca
        xyz, rgb, f_fused, view = p['xyz'][keep], p['rgb'][keep], p['features'][keep], p['view'][keep]
    elif field is not None:
        pts, cols = surface_points(snap, config)
        inside = field.inside(torch.as_tensor(pts, dtype=torch.float32, device=field.device)).cpu().numpy()
        pts, cols = pts[inside], cols[inside]
        if len(pts) == 0:
            return FeatureCloud.empty(field.config.feature_dim), pca
        xyz, attrs = voxel_downsample(pts.astype(np.float32), config.voxel_size, rgb=cols.astype(np.uint8))
        rgb, f_fused = attrs['rgb'], None
    else:
        return FeatureCloud.empty(1), pca
    f_student = None
    if field is not None:
        inside = field.inside(torch.as_tensor(xyz, dtype=torch.float32, device=field.device)).cpu().numpy()
        f_student = field.query_features(xyz)
        if f_fused is not None and not inside.all():
            f_student[~inside] = f_fused[~inside]       # no student there: the fused feature answers
    sources = snap.sources
    if sources is None:
        feats, source = (f_student, 'student') if f_student is not None else (f_fused, 'fused')
    else:
        feats, source = sources.select(f_fused, f_student)
    if len(xyz) == 0:
        return FeatureCloud.empty(feats.shape[1] if feats is not None else 1), pca
    if pca is None or not pca.fitted or pca.dim != feats.shape[1]:
        pca = FeaturePCA().fit(feats)        # a new object: readers of the old one are unaffected
    geometry = analyse_geometry(xyz, query_radius(config), view, seed=config.seed) if len(xyz) > 1 else None
    labels = _segments(xyz, feats, geometry, config) if len(xyz) > 1 else np.ones(len(xyz), np.uint32)
    return FeatureCloud(xyz.astype(np.float32), rgb, feats, pca.colors(feats), labels, feature_source=source,
                        geometry=geometry), pca


class CloudCache:
    """The latest cloud of a map and its PCA colours (see the module docstring).

    ``pca``: the FeaturePCA of the cloud's colours (saved with the map; replaced, never changed in
    place, when refitted); ``pca_steps``: training steps at its last fit (-1 = never).
    """

    def __init__(self, config: MapperConfig, pca: FeaturePCA | None = None, pca_steps: int = -1):
        self.config = config
        self.pca = pca or FeaturePCA()
        self.pca_steps = pca_steps
        self.cloud: FeatureCloud | None = None
        self.version = (-1, -1, -1)
        self.seconds = float('nan')           # time of the last extraction
        self._lock = threading.Lock()

    def stale(self, version: tuple) -> bool:
        """Rebuild for a new keyframe or fusion, a new feature choice, or ``cloud_refresh_steps``
        training steps (``version``: ``MapState.output_version``)."""
        return (self.cloud is None or version[0] != self.version[0] or version[2] != self.version[2]
                or version[1] - self.version[1] >= self.config.cloud_refresh_steps)

    def get(self, version: tuple, snapshot, force: bool = False) -> FeatureCloud | None:
        """The cloud for map ``version`` (``MapState.output_version``); ``snapshot()`` is called (it takes
        the mapper's lock briefly) only when a rebuild is due. Returns the cached cloud without
        waiting when another thread is rebuilding it (unless ``force``)."""
        if not force and not self.stale(version):
            return self.cloud
        if not self._lock.acquire(blocking=force or self.cloud is None):
            return self.cloud                  # someone else is rebuilding: the last one will do
        try:
            if not force and not self.stale(version):
                return self.cloud
            snap = snapshot()
            if snap is None:
                return None
            t0 = time.perf_counter()
            steps = snap.version[1]
            refit = self.pca_steps < 0 or steps < self.config.pca_fit_steps
            cloud, pca = extract_cloud(snap, self.config, None if refit else self.pca)
            if refit and pca is not None:
                self.pca, self.pca_steps = pca, steps
            self.cloud, self.version = cloud, snap.version
            self.seconds = time.perf_counter() - t0
            return cloud
        finally:
            self._lock.release()
