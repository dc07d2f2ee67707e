"""``n3f process``: a synthetic rosbag2 (``n3f synth --bag``) mapped offline by the core engine.

The bag and the run are made by the command-line tool in subprocesses, like a user would. The
teacher is the real DINO ViT-S/16 architecture with random weights (no weights can be downloaded
here), at 160 px input, so the run stays short on 2 shared CPU cores (``--threads 1``: torch's
default of one thread per core is ~10x slower when other processes share the cores).

Ground truth per PLY point: the scene is regenerated from the same seed and every point takes the
instance of its nearest ground-truth surface point.
"""
from __future__ import annotations

import logging

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from n3f_ros.core.cloud import read_ply
from n3f_ros.core.teacher.resolve import AUTO_RANDOM_MODEL

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
SEED = 0
FRAMES = 24
SIZE = (160, 120)
#: engine settings small enough for a CPU test
PROCESS_ARGS = ['--random-init', '--teacher-width', '160', '--steps-per-frame', '2', '--final-steps', '60',
                '--rays-per-step', '512', '--device', 'cpu', '--threads', '1', '--quiet']
PURITY = 0.7


def n3f(*args, timeout: float = 180.0) -> subprocess.CompletedProcess:
    """Run the ``n3f`` tool (``python -m n3f_ros.cli.main``) from the repository root."""
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    return subprocess.run([sys.executable, '-m', 'n3f_ros.cli.main', *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope='module')
def bag(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('process') / 'bag'
    r = n3f('synth', path, '--bag', '--frames', FRAMES, '--size', f'{SIZE[0]}x{SIZE[1]}', '--seed', SEED,
            '--quiet', '--pose-offset', '0.013')
    assert r.returncode == 0, r.stderr
    return path


@pytest.fixture(scope='module')
def processed(bag) -> tuple[Path, dict]:
    out = bag.parent / 'out'
    t0 = time.monotonic()
    r = n3f('process', bag, '--out', out, *PROCESS_ARGS)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / 'summary.json').read_text())
    log.info(f'\nn3f process: {elapsed:.1f} s wall; timings {json.dumps(summary["timings"])}')
    return out, summary


@pytest.fixture(scope='module')
def ply(processed) -> dict:
    return read_ply(processed[0] / 'cloud.ply')


