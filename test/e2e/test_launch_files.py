"""Static checks of ``launch/n3f.launch.py`` and ``launch/n3f_bag.launch.py``.

The ``launch`` / ``launch_ros`` packages are not installable from PyPI, so these tests cannot run
``ros2 launch``. Instead each launch file is (1) parsed with ``ast`` and its imports checked
against the standard API that exists on Humble, Jazzy and Kilted, then (2) executed with small
*recording* stand-ins for ``launch`` and ``launch_ros`` placed in ``sys.modules`` for the duration
of one test. The stand-ins only record what the file asks for (arguments, nodes, parameters,
remappings, processes); they are not a mock of the product: the launch file's own logic
(OpaqueFunction set-up, overrides, remappings, player command) runs for real, and the results are
checked against the node's declared parameter table and SPEC §3's topic names. The stand-ins
log every object they are asked to create, so a test can tell that a check ran before any action
existed (issue 13: a missing rviz2 or rosbag2 must not leave a node running).

The real upstream ``ros2 launch`` run of these files is ``scripts/check_launch.sh`` (needs the
upstream packages); ``test/e2e/test_node_sim_time.py`` checks the node's side (ready line, steady
timers, SIGINT) over real DDS.
"""
from __future__ import annotations

import ast
import importlib.util
import shutil
import sys
import types
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / 'launch'
NODE_LAUNCH = LAUNCH / 'n3f.launch.py'
BAG_LAUNCH = LAUNCH / 'n3f_bag.launch.py'

#: SPEC §3 "Subscribed" (relative names)
SUBSCRIBED = {'image', 'image/compressed', 'camera_info', 'depth', 'pose', 'odom', 'query/point',
              'query/name', 'prototypes/save'}
#: SPEC §3 "Published"
PUBLISHED = {'feature_cloud', 'feature_image', 'query/cloud', 'query/pose', 'query/markers', 'query/mask',
             'edit/cloud', 'keyframes', 'diagnostics'}
#: Topics of the synthetic bags (n3f_ros/bag/writer.py), which are also the RealSense driver's names
BAG_TOPICS = {'image': '/camera/color/image_raw', 'camera_info': '/camera/color/camera_info',
              'depth': '/camera/aligned_depth_to_color/image_raw', 'pose': '/camera/pose', 'odom': '/odom'}

#: Names each launch module may import: the part of the standard API present on Humble..Kilted.
STANDARD_API = {
    'launch.launch_description': {'LaunchDescription'},
    'launch': {'LaunchDescription'},
    'launch.actions': {'DeclareLaunchArgument', 'OpaqueFunction', 'ExecuteProcess',
                       'IncludeLaunchDescription', 'TimerAction', 'GroupAction', 'LogInfo',
                       'SetLaunchConfiguration', 'RegisterEventHandler', 'Shutdown'},
    # OnProcessIO with a callable target_action, ExecuteProcess(on_exit=callable) and
    # LaunchContext.is_shutdown exist from Humble's launch 1.0 on (read in ros2/launch's humble branch)
    'launch.event_handlers': {'OnProcessIO', 'OnProcessExit', 'OnProcessStart', 'OnShutdown'},
    'launch.substitutions': {'LaunchConfiguration', 'PathJoinSubstitution', 'TextSubstitution',
                             'PythonExpression'},
    'launch.conditions': {'IfCondition', 'UnlessCondition'},
    'launch.launch_description_sources': {'PythonLaunchDescriptionSource'},
    'launch_ros.actions': {'Node', 'PushRosNamespace', 'SetParameter'},
    'launch_ros.substitutions': {'FindPackageShare', 'FindPackagePrefix'},
    'ament_index_python.packages': {'get_package_share_directory', 'get_package_prefix',
                                    'PackageNotFoundError'},
    'os': None, 'os.path': None, 're': None, 'shutil': None, 'yaml': None,
    # this package's ROS-free data: node name, ready line (interface), parameter defaults
    'n3f_ros.ros.interface': {'NODE_NAME', 'READY_LOG', 'READY_PATTERN'},
    'n3f_ros.ros.parameters': {'defaults'},
    # the Fast DDS profile for large images (ROS-free)
    'n3f_ros.ros.transport': {'AUTO', 'profile_environment'},
}


def declared_parameters() -> set[str]:
    """Parameter names the node declares (its table), plus ``use_sim_time`` (declared by rclpy)."""
    try:
        from n3f_ros.ros.parameters import parameter_table
    except ImportError:          # table not there yet: the parameter contract file
        data = yaml.safe_load((REPO / 'config' / 'n3f.yaml').read_text())
        names = set(data['/**']['ros__parameters'])
    else:
        names = {row['name'] if isinstance(row, dict) else getattr(row, 'name', row)
                 for row in parameter_table()}
    return names | {'use_sim_time'}


