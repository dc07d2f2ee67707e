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
                                     rays_per_step=128, eval_width=32, teacher='synthetic', scene='synth'), **kw})


KEYS = {'student_miou', 'teacher_miou', 'fused_teacher_miou', 'student_map', 'teacher_map', 'fused_teacher_map',
        'train_seconds', 'curve', 'per_object'}


def test_fused_baseline_is_the_mean_over_every_view_that_sees_a_point():
    """Two views with constant teacher maps e0 and e1: a point both see gets normalize(e0 + e1), a
    point only one sees (the other's depth is nearer: occluded) keeps that view's feature."""
    import numpy as np
    import torch

    from n3f_ros.bench.quality import fused_point_features, teacher_point_features
    from n3f_ros.core.camera import PinholeCamera, look_at
    from n3f_ros.core.frame import Frame
    cam = PinholeCamera(40.0, 40.0, 20.0, 15.0, 40, 30)
    pts = np.array([[0.0, 0.0, 0.0], [0.05, 0.0, 0.0]])
    frames = []
    for eye in ((0.0, -0.5, 0.5), (0.5, 0.0, 0.5)):
        T = look_at(eye, (0.0, 0.0, 0.0))
        from n3f_ros.core.camera import project_points
        uv, z = project_points(pts, cam, T)
        depth = np.zeros((30, 40), np.float32)
        for (u, v), zz in zip(uv.astype(int), z):
            depth[v, u] = zz
        frames.append(Frame(np.zeros((30, 40, 3), np.uint8), cam, T, 0.0, depth))
    uv, _ = project_points(pts[1:], cam, frames[1].T_world_cam)
    frames[1].depth[int(uv[0, 1]), int(uv[0, 0])] *= 0.5                # point 1 is hidden in view 1
    maps = [torch.zeros(3, 4, 2), torch.zeros(3, 4, 2)]
    maps[0][..., 0] = 1.0
    maps[1][..., 1] = 1.0
    fused, count = fused_point_features(pts, frames, maps)
    np.testing.assert_allclose(fused[0], [2 ** -0.5, 2 ** -0.5], atol=1e-6)
    np.testing.assert_allclose(fused[1], [1.0, 0.0], atol=1e-6)
    assert count.tolist() == [2, 1]
    single, seen = teacher_point_features(pts, frames, maps)
    assert seen.all() and np.allclose(single[:, 0], 1.0)                  # the first view that sees it


def _table_and_box():
    """A 40 x 40 cm table grid (label 1) and an 8 cm box of points on it (label 2), 1 cm spacing:
    xyz (N, 3) float32 metres, labels (N,)."""
    import numpy as np
    g = np.stack(np.meshgrid(np.arange(-0.2, 0.2, 0.01), np.arange(-0.2, 0.2, 0.01)), -1).reshape(-1, 2)
    table = np.c_[g, np.zeros(len(g))]
    b = np.stack(np.meshgrid(*(np.arange(0.0, 0.08, 0.01),) * 3), -1).reshape(-1, 3) + [0.05, 0.05, 0.01]
    xyz = np.concatenate([table, b]).astype(np.float32)
    return xyz, np.r_[np.ones(len(table), int), np.full(len(b), 2)]


def test_click_points_are_the_top_centre_then_inner_points_of_the_object():
    import numpy as np

    from n3f_ros.bench.quality import segmentation_miou
    from n3f_ros.bench.scoring import object_click_points, object_seed_points
    from n3f_ros.core.synth import GroundTruthPoints
    xyz, labels = _table_and_box()
    gt = GroundTruthPoints(xyz, labels, np.zeros((len(xyz), 3), np.uint8))
    c = object_click_points(gt, [2], clicks=5, seed=1, margin=0.02)[2]
    assert c.shape == (5, 3)
    np.testing.assert_allclose(c[0], object_seed_points(gt, [2])[2])          # the top-centre click first
    assert np.all(c[1:, 2] >= 0.01 + 0.02 - 1e-6)                              # inner: 2 cm above the table
    assert len({tuple(p) for p in c[1:]}) == 4
    np.testing.assert_allclose(object_click_points(gt, [2], clicks=5, seed=1, margin=0.02)[2], c)   # seeded
    # the metric averages the clicks: features that separate the box give IoU 1 from every click
    feats = np.zeros((len(xyz), 2), np.float32)
    feats[labels == 1, 0], feats[labels == 2, 1] = 1.0, 1.0
    miou, per = segmentation_miou(xyz, feats, labels, {2: c}, radius=0.025)
    assert miou == per[2] == 1.0
    half = (labels == 2) & (xyz[:, 0] > 0.085)                                # half of the box looks like table
    feats[half] = [1.0, 0.0]
    _, per = segmentation_miou(xyz, feats, labels, {2: c}, radius=0.025)
    assert 0.0 < per[2] < 1.0


