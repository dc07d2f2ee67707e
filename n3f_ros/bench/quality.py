"""Quality benchmark (SPEC §5, issue 8 §3): does the 3D student beat its teacher — the teacher seen
from one view *and* the teacher fused over every view — and what does the product answer?

Scene: ``make_sequence(seed, frames, W, H, scene=...)`` (``synth``: open3d shapes, ``pybullet``:
photo-textured pybullet models), with ground-truth instance ids. Teacher: ``dinov2`` (the DINOv2
ViT-S/14 the set-up installs, at 320 px input), ``random`` (random-init ViT-S/16, same seed every
run) or ``synthetic`` (the noisy oracle ``SyntheticTeacher``). Training views are the even frames,
held-out views the odd ones. Mode ``rgbd`` gives the mapper depth, ``rgb`` no depth (keyframe depth
by stereo), ``rgb_colour`` no depth and no stereo.

Three ways to attach teacher features to 3D points are compared on the ground-truth surface points
seen by a training view (``gt_voxel`` voxels). The baselines use the teacher's features **in the
map's feature space** (:func:`map_features`: the mapper's own PCA to ``feature_dim`` and guided
upsampling, as its keyframes store them), so all three differ only in how views are combined; the
fused teacher on the teacher's own features (``fused_teacher_raw_*``: e.g. 384-D DINOv2, bilinear)
is reported beside it, since that is what the earlier versions of this benchmark compared with:

* **single-view teacher** — per point, the teacher's map of the first training view that sees it
  (depth-tested against that view's true depth), bilinear, back-projected (no fusion);
* **fused teacher** — per point, the mean of the teacher's features over *every* training view that
  sees it (same depth test), normalised: what a ConceptFusion-style mapper builds. Implemented here
  on its own (not with the product's fused layer) as a user would. Both baselines use the true
  depth in every mode, so in RGB-only modes they are an upper bound of what could be built;
* **student** — the features, at the points, of the student that answers (``Mapper.student``: the
  field copy with the lowest held-out error, ``core/mapping/best_student.py``).

Metrics, per method (per object in ``per_object``):

* **3D segmentation mIoU, feature-only** (``*_miou``) — ``query_by_point`` without geometry at
  :data:`CLICKS` points of each object (automatic threshold, 2.5-voxel connectivity), per object
  the mean IoU: how well the features alone delineate objects (the N3F measure; issue 8's table).
  The points: the one nearest the object's top centre, and the rest drawn (seeded) among its points
  at least 2 voxels from any other label (``scoring.object_click_points``). One click is not
  enough: with one Otsu threshold and one connected part, an object's IoU is nearly binary
  (~0.8 or ~0.1, leaking into the table), and one object flipping moved the mean by 0.1 between
  evaluations of the same run;
* **threshold-free 3D segmentation, feature-only** — the same queries at every cosine threshold of
  :data:`SWEEP_THRESHOLDS` instead of the automatic one: ``*_sweep_miou`` the IoU averaged over
  the thresholds (per object, then over objects: the area under the IoU-threshold curve), and
  ``*_oracle_miou`` each object at its own best threshold (an upper bound no user gets). The
  automatic threshold's choice weighs on the feature-only mIoU (Otsu floods small objects of a
  blurred teacher); these two say how well the features separate objects whatever threshold is
  picked;
* **3D segmentation mIoU with geometry** (``*_geo_miou``) — the product's query with the support
  plane and pieces of the ground-truth surface (``core.cloud.geometry``), guards off;
* **2D retrieval mAP** (``*_map``) — the feature at an object's centre pixel in one held-out view
  scores every pixel of the other held-out views (cosine), AP against the object's mask, mean over
  (object, view). Single-view teacher: the held-out view's own patch map (2D); fused teacher: the
  fused points seen in the held-out view (the pixel's true-depth surface point's nearest fused
  point within 1.5 voxels); student: features volume-rendered from the field.

And **the product's answer** (``answer_miou``, ``answer_small_miou``, ``answer_table_iou``): the
Mapper's own ``query_point`` at each object's seed on its own cloud (fused layer / student /
combination as it measured, its own geometry and guards), IoU against the cloud points' true labels
(a cloud point takes the label of the ground-truth point within 1.5 voxels, else counts as
background); refused answers count as IoU 0. ``curve`` holds every evaluation (step 0 = after the
keyframes arrived, before training), with the feature source the product used and its held-out
errors. ``monotone`` checks the issue's rule final >= best - 0.03 for the student and the answers.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

from n3f_ros.core.camera import backproject_depth, project_points
from n3f_ros.core.cloud import QueryError, average_precision, iou, query_by_point
from n3f_ros.core.cloud.geometry import analyse_geometry
from n3f_ros.core.mapping import Mapper, MapperConfig
from n3f_ros.core.raster import resize_nearest
from n3f_ros.core.synth import SCENE_SOURCES, GroundTruthPoints, make_sequence
from n3f_ros.core.teacher.upsample import guided_upsample
from n3f_ros.bench import results_file
from n3f_ros.bench.scoring import object_click_points

MODES = ('rgbd', 'rgb', 'rgb_colour')
TEACHERS = ('dinov2', 'random', 'synthetic')
#: the issue's rule for a curve that does not fall late in training
MONOTONE_TOLERANCE = 0.03
#: query points per object of the 3D segmentation metrics (see the module docstring)
CLICKS = 5
#: cosine thresholds of the threshold-free measures (``*_sweep_miou``, ``*_oracle_miou``)
SWEEP_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))          # 0.50 ... 0.95
#: objects whose largest extent is below this are "small" (about one teacher patch at 0.7 m, 320 px)
SMALL_EXTENT = 0.05


@dataclass
class QualitySettings:
    mode: str = 'rgbd'               # one of MODES: rgb = stereo keyframe depth, rgb_colour = colour alone
    teacher: str = 'dinov2'          # one of TEACHERS
    scene: str = 'pybullet'          # one of SCENE_SOURCES
    seed: int = 0
    frames: int = 48                 # total frames (even: training, odd: held out)
    width: int = 320                 # rendered frames (what the teacher sees)
    height: int = 240
    keyframe_width: int = 160        # keyframes are stored (and rays sampled) at this width
    steps: int = 1500                # training steps
    eval_every: int = 250            # steps between evaluations (quality vs time curve)
    rays_per_step: int = 1024
    eval_width: int = 80             # resolution of 2D retrieval
    gt_voxel: float = 0.01           # metres, ground-truth surface sampling
    clicks: int = CLICKS             # query points per object of the features-only / geometry mIoU
    map_out: str = ''                # save the trained map here (loadable by the node's ~/load)
    views_png: str = ''              # picture: PCA of single-view teacher / fused teacher / student features

    @classmethod
    def quick(cls, **kw) -> 'QualitySettings':
        return cls(**{**dict(frames=32, steps=400, eval_every=100, rays_per_step=512), **kw})


@dataclass
class QualityResult:
    settings: dict
    teacher_miou: float
    teacher_map: float
    fused_teacher_miou: float = 0.0
    fused_teacher_map: float = 0.0
    fused_teacher_raw_miou: float = 0.0             # the teacher's own features, bilinear (see map_features)
    fused_teacher_raw_sweep_miou: float = 0.0
    fused_teacher_raw_oracle_miou: float = 0.0
    teacher_geo_miou: float = 0.0
    fused_teacher_geo_miou: float = 0.0
    student_miou: float = 0.0
    student_map: float = 0.0
    student_geo_miou: float = 0.0
    teacher_sweep_miou: float = 0.0                 # threshold-free (module docstring)
    fused_teacher_sweep_miou: float = 0.0
    student_sweep_miou: float = 0.0
    teacher_oracle_miou: float = 0.0
    fused_teacher_oracle_miou: float = 0.0
    student_oracle_miou: float = 0.0
    answer_miou: float = 0.0
    answer_small_miou: float | None = None          # None: the scene has no small object
    answer_table_iou: float = 0.0
    answer_source: str = ''
    train_seconds: float = 0.0
    curve: list = field(default_factory=list)       # one dict per evaluation (see the module docstring)
    per_object: dict = field(default_factory=dict)  # method -> {instance id: IoU}
    objects: dict = field(default_factory=dict)     # instance id -> {name, extent, small}
    monotone: dict = field(default_factory=dict)    # curve key -> {best, final, ok}

    def to_json(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# the teacher and the baselines (the benchmark's own code, independent of the product's fusion)
# ---------------------------------------------------------------------------------------------

def make_bench_teacher(name: str, seed: int, input_width: int):
    """The benchmark's teacher by name (see the module docstring)."""
    from n3f_ros.core.teacher import SyntheticTeacher, make_teacher
    if name == 'synthetic':
        return SyntheticTeacher(seed=seed)
    if name == 'dinov2':
        return make_teacher('vit_small_patch14_dinov2', input_width=input_width)
    if name == 'random':
        return make_teacher('vit_small_patch16_224', random_init=True, input_width=input_width)
    raise ValueError(f'teacher must be one of {TEACHERS}, got {name!r}')


