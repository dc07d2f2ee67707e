"""The node's parameters (SPEC §3): one table, mirrored by ``config/n3f.yaml``.

Engine settings are described once, in ``core/mapping/config.py`` (``MapperConfig`` and the nested
``field.*``, ``render.*``, ``stereo.*`` configurations, see ``core/options.py``); the settings only
the node has (frames, topics, rates, files) are described here. :data:`PARAMETERS` joins both in
the order of :data:`GROUPS`. The node declares every row with a ParameterDescriptor and checks
every change with :func:`validate`; ``test/ros/test_ros_parameters.py`` checks the table against
``config/n3f.yaml`` (names, order, defaults, ranges) so they cannot drift. :func:`parameter_table`
feeds the README's table.

This module imports no ROS package at import time; :func:`descriptor` imports rcl_interfaces.
"""
from __future__ import annotations

import math

from n3f_ros.core.mapping.config import engine_options
from n3f_ros.core.options import OptionInfo, check_value, constraint_text
from n3f_ros.io.pairing import PairingRule
from n3f_ros.io.validation import MAX_FUTURE_DT
from n3f_ros.ros.qos import DEFAULT_INPUT_DEPTH, INPUT_QOS

#: a parameter is an OptionInfo (name, default, type, description, unit, range, choices, length, live)
Param = OptionInfo
_S, _B, _I, _D, _A = 'string', 'bool', 'int', 'double', 'double_array'

#: the parameters only the node has
NODE_PARAMETERS: tuple[Param, ...] = (
    Param('world_frame', 'map', _S, 'frame of poses and of every published cloud, pose and marker'),
    Param('pose_source', 'pose', _S, "'pose': geometry_msgs/PoseStamped on `pose` (camera optical "
          "frame); 'odom': nav_msgs/Odometry on `odom` composed with camera_extrinsic; 'tf': the pose of "
          "the image's header.frame_id in world_frame from /tf + /tf_static at the image stamp",
          choices=('pose', 'odom', 'tf')),
    Param('camera_extrinsic', [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], _A,
          'x y z qx qy qz qw: pose of the camera optical frame in the odometry child frame '
          '(T_child_cam; used with pose_source odom)', unit='m, quaternion', length=7),
    Param('image_transport', 'raw', _S, "'raw': sensor_msgs/Image on `image`; 'compressed': "
          'sensor_msgs/CompressedImage (jpeg/png) on `image/compressed`', choices=('raw', 'compressed')),
    Param('input_qos', INPUT_QOS[0], _S, "QoS of image, depth and camera_info: 'sensor_data' (best effort: "
          "matches any publisher, a busy node drops old frames) or 'reliable' (reliable publishers only, lost "
          'fragments repaired: replays). Images over 512 KB also need config/fastdds_large_images.xml in the '
          'publishing process (README, Large images)', choices=INPUT_QOS),
    Param('input_qos_depth', DEFAULT_INPUT_DEPTH, _I, 'history depth of those subscriptions (messages kept per '
          'topic while the node is busy)', range=(1, 100)),
    Param('max_pose_dt', PairingRule().max_pose_dt, _D, 'a frame with no pose within this of its stamp is dropped '
          '(and depth is paired with an image within this)', 's', (0.001, 1.0), live=True),
    Param('tf_timeout', 0.2, _D, 'pose_source tf: how long an image waits for late transforms before it is '
          'dropped (tf_extrapolation_future)', 's', (0.0, 10.0), live=True),
    Param('max_future_dt', MAX_FUTURE_DT, _D, 'stamps further than this ahead of the node clock are dropped', 's',
          (0.0, 3600.0), live=True),
    Param('cloud_rate', 1.0, _D, 'feature_cloud / feature_image / keyframes publication rate', 'Hz',
          (0.01, 30.0), live=True),
    Param('edit_mode', 'remove', _S, "'remove' (scene without the last queried object) or 'extract' "
          '(only the object) on edit/cloud', choices=('remove', 'extract'), live=True),
    Param('map_path', '~/.ros/n3f_map.pt', _S, 'file used by ~/save and ~/load (~ expanded)', live=True),
    Param('diagnostics_rate', 1.0, _D, 'diagnostics publication rate', 'Hz', (0.01, 30.0), live=True),
)

