"""Replay a rosbag2 into the n3f_ros node on simulated time.

Usage::

    ros2 launch n3f_ros n3f_bag.launch.py bag:=/data/tabletop_bag
    ros2 launch n3f_ros n3f_bag.launch.py bag:=/data/wrist_bag rate:=0.5 loop:=true rviz:=true \\
        pose_source:=odom
    ros2 launch n3f_ros n3f_bag.launch.py bag:=/data/tabletop_bag player:=n3f   # no rosbag2 needed

Starts ``n3f.launch.py`` (same arguments: ``params_file``, ``namespace``, ``pose_source``,
``use_depth``, ``world_frame``, ``teacher_random_init``, ``rviz``, ...) with ``use_sim_time:=true``,
and the player with ``--clock`` so the node's clock follows the bag:

* ``player:=ros2`` (default): ``ros2 bag play BAG --clock --rate RATE [--loop]``;
* ``player:=n3f``: this package's own player, ``n3f play BAG --clock --rate RATE [--loop]``
  (reads mcap/sqlite3 bags with ``rosbags``; useful where rosbag2 is not installed). It also waits
  until the node's image topic has a subscriber (``--wait-topic``; it exits with an error, and so
  ends the launch, if none appears within its default timeout).

Order and failure handling:

1. Before any action is created, the bag path, ``rate`` and the player are checked (``ros2`` on
   PATH and the ``ros2bag`` package for ``player:=ros2``; the installed ``n3f`` executable for
   ``player:=n3f``). Anything missing is one clear error (suggesting ``player:=n3f`` when rosbag2 is
   missing) and nothing is started.
2. The node starts; the player starts only once the node logs its ``ready:`` line (it has
   subscribed and its mapper runs; loading the teacher takes 10-20 s on a CPU), plus ``delay`` s.
   If the node is not ready after ``ready_timeout`` s, the launch shuts down saying so.
3. A player that fails (non-zero exit) shuts the launch down with its exit code and a hint; a
   player that finishes a non-looping bag leaves the node running: its outputs run on a steady
   clock, so ``feature_cloud`` and ``diagnostics`` keep coming after ``/clock`` stops.

Large images: the player publishes the bag's images, so it gets the node's Fast DDS profile too
(``fastdds_profile``, default ``auto`` = ``config/fastdds_large_images.xml`` unless the environment
names one; see n3f.launch.py): with Fast DDS' default transport most 640x480 and larger images at
30 Hz would be lost between the player and the node.

The input remappings default to the topic names of the synthetic bags written by ``n3f synth``,
which are also the RealSense driver's: ``/camera/color/image_raw``, ``/camera/color/camera_info``,
``/camera/aligned_depth_to_color/image_raw``, plus ``/camera/pose`` (PoseStamped) or ``/odom``.
"""
import os
import re
import shutil

from ament_index_python.packages import PackageNotFoundError, get_package_prefix, get_package_share_directory
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
    Shutdown,
    TimerAction,
)
from launch.event_handlers import OnProcessIO
from launch.launch_description import LaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from n3f_ros.ros.interface import NODE_NAME, READY_LOG, READY_PATTERN
from n3f_ros.ros.transport import AUTO, profile_environment

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

#: the node's ready line in its output (see n3f_ros.ros.interface.READY_PATTERN)
READY_RE = re.compile(READY_PATTERN, re.MULTILINE)

#: hint printed whenever rosbag2 is missing or its player fails
N3F_PLAYER_HINT = "replay with this package's player instead: player:=n3f (needs only rclpy and rosbags)"


def _arg(context, name):
    """A launch argument's value, stripped."""
    return LaunchConfiguration(name).perform(context).strip()