def map_features(raw: torch.Tensor, frame, mapper: Mapper) -> torch.Tensor:
    """A teacher map ``(h, w, C)`` in the map's feature space, as the mapper stores a keyframe's:
    its PCA projection to ``feature_dim``, then guided upsampling (``core/teacher/upsample.py``),
    guided by the frame's true depth in every mode (the baselines' upper bound) -> (h f, w f, D)."""
    feats = mapper.map.projector(raw.to(mapper.device))
    return guided_upsample(feats, frame.rgb, frame.depth, mapper.config.upsample_config).float().cpu()


def _sample_grid(feat_map: torch.Tensor, uv: np.ndarray, size) -> np.ndarray:
    """Bilinear teacher features (N, C) at pixel coords uv (N, 2) of an image of ``size`` (W, H)."""
    W, H = size
    g = torch.as_tensor(np.stack([2 * uv[:, 0] / W - 1, 2 * uv[:, 1] / H - 1], 1), dtype=torch.float32)
    fm = feat_map.permute(2, 0, 1)[None].float().cpu()                        # (1, C, h, w)
    out = F.grid_sample(fm, g[None, None], mode='bilinear', padding_mode='border', align_corners=False)
    return F.normalize(out[0, :, 0].T, dim=-1).numpy()


def _visible(points, fr, tol):
    """Indices of ``points`` (N, 3) the frame sees (in the image, depth within ``tol`` of its true
    depth) and their pixel coordinates (M, 2)."""
    uv, z = project_points(points, fr.camera, fr.T_world_cam)
    W, H = fr.size
    ok = np.flatnonzero((z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H))
    vis = np.abs(fr.depth[uv[ok, 1].astype(int), uv[ok, 0].astype(int)] - z[ok]) < tol
    return ok[vis], uv[ok[vis]]


