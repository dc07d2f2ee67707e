"""Contact sheet of a few views of a sequence: colour, depth and instance rows (for docs).

``save_preview(seq, 'docs/pybullet_scene.png')`` (or ``n3f synth --preview PATH``) regenerates
the pictures in the docs. Depth is drawn with a fixed near-to-far colour ramp, instance ids with
a fixed palette (0 nothing = black, 1 table = grey), so sheets of different scenes compare.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: depth colour ramp anchors (near -> far), RGB in [0, 1]
_DEPTH_RAMP = np.array([[0.99, 0.91, 0.14], [0.37, 0.79, 0.38], [0.13, 0.56, 0.55],
                        [0.23, 0.32, 0.55], [0.27, 0.00, 0.33]])


def depth_colours(depth: np.ndarray, near: float, far: float) -> np.ndarray:
    """(H, W) z-depth in metres -> (H, W, 3) uint8; 0 (unknown) is black."""
    d = np.asarray(depth, dtype=np.float64)
    t = np.clip((d - near) / max(far - near, 1e-9), 0.0, 1.0) * (len(_DEPTH_RAMP) - 1)
    k = np.minimum(t.astype(int), len(_DEPTH_RAMP) - 2)
    f = (t - k)[..., None]
    rgb = _DEPTH_RAMP[k] * (1 - f) + _DEPTH_RAMP[k + 1] * f
    rgb[~(d > 0)] = 0.0
    return (rgb * 255 + 0.5).astype(np.uint8)


#: object colours for ids 2, 3, ... (a categorical palette; golden-ratio hues past its end)
_OBJECT_PALETTE = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
                            [140, 86, 75], [227, 119, 194], [188, 189, 34], [23, 190, 207], [255, 255, 255]])


def instance_colours(instance: np.ndarray) -> np.ndarray:
    """(H, W) instance ids -> (H, W, 3) uint8: 0 black, 1 (table) grey, objects a fixed palette."""
    ids = np.asarray(instance, dtype=np.int64)
    n = int(max(ids.max(initial=0), 1)) + 1
    hue = (np.arange(n) * 0.618034) % 1.0
    h6 = hue[:, None] * 6 - np.array([3, 2, 4])
    lut = (np.clip(np.abs(h6) * np.array([1, -1, -1]) + np.array([-1, 2, 2]), 0, 1) * 0.8 + 0.2) * 255
    k = min(n - 2, len(_OBJECT_PALETTE))
    lut[2:2 + k] = _OBJECT_PALETTE[:k]
    lut[0], lut[1] = 0, 110
    return lut[np.clip(ids, 0, n - 1)].astype(np.uint8)


def contact_sheet(seq, views: int = 4, tile_width: int = 240) -> np.ndarray:
    """(3 * h, views * tile_width, 3) uint8: rows colour / depth / instance of ``views`` frames
    spread evenly over ``seq`` (each tile ``tile_width`` wide, aspect of the camera)."""
    if views < 1 or tile_width < 8:
        raise ValueError(f'need views >= 1 and tile_width >= 8, got {views}, {tile_width}')
    idx = np.unique(np.linspace(0, len(seq), int(views), endpoint=False).astype(int))
    frames = [seq[int(i)] for i in idx]
    W, H = frames[0].size
    th = max(1, int(round(tile_width * H / W)))
    valid = np.concatenate([f.depth[f.depth > 0] for f in frames])
    near, far = (np.percentile(valid, [1, 99]) if len(valid) else (0.0, 1.0))
    cols = []
    for f in frames:
        tiles = [Image.fromarray(f.rgb).resize((tile_width, th), Image.BILINEAR),
                 Image.fromarray(depth_colours(f.depth, near, far)).resize((tile_width, th), Image.NEAREST),
                 Image.fromarray(instance_colours(f.instance)).resize((tile_width, th), Image.NEAREST)]
        cols.append(np.concatenate([np.asarray(t) for t in tiles], axis=0))
    return np.concatenate(cols, axis=1)


def save_preview(seq, path, views: int = 4, tile_width: int = 240) -> Path:
    """Write :func:`contact_sheet` to ``path`` as a palette PNG (256 colours keeps it small)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(contact_sheet(seq, views, tile_width))
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
    return out
