"""SPEC §4 checks that need more than one message (decode.py checks single messages).

* :class:`StampMonitor` — per-topic stamps going backwards, stamps too far in the future.
* :func:`fit_camera` — camera_info of another size than the image: K scaled when consistent.
* :func:`align_depth` — depth of another resolution than the colour image: nearest resize.
* :func:`check_depth` — NaN / zero / negative / out-of-range depth masked to 0; all invalid
  -> ``'bad_depth'``.

Empty and huge messages are rejected while decoding (``decode.MAX_BYTES``, ``decode.MAX_PIXELS``),
before anything is allocated. All failures raise :class:`~n3f_ros.io.decode.MessageError`.
"""
from __future__ import annotations

import threading

import numpy as np

from n3f_ros.core.camera import PinholeCamera
from n3f_ros.core.raster import clean_depth, resize_nearest
from n3f_ros.io.decode import MessageError

#: default largest lead (seconds) of a stamp over the node clock
MAX_FUTURE_DT = 1.0

__all__ = ['MessageError', 'StampMonitor', 'align_depth', 'check_depth', 'consistent_scale', 'fit_camera', 'safe_text']


class StampMonitor:
    """Per-topic stamp sanity (seconds).

    ``check(topic, stamp, now)`` raises ``'stamp_backwards'`` when ``stamp`` is older than the
    last accepted stamp of ``topic`` (equal stamps are allowed) and ``'stamp_future'`` when it is
    more than ``max_future_dt`` ahead of ``now`` (the node clock; ``now <= 0`` — sim time not
    running yet — skips that test). An accepted stamp ahead of the node clock is remembered as the
    clock's time, so one message stamped a little in the future (within ``max_future_dt``) cannot
    make the valid messages after it count as going backwards. ``reset()`` forgets all (after a
    bag restarts from the beginning, call the node's ``~/reset``).
    """

    def __init__(self, max_future_dt: float = MAX_FUTURE_DT):
        self.max_future_dt = float(max_future_dt)
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, topic: str, stamp: float, now: float | None = None) -> None:
        with self._lock:
            clock = now is not None and now > 0
            if clock and stamp > now + self.max_future_dt:
                raise MessageError('stamp_future',
                                   f'stamp {stamp:.6f} is {stamp - now:.3f} s ahead of the node clock '
                                   f'(max_future_dt {self.max_future_dt:g} s)')
            last = self._last.get(topic)
            if last is not None and stamp < last:
                raise MessageError('stamp_backwards',
                                   f'stamp {stamp:.6f} is {last - stamp:.6f} s older than the previous '
                                   'message (call ~/reset after restarting a bag)')
            self._last[topic] = min(stamp, now) if clock else stamp

    def reset(self) -> None:
        with self._lock:
            self._last.clear()


def consistent_scale(src_w: int, src_h: int, dst_w: int, dst_h: int) -> bool:
    """True when resizing ``src`` to ``dst`` keeps the aspect ratio to within one pixel."""
    sy = dst_h / src_h
    sx = dst_w / src_w
    return abs(src_w * sy - dst_w) <= 1.0 and abs(src_h * sx - dst_h) <= 1.0


def fit_camera(camera: PinholeCamera, width: int, height: int) -> PinholeCamera:
    """Intrinsics for an image of ``width`` x ``height`` from camera_info of another size.

    Same size: returned unchanged. Same aspect ratio (to within a pixel): K scaled per axis
    (the image was resized, e.g. a binned or decimated stream). Otherwise ``'size_mismatch'``
    (cropped or a different camera: K cannot be trusted).
    """
    if camera.size == (width, height):
        return camera
    if not consistent_scale(camera.width, camera.height, width, height):
        raise MessageError('size_mismatch',
                           f'image is {width}x{height} but camera_info is {camera.width}x{camera.height} '
                           'with a different aspect ratio (K cannot be scaled)')
    return camera.scaled(width, height)


def align_depth(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """Depth (h, w) -> (height, width) by nearest-neighbour resize (no mixing across edges).

    Raises ``'size_mismatch'`` when the aspect ratios differ (the depth is not registered to the
    colour image).
    """
    h, w = depth.shape
    if (w, h) == (width, height):
        return depth
    if not consistent_scale(w, h, width, height):
        raise MessageError('size_mismatch', f'depth is {w}x{h} but image is {width}x{height} with a '
                                            'different aspect ratio (depth must be aligned to colour)')
    return resize_nearest(depth, width, height)


def check_depth(depth: np.ndarray, min_depth: float = 0.0, max_depth: float = np.inf
                ) -> tuple[np.ndarray, float]:
    """A depth image as received: invalid pixels (NaN, inf, <= 0, outside [min_depth, max_depth] metres) set to 0
    (``core.raster.clean_depth``). Returns (float32 depth, fraction of valid pixels). Raises
    ``'bad_depth'`` when no pixel is valid (the depth image is dropped).
    """
    cleaned = clean_depth(depth, min_depth, max_depth)
    frac = float(np.count_nonzero(cleaned)) / cleaned.size if cleaned.size else 0.0   # valid <=> > 0 after cleaning
    if frac == 0.0:
        raise MessageError('bad_depth', f'depth image has no valid pixel in [{min_depth:g}, {max_depth:g}] m '
                                        '(all NaN, zero, negative or out of range)')
    return cleaned, frac


#: longest untrusted string (names, frame ids) quoted in a log line or error, characters
MAX_LOGGED_TEXT = 64


def safe_text(text, limit: int = MAX_LOGGED_TEXT) -> str:
    """An untrusted string fit for a log line: control characters escaped (no ANSI sequences reach
    a terminal), cut to ``limit`` characters with the original length noted."""
    s = str(text)
    cut = s[:limit].encode('unicode_escape', 'backslashreplace').decode('ascii') if not s[:limit].isprintable() \
        else s[:limit]
    return cut + (f'... ({len(s)} characters)' if len(s) > limit else '')