def teacher_point_features(points, frames, teacher_maps, tol=0.01):
    """Single-view baseline: per point, the teacher features of the first frame that sees it.
    Returns features (N, C) and a visibility mask (N,)."""
    feats = np.zeros((len(points), teacher_maps[0].shape[-1]), np.float32)
    seen = np.zeros(len(points), bool)
    for fr, fm in zip(frames, teacher_maps):
        idx, uv = _visible(points, fr, tol)
        new = ~seen[idx]
        feats[idx[new]] = _sample_grid(fm, uv[new], fr.size)
        seen[idx] = True
    return feats, seen


def fused_point_features(points, frames, teacher_maps, tol=0.01):
    """Fused baseline: per point, the normalised mean of the teacher features of every frame that
    sees it (depth-tested). Returns features (N, C), views per point (N,)."""
    acc = np.zeros((len(points), teacher_maps[0].shape[-1]), np.float64)
    count = np.zeros(len(points), np.int64)
    for fr, fm in zip(frames, teacher_maps):
        idx, uv = _visible(points, fr, tol)
        acc[idx] += _sample_grid(fm, uv, fr.size)
        count[idx] += 1
    norm = np.maximum(np.linalg.norm(acc, axis=1, keepdims=True), 1e-12)
    return (acc / norm).astype(np.float32), count


def view_directions(points, frames, tol=0.01) -> np.ndarray:
    """Unit mean direction (N, 3) from each point towards the training cameras that see it."""
    acc = np.zeros((len(points), 3))
    for fr in frames:
        idx, _ = _visible(points, fr, tol)
        v = fr.T_world_cam[:3, 3] - points[idx]
        acc[idx] += v / np.linalg.norm(v, axis=1, keepdims=True)
    return acc / np.maximum(np.linalg.norm(acc, axis=1, keepdims=True), 1e-12)


def fused_view_features(frame, cam, points, fused, max_dist) -> np.ndarray:
    """Fused-teacher features seen by a held-out ``frame`` at camera ``cam`` (its eval size): each
    pixel's true-depth surface point takes the feature of the nearest fused point within
    ``max_dist`` metres (zero elsewhere). Returns (h, w, C)."""
    depth = resize_nearest(frame.depth, cam.width, cam.height)
    pts, idx = backproject_depth(depth, cam, frame.T_world_cam)
    out = np.zeros((cam.height * cam.width, fused.shape[1]), np.float32)
    d, j = cKDTree(points).query(pts, distance_upper_bound=max_dist)
    ok = np.isfinite(d)
    out[idx[ok]] = fused[j[ok]]
    return out.reshape(cam.height, cam.width, -1)


