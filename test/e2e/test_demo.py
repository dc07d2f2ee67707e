"""``n3f demo`` end to end at toy size: a pybullet scene streamed over DDS into the node process
(shipped config, the real DINOv2 teacher at a small input), every object queried through ~/query,
the map saved through ~/save_map, and the outputs the README promises written."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_demo_script_sets_up_then_runs_the_demo():
    text = (ROOT / 'scripts' / 'demo.sh').read_text()
    assert text.index('bash scripts/setup_env.sh') < text.index('n3f demo "$@"')


def test_demo_at_toy_size_writes_its_outputs(tmp_path):
    out = tmp_path / 'demo_out'
    cmd = [sys.executable, '-m', 'n3f_ros.cli.main', 'demo', str(out), '--frames', '8', '--fps', '4',
           '--size', '128x96', '--max-wait', '8', '--param', 'teacher_input_width:=128',
           '--param', 'keyframe_width:=64', '--param', 'rays_per_step:=128']
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=dict(os.environ, PYTHONUNBUFFERED='1'))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert '[live] first feature_cloud' in r.stdout and 'mean IoU >= 0.5 after' in r.stdout   # progress + table
    s = json.loads((out / 'summary.json').read_text())
    assert s['teacher']['teacher'] == 'vit_small_patch14_dinov2' and s['teacher']['teacher_source'] == 'store'
    assert s['counts']['frames_sent'] == 8 and s['counts']['received'] >= 7 and s['counts']['keyframes'] >= 3
    assert s['counts']['train_steps'] > 0 and s['times']['first_cloud'] > 0 and s['rounds']
    assert len(s['final']) == len(s['objects']) >= 6
    ious = [e['iou'] for e in s['final'].values()]
    assert all(0.0 <= v <= 1.0 for v in ious) and max(ious) > 0.2           # some object found, scored
    from n3f_ros.core.cloud import read_ply
    from n3f_ros.core.persistence import load_map_file
    ply = read_ply(out / 'cloud.ply')
    assert len(ply['x']) > 100 and {'red', 'label'} <= set(ply) and np.unique(ply['label']).size >= 2
    assert load_map_file(str(out / 'map.pt'))['train_steps'] > 0
    for png in ('cloud_segments.png', 'cloud_features.png', 'answers.png'):
        assert (out / png).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', png
