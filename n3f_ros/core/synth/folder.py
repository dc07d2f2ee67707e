"""Scene folder: a posed RGB-D(-instance) sequence on disk (format: docs/scene_format.md).

```
OUT/
  camera.json        {"fx", "fy", "cx", "cy", "width", "height"}   pixels
  poses.txt          one line per frame: stamp tx ty tz qx qy qz qw   (TUM order; T_world_cam)
  scene.json         {"format", "version", "seed", "scene", "fps", "depth_scale", "bounds", "objects": [...]}
  rgb/000000.png     8-bit RGB
  depth/000000.png   16-bit, z-depth in millimetres (0 = unknown)      (optional)
  instance/000000.png 16-bit instance ids (0 none, 1 table, 2.. objects) (optional)
```
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from n3f_ros.core.camera import PinholeCamera, pose_from_xyz_quat, pose_to_xyz_quat
from n3f_ros.core.frame import Frame
from n3f_ros.core.synth.scene import SceneObject

FORMAT_NAME = 'n3f_scene_folder'
FORMAT_VERSION = 1
DEPTH_SCALE = 1000.0          # depth PNG units per metre (millimetres)
POSES_HEADER = '# stamp tx ty tz qx qy qz qw  (T_world_cam: OpenCV optical camera in world; s, m)'


class SceneFolderError(ValueError):
    """A scene folder is missing a file or holds malformed data."""


def _name(i: int) -> str:
    return f'{i:06d}.png'


def _write_png(path: Path, img: np.ndarray) -> None:
    if img.dtype == np.uint16:
        # explicit 16-bit grey mode so every Pillow version writes a 16-bit PNG
        im = Image.frombytes('I;16', (img.shape[1], img.shape[0]), img.astype('<u2').tobytes())
    else:
        im = Image.fromarray(img)
    im.save(path)


def depth_to_png16(depth: np.ndarray) -> np.ndarray:
    """(H, W) float z-depth in metres -> (H, W) uint16 millimetres (0 for unknown, clipped at 65.535 m)."""
    d = np.nan_to_num(np.asarray(depth, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    d = np.where(d > 0, d, 0.0)
    return np.clip(np.round(d * DEPTH_SCALE), 0, 65535).astype(np.uint16)


def write_scene_folder(seq, out_dir, depth: bool = True, instance: bool = True,
                       progress: Callable[[Iterable], Iterable] | None = None) -> Path:
    """Write every frame of ``seq`` (a SyntheticSequence, or any sized iterable of Frames with
    ``.camera``) to ``out_dir`` (created; must be empty or absent). ``progress`` wraps the frame
    iterator (e.g. ``tqdm``). Returns the folder path."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f'{out} exists and is not empty')
    for sub in ('rgb',) + (('depth',) if depth else ()) + (('instance',) if instance else ()):
        (out / sub).mkdir(parents=True, exist_ok=True)
    cam = seq.camera
    _write_json(out / 'camera.json', {'fx': cam.fx, 'fy': cam.fy, 'cx': cam.cx, 'cy': cam.cy,
                                      'width': int(cam.width), 'height': int(cam.height)})
    scene = getattr(seq, 'scene', None)
    meta = {'format': FORMAT_NAME, 'version': FORMAT_VERSION, 'seed': getattr(seq, 'seed', None),
            'scene': getattr(scene, 'SOURCE', None), 'fps': getattr(seq, 'fps', None), 'frames': len(seq),
            'depth_scale': DEPTH_SCALE,
            'bounds': [np.asarray(b).tolist() for b in scene.bounds] if scene is not None else None,
            'objects': [o.to_dict() for o in scene.objects] if scene is not None else []}
    _write_json(out / 'scene.json', meta)
    lines = [POSES_HEADER]
    frames = iter(seq) if progress is None else progress(iter(seq))
    for i, f in enumerate(frames):
        _write_png(out / 'rgb' / _name(i), f.rgb)
        if depth and f.depth is not None:
            _write_png(out / 'depth' / _name(i), depth_to_png16(f.depth))
        if instance and f.instance is not None:
            if f.instance.min() < 0 or f.instance.max() > 65535:
                raise SceneFolderError('instance ids must be in 0..65535 for a 16-bit PNG')
            _write_png(out / 'instance' / _name(i), f.instance.astype(np.uint16))
        xyz, q = pose_to_xyz_quat(f.T_world_cam)
        lines.append(' '.join(f'{v:.9f}' for v in [f.stamp, *xyz, *q]))
    _write_text(out / 'poses.txt', '\n'.join(lines) + '\n')
    return out


def _write_json(path: Path, obj) -> None:
    _write_text(path, json.dumps(obj, indent=2) + '\n')


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------

