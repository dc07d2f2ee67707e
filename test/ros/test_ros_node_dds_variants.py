"""End to end over DDS with the real engine, the other input variants, each in its own node process:

* pose_source odom + camera_extrinsic, bgr8 images and poses offset in time from the images (two
  odometry messages per image, none at the image stamp: interpolated), with depth;
* RGB-only: no depth topic at all; keyframe depth triangulated by multi-view stereo
  (core.stereo), keyframes at the shipped width (160 px: stereo needs the pixels);
* pose_source tf: camera poses only from ``/tf`` (map -> base_link, 30 ms before and 20 ms after
  each image: interpolated) and ``/tf_static`` (base_link -> camera_link -> optical frame, published
  once before the node starts listening: latched), with depth.

The exact pose composition/interpolation is checked in test_ros_node_glue.py; here the whole
chain must map the scene and answer queries (see test_ros_node_dds.py for the set-up).
"""
import logging
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from ros_test_utils import (WORLD, ScenePlayer, diag_counts, diag_value, isolated_objects, object_iou,
                            running_node, spinning_node, surface_point, wait_for)
from scipy.spatial import cKDTree
from sensor_msgs.msg import PointCloud2
from test_ros_node_dds import N_FRAMES, NODE_PARAMS, SEED, SIZE, TRAIN_STEPS

from n3f_ros.client import N3FClient
from n3f_ros.ros.queries import LATCHED as RESULT_QOS
from n3f_ros.core.camera import pose_from_xyz_quat
from n3f_ros.io import encode

log = logging.getLogger(__name__)

NS = '/dds_variants'
EXTRINSIC = [0.05, -0.02, 0.1, 0.5, -0.5, 0.5, -0.5]        # x y z qx qy qz qw: base_link -> camera


@pytest.fixture(params=['odom_bgr8_offset', 'rgb_only', 'tf'])
def setup(request, tmp_path_factory):
    from n3f_ros.core.synth import make_sequence
    seq = make_sequence(SEED, N_FRAMES, *SIZE)
    frames = [seq[i] for i in range(N_FRAMES)]
    gt = seq.gt_points(voxel=0.01, frame_step=2)
    d = tmp_path_factory.mktemp('n3f_variants')
    if request.param == 'rgb_only':
        params = dict(NODE_PARAMS, world_frame=WORLD, keyframe_width='160')
    elif request.param == 'tf':
        params = dict(NODE_PARAMS, pose_source='tf', world_frame=WORLD)
    else:
        params = dict(NODE_PARAMS, pose_source='odom', world_frame=WORLD,
                      camera_extrinsic='[' + ', '.join(str(v) for v in EXTRINSIC) + ']')
    with running_node(params, NS, d) as node, spinning_node('n3f_dds_variants_test') as helper:
        diags, clouds, edits = [], [], []
        helper.create_subscription(DiagnosticArray, f'{NS}/diagnostics', diags.append, 10)
        helper.create_subscription(PointCloud2, f'{NS}/edit/cloud', edits.append, RESULT_QOS)
        yield request.param, node, helper, seq, frames, gt, diags, clouds, edits


