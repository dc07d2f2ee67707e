"""Map files: written atomically, read with a safe loader.

A map is a dict of tensors, numbers, strings, lists and dicts, stored with ``torch.save`` and read
with ``torch.load(weights_only=True)``, which refuses arbitrary Python objects (no code runs from a
crafted file). Writing goes to a temporary file in the same directory, is fsynced, then renamed over
the target (``os.replace`` is atomic on POSIX), so a crash mid-save leaves the previous map intact.
"""
from __future__ import annotations

import os
import tempfile

import torch

MAP_FORMAT = 'n3f_map'
REQUIRED_KEYS = ('format', 'version', 'field_config', 'bounds', 'field', 'keyframes', 'projector', 'pca',
                 'prototypes', 'train_steps', 'use_depth')


class MapFileError(ValueError):
    """The file is missing, unreadable, unsafe or not an n3f map."""


def save_map_file(path: str, state: dict) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.n3f_map_', suffix='.tmp', dir=directory)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_map_file(path: str) -> dict:
    if not os.path.isfile(path):
        raise MapFileError(f'map file {path!r} does not exist')
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure of the safe unpickler means "not a map"
        raise MapFileError(f'cannot load map {path!r} safely: {type(exc).__name__}: {exc}') from exc
    if not isinstance(state, dict) or state.get('format') != MAP_FORMAT:
        raise MapFileError(f'{path!r} is not an n3f map file')
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise MapFileError(f'map {path!r} lacks {missing}')
    return state