def table_seed_point(points, labels, clearance: float = 0.1):
    """A table point (label 1) at least ``clearance`` metres from every object point, nearest the
    table centre; None when there is none. (Taken from the product's own cloud, so it is a place
    the map has seen: RGB-only maps have holes on the table.)"""
    table, objs = points[labels == 1], points[labels >= 2]
    if len(table) == 0:
        return None
    if len(objs):
        d, _ = cKDTree(objs).query(table)
        table = table[d >= clearance]
    if len(table) == 0:
        return None
    return table[np.argmin(np.linalg.norm(table[:, :2], axis=1))]


def _click_iou(points, feats, labels, k, p, radius, geometry=None, threshold=None) -> float:
    """IoU with object ``k`` of the query at point ``p`` (guards off; a refusal scores 0)."""
    try:
        r = query_by_point(points, feats, p, threshold=threshold, radius=radius, geometry=geometry,
                           max_share=None, min_spread=None)
        pred = r.mask(len(points))
    except QueryError:
        pred = np.zeros(len(points), bool)
    return float(iou(pred, labels == k))


def segmentation_miou(points, feats, labels, clicks, radius: float, geometry=None) -> tuple[float, dict]:
    """Query-based 3D segmentation (see the module docstring): per object, the mean IoU of the
    queries at its click points (``clicks``: id -> (n, 3) metres, or (3,) for one click); the
    mean over objects and the per-object IoUs."""
    ious = {int(k): float(np.mean([_click_iou(points, feats, labels, k, p, radius, geometry)
                                   for p in np.asarray(ps, dtype=np.float64).reshape(-1, 3)]))
            for k, ps in clicks.items()}
    return float(np.mean(list(ious.values()))) if ious else 0.0, ious


def threshold_sweep(points, feats, labels, clicks, radius: float) -> tuple[float, float]:
    """Threshold-free feature-only segmentation (module docstring): per object the IoU-threshold
    curve over :data:`SWEEP_THRESHOLDS` (mean over its clicks). Returns (sweep mIoU: the curves'
    mean over thresholds and objects, oracle mIoU: the mean over objects of each curve's best)."""
    curves = [np.mean([[_click_iou(points, feats, labels, k, p, radius, threshold=t) for t in SWEEP_THRESHOLDS]
                       for p in np.asarray(ps, dtype=np.float64).reshape(-1, 3)], axis=0)
              for k, ps in clicks.items()]                                   # per object: (T,)
    if not curves:
        return 0.0, 0.0
    return float(np.mean([c.mean() for c in curves])), float(np.mean([c.max() for c in curves]))


def retrieval_map(feature_images, instance_images, object_ids) -> float:
    """2D retrieval mAP over held-out views: feature_images (h, w, D) unit, instance (h, w)."""
    aps = []
    for k in object_ids:
        views = [i for i, inst in enumerate(instance_images) if (inst == k).sum() >= 4]
        if len(views) < 2:
            continue
        q_view = views[0]
        m = instance_images[q_view] == k
        vs, us = np.nonzero(m)
        c = np.array([vs.mean(), us.mean()])
        j = np.argmin(((np.stack([vs, us], 1) - c) ** 2).sum(1))
        q = feature_images[q_view][vs[j], us[j]]
        q = q / max(np.linalg.norm(q), 1e-9)
        for v in views[1:]:
            valid = instance_images[v] > 0
            scores = (feature_images[v] @ q)[valid]
            aps.append(average_precision(scores, (instance_images[v] == k)[valid]))
    return float(np.mean(aps)) if aps else 0.0