@dataclass
class SceneFolder:
    """A scene folder opened for reading.

    camera:  PinholeCamera of every frame.
    frames:  FolderFrames (len, index, slice, iterate) of core Frames, loaded from disk on access.
    objects: list of SceneObject from scene.json (empty if none).
    meta:    the whole scene.json dict.
    """

    root: Path
    camera: PinholeCamera
    frames: FolderFrames
    objects: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)


class FolderFrames:
    """Lazy list of the folder's frames: ``frames[i]`` reads frame ``i`` (Frame) from disk."""

    def __init__(self, root: Path, camera: PinholeCamera, stamps: list[float], poses: list[np.ndarray],
                 depth_scale: float):
        self.root, self.camera, self.stamps, self.poses = root, camera, stamps, poses
        self.depth_scale = depth_scale

    def __len__(self) -> int:
        return len(self.stamps)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f'frame {i} out of range (folder has {len(self)})')
        rgb = _read_png(self.root / 'rgb' / _name(i))
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=2)
        rgb = np.ascontiguousarray(rgb[..., :3]).astype(np.uint8)
        depth = inst = None
        dpath, ipath = self.root / 'depth' / _name(i), self.root / 'instance' / _name(i)
        if dpath.exists():
            depth = (_read_png(dpath).astype(np.float32) / np.float32(self.depth_scale))
        if ipath.exists():
            inst = _read_png(ipath).astype(np.int32)
        for name, img in (('depth', depth), ('instance', inst)):
            if img is not None and img.shape != rgb.shape[:2]:
                raise SceneFolderError(f'frame {i}: {name} is {img.shape} but rgb is {rgb.shape[:2]}')
        try:
            return Frame(rgb, self.camera, self.poses[i], self.stamps[i], depth, inst)
        except ValueError as exc:
            raise SceneFolderError(f'frame {i}: {exc}') from exc


def _read_png(path: Path) -> np.ndarray:
    if not path.exists():
        raise SceneFolderError(f'missing image {path}')
    with Image.open(path) as im:
        return np.asarray(im)


def read_scene_folder(path) -> SceneFolder:
    """Open a folder written by :func:`write_scene_folder`. Raises SceneFolderError if malformed."""
    root = Path(path)
    if not root.is_dir():
        raise SceneFolderError(f'{root} is not a directory')
    cam_d = _read_json(root / 'camera.json')
    try:
        camera = PinholeCamera(float(cam_d['fx']), float(cam_d['fy']), float(cam_d['cx']), float(cam_d['cy']),
                               int(cam_d['width']), int(cam_d['height']))
    except (KeyError, TypeError, ValueError) as exc:
        raise SceneFolderError(f'{root / "camera.json"}: bad camera ({exc})') from exc
    meta = _read_json(root / 'scene.json') if (root / 'scene.json').exists() else {}
    depth_scale = float(meta.get('depth_scale', DEPTH_SCALE))
    if not (math.isfinite(depth_scale) and depth_scale > 0):
        raise SceneFolderError(f'bad depth_scale {depth_scale}')
    stamps, poses = read_poses(root / 'poses.txt')
    n_rgb = len(list((root / 'rgb').glob('*.png'))) if (root / 'rgb').is_dir() else 0
    if n_rgb != len(stamps):
        raise SceneFolderError(f'{root}: {len(stamps)} poses but {n_rgb} rgb images')
    objects = [SceneObject.from_dict(o) for o in meta.get('objects', [])]
    return SceneFolder(root, camera, FolderFrames(root, camera, stamps, poses, depth_scale), objects, meta)


def read_poses(path: Path) -> tuple[list[float], list[np.ndarray]]:
    """poses.txt -> stamps (seconds) and T_world_cam (4, 4) per frame; '#' lines are comments."""
    if not Path(path).exists():
        raise SceneFolderError(f'missing {path}')
    stamps, poses = [], []
    for k, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        try:
            vals = [float(v) for v in line.split()]
            if len(vals) != 8:
                raise ValueError(f'expected 8 numbers, got {len(vals)}')
            T = pose_from_xyz_quat(vals[1:4], vals[4:8])
        except ValueError as exc:          # GeometryError is a ValueError
            raise SceneFolderError(f'{path}:{k}: {exc}') from exc
        stamps.append(vals[0])
        poses.append(T)
    return stamps, poses


def _read_json(path: Path) -> dict:
    if not path.exists():
        raise SceneFolderError(f'missing {path}')
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SceneFolderError(f'{path}: invalid JSON ({exc})') from exc
    if not isinstance(d, dict):
        raise SceneFolderError(f'{path}: expected a JSON object')
    return d
