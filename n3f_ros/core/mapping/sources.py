"""Best available features, measured: the fused-teacher layer, the student, or their combination.

Queries, segments and ``feature_cloud`` read one feature per cloud point. Which one is decided by
measurement, never by time: every ``holdout_every``-th keyframe (insertion counter ``n`` with
``n % holdout_every == holdout_every - 1``) is **held out** of the student's feature loss (its
colour and depth still train the geometry). Every ``holdout_eval_steps`` training steps the
features of up to :data:`MAX_PIXELS` depth pixels of each held-out keyframe are predicted from the
map and compared with that keyframe's own (projected) teacher features, which neither predictor
learnt from:

* **fused**: the voxel's fused feature *without this keyframe's own observation* (leave-one-out:
  ``(S_v - f_kv) / (W_v - 1)``; voxels only this keyframe saw are skipped);
* **student**: the field's feature at the pixel's back-projected 3D point (for the live field and
  for the copy ``best_student`` keeps, on the same pixels: ``measure_fields``);
* **combined**: ``normalize((1 - a) * fused + a * student)`` for ``a`` in :data:`ALPHAS`, the best
  ``a`` on the same pixels (a one-parameter fit on held-out data).

The error of each is the mean ``1 - cos`` over the pixels all of them predict. The source with the
lowest error answers; the current source is kept unless another is better by :data:`SWITCH_MARGIN`
(no flapping between nearly equal ones). Until a held-out keyframe and the field exist, the fused
layer answers (its leave-one-out error is still measured on the latest keyframes). The measured
**agreement** of a source, ``1 - error`` clipped to [0, 1] (the mean cosine with the teacher on
views it did not learn from), scales the ``confidence`` every answer reports.

A map without any depth (colour alone: no measured depth, no stereo) has no fused layer and no
depth pixel to put a point at. There the students are measured by their **volume-rendered**
features at up to :data:`MAX_PIXELS` pixels of each held-out keyframe (the expected feature along
the pixel's ray, deterministic samples) against the keyframe's teacher features: the live field
and the kept copy on the same pixels, so ``best_student`` keeps the better one (early stopping)
in colour-only maps too. The rendered error is used only when no held-out depth pixel could be
measured, never mixed with point errors in one measurement.

Setting ``feature_source`` to ``fused``, ``student`` or ``combined`` forces one (errors are still
measured and reported).
"""
from __future__ import annotations

import collections
from dataclasses import asdict, dataclass

import numpy as np
import torch

from n3f_ros.core.camera import backproject_depth, pixel_rays
from n3f_ros.core.field.render import RenderSettings, render_rays
from n3f_ros.core.mapping.fused import FusedLayer, keyframe_observations, voxel_keys

SOURCES = ('fused', 'student', 'combined')
CHOICES = ('auto',) + SOURCES
#: weights of the student tried for the combined source
ALPHAS = (0.25, 0.5, 0.75)
#: another source replaces the current one only when its held-out error is lower by this much
SWITCH_MARGIN = 0.002
#: pixels per held-out keyframe used for one measurement; keyframes measured when none is held out
MAX_PIXELS, FALLBACK_KEYFRAMES = 2000, 3
#: measurements kept for ``history``
HISTORY = 200


def combine(fused: np.ndarray, student: np.ndarray, alpha: float) -> np.ndarray:
    """Unit rows of ``(1 - alpha) * fused + alpha * student`` (both (N, D) unit)."""
    f = (1.0 - alpha) * fused + alpha * student
    return (f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)).astype(np.float32)


@dataclass
class HeldOutKeyframe:
    """What a measurement needs of one keyframe (copies): depth (h, w) metres, rgb (h, w, 3),
    feat (fh, fw, D) float32 teacher features, camera (scaled to (w, h)), pose T_world_cam, its
    insertion counter ``order`` and whether the student was kept from learning its features."""

    depth: np.ndarray
    rgb: np.ndarray
    feat: np.ndarray
    camera: object
    pose: np.ndarray
    order: int
    held_out: bool


@dataclass
class SourceErrors:
    """One measurement: mean ``1 - cos`` per source (nan when not measurable) on ``pixels`` pixels
    of ``keyframes`` keyframes at ``steps`` training steps; ``alpha`` of the combined source."""

    steps: int
    keyframes: int
    pixels: int
    fused: float
    student: float
    combined: float
    alpha: float


def _bilinear(feat: np.ndarray, u: np.ndarray, v: np.ndarray, w: int, h: int) -> np.ndarray:
    """Features (N, D) of a (fh, fw, D) grid covering a w x h image at pixel coords u, v."""
    fh, fw = feat.shape[:2]
    gx = np.clip(u / w * fw - 0.5, 0, fw - 1)
    gy = np.clip(v / h * fh - 0.5, 0, fh - 1)
    x0, y0 = np.floor(gx).astype(int), np.floor(gy).astype(int)
    x1, y1 = np.minimum(x0 + 1, fw - 1), np.minimum(y0 + 1, fh - 1)
    ax, ay = (gx - x0)[:, None], (gy - y0)[:, None]
    top = feat[y0, x0] * (1 - ax) + feat[y0, x1] * ax
    bot = feat[y1, x0] * (1 - ax) + feat[y1, x1] * ax
    return top * (1 - ay) + bot * ay


