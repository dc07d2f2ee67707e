"""The quality benchmark and the one-command report (SPEC §5), at toy sizes: the contract of what
they write, not the quality numbers (those need the full run, see bench/RESULTS.md)."""
import json
import math

import pytest

from n3f_ros.bench.quality import QualitySettings, format_table, run_quality, save_plot, write_json
from n3f_ros.bench.report import markdown_report
from n3f_ros.cli.main import main

pytestmark = pytest.mark.slow


def _tiny(**kw):
    return QualitySettings(**{**dict(frames=8, width=96, height=72, keyframe_width=48, steps=20, eval_every=10,
                                     rays_per_step=128, eval_width=32), **kw})


def test_quality_run_reports_both_methods_and_a_curve(tmp_path):
    r = run_quality(_tiny(mode='rgbd'), log=lambda *_: None)
    for v in (r.teacher_miou, r.teacher_map, r.student_miou, r.student_map):
        assert math.isfinite(v) and 0.0 <= v <= 1.0
    assert [c['steps'] for c in r.curve] == [10, 20] and r.train_seconds > 0
    assert r.curve[0]['train_seconds'] < r.curve[1]['train_seconds'] == r.train_seconds
    assert set(r.per_object['teacher']) == set(r.per_object['student']) and r.per_object['teacher']
    assert 'student - teacher' in format_table(r)
    write_json(r, tmp_path / 'q.json')
    save_plot(r, tmp_path / 'q.png')
    d = json.loads((tmp_path / 'q.json').read_text())
    assert {'student_miou', 'teacher_miou', 'student_map', 'teacher_map', 'train_seconds'} <= set(d)
    assert (tmp_path / 'q.png').stat().st_size > 1000
    md = markdown_report([d], None)
    assert f"{d['student_miou']:.3f}" in md and f"{d['teacher_map']:.3f}" in md and '| 20 |' in md


def test_bench_all_writes_results_and_a_report(tmp_path):
    out = tmp_path / 'bench'
    assert main(['bench', 'all', '--quick', '--steps', '4', '--frames', '6', '--sizes', '64x48',
                 '--out', str(out)]) == 0
    files = {p.name for p in out.iterdir()}
    assert {'quality_rgbd_seed0.json', 'quality_rgb_seed0.json', 'speed.json', 'speed.png', 'report.md',
            'quality_rgbd_seed0.png', 'quality_rgb_seed0.png'} <= files, files
    report = (out / 'report.md').read_text()
    for mode in ('rgbd', 'rgb'):
        q = json.loads((out / f'quality_{mode}_seed0.json').read_text())
        assert q['settings']['mode'] == mode and q['settings']['steps'] == 4
        assert f"| {mode} | 0 | 6 | 4 x " in report and f'](quality_{mode}_seed0.png)' in report
    sp = json.loads((out / 'speed.json').read_text())
    assert [s['size'] for s in sp['stages']] == ['64x48']
    assert '| cpu | 64x48 |' in report and 'query_200k [ms]' in report and '--quick' in report
    st = json.loads((out / 'stereo.json').read_text())
    assert st['keyframes'] == 6 and (out / 'stereo.png').stat().st_size > 1000
    assert f"| filtered | {st['filtered']['coverage']:.2f} |" in report and '](stereo.png)' in report


def test_stereo_benchmark_measures_raw_and_filtered_depth(tmp_path):
    from n3f_ros.bench.stereo import StereoSettings, format_table, run_stereo, save_plot, write_json
    r = run_stereo(StereoSettings(frames=10, width=128, height=96, keyframe_width=128), log=lambda *_: None)
    raw, filt = r['raw'], r['filtered']
    assert r['keyframes'] == 10 and r['seconds_per_keyframe'] > 0
    assert 0 < filt['coverage'] <= raw['coverage'] <= 1
    # the consistency check is there to remove wrong matches
    assert filt['over_5cm'] < raw['over_5cm'] and filt['median_m'] < 0.03
    assert 'filtered' in format_table(r)
    write_json(r, tmp_path / 's.json')
    save_plot(r, tmp_path / 's.png')
    assert json.loads((tmp_path / 's.json').read_text())['filtered'] == filt
    assert (tmp_path / 's.png').stat().st_size > 1000


def test_quality_modes_match_the_cli_and_reject_unknown_ones():
    import pytest

    from n3f_ros.bench.quality import MODES
    from n3f_ros.cli import bench
    assert bench.MODES == MODES
    with pytest.raises(ValueError, match='mode'):
        run_quality(_tiny(mode='stereo'), log=lambda *_: None)
