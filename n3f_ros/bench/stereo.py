"""Stereo benchmark: how good is the RGB-only keyframe depth (core.stereo) against the truth?

A synthetic orbit is fed, without depth, through a keyframe buffer and ``KeyframeStereo`` exactly
as the mapper's worker does (plan / run / apply per new keyframe). Every keyframe's stereo depth
is then compared with the scene's ray-cast depth at the keyframe size:

* ``raw``      — the plane sweep's depth before the consistency check;
* ``filtered`` — the depth the field is trained on (pixels another keyframe agrees with);

each as coverage (share of pixels with a true surface that got a depth), median absolute error,
and the shares within 1 cm, within 2 cm and off by more than 5 cm. Also the seconds per keyframe
(CPU or GPU, as run) and a picture of one keyframe: image, true depth, stereo depth, error.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from n3f_ros.core.frame import Frame
from n3f_ros.core.keyframe_depth import KeyframeStereo
from n3f_ros.core.keyframes import KeyframeBuffer, KeyframeConfig
from n3f_ros.core.scene_bounds import bounds_from_views
from n3f_ros.core.synth import make_sequence
from n3f_ros.bench import results_file


@dataclass
class StereoSettings:
    seed: int = 0
    frames: int = 48                 # orbit frames, all keyframes (7.5 degrees apart at 48)
    width: int = 320                 # rendered frames
    height: int = 240
    keyframe_width: int = 160        # stored keyframes: what the stereo matches (node default)
    device: str = 'cpu'

    @classmethod
    def quick(cls, **kw) -> 'StereoSettings':
        return cls(**{**dict(frames=16), **kw})


def add_without_depth(kb: KeyframeBuffer, frame: Frame) -> int:
    """Store ``frame`` as an RGB-only keyframe (depth dropped; placeholder teacher features, which
    stereo never reads). Returns its slot."""
    return kb.add(Frame(frame.rgb, frame.camera, frame.T_world_cam, frame.stamp), torch.zeros(2, 2, 1))


def triangulate(kb: KeyframeBuffer, ks: KeyframeStereo, slot: int, bounds) -> float | None:
    """The mapper worker's stereo work for the keyframe just stored in ``slot`` (plan, run,
    apply). Returns the seconds the sweep took, or None when there was nothing to do."""
    job = ks.plan(kb, slot, bounds)
    if job is None:
        return None
    t0 = time.perf_counter()
    ks.run(job)
    seconds = time.perf_counter() - t0
    ks.apply(kb, job)
    return seconds


def _errors(depth: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, int]:
    """Absolute errors (metres) where both are known, and the number of true-surface pixels."""
    surf = gt > 0
    known = surf & (depth > 0)
    return np.abs(depth[known] - gt[known]), int(surf.sum())


def _summary(errs: list[np.ndarray], surface: int) -> dict:
    e = np.concatenate(errs) if errs else np.zeros(0)
    if len(e) == 0:
        return {'coverage': 0.0, 'median_m': float('nan'), 'within_1cm': 0.0, 'within_2cm': 0.0, 'over_5cm': 0.0}
    return {'coverage': len(e) / max(surface, 1), 'median_m': float(np.median(e)),
            'within_1cm': float(np.mean(e < 0.01)), 'within_2cm': float(np.mean(e < 0.02)),
            'over_5cm': float(np.mean(e > 0.05))}


def run_stereo(s: StereoSettings, log=print) -> dict:
    seq = make_sequence(s.seed, s.frames, s.width, s.height)
    kb = KeyframeBuffer(KeyframeConfig(max_keyframes=s.frames, min_translation=0.0, min_rotation_deg=0.0,
                                       width=s.keyframe_width), s.device)
    ks = KeyframeStereo()
    bounds = bounds_from_views(seq.poses)
    gts, rgbs, seconds = [], [], []
    from tqdm import tqdm
    for i in tqdm(range(s.frames), desc='stereo keyframes', disable=None):
        f = seq[i]
        slot = add_without_depth(kb, f)
        w, h = kb.size
        gts.append(F.interpolate(torch.as_tensor(f.depth)[None, None], size=(h, w), mode='nearest')[0, 0].numpy())
        rgbs.append(kb.rgb[slot].cpu().numpy())
        t = triangulate(kb, ks, slot, bounds)
        if t is not None:
            seconds.append(t)
    raw, filt, surface = [], [], 0
    for slot, gt in enumerate(gts):
        r = ks.raw_depth(kb, slot)
        e, n = _errors(r.cpu().numpy() if r is not None else np.zeros_like(gt), gt)
        raw.append(e)
        e, _ = _errors(kb.depth[slot].cpu().numpy(), gt)
        filt.append(e)
        surface += n
    res = {'settings': asdict(s), 'keyframes': len(kb), 'size': list(kb.size),
           'seconds_per_keyframe': float(np.median(seconds)) if seconds else float('nan'),
           'raw': _summary(raw, surface), 'filtered': _summary(filt, surface)}
    mid = len(gts) // 2
    res['_views'] = (rgbs[mid], gts[mid], kb.depth[mid].cpu().numpy())
    log(format_table(res))
    return res


def format_table(r: dict) -> str:
    head = f"{'depth':<10}{'coverage':>10}{'median':>10}{'<1 cm':>8}{'<2 cm':>8}{'>5 cm':>8}"
    rows = [head]
    for k in ('raw', 'filtered'):
        m = r[k]
        rows.append(f"{k:<10}{m['coverage']:>10.2f}{100 * m['median_m']:>8.2f}cm{m['within_1cm']:>8.2f}"
                    f"{m['within_2cm']:>8.2f}{m['over_5cm']:>8.2f}")
    rows.append(f"{r['keyframes']} keyframes at {r['size'][0]}x{r['size'][1]}, "
                f"{1e3 * r['seconds_per_keyframe']:.0f} ms per keyframe ({r['settings']['device']})")
    return '\n'.join(rows)


def save_plot(r: dict, path) -> None:
    """One keyframe: image, true depth, stereo depth (the field's supervision), absolute error."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rgb, gt, d = r['_views']
    vmax = float(np.percentile(gt[gt > 0], 99)) if (gt > 0).any() else 1.0
    err = np.where((d > 0) & (gt > 0), np.abs(d - gt), np.nan)
    fig, ax = plt.subplots(1, 4, figsize=(16, 3.4))
    ax[0].imshow(rgb)
    ax[0].set_title('keyframe')
    for a, img, title in ((ax[1], gt, 'ray-cast depth [m]'), (ax[2], np.where(d > 0, d, np.nan),
                                                               'stereo depth (0 = unknown) [m]')):
        im = a.imshow(np.where(img > 0, img, np.nan), vmin=0, vmax=vmax, cmap='viridis')
        a.set_title(title)
        fig.colorbar(im, ax=a, fraction=0.046)
    im = ax[3].imshow(100 * err, vmin=0, vmax=5, cmap='magma')
    ax[3].set_title('|error| [cm]')
    fig.colorbar(im, ax=ax[3], fraction=0.046)
    for a in ax:
        a.axis('off')
    f = r['filtered']
    fig.suptitle(f"stereo keyframe depth, seed {r['settings']['seed']}: coverage {f['coverage']:.2f}, "
                 f"median {100 * f['median_m']:.1f} cm, {f['within_2cm']:.0%} within 2 cm")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def to_json(r: dict) -> dict:
    """The result without its pictures' arrays (keys starting with '_')."""
    return {k: v for k, v in r.items() if not k.startswith('_')}


def write_json(r: dict, path) -> None:
    results_file.write_json(to_json(r), path)