def keyframe_samples(kf: HeldOutKeyframe):
    """Depth pixels of a keyframe: world points (N, 3), teacher features (N, D) float32 (not
    normalised: bilinear of unit patch features), colours (N, 3) uint8."""
    pts, idx = backproject_depth(kf.depth, kf.camera, kf.pose)
    h, w = kf.depth.shape
    u, v = idx % w + 0.5, idx // w + 0.5
    feats = _bilinear(kf.feat, u, v, w, h).astype(np.float32)
    rgb = kf.rgb.reshape(-1, 3)[idx]
    return pts, feats, rgb


def rendered_errors(kfs: list[HeldOutKeyframe], fields: list, render: RenderSettings,
                    rng: np.random.Generator) -> tuple[list[np.ndarray], int]:
    """Colour-only measurement (module docstring): per field in ``fields`` the ``1 - cos`` (N,)
    between its volume-rendered feature and the teacher's at up to :data:`MAX_PIXELS` pixels
    of each keyframe in ``kfs`` (the same pixels for every field; a ray that renders nothing
    scores 1). Returns the errors per field and the keyframes used."""
    errs = [[] for _ in fields]
    used = 0
    for kf in kfs:
        h, w = kf.depth.shape
        n = min(MAX_PIXELS, h * w)
        idx = np.sort(rng.choice(h * w, n, replace=False))
        u, v = idx % w + 0.5, idx // w + 0.5
        target = _bilinear(kf.feat, u, v, w, h)
        target = target / np.maximum(np.linalg.norm(target, axis=1, keepdims=True), 1e-12)
        o, d = (torch.as_tensor(a, dtype=torch.float32) for a in pixel_rays(kf.camera, kf.pose, np.stack([u, v], 1)))
        for fld, e in zip(fields, errs):
            with torch.no_grad():
                f = render_rays(fld, o.to(fld.device), d.to(fld.device), render, perturb=False).feat.cpu().numpy()
            f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-6)
            e.append(1.0 - np.einsum('ij,ij->i', f, target))
        used += 1
    return [np.concatenate(e) if e else np.zeros(0) for e in errs], used


def measure_fields(kfs: list[HeldOutKeyframe], fused: FusedLayer | None, fields: list, steps: int,
                   seed: int = 0, render: RenderSettings | None = None) -> list[SourceErrors]:
    """Held-out errors of the sources (see the module docstring), one ``SourceErrors`` per student
    in ``fields`` (copies of fields: e.g. the live one and ``best_student``'s kept copy), all on
    the same pixels (the pixels every field and the fused layer predict) and with the same fused
    error; one with nan student errors when ``fields`` is empty. ``kfs``: the held-out
    keyframes, or (none held out) the latest ones, on which only the fused layer is measured;
    ``fused``: a copy of the layer (None: there is none). ``render``: the render settings of the
    colour-only measurement, used when no depth pixel of a held-out keyframe could be measured
    (None: not done)."""
    rng = np.random.default_rng(seed + steps)
    if any(kf.held_out for kf in kfs):
        kfs = [kf for kf in kfs if kf.held_out]
        students = list(fields)
    else:
        students = []                  # the student learnt these keyframes: not a fair test
    errs_fused, errs_st = [], [[] for _ in students]
    comb = [{a: [] for a in ALPHAS} for _ in students]
    used = 0
    for kf in kfs:
        if fused is None or len(fused) == 0:
            break
        pts, feats, rgb = keyframe_samples(kf)
        if len(pts) == 0:
            continue
        own = keyframe_observations(pts, feats, rgb, kf.pose[:3, 3], fused.voxel_size)
        if len(pts) > MAX_PIXELS:
            sel = rng.choice(len(pts), MAX_PIXELS, replace=False)
            pts, feats = pts[sel], feats[sel]
        target = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
        rows = fused.lookup(pts)
        keys = voxel_keys(pts, fused.voxel_size)
        j = np.minimum(np.searchsorted(own['keys'], keys), len(own['keys']) - 1)
        ok = (rows >= 0) & (own['keys'][j] == keys)
        ok[ok] = fused.weight[rows[ok]] >= 2.0
        for fld in students:
            with torch.no_grad():
                inside = fld.inside(torch.as_tensor(pts, dtype=torch.float32, device=fld.device)).cpu().numpy()
            ok &= inside
        if not ok.any():
            continue
        r = rows[ok]
        loo = fused.feat_sum[r].astype(np.float64) - own['feat'][j[ok]]
        loo = (loo / np.maximum(np.linalg.norm(loo, axis=1, keepdims=True), 1e-12)).astype(np.float32)
        t = target[ok]
        errs_fused.append(1.0 - np.einsum('ij,ij->i', loo, t))
        for fld, e, c in zip(students, errs_st, comb):
            st = fld.query_features(pts[ok])
            e.append(1.0 - np.einsum('ij,ij->i', st, t))
            for a in ALPHAS:
                c[a].append(1.0 - np.einsum('ij,ij->i', combine(loo, st, a), t))
        used += 1
    if not errs_fused and students and render is not None:        # colour alone: rendered features
        rendered, used = rendered_errors(kfs, students, render, rng)
        nan = float('nan')
        return [SourceErrors(int(steps), used, len(e), nan, float(e.mean()) if len(e) else nan, nan, nan)
                for e in rendered]
    mean_fused = float(np.concatenate(errs_fused).mean()) if errs_fused else float('nan')
    pixels = int(sum(len(x) for x in errs_fused))
    out = []
    for e, c in zip(errs_st, comb):
        best_a, best_c = float('nan'), float('nan')
        for a, v in c.items():
            if v:
                m = float(np.concatenate(v).mean())
                if not np.isfinite(best_c) or m < best_c:
                    best_a, best_c = a, m
        student = float(np.concatenate(e).mean()) if e else float('nan')
        out.append(SourceErrors(int(steps), used, pixels, mean_fused, student, best_c, best_a))
    if not out:
        out.append(SourceErrors(int(steps), used, pixels, mean_fused, float('nan'), float('nan'), float('nan')))
    return out