#: order of the parameters (README table, config/n3f.yaml): (section title, names or a name prefix)
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ('frames and inputs', ('world_frame', 'pose_source', 'camera_extrinsic', 'image_transport', 'input_qos',
                           'input_qos_depth', 'use_depth',
                           'stereo_depth', 'min_depth', 'max_depth', 'max_pose_dt', 'tf_timeout', 'max_future_dt',
                           'max_position', 'queue_size')),
    ('teacher (DINO ViT via timm)', ('teacher_model', 'teacher_checkpoint', 'teacher_random_init',
                                     'teacher_input_width', 'feature_dim', 'device', 'upsample.')),
    ('keyframes', ('keyframe_translation', 'keyframe_rotation', 'max_keyframes', 'keyframe_width')),
    ('field and training', ('scene_bounds', 'bounds_keyframes', 'rays_per_step', 'learning_rate', 'lr_half_life',
                            'lr_min_factor', 'patch_loss_weight', 'patch_loss_share', 'seed')),
    ('fused teacher layer and the choice of features', ('fused_max_voxels', 'feature_source', 'holdout_every',
                                                        'holdout_eval_steps')),
    ('outputs', ('cloud_rate', 'voxel_size', 'num_segments', 'query_threshold', 'query_max_share',
                 'query_min_spread', 'render_width', 'cloud_refresh_steps', 'pca_fit_steps', 'edit_mode', 'map_path',
                 'diagnostics_rate')),
    ('field.*: hash grids and heads of the student field', ('field.',)),
    ('render.*: volume rendering', ('render.',)),
    ('stereo.*: RGB-only keyframe depth by plane-sweep stereo', ('stereo.',)),
)


def _ordered(params) -> tuple[Param, ...]:
    by_name = {p.name: p for p in params}
    out = []
    for _, names in GROUPS:
        for n in names:
            if n.endswith('.'):
                out += [p for p in params if p.name.startswith(n)]
            elif n in by_name:
                out.append(by_name[n])
    missing = set(by_name) - {p.name for p in out}
    if missing:
        raise RuntimeError(f'parameters missing from GROUPS: {sorted(missing)}')
    return tuple(out)


PARAMETERS: tuple[Param, ...] = _ordered(NODE_PARAMETERS + tuple(engine_options()))
BY_NAME = {p.name: p for p in PARAMETERS}


def group_of(name: str) -> str:
    """Section title of a parameter."""
    for title, names in GROUPS:
        if name in names or any(n.endswith('.') and name.startswith(n) for n in names):
            return title
    raise KeyError(name)


def parameter_table() -> list[dict]:
    """Rows for documentation: name, default, type, unit, description, constraint, live."""
    return [{'name': p.name, 'default': p.default, 'type': p.type, 'unit': p.unit,
             'description': p.description, 'constraint': constraint_text(p), 'live': p.live}
            for p in PARAMETERS]


def defaults() -> dict:
    """name -> default value."""
    return {p.name: p.default for p in PARAMETERS}


def validate(name: str, value) -> str | None:
    """None when ``value`` is acceptable for parameter ``name``, else the reason (for the
    set-parameters callback). Type and range are also enforced by ROS through the descriptor;
    this adds choices, array lengths, quaternion norm and bounds ordering."""
    p = BY_NAME.get(name)
    if p is None:
        return None                      # e.g. use_sim_time: not ours
    err = check_value(p, value)
    if err or p.length is None:
        return err
    v = [float(x) for x in value]
    if name == 'camera_extrinsic' and abs(math.sqrt(sum(x * x for x in v[3:])) - 1.0) > 1e-3:
        return 'camera_extrinsic quaternion (qx qy qz qw) must have unit length'
    if name == 'scene_bounds' and any(v) and not all(v[i] < v[i + 3] for i in range(3)):
        return 'scene_bounds needs xmin < xmax, ymin < ymax, zmin < zmax (or all zero)'
    return None


def descriptor(p: Param):
    """rcl_interfaces/ParameterDescriptor of a row (type, description, range, read_only)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    types = {_S: ParameterType.PARAMETER_STRING, _B: ParameterType.PARAMETER_BOOL,
             _I: ParameterType.PARAMETER_INTEGER, _D: ParameterType.PARAMETER_DOUBLE,
             _A: ParameterType.PARAMETER_DOUBLE_ARRAY}
    unit = f' [{p.unit}]' if p.unit else ''
    d = ParameterDescriptor(name=p.name, type=types[p.type], description=p.description + unit,
                            additional_constraints=constraint_text(p), read_only=not p.live)
    if p.range is not None and p.type == _D:
        d.floating_point_range = [FloatingPointRange(from_value=float(p.range[0]),
                                                     to_value=float(p.range[1]), step=0.0)]
    elif p.range is not None and p.type == _I:
        d.integer_range = [IntegerRange(from_value=int(p.range[0]), to_value=int(p.range[1]), step=1)]
    return d
