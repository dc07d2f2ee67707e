"""Saved object prototypes: named, unit feature vectors a later query can look for again.

Names come from users and other nodes (topics, services, map files), so they are checked:
stripped of surrounding white space, non-empty, at most :data:`MAX_NAME_LENGTH` printable
characters; at most :data:`MAX_PROTOTYPES` are kept (saving one more under a new name is refused,
re-saving an existing name replaces it). Thread safe.
"""
from __future__ import annotations

import threading

import numpy as np

#: longest prototype name, characters
MAX_NAME_LENGTH = 64
#: most prototypes kept
MAX_PROTOTYPES = 256


class PrototypeError(ValueError):
    """A bad prototype name or vector, or the store is full."""


def check_name(name) -> str:
    """The cleaned name; raises PrototypeError (message safe to log: the name is cut)."""
    if not isinstance(name, str):
        raise PrototypeError(f'prototype name must be a string, got {type(name).__name__}')
    n = name.strip()
    if not n:
        raise PrototypeError('prototype name is empty')
    if len(n) > MAX_NAME_LENGTH:
        raise PrototypeError(f'prototype name is {len(n)} characters long (at most {MAX_NAME_LENGTH})')
    if not n.isprintable():
        raise PrototypeError(f'prototype name {n.encode("unicode_escape")[:MAX_NAME_LENGTH]!r} has control characters')
    return n


class PrototypeStore:
    """name -> (D,) float32 unit vector (see the module docstring)."""

    def __init__(self):
        self._items: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name) -> bool:
        return name in self._items

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._items)

    def get(self, name: str) -> np.ndarray:
        """The vector saved as ``name``; KeyError naming the known ones."""
        with self._lock:
            if name not in self._items:
                known = sorted(self._items)
                raise KeyError(f'no prototype named {str(name)[:MAX_NAME_LENGTH]!r} '
                               f'(known: {known[:10]}{" ..." if len(known) > 10 else ""})')
            return self._items[name]

    def save(self, name: str, vector) -> str:
        """Store ``vector`` (normalised) under ``name``; returns the cleaned name."""
        n = check_name(name)
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(v)) if v.size else 0.0
        if not np.all(np.isfinite(v)) or norm < 1e-6:
            raise PrototypeError('prototype vector must be finite and non-zero')
        with self._lock:
            if n not in self._items and len(self._items) >= MAX_PROTOTYPES:
                raise PrototypeError(f'{MAX_PROTOTYPES} prototypes are saved already (the limit); '
                                     're-save an existing name to replace it')
            self._items[n] = (v / norm).copy()
        return n

    def items(self) -> dict[str, np.ndarray]:
        """A copy of the whole store."""
        with self._lock:
            return {k: v.copy() for k, v in self._items.items()}

    def update(self, items: dict) -> None:
        """Add or replace several (e.g. from a loaded map); all are validated before any is stored."""
        checked = {}
        for k, v in items.items():
            n = check_name(k)
            a = np.asarray(v, dtype=np.float32).reshape(-1)
            if not np.all(np.isfinite(a)) or np.linalg.norm(a) < 1e-6:
                raise PrototypeError(f'prototype {n!r}: vector must be finite and non-zero')
            checked[n] = a / np.linalg.norm(a)
        with self._lock:
            if len(set(self._items) | set(checked)) > MAX_PROTOTYPES:
                raise PrototypeError(f'more than {MAX_PROTOTYPES} prototypes')
            self._items.update(checked)
