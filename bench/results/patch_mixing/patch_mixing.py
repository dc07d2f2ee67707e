"""How does a teacher token of a patch straddling an object and the table relate to the area
fractions? Fit token ~ normalize(a * o + (1 - a) * t) (o: mean pure-object token of the view,
t: mean pure-table tokens near the patch) and compare a with the object's area share f.

Run from the repository root (24 views, the teacher at 320 px as the benchmark's):
    python bench/results/patch_mixing/patch_mixing.py {dinov2,synthetic} {pybullet,synth}
"""
import json
import sys

import numpy as np
import torch

from n3f_ros.bench.quality import make_bench_teacher
from n3f_ros.core.synth import make_sequence

teacher_name, scene = sys.argv[1], sys.argv[2]
torch.set_num_threads(2)
seq = make_sequence(0, 48, 320, 240, scene=scene)
teacher = make_bench_teacher(teacher_name, 0, 320)
A = np.linspace(0, 1, 101)
rows = []
for i in range(0, len(seq), 2):
    fr = seq[i]
    tok = teacher(fr).float().cpu().numpy()            # (h, w, C)
    tok /= np.linalg.norm(tok, axis=-1, keepdims=True) + 1e-12
    h, w, _ = tok.shape
    inst = fr.instance
    H, W = inst.shape
    cy = np.minimum((np.arange(H) * h) // H, h - 1)
    cx = np.minimum((np.arange(W) * w) // W, w - 1)
    cell = cy[:, None] * w + cx[None, :]
    ids = np.unique(inst)
    frac = {k: np.bincount(cell.ravel(), weights=(inst == k).ravel().astype(float), minlength=h * w).reshape(h, w)
            / np.bincount(cell.ravel(), minlength=h * w).reshape(h, w) for k in ids}
    if 1 not in frac:
        continue
    table = frac[1]
    for k in ids:
        if k < 2:
            continue
        fo = frac[k]
        pure = fo > 0.9
        if pure.sum() < 1:
            continue
        o = tok[pure].mean(0)
        o /= np.linalg.norm(o)
        ys, xs = np.nonzero((fo > 0.1) & (fo < 0.9) & (fo + table > 0.95))
        for y, x in zip(ys, xs):
            y0, y1, x0, x1 = max(0, y - 3), min(h, y + 4), max(0, x - 3), min(w, x + 4)
            tp = table[y0:y1, x0:x1] > 0.95
            if tp.sum() < 2:
                continue
            t = tok[y0:y1, x0:x1][tp].mean(0)
            t /= np.linalg.norm(t)
            if float(o @ t) > 0.9:                 # object and table indistinguishable here
                continue
            mix = A[:, None] * o[None] + (1 - A[:, None]) * t[None]
            mix /= np.linalg.norm(mix, axis=1, keepdims=True)
            cos = mix @ tok[y, x]
            j = int(np.argmax(cos))
            rows.append((float(fo[y, x]), float(A[j]), float(cos[j]), float(o @ t), int(k)))
rows = np.array(rows)
print(teacher_name, scene, 'mixed patches', len(rows))
bins = [0.1, 0.3, 0.5, 0.7, 0.9]
out = {}
for lo, hi in zip(bins[:-1], bins[1:]):
    m = (rows[:, 0] >= lo) & (rows[:, 0] < hi)
    if m.any():
        print(f'  f in [{lo:.1f},{hi:.1f}): n {m.sum():4d}  mean fitted a {rows[m, 1].mean():.3f}  '
              f'median {np.median(rows[m, 1]):.3f}  (mean f {rows[m, 0].mean():.3f})  '
              f'fit cos {rows[m, 2].mean():.3f}  share a>0.5 {np.mean(rows[m, 1] > 0.5):.2f}')
        out[f'{lo:.1f}-{hi:.1f}'] = dict(
            n=int(m.sum()), mean_f=float(rows[m, 0].mean()), mean_a=float(rows[m, 1].mean()),
            median_a=float(np.median(rows[m, 1])), fit_cos=float(rows[m, 2].mean()),
            share_a_over_half=float(np.mean(rows[m, 1] > 0.5)))
gap, corr = float((rows[:, 1] - rows[:, 0]).mean()), float(np.corrcoef(rows[:, 0], rows[:, 1])[0, 1])
print('  overall mean a - f', gap, 'corr', corr)
json.dump({'teacher': teacher_name, 'scene': scene, 'bins': out, 'mean_a_minus_f': gap, 'corr_f_a': corr,
           'patches': len(rows)},
          open(f'bench/results/patch_mixing/mix_{teacher_name}_{scene}.json', 'w'), indent=1)
