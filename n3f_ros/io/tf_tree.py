"""A TF tree without ROS: transforms in, ``T_target_source`` at a stamp out (pip world's /tf buffer).

Conventions: ``T_parent_child`` is a 4x4 float64 rigid transform mapping points of frame ``child``
into frame ``parent`` (a geometry_msgs/TransformStamped with ``header.frame_id = parent`` and
``child_frame_id = child``: its translation is the child's origin in the parent, metres). Stamps are
float seconds. Frame ids are compared after stripping a leading ``/`` (as tf2 does).

Rules (those of tf2's buffer, which the full-install path of the node uses):

* Every frame has at most one parent. A *static* transform is valid at any time; a *dynamic*
  one is kept as a history of stamped samples and looked up by interpolating the two samples that
  bracket the stamp (linear translation, slerp rotation; any gap is interpolated, never
  extrapolated). A transform of another kind or another parent than a frame's current one
  replaces that frame's edge (its history restarts).
* Each dynamic edge keeps ``cache_time`` seconds before its newest sample (and at most
  ``max_samples`` samples); older samples are dropped, and a new sample older than that is
  rejected. Samples may arrive out of order within the window; one with an existing stamp
  replaces it.
* ``lookup(target, source, stamp)`` composes the edges on the tree path ``source -> common
  ancestor <- target``, each at ``stamp``; ``stamp=None`` is the latest time all the path's dynamic
  edges cover (tf2's time 0).

Failures raise :class:`~n3f_ros.io.decode.MessageError` with these stable reasons:

=======================  ======================================================================
reason                   meaning
=======================  ======================================================================
tf_invalid               transform rejected: empty or equal frame ids, NaN/inf, non-unit
                         quaternion / non-rigid matrix, translation beyond MAX_TRANSLATION,
                         negative stamp, or an edge that would close a loop
tf_old_data              dynamic sample older than the edge's cache window (ignored)
tf_unknown_frame         lookup of a frame no transform has named
tf_disconnected          both frames known, but in different trees
tf_extrapolation_past    stamp before the oldest sample of an edge on the path
tf_extrapolation_future  stamp after the newest sample of an edge on the path (may resolve
                         when late transforms arrive)
=======================  ======================================================================
"""
from __future__ import annotations

import bisect
import math
import threading

import numpy as np

from n3f_ros.core.camera import interpolate_pose, invert_pose, quat_to_rot
from n3f_ros.io.decode import QUAT_TOLERANCE, MessageError, stamp_to_sec

#: seconds of history kept per dynamic edge (tf2_ros.Buffer's default cache time)
CACHE_TIME = 10.0
#: most samples kept per dynamic edge (10 s at 1 kHz): bounds memory whatever the rate
MAX_SAMPLES = 10_000
#: a translation longer than this (metres) is garbage, not a frame on Earth (UTM northings reach 1e7 m)
MAX_TRANSLATION = 1e8
#: stamps this close (seconds) count as equal: float seconds of epoch stamps (~1.7e9 s) resolve only
#: ~0.24 us, so an image and a transform with the same nanosecond stamp may differ by that much
STAMP_EPS = 1e-6
#: deepest tree walked (a guard: real robot trees have tens of frames)
MAX_DEPTH = 1000

#: reasons a lookup may stop failing while transforms keep arriving (see TfTree.check)
TRANSIENT_REASONS = ('tf_unknown_frame', 'tf_disconnected', 'tf_extrapolation_future')


def _strip(frame) -> str:
    return str(frame).lstrip('/')


class _Edge:
    """Transform of one child frame in its parent: static (one pose) or a stamped history."""

    __slots__ = ('parent', 'static', 'stamps', 'poses')

    def __init__(self, parent: str, static: bool):
        self.parent, self.static = parent, static
        self.stamps: list[float] = []
        self.poses: list[np.ndarray] = []

    def at(self, child: str, t: float | None) -> np.ndarray:
        """T_parent_child at ``t`` (None: the newest sample); raises tf_extrapolation_*."""
        if self.static or t is None:
            return self.poses[-1]
        s = self.stamps
        if t < s[0] - STAMP_EPS:
            raise MessageError('tf_extrapolation_past',
                               f'{self.parent} -> {child} at {t:.6f} is {s[0] - t:.3f} s before its oldest '
                               f'transform (history {s[0]:.3f}..{s[-1]:.3f})')
        if t > s[-1] + STAMP_EPS:
            raise MessageError('tf_extrapolation_future',
                               f'{self.parent} -> {child} at {t:.6f} is {t - s[-1]:.3f} s after its newest '
                               f'transform (history {s[0]:.3f}..{s[-1]:.3f})')
        i = bisect.bisect_left(s, t)                    # s[i-1] < t <= s[i]
        if i < len(s) and s[i] - t <= STAMP_EPS:
            return self.poses[i]
        if i == 0:
            return self.poses[0]                       # within STAMP_EPS before the oldest
        t0, t1 = s[i - 1], s[i]
        if t - t0 <= STAMP_EPS:
            return self.poses[i - 1]
        return interpolate_pose(self.poses[i - 1], self.poses[i], (t - t0) / (t1 - t0))


