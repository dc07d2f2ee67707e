"""The one table of the node's parameters (SPEC §3, mirrored by ``config/n3f.yaml``).

Each row gives name, default, type, unit, description, range or allowed choices, and whether it
can change while the node runs (``read_only`` parameters are set at start-up only: with
``--params-file`` or ``-p``). The node declares every row with a ParameterDescriptor and checks
every change with :func:`validate`; ``test/ros/test_parameters.py`` checks the table against
``config/n3f.yaml`` (names, defaults, ranges) so they cannot drift. :func:`parameter_table`
feeds the README's table.

This module imports no ROS package at import time; :func:`descriptor` imports rcl_interfaces.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Param:
    """One parameter. ``type``: 'string' | 'bool' | 'int' | 'double' | 'double_array'.
    ``range``: inclusive (low, high) for numbers; ``choices``: allowed strings (a regex when
    ``choice_pattern``); ``length``: required length of an array."""

    name: str
    default: Any
    type: str
    description: str
    unit: str = ''
    range: tuple | None = None
    choices: tuple | None = None
    choice_pattern: str | None = None
    length: int | None = None
    read_only: bool = True

    @property
    def constraint(self) -> str:
        """Human-readable range / choices (README, descriptor's additional_constraints)."""
        if self.range is not None:
            return f'{self.range[0]:g} .. {self.range[1]:g}'
        if self.choices:
            return ' | '.join(self.choices)
        if self.length:
            return f'{self.length} values'
        return ''


_S, _B, _I, _D, _A = 'string', 'bool', 'int', 'double', 'double_array'

PARAMETERS: tuple[Param, ...] = (
    # --- frames and inputs
    Param('world_frame', 'map', _S, 'frame of poses and of every published cloud, pose and marker'),
    Param('pose_source', 'pose', _S, "'pose': geometry_msgs/PoseStamped on `pose` (camera optical "
          "frame); 'odom': nav_msgs/Odometry on `odom` composed with camera_extrinsic",
          choices=('pose', 'odom')),
    Param('camera_extrinsic', [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], _A,
          'x y z qx qy qz qw: pose of the camera optical frame in the odometry child frame '
          '(T_child_cam; used with pose_source odom)', unit='m, quaternion', length=7),
    Param('image_transport', 'raw', _S, "'raw': sensor_msgs/Image on `image`; 'compressed': "
          'sensor_msgs/CompressedImage (jpeg/png) on `image/compressed`', choices=('raw', 'compressed')),
    Param('use_depth', True, _B, 'use the `depth` topic whenever it publishes (RGB-only otherwise)',
          read_only=False),
    Param('stereo_depth', True, _B, 'without depth images, triangulate keyframe depth by multi-view '
          'stereo between posed keyframes (false: geometry from colour alone, slow to converge)'),
    Param('min_depth', 0.1, _D, 'depth below this is treated as invalid', 'm', (0.0, 10.0),
          read_only=False),
    Param('max_depth', 5.0, _D, 'depth above this is treated as invalid', 'm', (0.1, 100.0),
          read_only=False),
    Param('max_pose_dt', 0.05, _D, 'a frame with no pose within this of its stamp is dropped '
          '(and depth is paired with an image within this)', 's', (0.001, 1.0), read_only=False),
    Param('max_future_dt', 1.0, _D, 'stamps further than this ahead of the node clock are dropped', 's',
          (0.0, 3600.0), read_only=False),
    Param('queue_size', 2, _I, 'frames waiting for the worker (newest wins, drops counted)',
          range=(1, 100)),
    # --- teacher
    Param('teacher_model', 'auto', _S,
          "'auto' (official DINO ViT-S/16, else DINOv2 ViT-S/14, from the HF cache, else the DINOv2 ViT-S/14 "
          "installed by setup: `n3f weights list`) or a timm model name (e.g. vit_small_patch16_224.dino, "
          'vit_small_patch14_dinov2.lvd142m)'),
    Param('teacher_checkpoint', '', _S, "local weights file (.pth/.safetensors), used first; '' = look in "
          'the HF cache and the teacher store'),
    Param('teacher_random_init', False, _B, 'random teacher weights (tests/throughput only)'),
    Param('teacher_input_width', 320, _I, 'image width fed to the ViT (height keeps aspect)', 'px',
          (64, 2048)),
    Param('feature_dim', 64, _I, 'student feature size after PCA of the teacher features', range=(3, 768)),
    Param('device', 'auto', _S, "'auto' (cuda if available), 'cpu', 'cuda' or 'cuda:N'",
          choices=('auto', 'cpu', 'cuda', 'cuda:N'), choice_pattern=r'auto|cpu|cuda(:\d+)?'),
    # --- keyframes
    Param('keyframe_translation', 0.05, _D, 'camera motion that makes a new keyframe', 'm', (0.0, 10.0)),
    Param('keyframe_rotation', 5.0, _D, 'camera rotation that makes a new keyframe', 'deg', (0.0, 180.0)),
    Param('max_keyframes', 64, _I, 'keyframe buffer size (bounded memory)', range=(2, 10000)),
    Param('keyframe_width', 160, _I, 'keyframes are stored downsampled to this width', 'px', (16, 1920)),
    # --- field and training
    Param('scene_bounds', [0.0, 0.0, 0.0, 0.0, 0.0, 0.0], _A,
          'xmin ymin zmin xmax ymax zmax in world_frame; all zero = from the first frames', 'm', length=6),
    Param('rays_per_step', 1024, _I, 'rays per training step', range=(64, 65536)),
    Param('learning_rate', 0.01, _D, 'Adam learning rate', range=(1e-5, 1.0)),
    # --- outputs
    Param('cloud_rate', 1.0, _D, 'feature_cloud / feature_image / keyframes publication rate', 'Hz',
          (0.01, 30.0), read_only=False),
    Param('voxel_size', 0.01, _D, 'voxel size of published clouds', 'm', (0.001, 1.0)),
    Param('num_segments', 8, _I, 'feature clusters before spatial splitting into segment labels',
          range=(1, 256)),
    Param('query_threshold', 0.0, _D, 'cosine-similarity threshold of queries; 0 = automatic',
          range=(0.0, 1.0), read_only=False),
    Param('edit_mode', 'remove', _S, "'remove' (scene without the last queried object) or 'extract' "
          '(only the object) on edit/cloud', choices=('remove', 'extract'), read_only=False),
    Param('map_path', '~/.ros/n3f_map.pt', _S, 'file used by ~/save and ~/load (~ expanded)',
          read_only=False),
    Param('diagnostics_rate', 1.0, _D, 'diagnostics publication rate', 'Hz', (0.01, 30.0), read_only=False),
)

BY_NAME = {p.name: p for p in PARAMETERS}


def parameter_table() -> list[dict]:
    """Rows for documentation: name, default, type, unit, description, constraint, live."""
    return [{'name': p.name, 'default': p.default, 'type': p.type, 'unit': p.unit,
             'description': p.description, 'constraint': p.constraint, 'live': not p.read_only}
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
    if p.type == _D and not math.isfinite(float(value)):
        return f'{name} must be finite'
    if p.range is not None and not (p.range[0] <= value <= p.range[1]):
        return f'{name}={value} outside [{p.range[0]:g}, {p.range[1]:g}]'
    if p.choices is not None:
        ok = re.fullmatch(p.choice_pattern, str(value)) if p.choice_pattern else value in p.choices
        if not ok:
            return f'{name}={value!r}: expected one of {", ".join(p.choices)}'
    if p.length is not None:
        v = [float(x) for x in value]
        if len(v) != p.length:
            return f'{name} needs {p.length} values, got {len(v)}'
        if not all(math.isfinite(x) for x in v):
            return f'{name} must be finite'
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
                            additional_constraints=p.constraint, read_only=p.read_only)
    if p.range is not None and p.type == _D:
        d.floating_point_range = [FloatingPointRange(from_value=float(p.range[0]),
                                                     to_value=float(p.range[1]), step=0.0)]
    elif p.range is not None and p.type == _I:
        d.integer_range = [IntegerRange(from_value=int(p.range[0]), to_value=int(p.range[1]), step=1)]
    return d