def test_outputs_and_summary(processed, ply):
    out, s = processed
    assert sorted(p.name for p in out.iterdir()) == ['cloud.ply', 'cloud_views.png', 'map.pt', 'summary.json']
    assert (out / 'cloud_views.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    f = s['frames']
    assert f['read'] == FRAMES and f['used'] + f['dropped'] == f['read']
    assert sum(f['dropped_by_reason'].values()) == f['dropped']
    assert f['used'] == FRAMES and f['with_depth'] == FRAMES      # every image has a pose and a depth
    assert f['rejected_messages'] == {} and f['poses'] > FRAMES
    assert s['inputs']['image'] == '/camera/color/image_raw' and s['inputs']['pose_source'] == 'pose'
    assert 3 <= s['keyframes'] <= f['used']
    steps = s['training_steps']
    assert steps['final'] == 60 and steps['total'] == steps['online'] + steps['final'] and steps['online'] > 0
    # the default teacher 'auto' with random weights has the architecture a fresh machine runs
    assert s['teacher']['name'] == AUTO_RANDOM_MODEL and s['teacher']['random_init'] is True
    assert s['teacher']['provenance']['source'] == 'random' and s['teacher']['provenance']['weights'] is None
    assert s['teacher']['calls'] == s['keyframes'] and s['device'] == 'cpu'
    t = s['timings']
    for key in ('model_load_s', 'read_decode_s', 'integrate_s', 'teacher_s', 'train_s', 'final_train_s',
                'cloud_s', 'write_s', 'total_s'):
        assert t[key] >= 0.0, key
    assert t['means']['train_ms_per_step'] > 0
    # the PLY: x y z, PCA colour, segment label; consistent with the summary
    assert list(ply) == ['x', 'y', 'z', 'red', 'green', 'blue', 'label']
    n = len(ply['x'])
    assert n == s['cloud']['points'] > 1000
    assert np.all(np.isfinite(np.stack([ply['x'], ply['y'], ply['z']])))
    labels = ply['label']
    assert s['segments']['count'] == len(np.unique(labels[labels > 0]))
    assert sum(s['segments']['points_per_segment'].values()) + s['segments']['unlabelled_points'] == n


def test_map_loads_into_a_fresh_mapper(processed, ply):
    """map.pt is what the node's ~/load reads (Mapper.load): same keyframes, steps and cloud."""
    from n3f_ros.core.mapping import Mapper, MapperConfig
    out, s = processed
    m = Mapper(MapperConfig(device='cpu'), teacher=object())   # a loaded map needs no teacher
    m.load(str(out / 'map.pt'))
    assert len(m.keyframes) == s['keyframes'] and m.train_steps == s['training_steps']['total']
    cloud = m.cloud(force=True)
    assert len(cloud) == len(ply['x'])
    assert np.allclose(np.sort(cloud.xyz[:, 2]), np.sort(ply['z']), atol=1e-6)


def test_labels_separate_the_objects(processed, ply):
    """A segment's majority object covers >= 70 % of its points, for most segments."""
    from scipy.spatial import cKDTree

    from n3f_ros.core.cloud import matched_ious
    from n3f_ros.core.synth import make_sequence
    xyz = np.stack([ply['x'], ply['y'], ply['z']], axis=1)
    labels = ply['label'].astype(np.int64)
    gt = make_sequence(SEED, FRAMES, *SIZE).gt_points(voxel=0.005)
    dist, idx = cKDTree(gt.xyz).query(xyz)
    truth = gt.labels[idx].astype(np.int64)
    assert np.median(dist) < 0.01                         # the cloud lies on the true surfaces
    purities = {}
    for seg in np.unique(labels[labels > 0]):
        ids, counts = np.unique(truth[labels == seg], return_counts=True)
        purities[int(seg)] = (counts.max() / counts.sum(), int(ids[counts.argmax()]), int(counts.sum()))
    log.info(f'\n{len(labels)} points, {len(purities)} segments, {np.sum(labels == 0)} unlabelled')
    for seg, (p, obj, n) in purities.items():
        log.info(f'  segment {seg}: {n} points, majority instance {obj} ({p:.2f})')
    if purities:
        log.info('  matched IoU per instance:',
              {k: round(v, 2) for k, v in matched_ious(labels, truth, ignore=(0,)).items()})
    good = [p >= PURITY for p, _, _ in purities.values()]
    assert len(purities) >= 2 and np.mean(good) > 0.5, purities


def test_missing_topic_lists_the_bag_topics(bag, tmp_path):
    r = n3f('process', bag, '--out', tmp_path / 'o', '--image-topic', '/no/such/image', '--quiet', timeout=60)
    assert r.returncode == 1
    assert '/no/such/image' in r.stderr and 'not in the bag' in r.stderr
    for topic, msgtype in (('/camera/color/image_raw', 'sensor_msgs/msg/Image'),
                           ('/camera/pose', 'geometry_msgs/msg/PoseStamped'),
                           ('/camera/color/camera_info', 'sensor_msgs/msg/CameraInfo')):
        assert f'{topic}  [{msgtype}]' in r.stderr, r.stderr
    assert not (tmp_path / 'o').exists()


def test_frame_source_odometry_compressed_offset_poses(tmp_path):
    """Odometry + extrinsic from n3f_synth.json, jpeg colour, poses offset from the images: frames
    carry the true camera poses (slerp at the image stamps); too tight a max_pose_dt drops them all
    as 'no_pose'; a topic of the wrong type is refused with the bag's topic list."""
    from n3f_ros.bag.frames import BagFrameSource, BagInputError, read_synth_metadata, resolve_inputs
    from n3f_ros.bag.reader import BagReader
    from n3f_ros.bag.writer import BagOptions, write_synthetic_bag
    from n3f_ros.core.synth import make_sequence
    seq = make_sequence(1, 24, 64, 48, shadows=False)   # 15 deg of orbit per frame
    path = tmp_path / 'odom_bag'
    write_synthetic_bag(seq, path, BagOptions(pose_source='odom', compressed=True, depth=False, pose_offset=0.013))
    meta = read_synth_metadata(path)
    with BagReader(path) as reader:
        inputs = resolve_inputs(reader, metadata=meta)
        assert inputs.pose_source == 'odom' and inputs.pose == '/odom' and inputs.depth is None
        assert inputs.image == '/camera/color/image_raw/compressed'
        src = BagFrameSource(reader, inputs, max_pose_dt=0.05)
        frames = list(src)
        assert src.stats.frames_read == src.stats.frames_used == len(frames) == len(seq)
        for f, i in zip(frames, range(len(seq))):
            T = seq.poses[i]
            assert abs(f.stamp - (meta['start_time'] + seq.stamp(i))) < 1e-6
            assert np.linalg.norm(f.T_world_cam[:3, 3] - T[:3, 3]) < 2e-3
            assert np.abs(f.T_world_cam[:3, :3] - T[:3, :3]).max() < 1e-2
            assert f.camera == seq.camera and f.depth is None
            assert np.abs(f.rgb.astype(int) - seq[i].rgb).mean() < 8        # jpeg
        # poses every 33 ms, 13 ms off the images: nothing within 5 ms
        src = BagFrameSource(reader, resolve_inputs(reader, metadata=meta), max_pose_dt=0.005)
        assert list(src) == [] and src.stats.as_dict()['dropped_by_reason'] == {'no_pose': len(seq)}
        with pytest.raises(BagInputError, match='is nav_msgs/msg/Odometry, expected') as e:
            BagFrameSource(reader, resolve_inputs(reader, depth='/odom', metadata=meta))
        assert '/camera/color/camera_info  [sensor_msgs/msg/CameraInfo]' in str(e.value)
