"""The speed benchmark runs end to end (tiny size, quick) and reports every stage it promises."""
import json
import math

import pytest

from n3f_ros.bench.speed import STAGES, format_table, run_speed, save_plot, write_json

pytestmark = pytest.mark.slow


def test_speed_benchmark_reports_every_stage(tmp_path):
    r = run_speed(devices=['cpu'], sizes=((80, 60),), quick=True, log=lambda *_: None)
    (s,) = r['stages']
    assert s['device'] == 'cpu' and s['size'] == '80x60'
    for k in STAGES:
        assert math.isfinite(s[k]) and s[k] >= 0.0, (k, s[k])
    for k in ('teacher', 'integrate', 'glue', 'stereo', 'fuse', 'train_step', 'measure', 'cloud', 'geometry_200k',
              'query_200k'):
        assert s[k] > 0.0, k
    assert s['query_points'] == 200_000 and s['cloud_points'] > 0
    (m,) = r['memory']
    assert len(m['rss_mb']) == m['frames'] == 40 and m['keyframes'] <= 16
    table = format_table(r)
    assert all(f'{k} [ms]' in table for k in STAGES)
    write_json(r, tmp_path / 'speed.json')
    save_plot(r, tmp_path / 'speed.png')
    assert json.loads((tmp_path / 'speed.json').read_text())['stages'][0]['query_points'] == 200_000
    assert (tmp_path / 'speed.png').stat().st_size > 1000