class FeatureSources:
    """The decision (see the module docstring). ``forced``: 'auto' or one of SOURCES."""

    def __init__(self, forced: str = 'auto'):
        if forced not in CHOICES:
            raise ValueError(f'feature_source must be one of {CHOICES}, got {forced!r}')
        self.forced = forced
        self.source = 'fused'
        self.alpha = 0.0
        self.last: SourceErrors | None = None
        self.history: collections.deque = collections.deque(maxlen=HISTORY)
        self.measurements = 0

    def error(self, source: str) -> float:
        if self.last is None:
            return float('nan')
        return getattr(self.last, source)

    def agreement(self, source: str | None = None) -> float:
        """Mean held-out cosine of ``source`` (default: the answering one), clipped to [0, 1]; 0
        before any measurement."""
        e = self.error(source or self.source)
        return float(np.clip(1.0 - e, 0.0, 1.0)) if np.isfinite(e) else 0.0

    def update(self, errors: SourceErrors, student_available: bool) -> str:
        """Record a measurement and choose the answering source. Returns it."""
        self.last = errors
        self.history.append(errors)
        self.measurements += 1
        if self.forced != 'auto':
            self.source = self.forced if (student_available or self.forced == 'fused') else 'fused'
        else:
            cand = {'fused': errors.fused}
            if student_available:
                cand.update(student=errors.student, combined=errors.combined)
            cand = {k: v for k, v in cand.items() if np.isfinite(v)}
            if cand:
                best = min(cand, key=cand.get)
                cur = cand.get(self.source, np.inf)
                if best != self.source and cand[best] < cur - SWITCH_MARGIN:
                    self.source = best
                elif self.source not in cand:
                    self.source = best
        self.alpha = {'fused': 0.0, 'student': 1.0}.get(self.source, errors.alpha if np.isfinite(errors.alpha)
                                                          else 0.5)
        return self.source

    def select(self, fused: np.ndarray | None, student: np.ndarray | None) -> tuple[np.ndarray, str]:
        """The answering features (N, D) from the fused and student features of the same points
        (either may be None: then the other answers) and the name of what answered."""
        src = self.source
        if student is None or src == 'fused' and fused is not None:
            return (fused, 'fused') if fused is not None else (student, 'student')
        if fused is None or src == 'student':
            return student, 'student'
        return combine(fused, student, self.alpha), 'combined'

    def state_dict(self) -> dict:
        return {'forced': self.forced, 'source': self.source, 'alpha': float(self.alpha),
                'last': asdict(self.last) if self.last is not None else {}}

    def load_state(self, state: dict) -> None:
        """Restore the decision (validated: a known source, alpha in [0, 1]); raises ValueError."""
        src, alpha = state.get('source'), state.get('alpha')
        if src not in SOURCES or not isinstance(alpha, float) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f'feature sources: bad state source={str(src)[:20]!r} alpha={alpha!r}')
        self.source, self.alpha = src, alpha
        last = state.get('last') or {}
        if last:
            try:
                self.last = SourceErrors(**{k: type(v)(last[k]) for k, v in asdict(
                    SourceErrors(0, 0, 0, 0.0, 0.0, 0.0, 0.0)).items()})
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f'feature sources: bad last measurement ({e})') from e