def player_command(context):
    """Command line of the bag player selected by the ``player`` argument (checks nothing)."""
    bag = _arg(context, 'bag')
    rate = float(_arg(context, 'rate'))
    loop = _arg(context, 'loop').lower() in TRUE_WORDS
    player = _arg(context, 'player')
    if player == 'ros2':
        cmd = ['ros2', 'bag', 'play', bag, '--clock', '--rate', str(rate)]
    elif player == 'n3f':
        executable = os.path.join(get_package_prefix(PACKAGE), 'lib', PACKAGE, 'n3f')
        cmd = [executable, 'play', bag, '--clock', '--rate', str(rate),
               '--wait-topic', _arg(context, 'image'), _arg(context, 'image_compressed')]
    else:
        raise ValueError(f"launch argument 'player' must be 'ros2' or 'n3f', got '{player}'")
    if loop:
        cmd.append('--loop')
    return cmd


def check_player(context):
    """Raise a clear ``RuntimeError`` when the bag or the selected player is not usable.

    Runs before any action is created, so nothing is started (and nothing left running) on error.
    """
    bag = _arg(context, 'bag')
    if not bag:
        raise ValueError("launch argument 'bag' is required: bag:=/path/to/rosbag2_folder")
    if not os.path.exists(bag):
        raise RuntimeError(f"bag '{bag}' does not exist; nothing was started")
    rate = float(_arg(context, 'rate'))
    if not rate > 0:
        raise ValueError(f"launch argument 'rate' must be > 0, got {rate}")
    for name in ('delay', 'ready_timeout'):
        if float(_arg(context, name)) < 0:
            raise ValueError(f"launch argument '{name}' must be >= 0, got {_arg(context, name)}")
    player = _arg(context, 'player')
    if player == 'ros2':
        missing = []
        if shutil.which('ros2') is None:
            missing.append("the 'ros2' command is not on PATH")
        try:
            get_package_prefix('ros2bag')
        except PackageNotFoundError:
            missing.append("package 'ros2bag' (rosbag2's 'ros2 bag' verb) is not installed")
        if missing:
            raise RuntimeError('player:=ros2 cannot replay the bag: ' + ' and '.join(missing)
                               + '. Install rosbag2 (e.g. apt install ros-$ROS_DISTRO-rosbag2 '
                               f'ros-$ROS_DISTRO-rosbag2-storage-mcap), or {N3F_PLAYER_HINT}. Nothing was started.')
    elif player == 'n3f':
        try:
            prefix = get_package_prefix(PACKAGE)
        except PackageNotFoundError:
            raise RuntimeError(f"player:=n3f needs the installed package '{PACKAGE}'") from None
        path = os.path.join(prefix, 'lib', PACKAGE, 'n3f')
        if not os.access(path, os.X_OK):
            raise RuntimeError(f"player:=n3f: executable '{path}' is missing; rebuild {PACKAGE}")
    else:
        raise ValueError(f"launch argument 'player' must be 'ros2' or 'n3f', got '{player}'")


def player_environment(context):
    """The player's additional environment: the Fast DDS profile of ``fastdds_profile``."""
    return profile_environment(_arg(context, 'fastdds_profile'),
                               os.path.join(get_package_share_directory(PACKAGE), 'config'))


def _check_setup(context, *args, **kwargs):
    """First entity of the description: all checks, no actions."""
    check_player(context)
    player_environment(context)          # a missing profile file: one clear error, nothing started
    return []


def is_n3f_node(action):
    """True for the n3f node's process action (launch_ros Node named NODE_NAME, any namespace)."""
    try:
        return isinstance(action, Node) and action.node_name.rstrip('/').rsplit('/', 1)[-1] == NODE_NAME
    except RuntimeError:             # node_name before the action executed
        return False


