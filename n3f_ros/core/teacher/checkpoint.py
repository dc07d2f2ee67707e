"""Safe loading of ViT backbone weights: local checkpoint files and the local HF / torch-hub cache.

Nothing here touches the network. Files are read with ``torch.load(weights_only=True)`` (plus
``argparse.Namespace``, which DINO's full training checkpoints store under ``'args'``) or with
``safetensors``, so a crafted file cannot execute code.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import pathlib

import torch

from n3f_ros.core.persistence import UnsafeFileError, check_regular_file, safe_load
from n3f_ros.core.teacher.base import CheckpointError

#: Keys under which training checkpoints nest the weights, most specific first (DINO stores the
#: EMA ``'teacher'`` and the ``'student'``; the teacher is the one DINO evaluates).
NESTING_KEYS = ('teacher', 'model', 'state_dict', 'model_ema', 'module', 'backbone')
#: Key prefixes added by DistributedDataParallel / DINO's MultiCropWrapper.
STRIP_PREFIXES = ('module.', 'backbone.', 'encoder.')
#: Keys of training-only heads we do not use (DINO projection head, classifier). DINOv2's
#: ``mask_token`` is removed by timm's own conversion.
DROP_PREFIXES = ('head.',)


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_weights_file(path) -> dict:
    """Read a ``.pth`` / ``.pt`` / ``.bin`` / ``.safetensors`` file into a (possibly nested) dict.

    Raises CheckpointError if the file is missing, unreadable, not a dict, or needs unsafe
    unpickling.
    """
    p = pathlib.Path(path).expanduser()
    check_regular_file(str(p), 'teacher checkpoint', error=CheckpointError)
    try:
        if p.suffix == '.safetensors':
            from safetensors.torch import load_file
            try:
                obj = load_file(str(p), device='cpu')
            except Exception as e:  # noqa: BLE001 - any reader failure is a bad file to the user
                raise UnsafeFileError(str(e).strip().splitlines()[0][:300] if str(e).strip() else
                                      type(e).__name__) from e
        else:
            obj = safe_load(str(p), extra_globals=[argparse.Namespace])
    except UnsafeFileError as e:
        raise CheckpointError(f'cannot read teacher checkpoint {str(p)!r} (corrupted, truncated, or not a '
                              f'weights-only PyTorch/safetensors file): {e}') from e
    if not isinstance(obj, dict):
        raise CheckpointError(f'teacher checkpoint {str(p)!r} holds a {type(obj).__name__}, '
                              'expected a state dict (name -> tensor)')
    return obj


def _is_tensor_dict(d) -> bool:
    return isinstance(d, dict) and len(d) > 0 and any(isinstance(v, torch.Tensor) for v in d.values())


def extract_state_dict(obj: dict) -> dict[str, torch.Tensor]:
    """Unnest and clean a checkpoint dict into backbone weights named as in timm's ViT.

    Follows the nesting keys (``'teacher'``, ``'model'``, ``'state_dict'``, ...) until a dict of
    tensors is reached, strips ``module.`` / ``backbone.`` prefixes and drops training heads
    (``head.*``). Raises CheckpointError if no tensors are found.
    """
    d = obj
    for _ in range(8):  # bounded: a crafted self-similar nesting cannot loop forever
        nested = next((d[k] for k in NESTING_KEYS if isinstance(d.get(k), dict) and d[k]), None)
        if nested is None:
            break
        d = nested
    if not _is_tensor_dict(d):
        raise CheckpointError(f'no tensors found in teacher checkpoint (top-level keys: {sorted(obj)[:10]})')
    out = {}
    for k, v in d.items():
        if not isinstance(v, torch.Tensor):
            continue
        changed = True
        while changed:
            changed = False
            for p in STRIP_PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p):], True
        if k.startswith(DROP_PREFIXES):
            continue
        out[k] = v
    return out


def load_backbone_weights(model: torch.nn.Module, path) -> None:
    """Load a weights file into a timm ViT ``model`` (strict: every key must match).

    Applies timm's own ViT conversion (e.g. DINOv2 naming, position-embedding grid) after
    :func:`extract_state_dict`. Raises CheckpointError listing missing / unexpected / mismatched
    keys.
    """
    sd = extract_state_dict(read_weights_file(path))
    own = model.state_dict()
    pe = sd.get('patch_embed.proj.weight')
    if pe is not None and tuple(pe.shape) != tuple(own['patch_embed.proj.weight'].shape):
        raise CheckpointError(f'checkpoint {str(path)!r} does not fit the model: patch embedding '
                              f'{tuple(pe.shape)} vs {tuple(own["patch_embed.proj.weight"].shape)} '
                              '(different patch size or width: pick the matching teacher_model)')
    try:
        from timm.models.vision_transformer import checkpoint_filter_fn
        sd = checkpoint_filter_fn(sd, model)
    except Exception as e:
        raise CheckpointError(f'checkpoint {str(path)!r} cannot be converted for this model: {e}') from e
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f'checkpoint {str(path)!r} does not match the model: {len(missing)} missing keys '
            f'{missing[:6]}{" ..." if len(missing) > 6 else ""}, {len(unexpected)} unexpected keys '
            f'{unexpected[:6]}{" ..." if len(unexpected) > 6 else ""}')
    bad = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in sd.items() if v.shape != own[k].shape]
    if bad:
        raise CheckpointError(f'checkpoint {str(path)!r} has tensors of the wrong shape '
                              f'(name, file, model): {bad[:4]}')
    # assign=True: adopt the file's tensors (also fills a model built on the meta device)
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True, assign=True)


def hf_hub_cache_dir() -> pathlib.Path:
    """The Hugging Face hub cache folder, resolved from the environment at call time."""
    if os.environ.get('HF_HUB_CACHE'):
        return pathlib.Path(os.environ['HF_HUB_CACHE']).expanduser()
    if os.environ.get('HF_HOME'):
        return pathlib.Path(os.environ['HF_HOME']).expanduser() / 'hub'
    xdg = os.environ.get('XDG_CACHE_HOME') or os.path.join('~', '.cache')
    return pathlib.Path(xdg).expanduser() / 'huggingface' / 'hub'


def find_cached_weights(pretrained_cfg: dict) -> pathlib.Path | None:
    """Locate a model's pretrained weights in the local caches only (no network).

    Looks for ``<hf_hub_id>`` (``model.safetensors`` or ``pytorch_model.bin``) in the HF hub cache,
    then for the basename of the cfg's ``url`` in torch hub's ``checkpoints`` folder.
    Returns the file path or None.
    """
    hub_id = pretrained_cfg.get('hf_hub_id')
    if hub_id:
        from huggingface_hub import try_to_load_from_cache
        names = [pretrained_cfg.get('hf_hub_filename'), 'model.safetensors', 'pytorch_model.bin']
        for name in [n for n in names if n]:
            try:
                found = try_to_load_from_cache(hub_id, name, cache_dir=str(hf_hub_cache_dir()))
            except Exception:  # noqa: BLE001 - a malformed cache is just "not cached"
                found = None
            if isinstance(found, str) and os.path.isfile(found):
                return pathlib.Path(found)
    url = pretrained_cfg.get('url')
    if url:
        p = pathlib.Path(torch.hub.get_dir()) / 'checkpoints' / os.path.basename(url)
        if p.is_file():
            return p
    return None
