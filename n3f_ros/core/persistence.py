"""Files of tensors: written atomically, read with a safe loader (maps, teacher checkpoints).

A map is a dict of tensors, numbers, strings, lists and dicts, stored with ``torch.save`` and read
with ``torch.load(weights_only=True)`` (:func:`safe_load`), which refuses arbitrary Python objects
(no code runs from a crafted file). Writing goes to a temporary file
``.n3f_map_<pid>_<random>.tmp`` in the same directory, is fsynced, then renamed over the target
(``os.replace`` is atomic on POSIX), so a crash mid-save leaves the previous map intact. Temporary
files left by a process that died mid-save (its pid no longer runs) are removed by the next save
(:func:`remove_stale_temp_files`, also called when the node starts).

What the map dict must contain is checked by ``core/mapping/map_file.py``; here only that it is an
n3f map of a plausible size.
"""
from __future__ import annotations

import glob
import os
import re
import stat
import tempfile

import torch

MAP_FORMAT = 'n3f_map'
REQUIRED_KEYS = ('format', 'version', 'field_config', 'bounds', 'field', 'keyframes', 'projector', 'pca',
                 'prototypes', 'train_steps', 'use_depth')
#: largest map file read, bytes (keyframes are limited to 2 GiB by map_file.py; the field is small)
MAX_MAP_BYTES = 4 * 1024 ** 3
TEMP_PREFIX = '.n3f_map_'
TEMP_SUFFIX = '.tmp'


class MapFileError(ValueError):
    """The file is missing, unreadable, unsafe or not an n3f map."""


class UnsafeFileError(ValueError):
    """A file the safe loader cannot read (not a weights-only torch file, corrupt, truncated)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:            # exists, owned by someone else
        return True
    return True


def remove_stale_temp_files(directory: str) -> list[str]:
    """Remove ``.n3f_map_<pid>_*.tmp`` in ``directory`` whose writing process is gone. Returns them."""
    removed = []
    for path in glob.glob(os.path.join(directory, TEMP_PREFIX + '*' + TEMP_SUFFIX)):
        m = re.match(re.escape(TEMP_PREFIX) + r'(\d+)_', os.path.basename(path))
        pid = int(m.group(1)) if m else None      # no pid: an older version's temp file
        if pid is not None and (pid == os.getpid() or _pid_alive(pid)):
            continue                              # a save in progress (here or in another process)
        try:
            os.unlink(path)
            removed.append(path)
        except OSError:
            pass
    return removed


def default_file_mode() -> int:
    """The mode ``open()`` would give a new file (0666 minus the process umask, read from
    /proc so that no other thread ever runs with a changed umask; 022 where /proc has no Umask)."""
    umask = 0o022
    try:
        with open('/proc/self/status') as f:
            umask = next((int(line.split()[1], 8) for line in f if line.startswith('Umask:')), umask)
    except OSError:
        pass
    return 0o666 & ~umask


def save_map_file(path: str, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (see the module docstring)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    remove_stale_temp_files(directory)
    fd, tmp = tempfile.mkstemp(prefix=f'{TEMP_PREFIX}{os.getpid()}_', suffix=TEMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_file_mode())       # mkstemp makes 0600; a map is an ordinary file
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


def _reason(e: Exception) -> str:
    """The informative part of a torch.load error (not torch's advice to load unsafely)."""
    text = str(e).strip()
    m = re.search(r'WeightsUnpickler error:\s*(.+?)(?:\n\n|$)', text, flags=re.DOTALL)
    if m:
        return 'refused by the safe weights-only loader: ' + ' '.join(m.group(1).split())[:300]
    first = text.splitlines()[0][:300] if text else type(e).__name__
    return re.sub(r'\s*(Please file an issue|In PyTorch 2\.6|weights_only=False).*$', '', first) or type(e).__name__


def check_regular_file(path: str, what: str, max_bytes: int | None = None, error=MapFileError) -> None:
    """Raise ``error`` unless ``path`` is an existing regular file (not a directory, FIFO, device)
    of at most ``max_bytes``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f'{what} {path!r} does not exist') from None
    except OSError as e:
        raise error(f'{what} {path!r} cannot be accessed: {e.strerror}') from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f'{what} {path!r} is a directory, not a file')
    if not stat.S_ISREG(st.st_mode):
        raise error(f'{what} {path!r} is not a regular file (a FIFO, socket or device?)')
    if max_bytes is not None and st.st_size > max_bytes:
        raise error(f'{what} {path!r} is {st.st_size / 2 ** 30:.1f} GiB, more than the {max_bytes / 2 ** 30:.0f} '
                    'GiB limit')


def safe_load(path: str, extra_globals=()):
    """``torch.load`` with the weights-only unpickler (plus ``extra_globals``) onto the CPU.
    Raises :class:`UnsafeFileError` with a short reason (never torch's advice to load unsafely)."""
    try:
        with torch.serialization.safe_globals(list(extra_globals)):
            return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure of the safe unpickler means "cannot read safely"
        raise UnsafeFileError(_reason(e)) from e


def load_map_file(path: str) -> dict:
    """The dict of an n3f map file. Raises MapFileError (missing, not a regular file, too large,
    unsafe or unreadable, not an n3f map, keys missing)."""
    check_regular_file(path, 'map file', MAX_MAP_BYTES)
    try:
        state = safe_load(path)
    except UnsafeFileError as exc:
        raise MapFileError(f'cannot load map {path!r} safely: {exc}') from exc
    if not isinstance(state, dict) or state.get('format') != MAP_FORMAT:
        raise MapFileError(f'{path!r} is not an n3f map file')
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise MapFileError(f'map {path!r} lacks {missing}')
    return state
