"""Quality benchmark (SPEC §5): does the 3D student beat its 2D teacher, as in N3F?

Scene: a synthetic tabletop (``core.synth``) with ground-truth instance ids. Teacher: the
``SyntheticTeacher`` (noisy, patch-resolution, view-inconsistent features of the true instance).
Training views are the even frames, held-out views the odd frames.

* **3D segmentation mIoU** — on the ground-truth surface points seen by a training view, for
  every object: query the product's ``query_by_point`` at the object's point nearest its top
  centre with the method's own features; IoU of the returned object against ground truth; mean
  over objects. Student features come from the field at the points; teacher features are the
  teacher's map of the first training view that sees the point, back-projected (no fusion).
* **2D retrieval mAP** — for every object, the query feature is taken at the object's centre
  pixel in one held-out view; every pixel of the other held-out views is scored by cosine
  similarity; AP of those scores against the object's ground-truth mask; mean over
  (object, view) pairs. Student: features rendered from the field; teacher: its patch map
  upsampled bilinearly to the same resolution.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from n3f_ros.core.camera import project_points
from n3f_ros.core.cloud import QueryError, average_precision, iou, query_by_point
from n3f_ros.core.mapping import Mapper, MapperConfig
from n3f_ros.core.raster import resize_nearest
from n3f_ros.core.synth import make_sequence
from n3f_ros.core.teacher import SyntheticTeacher


MODES = ('rgbd', 'rgb', 'rgb_colour')


@dataclass
class QualitySettings:
    mode: str = 'rgbd'               # one of MODES: rgb = stereo keyframe depth, rgb_colour = colour alone
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
    map_out: str = ''                # save the trained map here (loadable by the node's ~/load)
    views_png: str = ''              # picture: eval points coloured by teacher vs student feature PCA

    @classmethod
    def quick(cls, **kw) -> 'QualitySettings':
        return cls(**{**dict(frames=32, steps=400, eval_every=100, rays_per_step=512), **kw})


@dataclass
class QualityResult:
    settings: dict
    teacher_miou: float
    teacher_map: float
    student_miou: float = 0.0
    student_map: float = 0.0
    train_seconds: float = 0.0
    curve: list = field(default_factory=list)       # [{steps, train_seconds, student_miou, student_map}]
    per_object: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# features of the two methods
# ---------------------------------------------------------------------------------------------

def _sample_grid(feat_map: torch.Tensor, uv: np.ndarray, size) -> np.ndarray:
    """Bilinear teacher features (N, C) at pixel coords uv (N, 2) of an image of ``size`` (W, H)."""
    W, H = size
    g = torch.as_tensor(np.stack([2 * uv[:, 0] / W - 1, 2 * uv[:, 1] / H - 1], 1), dtype=torch.float32)
    fm = feat_map.permute(2, 0, 1)[None].float().cpu()                        # (1, C, h, w)
    out = F.grid_sample(fm, g[None, None], mode='bilinear', padding_mode='border', align_corners=False)
    return F.normalize(out[0, :, 0].T, dim=-1).numpy()


def teacher_point_features(points, frames, teacher_maps, tol=0.01):
    """Back-projected teacher features: per point, the first frame that sees it (depth test).

    Returns features (N, C) and a visibility mask (N,).
    """
    n = len(points)
    feats = np.zeros((n, teacher_maps[0].shape[-1]), np.float32)
    seen = np.zeros(n, bool)
    for fr, fm in zip(frames, teacher_maps):
        todo = np.flatnonzero(~seen)
        if len(todo) == 0:
            break
        uv, z = project_points(points[todo], fr.camera, fr.T_world_cam)
        W, H = fr.size
        ok = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
        ui, vi = uv[ok, 0].astype(int), uv[ok, 1].astype(int)
        vis = np.abs(fr.depth[vi, ui] - z[ok]) < tol
        idx = todo[ok][vis]
        feats[idx] = _sample_grid(fm, uv[ok][vis], fr.size)
        seen[idx] = True
    return feats, seen


def _object_seed_points(points, labels, object_ids):
    """Per object: the ground-truth point nearest the top centre of its points."""
    seeds = {}
    for k in object_ids:
        p = points[labels == k]
        if len(p) < 10:
            continue
        top = np.array([*np.median(p[:, :2], 0), np.percentile(p[:, 2], 90)])
        seeds[k] = p[np.argmin(np.linalg.norm(p - top, axis=1))]
    return seeds


def segmentation_miou(points, feats, labels, seeds, radius: float) -> tuple[float, dict]:
    """Query-based 3D segmentation: mean IoU over objects (see module doc)."""
    ious = {}
    for k, p in seeds.items():
        try:
            r = query_by_point(points, feats, p, radius=radius)
            pred = np.zeros(len(points), bool)
            pred[r.indices] = True
        except QueryError:
            pred = np.zeros(len(points), bool)
        ious[int(k)] = float(iou(pred, labels == k))
    return float(np.mean(list(ious.values()))) if ious else 0.0, ious


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


# ---------------------------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------------------------

def run_quality(s: QualitySettings, log=print) -> QualityResult:
    if s.mode not in MODES:
        raise ValueError(f'mode must be one of {MODES}, got {s.mode!r}')
    t_start = time.perf_counter()
    seq = make_sequence(s.seed, s.frames, s.width, s.height)
    frames = [seq[i] for i in range(len(seq))]
    train, held = frames[0::2], frames[1::2]
    teacher = SyntheticTeacher(seed=s.seed)
    log(f'scene seed {s.seed}: {len(seq.scene.objects)} objects, {len(train)} training / {len(held)} held-out '
        f'views at {s.width}x{s.height}, mode {s.mode}')

    gt = seq.gt_points(voxel=s.gt_voxel, frame_step=2)                   # seen by training views
    object_ids = [o.instance_id for o in seq.scene.objects]
    teacher_train = [teacher(f) for f in train]
    t_feats, seen = teacher_point_features(gt.xyz.astype(np.float64), train, teacher_train)
    points, labels = gt.xyz[seen], gt.labels[seen]
    t_feats = t_feats[seen]
    seeds = _object_seed_points(points, labels, object_ids)
    teacher_miou, teacher_ious = segmentation_miou(points, t_feats, labels, seeds, 2.5 * s.gt_voxel)

    ew, eh = s.eval_width, int(round(s.height * s.eval_width / s.width))
    held_inst = [resize_nearest(f.instance, ew, eh) for f in held]
    held_teacher = []
    for f in held:
        uv = np.stack(np.meshgrid((np.arange(ew) + 0.5) * s.width / ew, (np.arange(eh) + 0.5) * s.height / eh),
                      -1).reshape(-1, 2)
        held_teacher.append(_sample_grid(teacher(f), uv, f.size).reshape(eh, ew, -1))
    teacher_map = retrieval_map(held_teacher, held_inst, object_ids)
    log(f'teacher: 3D mIoU {teacher_miou:.3f}  2D mAP {teacher_map:.3f}  ({len(points)} eval points)')

    cfg = MapperConfig(teacher_model='synthetic', use_depth=(s.mode == 'rgbd'), stereo_depth=(s.mode == 'rgb'),
                       keyframe_translation=0.0,
                       keyframe_rotation=0.0, max_keyframes=len(train), keyframe_width=s.keyframe_width,
                       rays_per_step=s.rays_per_step, seed=s.seed, bounds_keyframes=len(train))
    if s.mode != 'rgbd':   # no depth: bounds from the ground-truth scene box, as a user would set them
        lo, hi = seq.scene.bounds
        cfg.scene_bounds = tuple(np.concatenate([lo - 0.05, hi + 0.05]).tolist())
    mapper = Mapper(cfg, teacher=teacher)
    for f in train:
        mapper.integrate(f)
    res = QualityResult(asdict(s), teacher_miou, teacher_map, per_object={'teacher': teacher_ious})

    def evaluate():
        feats = mapper.field.query_features(points)
        miou, ious = segmentation_miou(points, feats, labels, seeds, 2.5 * s.gt_voxel)
        imgs = []
        for f in held:
            fi = mapper.render_features(f.camera.scaled(ew, eh), f.T_world_cam).features
            imgs.append(fi)
        mp = retrieval_map(imgs, held_inst, object_ids)
        return miou, mp, ious

    from tqdm import tqdm
    done = 0
    with tqdm(total=s.steps, desc=f'train ({s.mode})', unit='step', disable=None) as bar:
        while done < s.steps:
            n = min(s.eval_every, s.steps - done)
            mapper.train(n)
            done += n
            bar.update(n)
            miou, mp, ious = evaluate()
            res.curve.append({'steps': done, 'train_seconds': mapper.trainer.seconds,
                              'student_miou': miou, 'student_map': mp})
            bar.write(f'  step {done:5d}  train {mapper.trainer.seconds:6.1f} s  student mIoU {miou:.3f}  '
                      f'mAP {mp:.3f}  (loss {mapper.trainer.last.get("loss", float("nan")):.4f})')
    res.student_miou, res.student_map = res.curve[-1]['student_miou'], res.curve[-1]['student_map']
    res.per_object['student'] = ious
    res.train_seconds = mapper.trainer.seconds
    if s.map_out:
        mapper.save(s.map_out)
    if s.views_png:
        save_feature_views(s.views_png, points, t_feats, mapper.field.query_features(points))
    res.settings['total_seconds'] = time.perf_counter() - t_start
    res.settings['device'] = str(mapper.device)
    res.settings['torch_threads'] = torch.get_num_threads()
    return res


def format_table(r: QualityResult) -> str:
    rows = [('method', '3D seg mIoU', '2D retrieval mAP'),
            ('teacher (2D, back-projected)', f'{r.teacher_miou:.3f}', f'{r.teacher_map:.3f}'),
            (f'student (3D field, {r.train_seconds:.0f} s train)', f'{r.student_miou:.3f}', f'{r.student_map:.3f}'),
            ('student - teacher', f'{r.student_miou - r.teacher_miou:+.3f}', f'{r.student_map - r.teacher_map:+.3f}')]
    w = [max(len(row[i]) for row in rows) for i in range(3)]
    return '\n'.join('  '.join(c.ljust(w[i]) for i, c in enumerate(row)) for row in rows)


def save_plot(r: QualityResult, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    t = [c['train_seconds'] for c in r.curve]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for a, key, tk, title in ((ax[0], 'student_miou', r.teacher_miou, '3D segmentation mIoU'),
                              (ax[1], 'student_map', r.teacher_map, '2D retrieval mAP')):
        a.plot(t, [c[key] for c in r.curve], 'o-', label='student (3D field)')
        a.axhline(tk, color='r', ls='--', label='teacher (2D)')
        a.set_xlabel(f'training time [s] ({r.settings.get("device", "cpu")})')
        a.set_title(title)
        a.set_ylim(0, 1)
        a.legend()
    fig.suptitle(f'N3F quality, mode {r.settings["mode"]}, seed {r.settings["seed"]}')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_feature_views(path, points, teacher_feats, student_feats) -> None:
    """Top views of the evaluation points coloured by a shared PCA of teacher / student features."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from n3f_ros.core.cloud import FeaturePCA
    fig, ax = plt.subplots(1, 2, figsize=(10, 5))
    for a, f, title in ((ax[0], teacher_feats, 'teacher (2D, back-projected)'), (ax[1], student_feats, 'student (3D)')):
        col = FeaturePCA().fit(f).colors(f)
        order = np.argsort(points[:, 2])
        a.scatter(points[order, 0], points[order, 1], c=col[order] / 255.0, s=2)
        a.set_title(title)
        a.set_aspect('equal')
        a.axis('off')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_json(r: QualityResult, path: str) -> None:
    with open(path, 'w') as f:
        json.dump(r.to_json(), f, indent=2)