def validate_transform(parent, child, stamp, T) -> tuple[str, str, float, np.ndarray]:
    """(parent, child, stamp, T) checked and normalised; raises MessageError('tf_invalid')."""
    parent, child = _strip(parent), _strip(child)
    if not parent or not child:
        raise MessageError('tf_invalid', f'transform with an empty frame id ({parent!r} -> {child!r})')
    if parent == child:
        raise MessageError('tf_invalid', f'transform of frame {child!r} into itself')
    stamp = float(stamp)
    if not math.isfinite(stamp) or stamp < 0.0:
        raise MessageError('tf_invalid', f'{parent} -> {child}: stamp {stamp} is not a time')
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise MessageError('tf_invalid', f'{parent} -> {child}: transform of shape {T.shape}, expected (4, 4)')
    if not np.all(np.isfinite(T)):
        raise MessageError('tf_invalid', f'{parent} -> {child}: transform is not finite')
    R = T[:3, :3]
    err = float(np.abs(R.T @ R - np.eye(3)).max())
    if err > 2 * QUAT_TOLERANCE or np.linalg.det(R) <= 0 or not np.allclose(T[3], (0, 0, 0, 1)):
        raise MessageError('tf_invalid', f'{parent} -> {child}: not a rigid transform (|R^T R - I| = {err:.2e})')
    dist = float(np.linalg.norm(T[:3, 3]))
    if dist > MAX_TRANSLATION:
        raise MessageError('tf_invalid', f'{parent} -> {child}: translation of {dist:.3g} m exceeds '
                                         f'{MAX_TRANSLATION:.0e} m')
    return parent, child, stamp, T


def decode_transform_stamped(msg) -> tuple[str, str, float, np.ndarray]:
    """geometry_msgs/TransformStamped (duck-typed) -> (parent, child, stamp [s], T_parent_child);
    raises MessageError('tf_invalid') for NaN/inf, a non-unit quaternion, bad frames or stamp."""
    try:
        tr, q = msg.transform.translation, msg.transform.rotation
        xyz = np.array([tr.x, tr.y, tr.z], dtype=np.float64)
        quat = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
        parent, child, ros_stamp = msg.header.frame_id, msg.child_frame_id, msg.header.stamp
    except AttributeError as e:
        raise MessageError('bad_type', f'{type(msg).__name__} is not a TransformStamped: {e}') from e
    try:
        stamp = stamp_to_sec(ros_stamp)
    except MessageError as e:
        raise MessageError('tf_invalid', f'{parent} -> {child}: {e.text}') from e
    if not (np.all(np.isfinite(xyz)) and np.all(np.isfinite(quat))):
        raise MessageError('tf_invalid', f'{parent} -> {child}: translation {xyz.tolist()} or rotation '
                                         f'{quat.tolist()} is not finite')
    n = float(np.linalg.norm(quat))
    if abs(n - 1.0) > QUAT_TOLERANCE:
        raise MessageError('tf_invalid', f'{parent} -> {child}: quaternion {quat.tolist()} has norm {n:.6f}, '
                                         f'expected 1')
    T = np.eye(4)
    T[:3, :3] = quat_to_rot(quat / n)
    T[:3, 3] = xyz
    return validate_transform(parent, child, stamp, T)