def product_answers(mapper: Mapper, gt_xyz, gt_labels, seeds, voxel: float) -> dict:
    """The Mapper's own answers at every object seed (and a table point of its cloud, see
    ``table_seed_point``) on its own cloud, IoU against the cloud points' true labels (see the
    module docstring)."""
    cloud = mapper.cloud(force=True)
    out = {'ious': {int(k): 0.0 for k in seeds}, 'table': 0.0, 'source': '', 'confidence': [], 'refused': {},
           'points': 0}
    if cloud is None or len(cloud) == 0:
        return out
    d, j = cKDTree(gt_xyz).query(cloud.xyz)
    lab = np.where(d <= 1.5 * voxel, gt_labels[j], 0)
    out['source'], out['points'] = cloud.feature_source, len(cloud)
    table_seed = table_seed_point(cloud.xyz, lab)
    for k, p in list(seeds.items()) + ([('table', table_seed)] if table_seed is not None else []):
        try:
            r = mapper.query_point(p)
        except QueryError as e:
            out['refused'][e.reason] = out['refused'].get(e.reason, 0) + 1
            continue
        gt = lab == (1 if k == 'table' else k)
        v = float(iou(r.mask(len(cloud)), gt))
        if k == 'table':
            out['table'] = v
        else:
            out['ious'][int(k)] = v
            out['confidence'].append(r.confidence)
    return out


# ---------------------------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------------------------

def _mean(d: dict, keys=None) -> float | None:
    """Mean of the values (of ``keys``); None when there are none (e.g. a scene without small objects)."""
    vals = [v for k, v in d.items() if keys is None or k in keys]
    return float(np.mean(vals)) if vals else None


