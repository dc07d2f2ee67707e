"""Time-ordered buffer of stamped camera poses, looked up at image stamps (SPEC §3).

Lookup rule for an image stamped ``t`` with tolerance ``max_dt`` (seconds):

1. The frame is accepted only if the *nearest* buffered pose is within ``max_dt`` of ``t``;
   otherwise :class:`MessageError` ``'no_pose'`` is raised (the frame is dropped, never guessed).
2. If ``t`` is bracketed by two poses ``t0 <= t <= t1`` whose gap ``t1 - t0`` is at most
   ``2 * max_dt``, the pose is interpolated (linear translation, slerp rotation) at ``t``.
   A bracket wider than that (a pose dropout) is not interpolated across.
3. Otherwise the nearest pose (within ``max_dt``) is used as is; poses are never extrapolated.

So with poses at 10 Hz and ``max_dt = 0.05`` every image between two poses is interpolated, and an
image up to 50 ms after the newest pose uses the newest pose.

Stamps are float seconds. Poses may arrive out of order (several publishers, a pose stamped a
little ahead): a pose is inserted at its stamp's place; one older than everything kept (more than
``max_age`` seconds before the newest) raises ``'stamp_backwards'``; a pose with the stamp of one
already buffered replaces it. The buffer keeps at most ``max_size`` poses and none older than
``max_age`` seconds before the newest.
"""
from __future__ import annotations

import bisect
import threading

import numpy as np

from n3f_ros.core.camera import interpolate_pose
from n3f_ros.io.decode import MessageError


class PoseBuffer:
    """Bounded, thread-safe buffer of (stamp [s], T_world_cam (4, 4)) in stamp order."""

    def __init__(self, max_age: float = 10.0, max_size: int = 2000):
        self.max_age = float(max_age)
        self.max_size = int(max_size)
        self._stamps: list[float] = []
        self._poses: list[np.ndarray] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._stamps)

    @property
    def latest_stamp(self) -> float | None:
        """Stamp of the newest pose, None when empty."""
        with self._lock:
            return self._stamps[-1] if self._stamps else None

    def clear(self) -> None:
        with self._lock:
            self._stamps.clear()
            self._poses.clear()

    def add(self, stamp: float, T) -> None:
        """Insert a pose at its stamp. Raises MessageError('stamp_backwards') if it is older than
        what the buffer keeps (``max_age`` before the newest)."""
        stamp = float(stamp)
        T = np.asarray(T, dtype=np.float64)
        with self._lock:
            if self._stamps and stamp < self._stamps[-1] - self.max_age:
                raise MessageError('stamp_backwards',
                                   f'pose stamp {stamp:.6f} is {self._stamps[-1] - stamp:.6f} s older '
                                   f'than the newest pose (more than the {self.max_age:g} s kept)')
            i = bisect.bisect_left(self._stamps, stamp)
            if i < len(self._stamps) and self._stamps[i] == stamp:
                self._poses[i] = T
                return
            self._stamps.insert(i, stamp)
            self._poses.insert(i, T)
            cut = bisect.bisect_left(self._stamps, self._stamps[-1] - self.max_age)
            cut = max(cut, len(self._stamps) - self.max_size)
            if cut > 0:
                del self._stamps[:cut]
                del self._poses[:cut]

    def lookup(self, stamp: float, max_dt: float) -> np.ndarray:
        """Pose at ``stamp`` (see the module docstring); raises MessageError('no_pose')."""
        t = float(stamp)
        with self._lock:
            if not self._stamps:
                raise MessageError('no_pose', f'no pose received yet for the frame at {t:.6f}')
            i = bisect.bisect_left(self._stamps, t)         # stamps[i-1] < t <= stamps[i]
            lo = i - 1 if i > 0 else None
            hi = i if i < len(self._stamps) else None
            if hi is not None and self._stamps[hi] == t:
                return self._poses[hi].copy()
            d_lo = t - self._stamps[lo] if lo is not None else np.inf
            d_hi = self._stamps[hi] - t if hi is not None else np.inf
            if min(d_lo, d_hi) > max_dt + 1e-9:
                raise MessageError(
                    'no_pose',
                    f'no pose within {max_dt:.3f} s of the frame at {t:.6f} (nearest {min(d_lo, d_hi):.3f} s '
                    f'away; buffer covers {self._stamps[0]:.3f}..{self._stamps[-1]:.3f})')
            if lo is not None and hi is not None and d_lo + d_hi <= 2 * max_dt + 1e-9:
                return interpolate_pose(self._poses[lo], self._poses[hi], d_lo / (d_lo + d_hi))
            return (self._poses[lo] if d_lo <= d_hi else self._poses[hi]).copy()
