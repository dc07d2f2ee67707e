"""The main job on the embedded default, with pictures: ``n3f demo`` / ``scripts/demo.sh``.

A live session (``bench/live.py``: a photo-textured pybullet tabletop streamed as a rosbag2 over
DDS into ``n3f_node`` with the shipped config and the real teacher, every object queried through
``~/query``, the map saved through ``~/save_map``), then in the output folder:

* ``cloud.ply`` — the node's last ``feature_cloud``: x y z (float32, metres, ``map``), red green
  blue (PCA of the features), label (uint32 segment); ``map.pt`` — the saved map;
* ``cloud_segments.png`` / ``cloud_features.png`` — the cloud from three views coloured by segment
  label / feature PCA;
* ``answers.png`` — each object's answer mask over the node's latest camera image, with its IoU
  against ground truth (3D and 2D);
* ``summary.json`` — teacher and provenance, frames sent / received / integrated / dropped,
  keyframes, training steps, time to the first cloud and to the first right answer, per-object
  IoU, frames/s and steps/s, the query rounds;
* ``node.log``, ``bag/`` — the node's output and the streamed recording.

Refuses to report a random-weights run as the demo (the node must resolve a real teacher).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from n3f_ros.bench.live import LiveError, LiveSettings, run_live

#: one colour per segment label / object (tab20, then repeated)
_PALETTE = np.array([(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                     (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
                     (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
                     (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229)],
                    np.uint8)


def label_colors(labels: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 colour per label (0 = unlabelled: dark grey)."""
    labels = np.asarray(labels, dtype=np.int64)
    out = _PALETTE[(labels - 1) % len(_PALETTE)]
    out[labels == 0] = (60, 60, 60)
    return out


def write_cloud_outputs(cloud_msg, out: Path) -> dict:
    """cloud.ply and the two cloud pictures from a feature_cloud message; returns the file names."""
    from n3f_ros.core.cloud import save_cloud_views_png, write_ply
    from n3f_ros.io.encode import pointcloud2_to_array, unpack_rgb
    arr = pointcloud2_to_array(cloud_msg)
    xyz = np.stack([arr['x'], arr['y'], arr['z']], 1).astype(np.float32)
    rgb, labels = unpack_rgb(arr['rgb']), arr['label'].astype(np.uint32)
    write_ply(out / 'cloud.ply', xyz, rgb, labels)
    n_seg = len(np.unique(labels[labels > 0]))
    save_cloud_views_png(out / 'cloud_segments.png', xyz, label_colors(labels),
                         title=f'feature cloud: {len(xyz)} points, {n_seg} segments (colour = segment)')
    save_cloud_views_png(out / 'cloud_features.png', xyz, rgb,
                         title=f'feature cloud: {len(xyz)} points (colour = PCA of the distilled features)')
    return {'cloud': 'cloud.ply', 'segments_png': 'cloud_segments.png', 'features_png': 'cloud_features.png'}


def save_answers_png(path, frame, masks: dict, final: dict) -> None:
    """The latest image with each object's answer mask, one panel per object, IoUs in the titles."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    ids = sorted(final)
    cols = min(4, max(1, len(ids)))
    rows = (len(ids) + cols - 1) // cols
    fig = Figure(figsize=(3.2 * cols, 2.7 * rows), dpi=80)
    FigureCanvasAgg(fig)
    for i, k in enumerate(ids):
        ax = fig.add_subplot(rows, cols, i + 1)
        img = frame.rgb.astype(np.float32) / 255.0
        m = masks.get(k)
        if m is not None and m.shape == img.shape[:2]:
            img = np.where(m[..., None], 0.45 * img + 0.55 * np.array([1.0, 0.1, 0.1]), 0.6 * img)
        truth = frame.instance == k
        ax.imshow(img)
        if truth.any():
            ax.contour(truth, levels=[0.5], colors=['lime'], linewidths=0.8)
        e = final[k]
        m2 = '' if e.get('mask_iou') is None else f", 2D {e['mask_iou']:.2f}"
        ax.set_title(f"{e['name']} ({k}): 3D IoU {e['iou']:.2f}{m2}", fontsize=7)
        ax.axis('off')
    fig.suptitle('query answers: mask (red) vs ground truth (green outline) on the latest image', fontsize=9)
    fig.tight_layout()
    fig.savefig(os.fspath(path))


def summary_table(res) -> str:
    """A short text table of a demo run."""
    t, c = res.times, res.counts
    rows = [('teacher', f"{res.teacher.get('teacher', '?')} ({res.teacher.get('teacher_source', '?')})"),
            ('frames sent / received / integrated', f"{c.get('frames_sent')} / {c.get('received')} / "
                                                     f"{c.get('integrated')}"),
            ('keyframes, training steps', f"{c.get('keyframes')}, {c.get('train_steps')}"),
            ('first cloud after', f"{t.get('first_cloud', float('nan')):.1f} s"),
            ('mean IoU >= 0.5 after', f"{t['iou_0.5']:.1f} s" if 'iou_0.5' in t else 'not reached'),
            ('mean IoU >= 0.75 after', f"{t['iou_0.75']:.1f} s" if 'iou_0.75' in t else 'not reached'),
            ('frames/s, steps/s', f"{res.rates.get('frames_per_s')}, {res.rates.get('steps_per_s')}")]
    rows += [(f"  {e['name']} ({k})", f"IoU {e['iou']:.2f}" + ('' if e.get('mask_iou') is None else
                                                                f", mask IoU {e['mask_iou']:.2f}")
              + f", {e['points']} points, {e['feature_source'] or '-'}") for k, e in sorted(res.final.items())]
    w = max(len(a) for a, _ in rows)
    return '\n'.join(f'{a.ljust(w)}  {b}' for a, b in rows)


def run_demo(settings: LiveSettings, log=print, allow_random: bool = False):
    """The live session plus the demo outputs in ``settings.out``; returns the LiveResult.
    Raises LiveError (with the reason) on failure, including a random-weights teacher unless
    ``allow_random`` (the toy-size test)."""
    out = Path(settings.out).expanduser()
    res, art = run_live(settings, log)
    if res.teacher.get('teacher_source') in ('random', 'random init') and not allow_random:
        raise LiveError('the node ran with random teacher weights: the demo needs the installed DINOv2 '
                        '(run scripts/setup_env.sh; `n3f weights list` shows what is available)')
    if art.cloud_msg is None or art.cloud_msg.width == 0:
        raise LiveError('the node published no feature_cloud')
    res.files.update(write_cloud_outputs(art.cloud_msg, out))
    if art.last_frame is not None:
        save_answers_png(out / 'answers.png', art.last_frame, art.masks, res.final)
        res.files['answers_png'] = 'answers.png'
    res.files.update(summary='summary.json', node_log='node.log', bag='bag')
    with open(out / 'summary.json', 'w') as f:
        json.dump(res.to_json(), f, indent=2)
    log('\n' + summary_table(res))
    log(f'\n[demo] outputs in {out}: ' + ', '.join(sorted(res.files.values())))
    return res
