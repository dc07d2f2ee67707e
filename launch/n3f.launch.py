"""Launch the n3f_ros feature-field node (and optionally RViz2 with the shipped config).

Usage (any ROS 2 distribution from Humble on)::

    ros2 launch n3f_ros n3f.launch.py
    ros2 launch n3f_ros n3f.launch.py image:=/camera/color/image_raw \\
        camera_info:=/camera/color/camera_info depth:=/camera/aligned_depth_to_color/image_raw \\
        pose:=/camera/pose rviz:=true
    ros2 launch n3f_ros n3f.launch.py \\
        params_file:=$(ros2 pkg prefix n3f_ros)/share/n3f_ros/config/realsense_wrist.yaml odom:=/odom

Parameters come from ``params_file`` (default: the installed ``config/n3f.yaml``). The launch
arguments ``pose_source``, ``use_depth``, ``world_frame`` and ``teacher_random_init`` override the
file only when given a non-empty value, so a params file such as ``realsense_wrist.yaml``
(``pose_source: odom``) is not silently overridden by a launch default. ``use_sim_time`` is always
passed.

Every input topic of SPEC §3 can be remapped with the argument of the same name (``image``,
``image_compressed``, ``camera_info``, ``depth``, ``pose``, ``odom``, ``query_point``);
``query_point`` defaults to RViz's ``/clicked_point`` so the "Publish Point" tool queries the map.

Failure handling: with ``rviz:=true`` the rviz2 executable is looked up *before* any action is
created, so a machine without rviz2 gets one clear error and no process is started (nothing is
left running). The node is required: when it exits, the launch shuts down. When rviz2 dies
(non-zero exit, not during shutdown) the launch shuts down too, saying so. RViz gets the node's
effective world frame as its fixed frame (``-f``): the ``world_frame`` argument if given, else the
params file's ``world_frame``, else the node's default.

Large images (issue 14): the node runs with the Fast DDS profile ``config/fastdds_large_images.xml``
(a 32 MB shared-memory segment; Fast DDS' default 512 KB lets most 640x480 and larger images at
30 Hz be lost) through ``FASTDDS_DEFAULT_PROFILES_FILE`` (and ``FASTRTPS_DEFAULT_PROFILES_FILE`` on
Humble/Jazzy, whose Fast DDS 2.x reads only that one).
Argument ``fastdds_profile``: ``auto`` (default: that profile, unless the environment already names
one), ``none``, or a profile file (checked before anything starts). The camera driver publishing
the images needs the same profile in its own environment (README, "Large images").

Only the standard ``launch`` / ``launch_ros`` API is used (``DeclareLaunchArgument``,
``OpaqueFunction``, ``LaunchConfiguration``, ``Shutdown``, ``LogInfo``, ``launch_ros.actions.Node``),
plus this package's ROS-free interface data (node name) and parameter table (default world frame).
"""
import os

import yaml
from ament_index_python.packages import PackageNotFoundError, get_package_prefix, get_package_share_directory
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, Shutdown
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from n3f_ros.ros.interface import NODE_NAME
from n3f_ros.ros.transport import AUTO, profile_environment

PACKAGE = 'n3f_ros'

#: launch argument -> topic name the node subscribes to (SPEC §3, relative names)
INPUT_REMAPS = {
    'image': 'image',
    'image_compressed': 'image/compressed',
    'camera_info': 'camera_info',
    'depth': 'depth',
    'pose': 'pose',
    'odom': 'odom',
    'query_point': 'query/point',
}

#: node parameters that a non-empty launch argument of the same name overrides, with their type
PARAMETER_OVERRIDES = {
    'pose_source': str,
    'use_depth': bool,
    'world_frame': str,
    'teacher_random_init': bool,
}

#: topics the node publishes (SPEC §3); RViz's absolute names are remapped into the namespace
PUBLISHED_TOPICS = (
    'feature_cloud', 'feature_image', 'query/cloud', 'query/pose', 'query/markers', 'query/mask',
    'edit/cloud', 'keyframes', 'diagnostics',
)

TRUE_WORDS = ('true', '1', 'yes', 'on')
FALSE_WORDS = ('false', '0', 'no', 'off')


def _as_bool(name, text):
    """Parse a boolean launch argument, failing loudly on anything else."""
    word = str(text).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"launch argument '{name}' must be true or false, got '{text}'")


