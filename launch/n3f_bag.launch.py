"""Replay a rosbag2 into the n3f_ros node on simulated time.

Usage::

    ros2 launch n3f_ros n3f_bag.launch.py bag:=/data/tabletop_bag
    ros2 launch n3f_ros n3f_bag.launch.py bag:=/data/wrist_bag rate:=0.5 loop:=true rviz:=true \\
        pose_source:=odom
    ros2 launch n3f_ros n3f_bag.launch.py bag:=/data/tabletop_bag player:=n3f   # no rosbag2 needed

Starts ``n3f.launch.py`` (same arguments: ``params_file``, ``namespace``, ``pose_source``,
``use_depth``, ``world_frame``, ``rviz``, ...) with ``use_sim_time:=true``, and after ``delay``
seconds the player with ``--clock`` so the node's clock follows the bag:

* ``player:=ros2`` (default): ``ros2 bag play BAG --clock --rate RATE [--loop]``;
* ``player:=n3f``: this package's own player, ``n3f play BAG --clock --rate RATE [--loop]``
  (reads mcap/sqlite3 bags with ``rosbags``; useful where rosbag2 is not installed).

The input remappings default to the topic names of the synthetic bags written by ``n3f synth``,
which are also the RealSense driver's: ``/camera/color/image_raw``, ``/camera/color/camera_info``,
``/camera/aligned_depth_to_color/image_raw``, plus ``/camera/pose`` (PoseStamped) or ``/odom``.
"""
import os

from ament_index_python.packages import get_package_prefix
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    OpaqueFunction,
    TimerAction,
)
from launch.launch_description import LaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

PACKAGE = 'n3f_ros'

#: input-topic launch arguments of n3f.launch.py and their defaults for the bag's topic names
BAG_TOPICS = {
    'image': '/camera/color/image_raw',
    'image_compressed': '/camera/color/image_raw/compressed',
    'camera_info': '/camera/color/camera_info',
    'depth': '/camera/aligned_depth_to_color/image_raw',
    'pose': '/camera/pose',
    'odom': '/odom',
}

TRUE_WORDS = ('true', '1', 'yes', 'on')


def player_command(context):
    """Command line of the bag player selected by the ``player`` argument."""
    bag = LaunchConfiguration('bag').perform(context)
    if not bag:
        raise ValueError("launch argument 'bag' is required: bag:=/path/to/rosbag2_folder")
    rate = float(LaunchConfiguration('rate').perform(context))
    if rate <= 0:
        raise ValueError(f"launch argument 'rate' must be > 0, got {rate}")
    loop = LaunchConfiguration('loop').perform(context).strip().lower() in TRUE_WORDS
    player = LaunchConfiguration('player').perform(context).strip()
    if player == 'ros2':
        cmd = ['ros2', 'bag', 'play', bag, '--clock', '--rate', str(rate)]
    elif player == 'n3f':
        executable = os.path.join(get_package_prefix(PACKAGE), 'lib', PACKAGE, 'n3f')
        cmd = [executable, 'play', bag, '--clock', '--rate', str(rate)]
    else:
        raise ValueError(f"launch argument 'player' must be 'ros2' or 'n3f', got '{player}'")
    if loop:
        cmd.append('--loop')
    return cmd


def _player_setup(context, *args, **kwargs):
    """Start the player after ``delay`` seconds, so the node is subscribed before data flows."""
    delay = float(LaunchConfiguration('delay').perform(context))
    player = ExecuteProcess(cmd=player_command(context), name='bag_player', output='screen')
    return [TimerAction(period=delay, actions=[player])] if delay > 0 else [player]


def generate_launch_description():
    """Launch description: bag arguments, the included node launch file, the player."""
    node_launch = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'n3f.launch.py')
    arguments = [
        DeclareLaunchArgument('bag', description='rosbag2 folder (or .mcap/.db3 file) to replay'),
        DeclareLaunchArgument('rate', default_value='1.0', description='Playback rate factor'),
        DeclareLaunchArgument('loop', default_value='false', description='Replay forever'),
        DeclareLaunchArgument('delay', default_value='1.0',
                              description='[s] wait before playing, so the node is up'),
        DeclareLaunchArgument('player', default_value='ros2',
                              description="'ros2' (ros2 bag play) or 'n3f' (n3f play)"),
    ] + [
        DeclareLaunchArgument(name, default_value=topic,
                              description=f'Bag topic remapped to the node input {name}')
        for name, topic in BAG_TOPICS.items()
    ]
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(node_launch),
        launch_arguments=dict(
            {name: LaunchConfiguration(name) for name in BAG_TOPICS},
            use_sim_time='true',
        ).items(),
    )
    return LaunchDescription(arguments + [include, OpaqueFunction(function=_player_setup)])
