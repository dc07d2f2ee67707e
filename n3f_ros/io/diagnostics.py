"""Counters, rates and memory figures for the node's ``diagnostics`` topic (no rclpy here).

The node publishes three DiagnosticStatus entries (names prefixed with the node name):

* ``input``: per-topic message rates [Hz] and ``received/<topic>`` counts, frames submitted [Hz],
  ``rejected/<reason>`` counts (SPEC §4) and ``rejected/<topic>/<reason>``, ``warning/<what>``
  counts; WARN while rejections increase.
* ``mapper``: the Mapper's stats (keyframes, training steps, losses, queue drops, stage timings
  in ms, ``frames_integrated`` and its rate [Hz]); WARN when paused or on worker errors.
* ``memory``: resident set size [MiB], CUDA memory allocated/reserved [MiB] when CUDA is used.
"""
from __future__ import annotations

import collections
import os
import threading
import time


class Counters:
    """Thread-safe named counters with rates between successive :meth:`rates` calls."""

    def __init__(self):
        self._c: collections.Counter = collections.Counter()
        self._prev: dict = {}
        self._prev_t = time.monotonic()
        self._lock = threading.Lock()

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._c[key] += n

    def get(self, key: str) -> int:
        with self._lock:
            return self._c[key]

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self._c)

    def rates(self) -> dict:
        """key -> events per second since the previous call (keys present now)."""
        with self._lock:
            now = time.monotonic()
            dt = max(now - self._prev_t, 1e-6)
            out = {k: (v - self._prev.get(k, 0)) / dt for k, v in self._c.items()}
            self._prev, self._prev_t = dict(self._c), now
            return out

    def clear(self) -> None:
        with self._lock:
            self._c.clear()
            self._prev.clear()


def memory_stats() -> dict:
    """Resident memory of this process and CUDA memory (MiB)."""
    out = {}
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    out['rss_mib'] = int(line.split()[1]) / 1024.0
                    break
    except OSError:
        import resource
        out['max_rss_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    try:
        import torch
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            out['cuda_allocated_mib'] = torch.cuda.memory_allocated() / 2**20
            out['cuda_reserved_mib'] = torch.cuda.memory_reserved() / 2**20
    except ImportError:
        pass
    out['pid'] = os.getpid()
    return out


def statuses(node_name: str, counters: dict, rates: dict, mapper_stats: dict, mapper_rate: float,
             new_rejections: int) -> list:
    """(name, level, message, values, hardware_id) tuples for encode.diagnostic_array_msg."""
    rejected = {k: v for k, v in counters.items() if k.startswith('rejected/')}
    total = sum(v for k, v in rejected.items() if k.count('/') == 1)
    inp = {f'rate/{k[9:]}': round(v, 3) for k, v in rates.items() if k.startswith('received/')}
    inp.update(sorted((k, v) for k, v in counters.items() if k.startswith('received/')))
    inp.update(frames_submitted_hz=round(rates.get('frames_submitted', 0.0), 3),
               frames_submitted=counters.get('frames_submitted', 0), rejected_total=total)
    inp.update(sorted(rejected.items()))
    inp.update(sorted((k, v) for k, v in counters.items() if k.startswith('warning/')))
    in_level = 'warn' if new_rejections else 'ok'
    in_msg = f'{new_rejections} message(s) rejected since last report' if new_rejections else 'ok'

    m = dict(mapper_stats)
    m['frames_integrated_hz'] = round(mapper_rate, 3)
    errors = int(m.get('worker_errors', 0))
    paused = bool(m.get('paused', False))
    m_level = 'warn' if (paused or errors) else 'ok'
    m_msg = 'paused' if paused else (f'{errors} worker error(s)' if errors else 'mapping')
    return [
        (f'{node_name}: input', in_level, in_msg, inp, node_name),
        (f'{node_name}: mapper', m_level, m_msg, m, node_name),
        (f'{node_name}: memory', 'ok', 'ok', memory_stats(), node_name),
    ]