# --- recording stand-ins for launch / launch_ros (this static test only) ----------------------------

#: every stand-in object created, in order (cleared by the launch_api fixture)
CREATED: list = []


class Recorded:
    """Records its constructor arguments (and that it was created, in CREATED)."""

    def __init__(self, *args, **kwargs):
        """Keep args/kwargs for the assertions."""
        self.args, self.kwargs = args, kwargs
        CREATED.append(self)


class Node(Recorded):
    """``launch_ros.actions.Node``; ``node_name`` as the real one gives it once executed."""

    @property
    def node_name(self):
        """Fully qualified node name ('/ns/name')."""
        ns = self.kwargs.get('namespace', '').strip('/')
        return ('/' + ns if ns else '') + '/' + self.kwargs['name']


class FakeEvent:
    """The attributes of launch's ProcessIO / ProcessExited events that the launch files read."""

    def __init__(self, text=b'', returncode=None):
        """``text``: bytes of one output chunk; ``returncode``: exit code."""
        self.text, self.returncode = text, returncode


class FakeExitContext:
    """A LaunchContext as an on_exit callback sees it."""

    def __init__(self, is_shutdown=False):
        """``is_shutdown``: the launch is already shutting down."""
        self.is_shutdown = is_shutdown


class LaunchDescription(Recorded):
    """``launch.LaunchDescription(entities)``."""

    @property
    def entities(self):
        """The listed actions."""
        return list(self.args[0] if self.args else self.kwargs.get('initial_entities', []))


class DeclareLaunchArgument(Recorded):
    """``DeclareLaunchArgument(name, default_value=..., description=...)``."""

    @property
    def name(self):
        """Argument name."""
        return self.args[0]


class OpaqueFunction(Recorded):
    """``OpaqueFunction(function=f)``: called with the context when the description is run."""


class LaunchConfiguration:
    """``LaunchConfiguration(name)``; ``perform(context)`` like the real one (a substitution, not logged)."""

    def __init__(self, *args, **kwargs):
        """Keep the name."""
        self.args, self.kwargs = args, kwargs

    def perform(self, context):
        """Value of the configuration in ``context`` (KeyError when unset, as in launch)."""
        return context.launch_configurations[self.args[0]]


class FakeContext:
    """Just the ``launch_configurations`` mapping of a LaunchContext."""

    def __init__(self, configurations):
        """``configurations``: name -> string value."""
        self.launch_configurations = dict(configurations)


def _module(name, **attrs):
    """A module object holding ``attrs``."""
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    return mod


def _recorders(*names):
    """A fresh Recorded subclass per name (so isinstance checks can tell them apart)."""
    return {n: type(n, (Recorded,), {}) for n in names}


@pytest.fixture
def launch_api(monkeypatch, tmp_path):
    """Install the recording stand-ins and an ament index in which n3f_ros lives in tmp_path."""
    actions = dict(_recorders('ExecuteProcess', 'IncludeLaunchDescription', 'TimerAction', 'GroupAction',
                              'LogInfo', 'SetLaunchConfiguration', 'RegisterEventHandler', 'Shutdown'),
                   DeclareLaunchArgument=DeclareLaunchArgument, OpaqueFunction=OpaqueFunction)
    ros_actions = dict(_recorders('PushRosNamespace', 'SetParameter'), Node=Node)
    mods = {
        'launch.event_handlers': _module('launch.event_handlers',
                                         **_recorders('OnProcessIO', 'OnProcessExit', 'OnProcessStart',
                                                      'OnShutdown')),
        'launch': _module('launch', LaunchDescription=LaunchDescription),
        'launch.launch_description': _module('launch.launch_description',
                                             LaunchDescription=LaunchDescription),
        'launch.actions': _module('launch.actions', **actions),
        'launch.substitutions': _module('launch.substitutions', LaunchConfiguration=LaunchConfiguration,
                                        **_recorders('PathJoinSubstitution', 'TextSubstitution',
                                                     'PythonExpression')),
        'launch.conditions': _module('launch.conditions', **_recorders('IfCondition', 'UnlessCondition')),
        'launch.launch_description_sources': _module('launch.launch_description_sources',
                                                     **_recorders('PythonLaunchDescriptionSource')),
        'launch_ros': _module('launch_ros'),
        'launch_ros.actions': _module('launch_ros.actions', **ros_actions),
        'launch_ros.substitutions': _module('launch_ros.substitutions',
                                            **_recorders('FindPackageShare', 'FindPackagePrefix')),
    }
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    prefix = tmp_path / 'prefix'
    (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages').mkdir(parents=True)
    (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'n3f_ros').write_text('')
    (prefix / 'share' / 'n3f_ros').mkdir()
    for folder in ('config', 'rviz'):               # installed like setup.py's data_files
        shutil.copytree(REPO / folder, prefix / 'share' / 'n3f_ros' / folder)
    (prefix / 'lib' / 'n3f_ros').mkdir(parents=True)
    _executable(prefix / 'lib' / 'n3f_ros' / 'n3f')
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(prefix))
    monkeypatch.setenv('PATH', str(tmp_path / 'bin'))        # no ros2 unless a test installs one
    (tmp_path / 'bin').mkdir()
    bag = tmp_path / 'bag'
    bag.mkdir()
    CREATED.clear()
    return types.SimpleNamespace(prefix=prefix, share=prefix / 'share' / 'n3f_ros', bag=bag, bin=tmp_path / 'bin',
                                 **mods)