def test_input_variant_maps_and_answers(setup):
    variant, node, helper, seq, frames, gt, diags, clouds, edits = setup
    node.wait_ready()
    if variant == 'rgb_only':
        player = ScenePlayer(helper, seq, ns=NS, depth=False)
    elif variant == 'tf':
        player = ScenePlayer(helper, seq, ns=NS, pose_source='tf', depth=True, pose_offsets=(-0.03, 0.02),
                             T_child_cam=pose_from_xyz_quat(EXTRINSIC[:3], [0.0, 0.2588, 0.0, 0.9659]))
    else:
        T_child_cam = pose_from_xyz_quat(EXTRINSIC[:3], EXTRINSIC[3:])
        player = ScenePlayer(helper, seq, ns=NS, pose_source='odom', T_child_cam=T_child_cam,
                             encoding='bgr8', depth=True, pose_offsets=(-0.02, 0.03))
    time.sleep(1.0)
    t0 = time.monotonic()
    for _ in range(2):
        player.play(range(N_FRAMES), period=0.25, frames=frames)
        player.t0 += seq.stamp(N_FRAMES - 1) + 0.1
    steps = TRAIN_STEPS
    wait_for(lambda: int(diag_value(diags, 'train_steps') or 0) >= steps, 400.0, step=0.5,
             what=lambda: f'{steps} training steps (now {diag_value(diags, "train_steps")})'
                         f'; {diag_counts(diags)}')
    log.info(f'\n{variant}: integrated {diag_value(diags, "frames_integrated")}, keyframes '
          f'{diag_value(diags, "keyframes")}, {steps} steps after {time.monotonic() - t0:.1f} s, '
          f'rejected no_pose {diag_value(diags, "rejected/no_pose")}, train step '
          f'{diag_value(diags, "train_step_ms")} ms, submitted {diag_value(diags, "frames_submitted")}')
    assert int(diag_value(diags, 'rejected/no_pose') or 0) <= 1        # poses were interpolated
    if variant == 'tf':
        failed = {kv.key: int(kv.value) for st in diags[-1].status for kv in st.values
                  if kv.key.startswith(('rejected/tf', 'lookup_failed/')) and kv.key.count('/') == 1}
        assert sum(failed.values()) <= 2, failed                          # at most the first frame(s)
    assert int(diag_value(diags, 'keyframes')) >= 6
    # subscribe only now: the node extracts clouds only while feature_cloud has subscribers (on a
    # CPU, extraction every 2 s would take a good share of the training time)
    helper.create_subscription(PointCloud2, f'{NS}/feature_cloud', clouds.append, 1)
    wait_for(lambda: clouds, 60.0, what='feature_cloud')
    assert clouds[-1].header.frame_id == WORLD and clouds[-1].width > 50

    client = N3FClient(helper, namespace=NS, timeout=120.0, spin=False, with_mask=False)
    ious, precisions = {}, {}
    tree = cKDTree(gt.xyz)
    for label in isolated_objects(gt, k=2):
        ans = client.query_point(surface_point(gt, label), frame_id=WORLD)
        t = encode.to_time_msg(ans.stamp_ns)
        wait_for(lambda t=t: any(e.header.stamp == t for e in edits), 10.0, what='edit/cloud')
        arr = encode.pointcloud2_to_array(next(e for e in edits if e.header.stamp == t))
        ious[label] = object_iou(ans.xyz, np.stack([arr['x'], arr['y'], arr['z']], 1), gt, label)
        # share of the answer whose nearest ground-truth point is on the queried object
        precisions[label] = float(np.mean(gt.labels[tree.query(ans.xyz)[1]] == label)) if len(ans) else 0.0
        log.info(f'object {label}: {len(ans)} points ({np.sum(gt.labels == label)} in ground truth), '
              f'IoU {ious[label]:.2f}, precision {precisions[label]:.2f}, score {ans.score:.2f}')
        assert not ans.empty and ans.pose is not None and ans.frame_id == WORLD
    assert max(precisions.values()) >= 0.5, precisions        # the answer is (mostly) the queried object
    # RGB-only: stereo keeps 2-10 % of the pixels, so an answer is 6-13 points here and its IoU
    # moves in steps of ~0.1 (measured, random-init teacher, best of the two objects: 0.35, 0.41,
    # 0.50, 0.60 in four runs, before and after the RGB-only upsampling changes); with depth the
    # answers have many more points
    assert max(ious.values()) >= (0.3 if variant == 'rgb_only' else 0.5), ious
    if variant == 'rgb_only':
        assert int(diag_value(diags, 'stereo_keyframes') or 0) >= 6       # depth came from stereo