def test_the_threshold_free_measures_sweep_every_threshold():
    """``threshold_sweep``: a box whose features are 0.62-similar to the table's is alone above
    that threshold and floods the table below it: the best threshold gives IoU 1, the sweep the
    mean over the 10 thresholds (3 of them, 0.50 to 0.60, flood)."""
    import numpy as np

    from n3f_ros.bench.quality import SWEEP_THRESHOLDS, threshold_sweep
    xyz, labels = _table_and_box()
    feats = np.zeros((len(xyz), 2), np.float32)
    feats[labels == 1] = [0.62, np.sqrt(1 - 0.62 ** 2)]
    feats[labels == 2] = [1.0, 0.0]
    clicks = {2: np.array([[0.085, 0.085, 0.08]])}
    sweep, oracle = threshold_sweep(xyz, feats, labels, clicks, radius=0.025)
    flooded = (labels == 2).sum() / len(xyz)
    assert SWEEP_THRESHOLDS[0] == 0.5 and SWEEP_THRESHOLDS[-1] == 0.95 and len(SWEEP_THRESHOLDS) == 10
    assert oracle == 1.0
    assert sweep == pytest.approx((7 + 3 * flooded) / 10)


def test_quality_run_reports_three_methods_the_answers_and_a_curve(tmp_path):
    r = run_quality(_tiny(mode='rgbd'), log=lambda *_: None)
    for v in (r.teacher_miou, r.teacher_map, r.fused_teacher_miou, r.fused_teacher_map, r.student_miou,
              r.student_map, r.teacher_geo_miou, r.fused_teacher_geo_miou, r.student_geo_miou, r.answer_miou):
        assert math.isfinite(v) and 0.0 <= v <= 1.0
    # the fused baseline is computed, not copied: its per-object IoUs are its own
    assert set(r.per_object['fused_teacher']) == set(r.per_object['teacher']) == set(r.per_object['student'])
    assert r.per_object['fused_teacher'] != r.per_object['teacher'] or r.fused_teacher_map != r.teacher_map
    assert [c['steps'] for c in r.curve] == [0, 10, 20] and r.train_seconds > 0
    assert r.curve[1]['train_seconds'] < r.curve[2]['train_seconds'] == r.train_seconds
    assert r.curve[0]['answer_source'] == 'fused'                        # answers before any training
    assert set(r.monotone) == {'student_miou', 'student_sweep_miou', 'student_geo_miou', 'answer_miou'}
    for c in r.curve:                                                    # the threshold-free measures
        assert 0.0 <= c['student_sweep_miou'] <= c['student_oracle_miou'] <= 1.0
    assert all(v['ok'] == (v['final'] >= v['best'] - 0.03) for v in r.monotone.values())
    assert r.monotone['answer_miou']['ok'], r.curve                    # the product's answers do not fall
    assert 'student - fused teacher' in format_table(r)
    write_json(r, tmp_path / 'q.json')
    save_plot(r, tmp_path / 'q.png')
    d = json.loads((tmp_path / 'q.json').read_text())
    assert KEYS <= set(d)
    assert (tmp_path / 'q.png').stat().st_size > 1000
    md = markdown_report([d], None)
    assert f"{d['student_miou']:.3f}" in md and f"{d['fused_teacher_map']:.3f}" in md and '| 20 |' in md


def test_bench_all_writes_results_and_a_report(tmp_path):
    out = tmp_path / 'bench'
    assert main(['bench', 'all', '--quick', '--steps', '4', '--frames', '6', '--sizes', '64x48', '--teacher',
                 'synthetic', '--scenes', 'pybullet', '--latency-modes', '', '--out', str(out)]) == 0
    # (the latency run is a DDS session: test/e2e/test_demo.py; its report section: test_bench_latency.py)
    files = {p.name for p in out.iterdir()}
    runs = [f'quality_synthetic_pybullet_{mode}_seed0' for mode in ('rgbd', 'rgb')]
    assert {'speed.json', 'speed.png', 'report.md'} | {r + '.json' for r in runs} | {r + '.png' for r in runs} \
        <= files, files
    report = (out / 'report.md').read_text()
    for run in runs:
        q = json.loads((out / f'{run}.json').read_text())
        scene, mode = run.split('_')[2:4]
        assert q['settings']['mode'] == mode and q['settings']['scene'] == scene and q['settings']['steps'] == 4
        assert KEYS <= set(q)
        assert f"| synthetic | {scene} | {mode} | 4 |" in report and f']({run}.png)' in report
        assert f"]({run.replace('quality_', 'features_')}.png)" in report
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

    from n3f_ros.bench.quality import MODES, TEACHERS
    from n3f_ros.cli import bench
    from n3f_ros.core.synth import SCENE_SOURCES
    assert bench.MODES == MODES and bench.TEACHERS == TEACHERS and bench.SCENES == SCENE_SOURCES
    with pytest.raises(ValueError, match='mode'):
        run_quality(_tiny(mode='stereo'), log=lambda *_: None)
    with pytest.raises(ValueError, match='teacher'):
        run_quality(_tiny(teacher='oracle'), log=lambda *_: None)


def test_dinov2_toy_run_on_pybullet_rgb_only(tmp_path):
    """The real path at toy size: the installed DINOv2 teacher, a pybullet scene, RGB-only (stereo)."""
    r = run_quality(_tiny(teacher='dinov2', scene='pybullet', mode='rgb', steps=10, eval_every=10),
                    log=lambda *_: None)
    assert r.settings['teacher_provenance']['model'] == 'vit_small_patch14_dinov2'
    assert 0.0 <= r.fused_teacher_miou <= 1.0 and 0.0 <= r.fused_teacher_map <= 1.0
    assert r.objects and any(o['small'] for o in r.objects.values())
    assert r.answer_small_miou is not None and 0.0 <= r.answer_small_miou <= 1.0