def run_quality(s: QualitySettings, log=print) -> QualityResult:
    if s.mode not in MODES:
        raise ValueError(f'mode must be one of {MODES}, got {s.mode!r}')
    if s.scene not in SCENE_SOURCES:
        raise ValueError(f'scene must be one of {SCENE_SOURCES}, got {s.scene!r}')
    t_start = time.perf_counter()
    teacher = make_bench_teacher(s.teacher, s.seed, s.width)
    seq = make_sequence(s.seed, s.frames, s.width, s.height, scene=s.scene)
    frames = [seq[i] for i in range(len(seq))]
    train, held = frames[0::2], frames[1::2]
    log(f'{s.scene} scene seed {s.seed}: {len(seq.scene.objects)} objects, {len(train)} training / {len(held)} '
        f'held-out views at {s.width}x{s.height}, mode {s.mode}, teacher {s.teacher}')

    gt = seq.gt_points(voxel=s.gt_voxel, frame_step=2)                   # seen by training views
    object_ids = [o.instance_id for o in seq.scene.objects]
    objects = {int(o.instance_id): {'name': o.name, 'extent': [float(v) for v in o.extent],
                                    'small': bool(max(o.extent) < SMALL_EXTENT)} for o in seq.scene.objects}
    small = {k for k, o in objects.items() if o['small']}
    cfg = MapperConfig(teacher_model=teacher.name, use_depth=(s.mode == 'rgbd'), stereo_depth=(s.mode == 'rgb'),
                       keyframe_translation=0.0, keyframe_rotation=0.0, max_keyframes=len(train),
                       keyframe_width=s.keyframe_width, rays_per_step=s.rays_per_step, seed=s.seed,
                       bounds_keyframes=len(train), voxel_size=s.gt_voxel,
                       holdout_eval_steps=min(MapperConfig.holdout_eval_steps, s.eval_every))
    if s.mode != 'rgbd':   # no depth: bounds from the ground-truth scene box, as a user would set them
        lo, hi = seq.scene.bounds
        cfg.scene_bounds = tuple(np.concatenate([lo - 0.05, hi + 0.05]).tolist())
    mapper = Mapper(cfg, teacher=teacher)
    for f in train:
        mapper.integrate(f)
    mapper.measure_sources()

    raw_train = [teacher(f).float().cpu() for f in train]
    teacher_train = [map_features(raw, f, mapper) for raw, f in zip(raw_train, train)]
    xyz64 = gt.xyz.astype(np.float64)
    t_feats, seen = teacher_point_features(xyz64, train, teacher_train)
    f_feats, _ = fused_point_features(xyz64, train, teacher_train)
    raw_feats, _ = fused_point_features(xyz64, train, raw_train)
    points, labels = gt.xyz[seen], gt.labels[seen]
    t_feats, f_feats, raw_feats = t_feats[seen], f_feats[seen], raw_feats[seen]
    del raw_train
    radius = 2.5 * s.gt_voxel
    geometry = analyse_geometry(points, 2.0 * s.gt_voxel, view_directions(points.astype(np.float64), train),
                                seed=s.seed)
    truth = GroundTruthPoints(points, labels, gt.rgb[seen])
    clicks = object_click_points(truth, object_ids, s.clicks, seed=s.seed, margin=2 * s.gt_voxel)
    seeds = {k: c[0] for k, c in clicks.items()}                      # the product's answers: top centre
    res = QualityResult(asdict(s), 0.0, 0.0, objects=objects)
    res.teacher_miou, po_t = segmentation_miou(points, t_feats, labels, clicks, radius)
    res.fused_teacher_miou, po_f = segmentation_miou(points, f_feats, labels, clicks, radius)
    res.teacher_geo_miou, po_tg = segmentation_miou(points, t_feats, labels, clicks, radius, geometry)
    res.fused_teacher_geo_miou, po_fg = segmentation_miou(points, f_feats, labels, clicks, radius, geometry)
    res.fused_teacher_raw_miou, po_fr = segmentation_miou(points, raw_feats, labels, clicks, radius)
    res.per_object.update(teacher=po_t, fused_teacher=po_f, teacher_geo=po_tg, fused_teacher_geo=po_fg,
                          fused_teacher_raw=po_fr)
    res.teacher_sweep_miou, res.teacher_oracle_miou = threshold_sweep(points, t_feats, labels, clicks, radius)
    res.fused_teacher_sweep_miou, res.fused_teacher_oracle_miou = threshold_sweep(points, f_feats, labels, clicks,
                                                                                  radius)
    res.fused_teacher_raw_sweep_miou, res.fused_teacher_raw_oracle_miou = threshold_sweep(points, raw_feats, labels,
                                                                                          clicks, radius)

    ew, eh = s.eval_width, int(round(s.height * s.eval_width / s.width))
    held_inst = [resize_nearest(f.instance, ew, eh) for f in held]
    uv = np.stack(np.meshgrid((np.arange(ew) + 0.5) * s.width / ew, (np.arange(eh) + 0.5) * s.height / eh),
                  -1).reshape(-1, 2)
    held_teacher = [_sample_grid(map_features(teacher(f).float().cpu(), f, mapper), uv, f.size).reshape(eh, ew, -1)
                    for f in held]
    res.teacher_map = retrieval_map(held_teacher, held_inst, object_ids)
    held_fused = [fused_view_features(f, f.camera.scaled(ew, eh), points, f_feats, 1.5 * s.gt_voxel) for f in held]
    res.fused_teacher_map = retrieval_map(held_fused, held_inst, object_ids)
    del held_teacher, held_fused
    log(f'single-view teacher: mIoU {res.teacher_miou:.3f} (with geometry {res.teacher_geo_miou:.3f}; '
        f'sweep {res.teacher_sweep_miou:.3f}, best threshold {res.teacher_oracle_miou:.3f})  mAP {res.teacher_map:.3f}')
    log(f'fused teacher:       mIoU {res.fused_teacher_miou:.3f} (with geometry {res.fused_teacher_geo_miou:.3f}; '
        f'sweep {res.fused_teacher_sweep_miou:.3f}, best threshold {res.fused_teacher_oracle_miou:.3f})  '
        f'mAP {res.fused_teacher_map:.3f}   ({len(points)} eval points)')
    log(f'fused raw teacher:   mIoU {res.fused_teacher_raw_miou:.3f} (sweep {res.fused_teacher_raw_sweep_miou:.3f}, '
        f'best threshold {res.fused_teacher_raw_oracle_miou:.3f}; {teacher_train[0].shape[-1]}-D features of the '
        f'map vs the teacher\'s own {raw_feats.shape[1]}-D, bilinear)')

    def evaluate(done: int) -> dict:
        feats = mapper.student.query_features(points)                # the student that answers
        miou, ious = segmentation_miou(points, feats, labels, clicks, radius)
        gmiou, gious = segmentation_miou(points, feats, labels, clicks, radius, geometry)
        sweep, oracle = threshold_sweep(points, feats, labels, clicks, radius)
        imgs = [mapper.render_features(f.camera.scaled(ew, eh), f.T_world_cam).features for f in held]
        mp = retrieval_map(imgs, held_inst, object_ids)
        ans = product_answers(mapper, gt.xyz, gt.labels, seeds, s.gt_voxel)
        st = mapper.stats()
        c = {'steps': done, 'train_seconds': mapper.trainer.seconds, 'student_miou': miou, 'student_geo_miou': gmiou,
             'student_sweep_miou': sweep, 'student_oracle_miou': oracle, 'student_map': mp,
             'answer_miou': _mean(ans['ious']) or 0.0,
             'answer_small_miou': _mean(ans['ious'], small),
             'answer_table_iou': ans['table'], 'answer_source': ans['source'],
             'answer_confidence': float(np.mean(ans['confidence'])) if ans['confidence'] else 0.0,
             'answer_refused': ans['refused'], 'cloud_points': ans['points'],
             'heldout_error_fused': st.get('heldout_error_fused', float('nan')),
             'heldout_error_student': st.get('heldout_error_student', float('nan')),
             'heldout_error_combined': st.get('heldout_error_combined', float('nan')),
             'heldout_error_student_live': st.get('heldout_error_student_live', float('nan')),
             'student_steps': st.get('student_steps', done), 'student_per_object': ious}
        return c, ious, gious, ans['ious']

    from tqdm import tqdm
    done = 0
    c, ious, gious, aious = evaluate(0)
    res.curve.append(c)
    log(f'  step     0  answer mIoU {c["answer_miou"]:.3f} ({c["answer_source"]})')
    with tqdm(total=s.steps, desc=f'train ({s.mode})', unit='step', disable=None) as bar:
        while done < s.steps:
            n = min(s.eval_every, s.steps - done)
            mapper.train(n)
            done += n
            bar.update(n)
            c, ious, gious, aious = evaluate(done)
            res.curve.append(c)
            bar.write(f'  step {done:5d}  train {c["train_seconds"]:6.1f} s  student mIoU {c["student_miou"]:.3f} '
                      f'(geometry {c["student_geo_miou"]:.3f}; sweep {c["student_sweep_miou"]:.3f}, best threshold '
                      f'{c["student_oracle_miou"]:.3f})  mAP {c["student_map"]:.3f}  answer mIoU '
                      f'{c["answer_miou"]:.3f} ({c["answer_source"]}; held-out 1-cos fused '
                      f'{c["heldout_error_fused"]:.4f} student {c["heldout_error_student"]:.4f})')
    last = res.curve[-1]
    res.student_miou, res.student_map, res.student_geo_miou = last['student_miou'], last['student_map'], \
        last['student_geo_miou']
    res.student_sweep_miou, res.student_oracle_miou = last['student_sweep_miou'], last['student_oracle_miou']
    res.answer_miou, res.answer_small_miou, res.answer_table_iou = last['answer_miou'], last['answer_small_miou'], \
        last['answer_table_iou']
    res.answer_source = last['answer_source']
    res.per_object.update(student=ious, student_geo=gious, answer=aious)
    res.train_seconds = mapper.trainer.seconds
    res.monotone = monotone_report(res.curve)
    if s.map_out:
        mapper.save(s.map_out)
    if s.views_png:
        save_feature_views(s.views_png, points, t_feats, f_feats, mapper.student.query_features(points),
                           labels=labels)
    res.settings['total_seconds'] = time.perf_counter() - t_start
    res.settings['device'] = str(mapper.device)
    res.settings['torch_threads'] = torch.get_num_threads()
    res.settings['teacher_provenance'] = dict(getattr(teacher, 'provenance', {}) or {'name': teacher.name})
    return res