def _executable(path: Path) -> Path:
    """An executable file at ``path`` (what the launch files look up; never run here)."""
    path.write_text('#!/bin/sh\nexit 0\n')
    path.chmod(0o755)
    return path


def install_package(prefix: Path, package: str, executables=()) -> None:
    """Register ``package`` in the ament index under ``prefix`` with ``lib/<package>/<exe>`` files."""
    (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / package).write_text('')
    (prefix / 'lib' / package).mkdir(parents=True, exist_ok=True)
    for exe in executables:
        _executable(prefix / 'lib' / package / exe)


def load_launch_file(path: Path):
    """Execute a launch file as ``ros2 launch`` does (by path, ``__file__`` set) and return the module."""
    spec = importlib.util.spec_from_file_location(path.name.replace('.', '_'), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_description(ld, overrides=None):
    """Declared argument defaults + ``overrides`` -> (context, actions from the OpaqueFunctions)."""
    args = {e.name: e for e in ld.entities if isinstance(e, DeclareLaunchArgument)}
    config = {name: a.kwargs['default_value'] for name, a in args.items() if 'default_value' in a.kwargs}
    config.update(overrides or {})
    context = FakeContext(config)
    produced = []
    for entity in ld.entities:
        if isinstance(entity, OpaqueFunction):
            produced += entity.kwargs['function'](context)
    return args, context, produced


def nodes(actions, package=None):
    """launch_ros Node actions (optionally of one package), also inside TimerActions."""
    out = []
    for a in actions:
        if type(a).__name__ == 'TimerAction':
            out += nodes(a.kwargs['actions'], package)
        elif type(a).__name__ == 'Node' and (package is None or a.kwargs['package'] == package):
            out.append(a)
    return out


def of_type(actions, name):
    """Actions of stand-in class ``name``, also inside TimerActions."""
    out = []
    for a in actions or ():
        if type(a).__name__ == 'TimerAction':
            out += of_type(a.kwargs['actions'], name)
        elif type(a).__name__ == name:
            out.append(a)
    return out


# --- (1) source-level checks -----------------------------------------------------------------------

@pytest.mark.parametrize('path', [NODE_LAUNCH, BAG_LAUNCH], ids=lambda p: p.name)
def test_launch_file_is_python_with_standard_imports(path):
    """Parses, defines generate_launch_description(), imports only the standard launch API."""
    tree = ast.parse(path.read_text(), filename=str(path))
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in functions
    assert not functions['generate_launch_description'].args.args
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            allowed = STANDARD_API.get(node.module, set())
            assert node.module in STANDARD_API, f'{path.name}: import from {node.module}'
            if allowed is not None:
                extra = {a.name for a in node.names} - allowed
                assert not extra, f'{path.name}: {node.module} has no {extra} on every ROS 2 distro'
        elif isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name in STANDARD_API, f'{path.name}: import {alias.name}'


# --- (2) n3f.launch.py ------------------------------------------------------------------------------

def test_node_launch_defaults(launch_api):
    """Default launch: one n3f_node named n3f, installed params file, SPEC topics, /clicked_point."""
    ld = load_launch_file(NODE_LAUNCH).generate_launch_description()
    args, _context, actions = run_description(ld)
    for name in ('namespace', 'params_file', 'pose_source', 'use_depth', 'world_frame', 'use_sim_time',
                 'rviz', 'image', 'camera_info', 'depth', 'pose', 'odom', 'query_point'):
        assert name in args, f'launch argument {name} missing'
        assert args[name].kwargs.get('description'), f'launch argument {name} has no description'
    assert args['params_file'].kwargs['default_value'] == str(launch_api.share / 'config' / 'n3f.yaml')
    assert args['rviz_config'].kwargs['default_value'] == str(launch_api.share / 'rviz' / 'n3f.rviz')
    assert nodes(actions, 'rviz2') == []
    [node] = nodes(actions, 'n3f_ros')
    kw = node.kwargs
    assert (kw['executable'], kw['name'], kw['namespace']) == ('n3f_node', 'n3f', '')
    params_file, overrides = node.kwargs['parameters']
    assert params_file == str(launch_api.share / 'config' / 'n3f.yaml')
    # Empty overrides are not passed: the params file decides; use_sim_time always is.
    assert overrides == {'use_sim_time': False}
    remaps = dict(node.kwargs['remappings'])
    assert set(remaps) <= SUBSCRIBED, set(remaps) - SUBSCRIBED
    assert remaps['query/point'] == '/clicked_point'
    others = {k: v for k, v in remaps.items() if k != 'query/point'}
    assert others == {k: k for k in others}   # identity: relative names, namespace-friendly


def test_node_launch_overrides_remaps_and_rviz(launch_api):
    """Every passed parameter is declared by the node, every remapped topic is a SPEC input; RViz gets
    the shipped config and the world frame as its fixed frame."""
    install_package(launch_api.prefix, 'rviz2', ['rviz2'])
    ld = load_launch_file(NODE_LAUNCH).generate_launch_description()
    _, _, actions = run_description(ld, {
        'namespace': 'arm', 'params_file': str(REPO / 'config' / 'n3f.yaml'), 'pose_source': 'odom',
        'use_depth': 'False', 'world_frame': 'base_link', 'teacher_random_init': 'yes', 'use_sim_time': 'true',
        'rviz': 'true', 'image': '/cam/color', 'camera_info': '/cam/info', 'depth': '/cam/depth',
        'pose': '/cam/pose', 'odom': '/arm/odom', 'query_point': '/arm/clicked'})
    [node] = nodes(actions, 'n3f_ros')
    params_file, overrides = node.kwargs['parameters']
    assert params_file == str(REPO / 'config' / 'n3f.yaml')
    assert overrides == {'pose_source': 'odom', 'use_depth': False, 'world_frame': 'base_link',
                         'teacher_random_init': True, 'use_sim_time': True}
    assert set(overrides) <= declared_parameters(), set(overrides) - declared_parameters()
    remaps = dict(node.kwargs['remappings'])
    assert set(remaps) <= SUBSCRIBED
    assert remaps['image'] == '/cam/color' and remaps['image/compressed'] == 'image/compressed'
    assert [remaps[k] for k in ('camera_info', 'depth', 'pose', 'odom', 'query/point')] == \
        ['/cam/info', '/cam/depth', '/cam/pose', '/arm/odom', '/arm/clicked']
    assert node.kwargs['namespace'] == 'arm'
    [rviz] = nodes(actions, 'rviz2')
    assert rviz.kwargs['executable'] == 'rviz2'
    assert rviz.kwargs['arguments'] == ['-d', str(launch_api.share / 'rviz' / 'n3f.rviz'), '-f', 'base_link']
    assert rviz.kwargs['parameters'] == [{'use_sim_time': True}]
    # RViz's root-namespace topics follow the node into its namespace.
    rviz_remaps = dict(rviz.kwargs['remappings'])
    assert rviz_remaps == {'/' + t: '/arm/' + t for t in PUBLISHED}


def test_node_launch_checks_rviz2_before_creating_any_action(launch_api):
    """rviz:=true without rviz2 (or with a package lacking the executable): one clear error, and not a
    single action exists yet, so nothing can be left running (issue 13, point 1)."""
    ld = load_launch_file(NODE_LAUNCH).generate_launch_description()
    for state in ('no package', 'no executable'):
        if state == 'no executable':
            install_package(launch_api.prefix, 'rviz2')
        before = len(CREATED)
        with pytest.raises(RuntimeError, match='rviz2 cannot be started') as err:
            run_description(ld, {'rviz': 'true'})
        assert CREATED[before:] == [], f'{state}: created before the rviz2 check: {CREATED[before:]}'
        assert 'nothing was started' in str(err.value)
    _executable(launch_api.prefix / 'lib' / 'rviz2' / 'rviz2')
    _, _, actions = run_description(ld, {'rviz': 'true'})
    assert len(nodes(actions, 'rviz2')) == 1 and len(nodes(actions, 'n3f_ros')) == 1


@pytest.mark.parametrize('case', ['argument', 'wrist file', 'shipped file', 'node section', 'default'])
def test_rviz_fixed_frame_is_the_nodes_world_frame(launch_api, tmp_path, case):
    """RViz's ``-f``: the world_frame argument, else the params file's (node section over /**), else
    the node's default; the shipped RViz config's own Fixed Frame is that default (issue 13, point 6)."""
    from n3f_ros.ros.parameters import defaults

    install_package(launch_api.prefix, 'rviz2', ['rviz2'])
    own = tmp_path / 'own.yaml'
    own.write_text(yaml.safe_dump({'/**': {'ros__parameters': {'world_frame': 'odom'}},
                                   '/robot1/n3f': {'ros__parameters': {'world_frame': 'robot1/map'}}}))
    empty = tmp_path / 'empty.yaml'
    empty.write_text(yaml.safe_dump({'/**': {'ros__parameters': {'use_depth': True}}}))
    wrist = REPO / 'config' / 'realsense_wrist.yaml'
    overrides, expected = {
        'argument': ({'world_frame': 'arm_base', 'params_file': str(wrist)}, 'arm_base'),
        'wrist file': ({'params_file': str(wrist)},
                       yaml.safe_load(wrist.read_text())['/**']['ros__parameters']['world_frame']),
        'shipped file': ({'params_file': str(REPO / 'config' / 'n3f.yaml')}, defaults()['world_frame']),
        'node section': ({'params_file': str(own), 'namespace': 'robot1'}, 'robot1/map'),
        'default': ({'params_file': str(empty)}, defaults()['world_frame']),
    }[case]
    ld = load_launch_file(NODE_LAUNCH).generate_launch_description()
    _, _, actions = run_description(ld, dict(overrides, rviz='true'))
    [rviz] = nodes(actions, 'rviz2')
    args = rviz.kwargs['arguments']
    assert args[args.index('-f') + 1] == expected
    rviz_config = yaml.safe_load((REPO / 'rviz' / 'n3f.rviz').read_text())
    assert rviz_config['Visualization Manager']['Global Options']['Fixed Frame'] == defaults()['world_frame']


def test_node_launch_node_required_and_rviz_failure_shuts_down(launch_api):
    """The node's exit ends the launch; rviz2 dying (not during shutdown) ends it too, saying why."""
    install_package(launch_api.prefix, 'rviz2', ['rviz2'])
    ld = load_launch_file(NODE_LAUNCH).generate_launch_description()
    _, _, actions = run_description(ld, {'rviz': 'true'})
    [node] = nodes(actions, 'n3f_ros')
    assert type(node.kwargs['on_exit']).__name__ == 'Shutdown'
    [rviz] = nodes(actions, 'rviz2')
    on_exit = rviz.kwargs['on_exit']
    log, shutdown = on_exit(FakeEvent(returncode=-11), FakeExitContext())
    assert type(shutdown).__name__ == 'Shutdown' and 'rviz2 exited with code -11' in log.kwargs['msg']
    assert on_exit(FakeEvent(returncode=0), FakeExitContext()) is None          # window closed
    assert on_exit(FakeEvent(returncode=-2), FakeExitContext(is_shutdown=True)) is None   # Ctrl-C


def test_node_launch_rejects_bad_booleans(launch_api):
    """A typo in a boolean argument fails loudly instead of silently meaning false."""
    ld = load_launch_file(NODE_LAUNCH).generate_launch_description()
    with pytest.raises(ValueError, match='use_depth'):
        run_description(ld, {'use_depth': 'ture'})


@pytest.fixture
def no_profile_env(monkeypatch):
    """An environment that names no Fast DDS profile (a fresh shell) of an unknown distro (the pip
    world: Kilted wheels, Fast DDS 3)."""
    from n3f_ros.ros.transport import FASTDDS_PROFILE_VARIABLES
    for var in FASTDDS_PROFILE_VARIABLES + ('ROS_DISTRO',):
        monkeypatch.delenv(var, raising=False)
    return FASTDDS_PROFILE_VARIABLES


def test_node_launch_gives_the_node_the_large_image_profile(launch_api, no_profile_env, monkeypatch, tmp_path):
    """Default: the node's environment names the installed config/fastdds_large_images.xml (issue 14)
    in FASTDDS_DEFAULT_PROFILES_FILE, and on Fast DDS 2.x distros also in FASTRTPS_DEFAULT_PROFILES_FILE
    (Kilted warns about that one: not set there); a profile already in the environment wins; 'none'
    sets nothing; another file is passed as is; a missing file is an error before any action."""
    fastdds, fastrtps = no_profile_env
    ld = load_launch_file(NODE_LAUNCH).generate_launch_description()
    args, _, actions = run_description(ld)
    assert args['fastdds_profile'].kwargs['default_value'] == 'auto'
    [node] = nodes(actions, 'n3f_ros')
    shipped = str(launch_api.share / 'config' / 'fastdds_large_images.xml')
    assert node.kwargs['additional_env'] == {fastdds: shipped}
    assert Path(shipped).is_file()
    for distro, expected in (('humble', {fastdds: shipped, fastrtps: shipped}), ('jazzy', {fastdds: shipped,
                             fastrtps: shipped}), ('kilted', {fastdds: shipped}), ('rolling', {fastdds: shipped})):
        monkeypatch.setenv('ROS_DISTRO', distro)
        _, _, actions = run_description(ld)
        assert nodes(actions, 'n3f_ros')[0].kwargs['additional_env'] == expected, distro
    monkeypatch.delenv('ROS_DISTRO')
    own = tmp_path / 'site.xml'
    own.write_text('<dds/>')
    _, _, actions = run_description(ld, {'fastdds_profile': str(own)})
    assert nodes(actions, 'n3f_ros')[0].kwargs['additional_env'] == {fastdds: str(own)}
    _, _, actions = run_description(ld, {'fastdds_profile': 'none'})
    assert nodes(actions, 'n3f_ros')[0].kwargs['additional_env'] == {}
    before = len(CREATED)
    with pytest.raises(RuntimeError, match='not a file'):
        run_description(ld, {'fastdds_profile': str(tmp_path / 'missing.xml')})
    assert CREATED[before:] == []
    monkeypatch.setenv(fastrtps, str(own))        # a site's own profile (the Humble/Jazzy name)
    _, _, actions = run_description(ld)
    assert nodes(actions, 'n3f_ros')[0].kwargs['additional_env'] == {}


def test_bag_player_gets_the_same_profile(launch_api, no_profile_env):
    """The bag player publishes the images: it gets the profile too, and the included node launch
    sees the same argument."""
    install_rosbag2(launch_api)
    ld = bag_ld()
    args, context, actions = run_description(ld, {'bag': str(launch_api.bag), 'delay': '0'})
    assert args['fastdds_profile'].kwargs['default_value'] == 'auto'
    handler, _ = _handler(actions)
    _log, player = handler.kwargs['on_stderr'](FakeEvent(b'[INFO] [1] [n3f]: ready: x\n'))
    shipped = str(launch_api.share / 'config' / 'fastdds_large_images.xml')
    assert player.kwargs['additional_env'] == {no_profile_env[0]: shipped}
    node_args, _, _ = run_description(load_launch_file(NODE_LAUNCH).generate_launch_description())
    assert 'fastdds_profile' in node_args
    with pytest.raises(RuntimeError, match='not a file'):
        run_description(ld, {'bag': str(launch_api.bag), 'fastdds_profile': '/nope.xml'})


def test_node_launch_params_files_exist_and_match_table():
    """The params files a user passes to the launch file hold only declared parameters."""
    declared = declared_parameters()
    for path in sorted((REPO / 'config').glob('*.yaml')):
        params = yaml.safe_load(path.read_text())['/**']['ros__parameters']
        assert set(params) <= declared, f'{path.name}: {set(params) - declared}'


# --- (3) n3f_bag.launch.py --------------------------------------------------------------------------

def bag_ld():
    """The bag launch description (inside the launch_api fixture)."""
    return load_launch_file(BAG_LAUNCH).generate_launch_description()


def install_rosbag2(launch_api):
    """A ``ros2`` on PATH and the ros2bag package in the ament index (what player:=ros2 checks)."""
    _executable(launch_api.bin / 'ros2')
    install_package(launch_api.prefix, 'ros2bag')


def test_bag_launch_includes_node_launch_with_sim_time_and_bag_topics(launch_api):
    """The include passes use_sim_time true and the bag topics; the included file yields the node."""
    install_rosbag2(launch_api)
    ld = bag_ld()
    args, context, _actions = run_description(ld, {'bag': str(launch_api.bag)})
    for name in ('bag', 'rate', 'loop', 'player', 'delay', 'ready_timeout'):
        assert name in args and args[name].kwargs.get('description')
    [include] = [e for e in ld.entities if type(e).__name__ == 'IncludeLaunchDescription']
    [source] = include.args
    included = Path(source.args[0])
    assert included.resolve() == NODE_LAUNCH.resolve()
    passed = dict(include.kwargs['launch_arguments'])
    assert passed['use_sim_time'] == 'true'
    # Every passed argument is declared by the included file.
    node_args, _, _ = run_description(load_launch_file(NODE_LAUNCH).generate_launch_description())
    assert set(passed) <= set(node_args), set(passed) - set(node_args)
    # Resolve the include's arguments in this context and run the included file with them.
    resolved = {k: v.perform(context) if isinstance(v, LaunchConfiguration) else v for k, v in passed.items()}
    for name, topic in BAG_TOPICS.items():
        assert resolved[name] == topic
    _, _, node_actions = run_description(load_launch_file(included).generate_launch_description(), resolved)
    [node] = nodes(node_actions, 'n3f_ros')
    assert node.kwargs['parameters'][1]['use_sim_time'] is True
    remaps = dict(node.kwargs['remappings'])
    assert set(remaps) <= SUBSCRIBED
    for name, topic in BAG_TOPICS.items():
        assert remaps[name] == topic


def test_bag_launch_topics_match_synthetic_bag_writer(launch_api):
    """The bag launch defaults are the topic names n3f_ros.bag.writer writes."""
    from n3f_ros.bag.writer import BagTopics

    topics = BagTopics()
    args = {e.name: e for e in bag_ld().entities if isinstance(e, DeclareLaunchArgument)}
    for name in BAG_TOPICS:
        assert args[name].kwargs['default_value'] == getattr(topics, name)
    assert args['image_compressed'].kwargs['default_value'] == topics.compressed_topic


def test_bag_launch_checks_player_and_bag_before_any_action(launch_api):
    """A missing ros2 / ros2bag, a missing bag or a bad argument: a clear error before the node exists
    (the checks are the first entity, ahead of the include), suggesting player:=n3f (issue 13, point 4)."""
    ld = bag_ld()
    kinds = [type(e).__name__ for e in ld.entities if not isinstance(e, DeclareLaunchArgument)]
    assert kinds[0] == 'OpaqueFunction' and kinds[-1] == 'IncludeLaunchDescription', kinds
    bag = str(launch_api.bag)
    cases = [
        ({'bag': bag}, RuntimeError, "the 'ros2' command is not on PATH"),
        ({'bag': bag, 'player': 'ros2'}, RuntimeError, "package 'ros2bag'"),
        ({'bag': str(launch_api.bag / 'nope')}, RuntimeError, 'does not exist'),
        ({'bag': ''}, ValueError, "'bag' is required"),
        ({'bag': bag, 'player': 'rosbag'}, ValueError, "'player' must be"),
        ({'bag': bag, 'player': 'n3f', 'rate': '0'}, ValueError, "'rate' must be > 0"),
    ]
    for overrides, exc, text in cases:
        before = len(CREATED)
        with pytest.raises(exc, match=text) as err:
            run_description(ld, overrides)
        assert CREATED[before:] == [], f'{overrides}: created before the checks: {CREATED[before:]}'
        if 'ros2' in text:
            assert 'player:=n3f' in str(err.value) and 'Nothing was started' in str(err.value)
    _executable(launch_api.bin / 'ros2')
    with pytest.raises(RuntimeError, match="package 'ros2bag'"):
        run_description(ld, {'bag': bag})
    install_package(launch_api.prefix, 'ros2bag')
    run_description(ld, {'bag': bag})
    (launch_api.prefix / 'lib' / 'n3f_ros' / 'n3f').unlink()
    with pytest.raises(RuntimeError, match='player:=n3f: executable'):
        run_description(ld, {'bag': bag, 'player': 'n3f'})


def _handler(actions):
    """The OnProcessIO handler the bag launch registers, and its timeout timer."""
    [register] = of_type(actions, 'RegisterEventHandler')
    [handler] = register.args
    assert type(handler).__name__ == 'OnProcessIO'
    timers = [a for a in actions if type(a).__name__ == 'TimerAction']
    return handler, timers


def test_bag_player_starts_only_when_the_node_is_ready(launch_api):
    """No player among the launch's actions: it comes from the node's ready line, once (issue 13, point 2)."""
    install_rosbag2(launch_api)
    _, _, actions = run_description(bag_ld(), {'bag': str(launch_api.bag)})
    assert of_type(actions, 'ExecuteProcess') == [], 'the player must wait for the node'
    handler, [timeout] = _handler(actions)
    match = handler.kwargs['target_action']
    assert handler.kwargs['on_stdout'] == handler.kwargs['on_stderr']
    on_output = handler.kwargs['on_stderr']
    # only the n3f node's output counts (any namespace), not rviz2's or the player's
    _, _, node_actions = run_description(load_launch_file(NODE_LAUNCH).generate_launch_description(),
                                         {'namespace': 'robot1'})
    [node] = nodes(node_actions, 'n3f_ros')
    assert match(node) and not match(Node(package='rviz2', executable='rviz2', name='rviz2'))
    assert not match(getattr(launch_api, 'launch.actions').ExecuteProcess(cmd=['x']))
    # the node's log until ready: nothing; the ready line split over two chunks: the player, once
    assert on_output(FakeEvent(b'[INFO] [1700000000.1] [robot1.n3f]: loading teacher\n')) is None
    assert on_output(FakeEvent(b'[INFO] [1700000012.5] [robot1.n3f]: not ready: x\n')) is None
    assert on_output(FakeEvent(b'\x1b[0m[INFO] [1700000013.2] [robot1.n3f]: rea')) is None
    log, timer = on_output(FakeEvent(b"dy: world_frame 'map', pose_source 'pose'\n"))
    assert 'ready' in log.kwargs['msg'] and timer.kwargs['period'] == 1.0       # delay default
    [player] = timer.kwargs['actions']
    assert player.kwargs['cmd'] == ['ros2', 'bag', 'play', str(launch_api.bag), '--clock', '--rate', '1.0']
    assert on_output(FakeEvent(b'[INFO] [1] [robot1.n3f]: ready: again\n')) is None
    # the ready timeout shuts down only while no player was started
    [check] = timeout.kwargs['actions']
    assert timeout.kwargs['period'] == 300.0 and check.kwargs['function'](FakeExitContext()) is None


def test_bag_launch_ready_timeout_and_player_exit(launch_api):
    """Not ready in time: shut down, saying so. Player failure: shut down with its code (and player:=n3f
    as the hint for ros2 bag); a finished bag: the node keeps running (issue 13, points 2-4)."""
    install_rosbag2(launch_api)
    _, _, actions = run_description(bag_ld(), {'bag': str(launch_api.bag), 'ready_timeout': '40', 'delay': '0'})
    handler, [timeout] = _handler(actions)
    [check] = timeout.kwargs['actions']
    log, shutdown = check.kwargs['function'](FakeExitContext())
    assert type(shutdown).__name__ == 'Shutdown' and 'ready_timeout=40' in log.kwargs['msg']
    assert check.kwargs['function'](FakeExitContext(is_shutdown=True)) is None
    _log, player = handler.kwargs['on_stderr'](FakeEvent(b'[INFO] [1] [n3f]: ready: x\n'))   # delay 0
    on_exit = player.kwargs['on_exit']
    log, shutdown = on_exit(FakeEvent(returncode=2), FakeExitContext())
    assert type(shutdown).__name__ == 'Shutdown'
    assert 'exited with code 2' in log.kwargs['msg'] and 'player:=n3f' in log.kwargs['msg']
    [done] = on_exit(FakeEvent(returncode=0), FakeExitContext())
    assert type(done).__name__ == 'LogInfo' and 'keeps running' in done.kwargs['msg']
    assert on_exit(FakeEvent(returncode=-2), FakeExitContext(is_shutdown=True)) is None
    _, _, actions = run_description(bag_ld(), {'bag': str(launch_api.bag), 'ready_timeout': '0'})
    assert _handler(actions)[1] == []                            # 0 = wait forever


def test_bag_launch_n3f_player_command(launch_api):
    """player:=n3f: the installed n3f with --clock/--rate/--loop and --wait-topic on both image topics;
    the command parses with `n3f play`."""
    ld = bag_ld()
    _, _, actions = run_description(ld, {'bag': str(launch_api.bag), 'rate': '0.5', 'loop': 'true', 'delay': '0',
                                         'player': 'n3f', 'image': '/cam/rgb'})
    handler, _ = _handler(actions)
    _log, proc = handler.kwargs['on_stderr'](FakeEvent(b'[INFO] [1] [n3f]: ready: x\n'))
    cmd = proc.kwargs['cmd']
    assert cmd[0] == str(launch_api.prefix / 'lib' / 'n3f_ros' / 'n3f')
    assert cmd[1:] == ['play', str(launch_api.bag), '--clock', '--rate', '0.5', '--wait-topic', '/cam/rgb',
                       BAG_TOPICS['image'] + '/compressed', '--loop']
    from n3f_ros.cli.main import build_parser

    parsed = build_parser().parse_args(cmd[1:])
    assert (parsed.bag, parsed.rate, parsed.loop, parsed.clock) == (str(launch_api.bag), 0.5, True, 40.0)
    assert parsed.wait_topic == ['/cam/rgb', BAG_TOPICS['image'] + '/compressed']