class TfTree:
    """Thread-safe TF buffer (see the module docstring for the rules and failure reasons)."""

    def __init__(self, cache_time: float = CACHE_TIME, max_samples: int = MAX_SAMPLES):
        self.cache_time = float(cache_time)
        self.max_samples = int(max_samples)
        self._edges: dict[str, _Edge] = {}          # child -> its edge to the parent
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------
    # input
    # ------------------------------------------------------------------------------------------
    def add(self, parent: str, child: str, stamp: float, T_parent_child, static: bool = False) -> None:
        """Add one transform (``T_parent_child`` (4, 4), metres); raises MessageError
        ('tf_invalid', 'tf_old_data')."""
        parent, child, stamp, T = validate_transform(parent, child, stamp, T_parent_child)
        with self._lock:
            self._add(parent, child, stamp, T, bool(static))

    def add_message(self, msg, static: bool = False) -> list[MessageError]:
        """Add every transform of a tf2_msgs/TFMessage (duck-typed); the bad ones are skipped and
        returned as their MessageErrors (the good ones are still added)."""
        errors = []
        for tf in getattr(msg, 'transforms', None) or []:
            try:
                parent, child, stamp, T = decode_transform_stamped(tf)
                with self._lock:
                    self._add(parent, child, stamp, T, bool(static))
            except MessageError as e:
                errors.append(e)
        return errors

    def _add(self, parent: str, child: str, stamp: float, T: np.ndarray, static: bool) -> None:
        edge = self._edges.get(child)
        if edge is None or edge.parent != parent or edge.static != static:
            self._check_no_loop(parent, child)
            edge = self._edges[child] = _Edge(parent, static)
        if static:
            edge.stamps[:] = [stamp]
            edge.poses[:] = [T]
            return
        s = edge.stamps
        if s and stamp < s[-1] - self.cache_time:
            raise MessageError('tf_old_data', f'{parent} -> {child} at {stamp:.6f} is {s[-1] - stamp:.3f} s older '
                                              f'than its newest transform (cache {self.cache_time:g} s)')
        i = bisect.bisect_left(s, stamp)
        if i < len(s) and abs(s[i] - stamp) <= STAMP_EPS:
            edge.poses[i] = T
            return
        s.insert(i, stamp)
        edge.poses.insert(i, T)
        cut = max(bisect.bisect_left(s, s[-1] - self.cache_time), len(s) - self.max_samples)
        if cut > 0:
            del s[:cut]
            del edge.poses[:cut]

    def _check_no_loop(self, parent: str, child: str) -> None:
        f, depth = parent, 0
        while f in self._edges and depth < MAX_DEPTH:
            f, depth = self._edges[f].parent, depth + 1
            if f == child:
                raise MessageError('tf_invalid', f'{parent} -> {child} would close a loop in the TF tree')

    # ------------------------------------------------------------------------------------------
    # queries
    # ------------------------------------------------------------------------------------------
    def frames(self) -> set[str]:
        """Every frame named by a transform (as child or parent)."""
        with self._lock:
            return set(self._edges) | {e.parent for e in self._edges.values()}

    def clear(self) -> None:
        with self._lock:
            self._edges.clear()

    def _chain(self, frame: str) -> list[str]:
        """[frame, its parent, ..., root]."""
        out = [frame]
        while out[-1] in self._edges and len(out) <= MAX_DEPTH:
            out.append(self._edges[out[-1]].parent)
        return out

    def lookup(self, target: str, source: str, stamp: float | None = None) -> np.ndarray:
        """T_target_source (4, 4) at ``stamp`` (seconds; None = latest common time): maps points of
        frame ``source`` into frame ``target``. Raises MessageError (module docstring)."""
        target, source = _strip(target), _strip(source)
        with self._lock:
            known = set(self._edges) | {e.parent for e in self._edges.values()}
            for f in (target, source):
                if f not in known:
                    raise MessageError('tf_unknown_frame', f'frame {f!r} is not in the TF tree'
                                       + (f' (frames: {", ".join(sorted(known))})' if len(known) <= 20 else ''))
            if target == source:
                return np.eye(4)
            up_s, up_t = self._chain(source), self._chain(target)
            on_t = set(up_t)
            common = next((f for f in up_s if f in on_t), None)
            if common is None:
                raise MessageError('tf_disconnected', f'{target!r} (tree of {up_t[-1]!r}) and {source!r} (tree '
                                                      f'of {up_s[-1]!r}) are not connected')
            path_s = up_s[:up_s.index(common)]            # children whose edges lead source -> common
            path_t = up_t[:up_t.index(common)]
            t = self._latest_common(path_s + path_t) if stamp is None else float(stamp)
            T_common_source = np.eye(4)
            for child in path_s:                          # source upwards: T_c_s = ... @ T_p_child
                T_common_source = self._edges[child].at(child, t) @ T_common_source
            T_common_target = np.eye(4)
            for child in path_t:
                T_common_target = self._edges[child].at(child, t) @ T_common_target
        return invert_pose(T_common_target) @ T_common_source

    def _latest_common(self, children: list[str]) -> float | None:
        """Newest stamp all dynamic edges of ``children`` cover (None: all static)."""
        dyn = [self._edges[c] for c in children if not self._edges[c].static]
        if not dyn:
            return None
        newest = min(e.stamps[-1] for e in dyn)
        oldest = max(e.stamps[0] for e in dyn)
        if newest < oldest - STAMP_EPS:
            raise MessageError('tf_extrapolation_past', f'the path\'s transforms have no common time (newest '
                                                        f'{newest:.3f} < oldest {oldest:.3f})')
        return newest

    def check(self, target: str, source: str, stamp: float | None = None) -> str | None:
        """None when :meth:`lookup` would succeed now, else the reason it would fail with.
        Reasons in :data:`TRANSIENT_REASONS` may clear as transforms arrive (worth waiting for)."""
        try:
            self.lookup(target, source, stamp)
        except MessageError as e:
            return e.reason
        return None