def _namespace_prefix(namespace):
    """Absolute prefix for a namespace argument: '' -> '', 'robot1' or '/robot1/' -> '/robot1'."""
    namespace = namespace.strip().strip('/')
    return '/' + namespace if namespace else ''


def executable_in_package(package, executable):
    """Path of ``executable`` as launch_ros resolves it (``<prefix>/lib/<package>/<executable>``).

    Raises ``RuntimeError`` with what is missing when the package is not in the ament index or the
    file is not there / not executable.
    """
    try:
        prefix = get_package_prefix(package)
    except PackageNotFoundError:
        raise RuntimeError(f"package '{package}' is not installed (not found in AMENT_PREFIX_PATH)") from None
    path = os.path.join(prefix, 'lib', package, executable)
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"package '{package}' has no executable '{executable}' ({path})")
    return path


def check_rviz2():
    """Raise a clear ``RuntimeError`` when rviz2 cannot be started (called before any action exists)."""
    try:
        executable_in_package('rviz2', 'rviz2')
    except RuntimeError as e:
        raise RuntimeError(f'rviz:=true but rviz2 cannot be started: {e}. Install rviz2 '
                           '(e.g. apt install ros-$ROS_DISTRO-rviz2) or launch without rviz:=true; '
                           'nothing was started.') from None


def _params_file_value(params_file, name, namespace):
    """Value of parameter ``name`` for node ``NODE_NAME`` in a ROS 2 params file, or None.

    Sections are matched like rcl does for this node: ``/**``, ``n3f``, ``/n3f``, ``<ns>/n3f`` and
    ``/<ns>/n3f``; a node-specific section wins over ``/**``.
    """
    try:
        with open(params_file) as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        raise RuntimeError(f"params_file '{params_file}' cannot be read: {e}") from None
    ns = namespace.strip().strip('/')
    own = {NODE_NAME, '/' + NODE_NAME, ns + '/' + NODE_NAME, '/' + ns + '/' + NODE_NAME}
    value = None
    for key, section in data.items() if isinstance(data, dict) else ():
        params = section.get('ros__parameters', {}) if isinstance(section, dict) else {}
        if name in params and (key in own or (key == '/**' and value is None)):
            value = params[name]
    return value


def effective_world_frame(context):
    """The node's world frame: the ``world_frame`` argument, else the params file's, else the default."""
    override = LaunchConfiguration('world_frame').perform(context).strip()
    if override:
        return override
    value = _params_file_value(LaunchConfiguration('params_file').perform(context), 'world_frame',
                               LaunchConfiguration('namespace').perform(context))
    if value:
        return str(value)
    from n3f_ros.ros.parameters import defaults   # the one place the node's defaults live
    return defaults()['world_frame']


def node_parameters(context):
    """The node's ``parameters`` list: the params file, then the non-empty overrides."""
    params_file = LaunchConfiguration('params_file').perform(context)
    overrides = {'use_sim_time': _as_bool('use_sim_time',
                                          LaunchConfiguration('use_sim_time').perform(context))}
    for name, kind in PARAMETER_OVERRIDES.items():
        text = LaunchConfiguration(name).perform(context).strip()
        if text:
            overrides[name] = _as_bool(name, text) if kind is bool else text
    return [params_file, overrides]


def node_remappings(context):
    """``(node topic, target)`` pairs for every input-topic launch argument."""
    return [(topic, LaunchConfiguration(arg).perform(context)) for arg, topic in INPUT_REMAPS.items()]


def dds_environment(context):
    """``additional_env`` of the node (and of the bag player): the Fast DDS profile variables for
    the ``fastdds_profile`` argument (``n3f_ros.ros.transport.profile_environment``)."""
    return profile_environment(LaunchConfiguration('fastdds_profile').perform(context),
                               os.path.join(get_package_share_directory(PACKAGE), 'config'))


def shutdown_on_failure(what, hint=''):
    """``on_exit`` callback: a non-zero exit of ``what`` (outside shutdown) logs why and ends the launch."""
    def on_exit(event, context):
        if context.is_shutdown or event.returncode == 0:
            return None
        reason = f'{what} exited with code {event.returncode}: shutting the launch down' + (
            f' ({hint})' if hint else '')
        return [LogInfo(msg=reason), Shutdown(reason=reason)]
    return on_exit


