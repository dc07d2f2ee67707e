"""TfPoseLookup (n3f_ros/ros/tf_listener.py) over real DDS: a TF publisher process (tf_publisher.py:
map -> base_link at 30 Hz on /tf, base_link -> camera_link -> camera_color_optical_frame published
once on /tf_static before this listener exists, so only latching delivers it) and the listener here
resolving map -> camera_color_optical_frame at stamps between TF samples, failing with reasons.

In the pip world the back-end is the local one (TfTree + tf2_msgs built by scripts/setup_env.sh).
"""
from __future__ import annotations

import math
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest
from ros_test_utils import spinning_node, stop_process, wait_for
from tf_publisher import OPTICAL, WORLD, T_map_optical

from n3f_ros.core.camera import invert_pose, rotation_angle
from n3f_ros.io.decode import MessageError
from n3f_ros.ros.tf_listener import TfPoseLookup

#: type hash of tf2_msgs/msg/TFMessage on real ROS 2 installs (Jazzy, Kilted: `ros2 topic info -v /tf`)
TF_MESSAGE_HASH = 'RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087'


@pytest.fixture(scope='module')
def publisher(tmp_path_factory):
    log = tmp_path_factory.mktemp('tf') / 'publisher.log'
    t0 = time.time()
    with open(log, 'w') as out:
        proc = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).with_name('tf_publisher.py')),
                                 '--t0', repr(t0), '--rate', '30', '--duration', '120'],
                                stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED='1'))
    try:
        wait_for(lambda: proc.poll() is not None or 'static sent' in log.read_text(), 60, what='static TF sent')
        assert proc.poll() is None, log.read_text()
        time.sleep(1.0)              # /tf_static went out before the listener below exists
        yield t0
    finally:
        stop_process(proc, log)


@pytest.fixture(scope='module')
def tf(publisher):
    with spinning_node('tf_listener_test') as node:
        lookup = TfPoseLookup(node, backend='auto')
        wait_for(lambda: lookup.can_lookup(WORLD, OPTICAL, None), 30,
                 what=lambda: f'map -> {OPTICAL} resolvable ({lookup.counters.snapshot()})')
        time.sleep(1.0)              # ~30 more samples of map -> base_link
        yield node, lookup, publisher
        lookup.destroy()


def test_tf2_msgs_type_hash_is_the_one_real_installs_report(tf):
    import json
    node, _, _ = tf
    # the type description rosidl generated: <prefix>/share/tf2_msgs/msg/TFMessage.json (the pip world's
    # prefix is the venv, sys.prefix; a ROS install's is on AMENT_PREFIX_PATH)
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p] + [sys.prefix]
    files = [pathlib.Path(p) / 'share' / 'tf2_msgs' / 'msg' / 'TFMessage.json' for p in prefixes]
    path = next(f for f in files if f.is_file())
    desc = json.loads(path.read_text())
    hashes = {h['type_name']: h['hash_string'] for h in desc['type_hashes']}
    assert hashes['tf2_msgs/msg/TFMessage'] == TF_MESSAGE_HASH
    infos = [i for i in node.get_publishers_info_by_topic('/tf') if i.node_name == 'tf_publisher']
    assert infos and infos[0].topic_type == 'tf2_msgs/msg/TFMessage'
    if hasattr(infos[0], 'topic_type_hash'):          # Jazzy and later advertise it on the wire
        assert str(infos[0].topic_type_hash) == TF_MESSAGE_HASH


def test_camera_pose_between_tf_samples_matches_the_trajectory(tf):
    _, lookup, t0 = tf
    if lookup.backend != 'local':
        pytest.skip('the sample stamps are read from the local buffer')
    assert lookup.counters.get('received/tf_static') == 1       # the single latched message
    edge = lookup.tree._edges['base_link']
    # ~30 samples a second; a loaded machine (CI saw 12 after the fixture's 1 s) needs longer
    wait_for(lambda: len(edge.stamps) >= 20, 30, what=lambda: f'20 samples of map -> base_link ({len(edge.stamps)})')
    stamps = list(edge.stamps)
    rng = np.random.default_rng(0)
    errs_t, errs_r = [], []
    for a, b in list(zip(stamps[:-1], stamps[1:]))[-40:]:
        t = a + rng.uniform(0.1, 0.9) * (b - a)                 # strictly between two TF samples
        T = lookup.lookup_pose(WORLD, OPTICAL, t)
        D = invert_pose(T_map_optical(t - t0)) @ T
        errs_t.append(float(np.linalg.norm(D[:3, 3])))
        errs_r.append(math.degrees(rotation_angle(D[:3, :3])))
    gaps = np.diff(stamps)
    print(f'TF interpolation at {len(errs_t)} stamps between samples (median gap {1e3 * np.median(gaps):.1f} ms): '
          f'translation error max {1e3 * max(errs_t):.2e} mm, rotation error max {max(errs_r):.2e} deg')
    assert max(errs_t) < 1e-3 and max(errs_r) < 0.05


def test_late_transforms_are_waited_for(tf):
    _, lookup, t0 = tf
    stamp = time.time() + 0.3                                   # an image stamped ahead of the newest TF
    assert lookup.poll(WORLD, OPTICAL, stamp, waited=0.0, timeout=2.0) is None
    first = time.monotonic()
    got = []
    wait_for(lambda: got.append(lookup.poll(WORLD, OPTICAL, stamp, waited=time.monotonic() - first, timeout=5.0))
             or got[-1] is not None, 6.0, what='the late transform')
    T = got[-1]
    print(f'an image stamped 0.3 s ahead of /tf resolved after {time.monotonic() - first:.2f} s of waiting')
    D = invert_pose(T_map_optical(stamp - t0)) @ T
    assert np.linalg.norm(D[:3, 3]) < 1e-3


def expect(reason, fn, *args, **kw):
    with pytest.raises(MessageError) as e:
        fn(*args, **kw)
    assert e.value.reason == reason, e.value
    return e.value


def test_unknown_frames_extrapolation_and_bad_transforms_fail_with_their_reasons(tf):
    _, lookup, t0 = tf
    now = time.time()
    expect('tf_unknown_frame', lookup.lookup_pose, WORLD, 'camera_depth_optical_frame', now - 0.5)
    expect('tf_extrapolation_future', lookup.lookup_pose, WORLD, OPTICAL, now + 5.0)
    expect('tf_extrapolation_past', lookup.lookup_pose, WORLD, OPTICAL, t0 - 10.0)   # before the robot started
    # poll: waits for what late transforms can fix, gives up after the timeout, never waits for the past
    assert lookup.poll(WORLD, 'camera_depth_optical_frame', now, waited=0.1, timeout=0.5) is None
    expect('tf_unknown_frame', lookup.poll, WORLD, 'camera_depth_optical_frame', now, waited=0.6, timeout=0.5)
    expect('tf_extrapolation_future', lookup.poll, WORLD, OPTICAL, now + 5.0, waited=0.6, timeout=0.5)
    expect('tf_extrapolation_past', lookup.poll, WORLD, OPTICAL, t0 - 10.0, waited=0.0, timeout=0.5)
    c = lookup.counters.snapshot()
    assert c['lookup_failed/tf_unknown_frame'] >= 2 and c['lookup_failed/tf_extrapolation_past'] >= 2
    # the publisher's NaN transform of broken_link is rejected and counted, never stored
    assert c.get('rejected/tf/tf_invalid', 0) >= 1 and c['rejected/tf_invalid'] == c['rejected/tf/tf_invalid']
    expect('tf_unknown_frame', lookup.lookup_pose, 'base_link', 'broken_link', None)
