"""The figures of the live-node benchmarks (n3f_ros/bench/node_load.py) from recorded samples (no processes).

The benchmarks themselves run the node for minutes (``n3f bench latency-load``, ``n3f bench soak``;
numbers in bench/RESULTS.md); here only what they compute from their samples is checked.
"""
import numpy as np
import pytest

from n3f_ros.bench.node_load import _diag_periods, _pct, soak_summary


def _samples(minutes: float, rss, sent_hz=30.0, received_hz=27.0):
    t = np.arange(5.0, minutes * 60.0 + 1e-9, 5.0)
    return [{'t': float(x), 'rss_mib': float(rss(x)), 'sent': int(sent_hz * x), 'received': received_hz * x,
             'frames_integrated': 2.0 * x, 'train_steps': 3.0 * x, 'worker_errors': 0.0} for x in t]


def test_soak_summary_flat_after_warmup_and_losses():
    """RSS that rises during warm-up and is flat after it: slope ~0 MiB/h; a growing one: its slope.
    Images lost before the callback = 1 - received / sent."""
    flat = soak_summary(_samples(25, lambda x: 1100 + 300 * min(x, 200) / 200), warmup=300.0, rss_ready=900.0)
    assert abs(flat['rss_slope_after_warmup_mib_per_h']) < 1e-6
    assert flat['rss_at_warmup_mib'] == pytest.approx(1400) and flat['rss_end_mib'] == pytest.approx(1400)
    assert flat['lost_before_callback'] == pytest.approx(0.1, abs=1e-3)
    assert flat['minutes'] == pytest.approx(25) and flat['rss_ready_mib'] == 900.0
    growing = soak_summary(_samples(25, lambda x: 1400 + x / 60.0), warmup=300.0)      # 1 MiB per minute
    assert growing['rss_slope_after_warmup_mib_per_h'] == pytest.approx(60.0, rel=1e-6)
    assert growing['rss_slope_last_half_mib_per_h'] == pytest.approx(60.0, rel=1e-6)
    assert abs(flat['rss_slope_last_half_mib_per_h']) < 1e-6
    assert soak_summary([], warmup=300.0) == {}


def test_diagnostics_periods_and_percentiles():
    """Periods from the node's stamps and from arrival times, inside the phase window only."""
    diag = [(10.0 + i, 100.0 + i * 1.0 + (3.0 if i >= 5 else 0.0), {}) for i in range(10)]
    p = _diag_periods(diag, 10.0, 19.0)
    assert p['stamp']['max'] == pytest.approx(4.0) and p['arrival']['max'] == pytest.approx(1.0)
    assert p['stamp']['n'] == 10 and p['stamp']['mean'] == pytest.approx(12.0 / 9)
    assert _diag_periods(diag, 50.0, 60.0)['stamp']['n'] == 0
    q = _pct([0.1] * 19 + [2.0])
    assert q['p50'] == pytest.approx(0.1) and q['max'] == 2.0 and q['n'] == 20
    assert _pct([]) == {'n': 0}