def _launch_setup(context, *args, **kwargs):
    """Build the node (and RViz2) once the launch arguments are known; checks come first."""
    namespace = LaunchConfiguration('namespace').perform(context)
    use_sim_time = _as_bool('use_sim_time', LaunchConfiguration('use_sim_time').perform(context))
    rviz = _as_bool('rviz', LaunchConfiguration('rviz').perform(context))
    parameters = node_parameters(context)
    remappings = node_remappings(context)
    dds_env = dds_environment(context)        # before any action: a missing profile starts nothing
    if rviz:
        check_rviz2()                          # before any action: a missing rviz2 leaves nothing running
        world_frame = effective_world_frame(context)
    actions = [
        Node(
            package=PACKAGE,
            executable='n3f_node',
            name=NODE_NAME,
            namespace=namespace,
            parameters=parameters,
            remappings=remappings,
            output='screen',
            emulate_tty=True,
            additional_env=dds_env,
            on_exit=Shutdown(reason='n3f_node exited'),
        ),
    ]
    if rviz:
        prefix = _namespace_prefix(namespace)
        # The RViz config names the node's topics at the root namespace (/feature_cloud, ...):
        # follow the node into its namespace.
        rviz_remaps = [('/' + t, prefix + '/' + t) for t in PUBLISHED_TOPICS] if prefix else []
        actions.append(Node(
            package='rviz2',
            executable='rviz2',
            name='rviz2',
            arguments=['-d', LaunchConfiguration('rviz_config').perform(context), '-f', world_frame],
            parameters=[{'use_sim_time': use_sim_time}],
            remappings=rviz_remaps,
            output='screen',
            on_exit=shutdown_on_failure('rviz2', 'run without rviz:=true if no display is available'),
        ))
    return actions


def launch_arguments():
    """Every ``DeclareLaunchArgument`` of this file (also used by ``n3f_bag.launch.py``)."""
    share = get_package_share_directory(PACKAGE)
    return [
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the node (and of all its topics)'),
        DeclareLaunchArgument('params_file', default_value=share + '/config/n3f.yaml',
                              description='Parameter file of the node (see config/n3f.yaml)'),
        DeclareLaunchArgument('pose_source', default_value='',
                              description="Override: 'pose' (PoseStamped) or 'odom' (Odometry); "
                                          "empty = from params_file"),
        DeclareLaunchArgument('use_depth', default_value='',
                              description='Override: true/false, use the depth topic; '
                                          'empty = from params_file'),
        DeclareLaunchArgument('world_frame', default_value='',
                              description='Override: frame of poses and outputs (and RViz fixed frame); '
                                          'empty = from params_file'),
        DeclareLaunchArgument('teacher_random_init', default_value='',
                              description='Override: true = random teacher weights (tests/throughput only, '
                                          'no pretrained weights needed); empty = from params_file'),
        DeclareLaunchArgument('fastdds_profile', default_value=AUTO,
                              description="Fast DDS XML profile of the node: 'auto' = config/fastdds_large_images.xml "
                                          "(large images over shared memory) unless the environment names one; "
                                          "'none'; or a file"),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='Use /clock (true when replaying a bag with --clock)'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='Also start rviz2 with the shipped config'),
        DeclareLaunchArgument('rviz_config', default_value=share + '/rviz/n3f.rviz',
                              description='RViz2 config used when rviz is true'),
        DeclareLaunchArgument('image', default_value='image',
                              description='Colour image topic (sensor_msgs/Image)'),
        DeclareLaunchArgument('image_compressed', default_value='image/compressed',
                              description='Compressed colour image topic (image_transport: compressed)'),
        DeclareLaunchArgument('camera_info', default_value='camera_info',
                              description='CameraInfo topic of the colour camera'),
        DeclareLaunchArgument('depth', default_value='depth',
                              description='Depth image aligned to the colour camera (16UC1 mm or 32FC1 m)'),
        DeclareLaunchArgument('pose', default_value='pose',
                              description='Camera optical-frame pose topic (geometry_msgs/PoseStamped)'),
        DeclareLaunchArgument('odom', default_value='odom',
                              description='Odometry topic (nav_msgs/Odometry, pose_source: odom)'),
        DeclareLaunchArgument('query_point', default_value='/clicked_point',
                              description='Query-by-point topic (default: RViz Publish Point)'),
    ]


def generate_launch_description():
    """Launch description: the arguments above, then the node (and RViz2 when rviz:=true)."""
    return LaunchDescription(launch_arguments() + [OpaqueFunction(function=_launch_setup)])
