"""The map file's schema: a map as a dict of tensors and plain values, and back — all or nothing.

:func:`encode_map` turns the live map into the dict that ``core/persistence.py`` writes
atomically. :func:`decode_map` builds a complete new map from such a dict and validates every
part of it before anything is returned, so a failed load cannot touch the map in use: keys and
types, tensor dtypes and shapes against the configuration, finite values (field weights, poses,
intrinsics, features), rigid poses within the plausible workspace, sizes against configured limits
(keyframe count and size, bytes), and tensors that really hold their data (no zero-stride or
storage-less views that would expand into gigabytes when copied). Any failure raises
:class:`~n3f_ros.core.persistence.MapFileError` naming the part.

Format history: version 1 (no ``grid_impl``: always the PyTorch grid), version 2 (``grid_impl``),
version 3 (the fused-teacher layer ``fused``, the insertion counters of the keyframes fused into it
``fused_orders``, and the feature choice ``sources``); optional in any version:
``lr_steps_static`` (the trainer's place in its learning-rate schedule, ``Trainer.resume``;
absent: full rate). Version 1 and 2 maps load with a fused layer rebuilt from their keyframes
(those with depth) and the fused layer answering until measured.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from n3f_ros.core.cloud import FeaturePCA
from n3f_ros.core.cloud.errors import CloudError
from n3f_ros.core.field.hashgrid import tcnn_available
from n3f_ros.core.field.model import FeatureField, FieldConfig
from n3f_ros.core.keyframes import KeyframeBuffer
from n3f_ros.core.mapping.config import MapperConfig
from n3f_ros.core.mapping.fused import FusedLayer, FusedLayerError
from n3f_ros.core.mapping.prototypes import PrototypeError, check_name
from n3f_ros.core.mapping.state import MapState, make_keyframe_config
from n3f_ros.core.persistence import MAP_FORMAT, MapFileError
from n3f_ros.core.teacher import FeatureProjector, ProjectorError

VERSION = 3
#: largest keyframe side accepted from a file, pixels (the keyframe_width parameter's range)
MAX_KEYFRAME_SIDE = 1920
#: largest keyframe payload accepted from a file (colour, depth and features), bytes
MAX_KEYFRAME_BYTES = 2 * 1024 ** 3


@dataclass
class DecodedMap:
    """A validated map ready to be swapped in: the state, the cloud colours' PCA (and the training
    step of its last fit), and the prototypes (name -> (D,) float32)."""

    state: MapState
    pca: FeaturePCA
    pca_steps: int
    prototypes: dict


def _copied(obj):
    """``obj`` with every tensor copied to the CPU (the file is written after the lock is released)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to('cpu', copy=True)
    if isinstance(obj, dict):
        return {k: _copied(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_copied(v) for v in obj]
    return obj


def encode_map(state: MapState, pca: FeaturePCA, prototypes: dict) -> dict:
    """The file dict of a map (call under the mapper's lock; every tensor is copied, so the file
    can be written without it)."""
    if state.field is None:
        raise ValueError('nothing to save: the map is empty')
    fld = state.served_field()              # the student that answers (best_student.py)
    return {
        'format': MAP_FORMAT, 'version': VERSION,
        'feature_dim': int(fld.config.feature_dim),
        'field_config': asdict(fld.config),
        'grid_impl': fld.grid_impl,
        'bounds': _copied(fld.bounds),
        'field': _copied(fld.state_dict()),
        'keyframes': _copied(state.keyframes.state_dict()),
        'projector': _copied(state.projector.state_dict()),
        'pca': pca.state_dict(),
        'prototypes': {k: torch.tensor(v) for k, v in prototypes.items()},
        'train_steps': state.train_steps,
        'lr_steps_static': state.trainer.steps_static,
        'use_depth': bool(state.trainer.config.use_depth),
        'measured_depth': bool(state.measured_depth),
        'fused': ({k: (torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else v)
                   for k, v in state.fused.state_dict().items()} if state.fused is not None else {}),
        'fused_orders': torch.tensor(sorted(state.fused_orders), dtype=torch.int64),
        'sources': state.sources.state_dict(),
    }


# ---------------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------------

def _fail(part: str, why: str):
    raise MapFileError(f'invalid map: {part}: {why}')


def _tensor(part: str, t, dtype=None, shape=None, finite=True) -> torch.Tensor:
    """A tensor that holds its own data: dense, no zero stride, storage as large as it claims."""
    if not isinstance(t, torch.Tensor):
        _fail(part, f'expected a tensor, got {type(t).__name__}')
    if t.layout != torch.strided or t.is_quantized:
        _fail(part, 'only dense tensors are accepted')
    if dtype is not None and t.dtype != dtype:
        _fail(part, f'dtype {t.dtype}, expected {dtype}')
    if shape is not None and tuple(t.shape) != tuple(shape):
        _fail(part, f'shape {tuple(t.shape)}, expected {tuple(shape)}')
    if any(st == 0 for st, n in zip(t.stride(), t.shape) if n > 1):
        _fail(part, 'zero-stride view (a broadcast claiming more data than it holds)')
    if t.numel() and t.untyped_storage().nbytes() < (t.storage_offset() + 1) * t.element_size() + sum(
            (n - 1) * st * t.element_size() for n, st in zip(t.shape, t.stride())):
        _fail(part, 'tensor claims more data than its storage holds')
    if finite and t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
        _fail(part, 'NaN or inf values')
    return t


def _int(part: str, v, lo: int = 0, hi: int | None = None) -> int:
    if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.is_floating_point():
        v = int(v.item())
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        _fail(part, f'expected an integer, got {type(v).__name__} {str(v)[:40]!r}')
    v = int(v)
    if v < lo or (hi is not None and v > hi):
        _fail(part, f'{v} outside [{lo}, {hi if hi is not None else "inf"}]')
    return v


def _bool(part: str, v) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        _fail(part, f'expected a bool, got {type(v).__name__}')
    return bool(v)


def _field_config(raw, feature_dim: int) -> FieldConfig:
    if not isinstance(raw, dict):
        _fail('field_config', 'expected a dict')
    known = {f.name for f in fields(FieldConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        _fail('field_config', f'unknown keys {unknown[:5]}')
    try:
        cfg = FieldConfig(**raw)
    except (TypeError, ValueError) as e:
        _fail('field_config', str(e))
    for f in fields(FieldConfig):
        v = getattr(cfg, f.name)
        if f.name == 'grid':
            if not isinstance(v, str):
                _fail('field_config.grid', 'expected a string')
            continue
        _int(f'field_config.{f.name}', v, 1, 1 << 24)
    if cfg.feature_dim != feature_dim:
        _fail('field_config.feature_dim', f'{cfg.feature_dim} != feature_dim {feature_dim}')
    if not (8 <= cfg.geo_log2_table <= 24 and 8 <= cfg.feat_log2_table <= 24):
        _fail('field_config', 'hash table sizes must be 2^8 .. 2^24')
    return cfg


def _bounds(raw, max_position: float) -> np.ndarray:
    b = _tensor('bounds', raw, shape=(2, 3)).double().numpy()
    if not np.all(b[1] > b[0]):
        _fail('bounds', f'min must be < max, got {b.tolist()}')
    if np.abs(b).max() > max_position:
        _fail('bounds', f'beyond the plausible workspace (|x| <= max_position {max_position:g} m)')
    return b


def _field(raw, bounds: np.ndarray, cfg: FieldConfig, grid_impl: str, device) -> FeatureField:
    if grid_impl == 'tcnn' and not tcnn_available(torch.device(device)):
        _fail('grid_impl', "the map was trained with tiny-cuda-nn hash grids ('tcnn'), which this machine "
                           f'cannot run (device {device}); load it on a CUDA machine with tinycudann installed')
    if not isinstance(raw, dict):
        _fail('field', 'expected a dict of tensors')
    fld = FeatureField(bounds, FieldConfig(**{**asdict(cfg), 'grid': grid_impl}), device=device)
    own = fld.state_dict()
    if set(raw) != set(own):
        missing, extra = sorted(set(own) - set(raw)), sorted(set(raw) - set(own))
        _fail('field', f'weights do not match the configured field (missing {missing[:4]}, unexpected {extra[:4]})')
    for k, v in own.items():
        _tensor(f'field.{k}', raw[k], dtype=v.dtype, shape=v.shape)
    fld.load_state_dict(raw)
    return fld


def _keyframes(raw, config: MapperConfig, feature_dim: int, device) -> KeyframeBuffer:
    if not isinstance(raw, dict):
        _fail('keyframes', 'expected a dict')
    k = _int('keyframes.count', raw.get('count'), 0, config.max_keyframes)
    kf = KeyframeBuffer(make_keyframe_config(config), device)
    if k == 0:
        return kf
    try:
        w, h = (_int('keyframes.size', v, 1, MAX_KEYFRAME_SIDE) for v in raw['size'])
        fw, fh = (_int('keyframes.feat_size', v, 1, MAX_KEYFRAME_SIDE) for v in raw['feat_size'])
    except (KeyError, TypeError, ValueError) as e:
        _fail('keyframes.size', f'expected [w, h]: {e}')
    nbytes = k * (w * h * (3 + 4) + fw * fh * feature_dim * 2)
    if nbytes > MAX_KEYFRAME_BYTES:
        _fail('keyframes', f'{nbytes / 2 ** 20:.0f} MiB of keyframes exceeds the {MAX_KEYFRAME_BYTES / 2 ** 20:.0f} '
                           'MiB limit')
    for name, dtype, shape in (('rgb', torch.uint8, (k, h, w, 3)), ('depth', torch.float32, (k, h, w)),
                               ('feat', torch.float16, (k, fh, fw, feature_dim)), ('T', torch.float64, (k, 4, 4)),
                               ('K', torch.float64, (k, 4)), ('stamps', torch.float64, (k,)),
                               ('order', torch.int64, (k,))):
        _tensor(f'keyframes.{name}', raw.get(name), dtype=dtype, shape=shape)
    if raw.get('patch') is not None:
        try:
            pw, ph = (_int('keyframes.patch_size', v, 1, MAX_KEYFRAME_SIDE) for v in raw['patch_size'])
        except (KeyError, TypeError, ValueError) as e:
            _fail('keyframes.patch_size', f'expected [w, h]: {e}')
        if k * pw * ph * feature_dim * 2 > MAX_KEYFRAME_BYTES:
            _fail('keyframes.patch', 'patch grids exceed the keyframe size limit')
        _tensor('keyframes.patch', raw['patch'], dtype=torch.float16, shape=(k, ph, pw, feature_dim))
        _tensor('keyframes.has_patch', raw.get('has_patch'), dtype=torch.bool, shape=(k,))
    if bool((raw['depth'] < 0).any()) or bool((raw['depth'] > config.max_depth * 10).any()):
        _fail('keyframes.depth', 'negative or absurd depth values')
    T = raw['T'].numpy()
    R = T[:, :3, :3]
    if (np.abs(np.einsum('kji,kjl->kil', R, R) - np.eye(3)).max() > 1e-4 or np.any(np.linalg.det(R) < 0.99)
            or np.abs(T[:, 3] - [0, 0, 0, 1]).max() > 1e-9):
        _fail('keyframes.T', 'poses are not rigid transforms')
    if np.abs(T[:, :3, 3]).max() > config.max_position:
        _fail('keyframes.T', f'a keyframe pose lies beyond max_position {config.max_position:g} m')
    K = raw['K'].numpy()
    if np.any(K[:, :2] <= 0) or np.abs(K).max() > 1e6:
        _fail('keyframes.K', 'non-positive or absurd focal lengths / principal points')
    order = raw['order'].numpy()
    if len(np.unique(order)) != k or order.min() < 0:
        _fail('keyframes.order', 'insertion counters must be distinct and >= 0')
    try:
        kf.load_state_dict(raw)
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        _fail('keyframes', str(e))
    return kf


def _prototypes(raw, feature_dim: int) -> dict:
    if not isinstance(raw, dict):
        _fail('prototypes', 'expected a dict name -> tensor')
    out = {}
    for name, v in raw.items():
        try:
            name = check_name(name)
        except PrototypeError as e:
            _fail('prototypes', str(e))
        t = _tensor(f'prototypes[{name!r}]', v, shape=(feature_dim,))
        if not t.is_floating_point() or float(t.norm()) < 1e-6:
            _fail(f'prototypes[{name!r}]', 'expected a non-zero float vector')
        out[name] = t.numpy().astype(np.float32)
    return out


def _fused(raw, config: MapperConfig, feature_dim: int) -> FusedLayer | None:
    """The fused layer of a version-3 file (None when the file holds none)."""
    if not isinstance(raw, dict):
        _fail('fused', 'expected a dict')
    if not raw:
        return None
    arrays = {}
    for name, dtype, _ in FusedLayer.ARRAYS:
        t = _tensor(f'fused.{name}', raw.get(name), dtype={np.int64: torch.int64, np.float32: torch.float32}[dtype])
        arrays[name] = t.numpy()
    for name in ('voxel_size', 'dim', 'fused_keyframes', 'evicted'):
        v = raw.get(name)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            _fail(f'fused.{name}', f'expected a number, got {type(v).__name__}')
    if int(raw['dim']) != feature_dim:
        _fail('fused.dim', f'{raw["dim"]} != feature_dim {feature_dim}')
    if not 1e-4 <= float(raw['voxel_size']) <= 10.0:
        _fail('fused.voxel_size', f'{raw["voxel_size"]!r} outside [1e-4, 10] m')
    try:
        return FusedLayer.from_state({**raw, **arrays}, config.fused_max_voxels, config.max_position)
    except FusedLayerError as e:
        _fail('fused', str(e))


def decode_map(raw: dict, config: MapperConfig, device) -> DecodedMap:
    """A complete, validated map from a file dict (see the module docstring). Raises MapFileError."""
    version = _int('version', raw.get('version'), 1, VERSION)
    feature_dim = _int('feature_dim', raw.get('feature_dim'), 3, 768)
    fcfg = _field_config(raw.get('field_config'), feature_dim)
    grid_impl = raw.get('grid_impl', 'torch') if version >= 2 else 'torch'
    if grid_impl not in ('torch', 'tcnn'):
        _fail('grid_impl', f"expected 'torch' or 'tcnn', got {str(grid_impl)[:20]!r}")
    bounds = _bounds(raw.get('bounds'), config.max_position)
    fld = _field(raw.get('field'), bounds, fcfg, grid_impl, device)
    kf = _keyframes(raw.get('keyframes'), config, feature_dim, device)
    projector = FeatureProjector(out_dim=config.feature_dim, fit_frames=1)
    try:
        projector.load_state_dict(raw.get('projector'))
    except (ProjectorError, AttributeError, TypeError) as e:
        _fail('projector', str(e))
    if projector.fitted and projector.dim != feature_dim:
        _fail('projector', f'projects to {projector.dim} dimensions, the field has {feature_dim}')
    pca = FeaturePCA()
    try:
        pca.load_state_dict(raw.get('pca'))
    except (CloudError, AttributeError, TypeError) as e:
        _fail('pca', str(e))
    if pca.fitted and pca.dim != feature_dim:
        _fail('pca', f'fitted on {pca.dim} dimensions, the field has {feature_dim}')
    prototypes = _prototypes(raw.get('prototypes'), feature_dim)
    steps = _int('train_steps', raw.get('train_steps'), 0, 10 ** 12)
    steps_static = _int('lr_steps_static', raw.get('lr_steps_static', 0), 0, steps)   # absent before: full rate
    use_depth = _bool('use_depth', raw.get('use_depth'))
    measured = _bool('measured_depth', raw.get('measured_depth', use_depth))
    fused, orders = None, set()
    if version >= 3:
        fused = _fused(raw.get('fused'), config, feature_dim)
        o = _tensor('fused_orders', raw.get('fused_orders'), dtype=torch.int64)
        if o.ndim != 1 or (o.numel() and int(o.min()) < 0) or o.numel() > 10 ** 9:
            _fail('fused_orders', 'expected a 1-D tensor of keyframe counters >= 0')
        orders = set(o.tolist())
        if fused is None and orders:
            _fail('fused_orders', 'keyframes are recorded as fused but the file has no fused layer')
    state = MapState(config, torch.device(device))
    state.keyframes, state.field, state.projector = kf, fld, projector
    state.measured_depth = measured
    state.trainer = state.make_trainer(use_depth)
    state.trainer.resume(steps, steps_static)
    if version >= 3:
        src = raw.get('sources')
        if not isinstance(src, dict):
            _fail('sources', 'expected a dict')
        try:
            state.sources.load_state(src)
        except ValueError as e:
            _fail('sources', str(e))
        if config.feature_source != 'auto':
            state.sources.source = config.feature_source       # the configuration forces one
        state.fused, state.fused_orders = fused, orders
    if fused is None:
        state.fuse_all()                # older maps (or none fused yet): rebuild from the keyframes
        state.sources.source, state.sources.alpha = 'fused', 0.0
    state.version = 1
    return DecodedMap(state, pca, steps, prototypes)