class PlayerStarter:
    """Starts the player once, on the node's ready line; shuts the launch down on timeout or failure."""

    def __init__(self, player_cmd, delay, ready_timeout, loop, env=None):
        """``player_cmd``: argv of the player; ``delay``, ``ready_timeout``: seconds (0 = no timeout);
        ``env``: additional environment of the player (the Fast DDS profile)."""
        self.cmd, self.delay, self.ready_timeout, self.loop = player_cmd, delay, ready_timeout, loop
        self.env = dict(env or {})
        self.started = False
        self._tail = ''               # end of the previous output chunk: a line may span two chunks

    def player(self):
        """The player process action."""
        return ExecuteProcess(cmd=self.cmd, name='bag_player', output='screen', additional_env=self.env,
                              on_exit=self.on_player_exit)

    def on_node_output(self, event):
        """OnProcessIO callback (node stdout/stderr): the player once the ready line appears."""
        text = self._tail + event.text.decode(errors='replace')
        self._tail = text[-200:]
        if self.started or not READY_RE.search(text):
            return None
        self.started = True
        msg = LogInfo(msg=f'n3f node is ready: starting the bag player in {self.delay:g} s: {" ".join(self.cmd)}')
        if self.delay > 0:
            return [msg, TimerAction(period=self.delay, actions=[self.player()])]
        return [msg, self.player()]

    def on_timeout(self, context):
        """``ready_timeout`` elapsed: shut down unless the player was started."""
        if self.started or context.is_shutdown:
            return None
        reason = (f'the n3f node did not log "{READY_LOG}" within ready_timeout={self.ready_timeout:g} s: '
                  'shutting the launch down (see its log above; raise ready_timeout on a slow machine)')
        return [LogInfo(msg=reason), Shutdown(reason=reason)]

    def on_player_exit(self, event, context):
        """Player exit: failure -> shut down with a hint; a finished bag -> the node keeps running."""
        if context.is_shutdown:
            return None
        if event.returncode != 0:
            hint = N3F_PLAYER_HINT if self.cmd[0] == 'ros2' else 'see the player output above'
            reason = f'bag player exited with code {event.returncode}: shutting the launch down ({hint})'
            return [LogInfo(msg=reason), Shutdown(reason=reason)]
        return [LogInfo(msg='bag finished; the n3f node keeps running and publishing on its steady-clock '
                            'timers (Ctrl-C to stop)')]


def _player_setup(context, *args, **kwargs):
    """Register the readiness handler that starts the player, and the ready timeout."""
    starter = PlayerStarter(player_command(context), float(_arg(context, 'delay')),
                            float(_arg(context, 'ready_timeout')), _arg(context, 'loop').lower() in TRUE_WORDS,
                            env=player_environment(context))
    actions = [RegisterEventHandler(OnProcessIO(target_action=is_n3f_node, on_stdout=starter.on_node_output,
                                                on_stderr=starter.on_node_output))]
    if starter.ready_timeout > 0:
        actions.append(TimerAction(period=starter.ready_timeout,
                                   actions=[OpaqueFunction(function=starter.on_timeout)]))
    return actions


def generate_launch_description():
    """Launch description: bag arguments, checks, the included node launch file, the player set-up."""
    node_launch = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'n3f.launch.py')
    arguments = [
        DeclareLaunchArgument('bag', description='rosbag2 folder (or .mcap/.db3 file) to replay'),
        DeclareLaunchArgument('rate', default_value='1.0', description='Playback rate factor'),
        DeclareLaunchArgument('loop', default_value='false', description='Replay forever'),
        DeclareLaunchArgument('delay', default_value='1.0',
                              description='[s] wait after the node is ready before playing (discovery)'),
        DeclareLaunchArgument('ready_timeout', default_value='300.0',
                              description='[s] shut down if the node is not ready by then; 0 = wait forever'),
        DeclareLaunchArgument('player', default_value='ros2',
                              description="'ros2' (ros2 bag play) or 'n3f' (n3f play, no rosbag2 needed)"),
        DeclareLaunchArgument('fastdds_profile', default_value=AUTO,
                              description="Fast DDS XML profile of the player and the node: 'auto' = "
                                          'config/fastdds_large_images.xml unless the environment names one; '
                                          "'none'; or a file"),
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
    # Checks first (nothing starts on a bad argument or a missing player), then the readiness
    # handler (registered before the node can print its ready line), then the node.
    return LaunchDescription(arguments + [OpaqueFunction(function=_check_setup),
                                          OpaqueFunction(function=_player_setup), include])