def monotone_report(curve: list,
                    keys=('student_miou', 'student_sweep_miou', 'student_geo_miou', 'answer_miou')) -> dict:
    """Per key: best and final value over the curve's trained evaluations (steps > 0) and whether
    final >= best - MONOTONE_TOLERANCE."""
    out = {}
    pts = [c for c in curve if c['steps'] > 0] or curve
    for k in keys:
        vals = [c[k] for c in pts if k in c]
        if vals:
            out[k] = {'best': max(vals), 'final': vals[-1], 'ok': bool(vals[-1] >= max(vals) - MONOTONE_TOLERANCE)}
    return out


def format_table(r: QualityResult) -> str:
    def sweep(a, b) -> str:
        return f'{a:.3f} / {b:.3f}'
    rows = [('method', '3D mIoU (features)', 'sweep / best threshold', '3D mIoU (geometry)', '2D retrieval mAP'),
            ('single-view teacher', f'{r.teacher_miou:.3f}', sweep(r.teacher_sweep_miou, r.teacher_oracle_miou),
             f'{r.teacher_geo_miou:.3f}', f'{r.teacher_map:.3f}'),
            ('fused teacher', f'{r.fused_teacher_miou:.3f}',
             sweep(r.fused_teacher_sweep_miou, r.fused_teacher_oracle_miou), f'{r.fused_teacher_geo_miou:.3f}',
             f'{r.fused_teacher_map:.3f}'),
            (f'student ({r.train_seconds:.0f} s train)', f'{r.student_miou:.3f}',
             sweep(r.student_sweep_miou, r.student_oracle_miou), f'{r.student_geo_miou:.3f}', f'{r.student_map:.3f}'),
            ('student - fused teacher', f'{r.student_miou - r.fused_teacher_miou:+.3f}',
             f'{r.student_sweep_miou - r.fused_teacher_sweep_miou:+.3f} / '
             f'{r.student_oracle_miou - r.fused_teacher_oracle_miou:+.3f}',
             f'{r.student_geo_miou - r.fused_teacher_geo_miou:+.3f}', f'{r.student_map - r.fused_teacher_map:+.3f}'),
            (f'product answers ({r.answer_source})', f'{r.answer_miou:.3f}', '',
             'small ' + ('-' if r.answer_small_miou is None else f'{r.answer_small_miou:.3f}'),
             f'table {r.answer_table_iou:.3f}')]
    w = [max(len(row[i]) for row in rows) for i in range(5)]
    return '\n'.join('  '.join(c.ljust(w[i]) for i, c in enumerate(row)) for row in rows)


