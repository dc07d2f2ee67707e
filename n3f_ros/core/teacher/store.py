"""The local teacher store: converted teacher weights kept outside the repository, each with a JSON
provenance sidecar. This module alone knows where the store is and how entries are laid out.

Location: ``$N3F_TEACHER_DIR`` if set, else ``${XDG_CACHE_HOME:-~/.cache}/n3f_ros/teachers``
(resolved at call time). One entry = two files with the same stem::

    <name>.safetensors    plain timm state dict (name -> float32 tensor), loadable as teacher_checkpoint
    <name>.json           provenance (see :func:`write_entry`)

Entries are written atomically (temporary file + rename, weights before the sidecar), so a crash
never leaves a sidecar pointing at a half-written file. A sidecar that cannot be parsed, or whose
weights file is missing, is reported by :func:`list_entries` (``problem``) and never used.
"""
from __future__ import annotations

import datetime
import json
import os
import pathlib
import re
import tempfile
from dataclasses import dataclass

from n3f_ros.core.teacher.checkpoint import sha256_file

ENV_VAR = 'N3F_TEACHER_DIR'
#: Version of the sidecar layout.
FORMAT_VERSION = 1
WEIGHTS_SUFFIX = '.safetensors'


def store_dir() -> pathlib.Path:
    """The store folder (may not exist yet)."""
    if os.environ.get(ENV_VAR):
        return pathlib.Path(os.environ[ENV_VAR]).expanduser()
    xdg = os.environ.get('XDG_CACHE_HOME') or os.path.join('~', '.cache')
    return pathlib.Path(xdg).expanduser() / 'n3f_ros' / 'teachers'


@dataclass
class StoreEntry:
    """One imported teacher: ``weights`` file, ``meta`` (the parsed sidecar) and ``problem`` (why it
    is unusable, or None)."""

    name: str
    weights: pathlib.Path
    meta_path: pathlib.Path
    meta: dict
    problem: str | None = None

    @property
    def usable(self) -> bool:
        return self.problem is None

    @property
    def timm_model(self) -> str | None:
        return self.meta.get('timm_model')

    @property
    def imported_at(self) -> str:
        return str(self.meta.get('imported_at', ''))


def sidecar_of(weights) -> pathlib.Path:
    """The provenance sidecar path of a weights file (same stem, ``.json``)."""
    return pathlib.Path(weights).with_suffix('.json')


def read_sidecar(weights) -> dict | None:
    """The sidecar of any weights file (store or not) as a dict, or None if absent / unreadable."""
    p = sidecar_of(weights)
    try:
        meta = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _entry(meta_path: pathlib.Path) -> StoreEntry:
    name = meta_path.stem
    weights = meta_path.with_suffix(WEIGHTS_SUFFIX)
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict):
            raise ValueError('not a JSON object')
    except (OSError, ValueError) as e:
        return StoreEntry(name, weights, meta_path, {}, f'unreadable sidecar: {e}')
    problem = None
    if not weights.is_file():
        problem = f'weights file {weights.name} is missing'
    elif not meta.get('timm_model'):
        problem = 'sidecar names no timm_model'
    elif meta.get('weights_bytes') not in (None, weights.stat().st_size):
        problem = (f'weights file {weights.name} has {weights.stat().st_size} bytes, sidecar says '
                   f'{meta["weights_bytes"]}')
    return StoreEntry(name, weights, meta_path, meta, problem)


def list_entries(root=None) -> list[StoreEntry]:
    """Every entry of the store, newest import first (ties: by name). Unusable ones included."""
    root = pathlib.Path(root) if root is not None else store_dir()
    if not root.is_dir():
        return []
    entries = [_entry(p) for p in root.glob('*.json') if not p.name.startswith('.')]
    entries.sort(key=lambda e: e.name)
    entries.sort(key=lambda e: e.imported_at, reverse=True)
    return entries


def find_entry(timm_model: str | None = None, root=None, source_sha256: str | None = None) -> StoreEntry | None:
    """Newest usable entry for the timm architecture ``timm_model`` (any when None), optionally
    only one converted from the source file with this sha256."""
    for e in list_entries(root):
        if not e.usable or (timm_model and e.timm_model != timm_model):
            continue
        if source_sha256 and (e.meta.get('source') or {}).get('sha256') != source_sha256:
            continue
        return e
    return None


def entry_name(source: dict) -> str:
    """File stem of an entry converted from ``source`` (package-version_member, or the file name)."""
    if source.get('package') and source.get('version'):
        stem = f"{source['package']}-{source['version']}"
        if source.get('member'):
            stem += '_' + pathlib.PurePosixPath(source['member']).stem
    else:
        stem = pathlib.Path(source.get('file') or 'teacher').stem
    return re.sub(r'[^A-Za-z0-9._-]+', '_', stem).strip('._') or 'teacher'


def _atomic_write(path: pathlib.Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o644 & ~umask)          # mkstemp makes 0600; store files are plain data
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def write_entry(name: str, state_dict: dict, meta: dict, root=None) -> StoreEntry:
    """Write ``state_dict`` (name -> tensor) and its provenance ``meta`` into the store as ``name``.

    ``meta`` should hold ``timm_model``, ``timm_kwargs``, ``source`` (file, sha256, package,
    version, licence, ...), ``converter`` and ``input``; this adds ``format_version``, ``name``,
    ``weights_file``, ``weights_sha256``, ``weights_bytes`` and ``imported_at`` (UTC, ISO 8601).
    Replaces an entry of the same name.
    """
    from safetensors.torch import save_file

    root = pathlib.Path(root) if root is not None else store_dir()
    root.mkdir(parents=True, exist_ok=True)
    weights = root / f'{name}{WEIGHTS_SUFFIX}'
    sd = {k: v.detach().to('cpu').contiguous() for k, v in state_dict.items()}
    _atomic_write(weights, lambda tmp: save_file(sd, tmp, metadata={'format': 'pt'}))
    full = {'format_version': FORMAT_VERSION, 'name': name, **meta, 'weights_file': weights.name,
            'weights_sha256': sha256_file(weights), 'weights_bytes': weights.stat().st_size,
            'imported_at': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}
    meta_path = root / f'{name}.json'
    _atomic_write(meta_path, lambda tmp: pathlib.Path(tmp).write_text(json.dumps(full, indent=2) + '\n'))
    return _entry(meta_path)