def save_plot(r: QualityResult, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    t = [c['train_seconds'] for c in r.curve]
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    panels = ((ax[0], 'student_miou', r.teacher_miou, r.fused_teacher_miou, '3D mIoU, features only'),
              (ax[1], 'student_geo_miou', r.teacher_geo_miou, r.fused_teacher_geo_miou, '3D mIoU, with geometry'),
              (ax[2], 'student_map', r.teacher_map, r.fused_teacher_map, '2D retrieval mAP'))
    for a, key, tk, fk, title in panels:
        a.plot(t, [c[key] for c in r.curve], 'o-', label='student (3D field)')
        a.axhline(tk, color='r', ls='--', label='single-view teacher')
        a.axhline(fk, color='g', ls='--', label='fused teacher')
        if key == 'student_geo_miou':
            a.plot(t, [c['answer_miou'] for c in r.curve], 's-', color='k', label='product answers (own cloud)')
        a.set_xlabel(f'training time [s] ({r.settings.get("device", "cpu")})')
        a.set_title(title)
        a.set_ylim(0, 1)
        a.legend(fontsize=8)
    st = r.settings
    fig.suptitle(f'N3F quality: {st["teacher"]} teacher, {st["scene"]} scene, mode {st["mode"]}, seed {st["seed"]}')
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def save_feature_views(path, points, teacher_feats, fused_feats, student_feats, max_points: int = 15000,
                       labels=None, margin: float = 0.06) -> None:
    """Top views of the evaluation points coloured by a PCA of each method's features (fitted per
    method on all points: the teachers' raw features and the student's live in different spaces);
    with ``labels``, cropped to the objects (instance >= 2) plus ``margin`` metres; at most
    ``max_points`` points (seeded), small enough to commit."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from n3f_ros.core.cloud import FeaturePCA
    fig, ax = plt.subplots(1, 3, figsize=(12, 4.2))
    cols = [FeaturePCA().fit(f).colors(f) for f in (teacher_feats, fused_feats, student_feats)]
    sel = np.arange(len(points))
    if labels is not None and np.any(labels >= 2):
        lo, hi = points[labels >= 2, :2].min(0) - margin, points[labels >= 2, :2].max(0) + margin
        sel = np.flatnonzero(np.all((points[:, :2] >= lo) & (points[:, :2] <= hi), axis=1))
    if len(sel) > max_points:
        sel = np.sort(np.random.default_rng(0).choice(sel, max_points, replace=False))
    points = points[sel]
    order = np.argsort(points[:, 2])
    for a, col, title in ((ax[0], cols[0], 'single-view teacher (back-projected)'),
                          (ax[1], cols[1], 'fused teacher (all training views)'), (ax[2], cols[2], 'student')):
        col = col[sel]
        a.scatter(points[order, 0], points[order, 1], c=col[order] / 255.0, s=5, linewidths=0)
        a.set_title(title)
        a.set_aspect('equal')
        a.axis('off')
    fig.tight_layout()
    import io

    from PIL import Image
    buf = io.BytesIO()
    fig.savefig(buf, dpi=60, format='png')
    plt.close(fig)
    buf.seek(0)
    with Image.open(buf) as im:                      # 256 colours: a third of the bytes, same picture
        im.convert('RGB').quantize(256).save(path, optimize=True)


def write_json(r: QualityResult, path: str) -> None:
    results_file.write_json(r.to_json(), path)
