"""Static checks of ``launch/n3f.launch.py`` and ``launch/n3f_bag.launch.py``.

The ``launch`` / ``launch_ros`` packages are not installable from PyPI, so these tests cannot run
``ros2 launch``. Instead each launch file is (1) parsed with ``ast`` and its imports checked
against the standard API that exists on Humble, Jazzy and Kilted, then (2) executed with small
*recording* stand-ins for ``launch`` and ``launch_ros`` placed in ``sys.modules`` for the duration
of one test. The stand-ins only record what the file asks for (arguments, nodes, parameters,
remappings, processes); they are not a mock of the product: the launch file's own logic
(OpaqueFunction set-up, overrides, remappings, player command) runs for real, and the results are
checked against the node's declared parameter table and SPEC §3's topic names.
"""
from __future__ import annotations

import ast
import importlib.util
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
                       'SetLaunchConfiguration'},
    'launch.substitutions': {'LaunchConfiguration', 'PathJoinSubstitution', 'TextSubstitution',
                             'PythonExpression'},
    'launch.conditions': {'IfCondition', 'UnlessCondition'},
    'launch.launch_description_sources': {'PythonLaunchDescriptionSource'},
    'launch_ros.actions': {'Node', 'PushRosNamespace', 'SetParameter'},
    'launch_ros.substitutions': {'FindPackageShare', 'FindPackagePrefix'},
    'ament_index_python.packages': {'get_package_share_directory', 'get_package_prefix'},
    'os': None, 'os.path': None,
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

class Recorded:
    """Records its constructor arguments."""

    def __init__(self, *args, **kwargs):
        """Keep args/kwargs for the assertions."""
        self.args, self.kwargs = args, kwargs


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


class LaunchConfiguration(Recorded):
    """``LaunchConfiguration(name)``; ``perform(context)`` like the real one."""

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
                              'LogInfo', 'SetLaunchConfiguration'),
                   DeclareLaunchArgument=DeclareLaunchArgument, OpaqueFunction=OpaqueFunction)
    ros_actions = _recorders('Node', 'PushRosNamespace', 'SetParameter')
    mods = {
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
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(prefix))
    return types.SimpleNamespace(prefix=prefix, share=prefix / 'share' / 'n3f_ros', **mods)


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
    """Every passed parameter is declared by the node, every remapped topic is a SPEC input."""
    ld = load_launch_file(NODE_LAUNCH).generate_launch_description()
    _, _, actions = run_description(ld, {
        'namespace': 'arm', 'params_file': '/cfg/wrist.yaml', 'pose_source': 'odom', 'use_depth': 'False',
        'world_frame': 'base_link', 'use_sim_time': 'true', 'rviz': 'true',
        'image': '/cam/color', 'camera_info': '/cam/info', 'depth': '/cam/depth', 'pose': '/cam/pose',
        'odom': '/arm/odom', 'query_point': '/arm/clicked'})
    [node] = nodes(actions, 'n3f_ros')
    params_file, overrides = node.kwargs['parameters']
    assert params_file == '/cfg/wrist.yaml'
    assert overrides == {'pose_source': 'odom', 'use_depth': False, 'world_frame': 'base_link',
                         'use_sim_time': True}
    assert set(overrides) <= declared_parameters(), set(overrides) - declared_parameters()
    remaps = dict(node.kwargs['remappings'])
    assert set(remaps) <= SUBSCRIBED
    assert remaps['image'] == '/cam/color' and remaps['image/compressed'] == 'image/compressed'
    assert [remaps[k] for k in ('camera_info', 'depth', 'pose', 'odom', 'query/point')] == \
        ['/cam/info', '/cam/depth', '/cam/pose', '/arm/odom', '/arm/clicked']
    assert node.kwargs['namespace'] == 'arm'
    [rviz] = nodes(actions, 'rviz2')
    assert rviz.kwargs['executable'] == 'rviz2'
    assert rviz.kwargs['arguments'] == ['-d', str(launch_api.share / 'rviz' / 'n3f.rviz')]
    assert rviz.kwargs['parameters'] == [{'use_sim_time': True}]
    # RViz's root-namespace topics follow the node into its namespace.
    rviz_remaps = dict(rviz.kwargs['remappings'])
    assert rviz_remaps == {'/' + t: '/arm/' + t for t in PUBLISHED}


def test_node_launch_rejects_bad_booleans(launch_api):
    """A typo in a boolean argument fails loudly instead of silently meaning false."""
    ld = load_launch_file(NODE_LAUNCH).generate_launch_description()
    with pytest.raises(ValueError, match='use_depth'):
        run_description(ld, {'use_depth': 'ture'})


def test_node_launch_params_files_exist_and_match_table():
    """The params files a user passes to the launch file hold only declared parameters."""
    declared = declared_parameters()
    for path in sorted((REPO / 'config').glob('*.yaml')):
        params = yaml.safe_load(path.read_text())['/**']['ros__parameters']
        assert set(params) <= declared, f'{path.name}: {set(params) - declared}'


# --- (3) n3f_bag.launch.py --------------------------------------------------------------------------

def test_bag_launch_includes_node_launch_with_sim_time_and_bag_topics(launch_api):
    """The include passes use_sim_time true and the bag topics; the included file yields the node."""
    ld = load_launch_file(BAG_LAUNCH).generate_launch_description()
    args, context, _actions = run_description(ld, {'bag': '/data/bag'})
    for name in ('bag', 'rate', 'loop'):
        assert name in args
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
    """The bag launch defaults are the topic names n3f_ros.bag.writer writes (once it exists)."""
    writer = pytest.importorskip('n3f_ros.bag.writer')
    if not hasattr(writer, 'BagTopics'):
        pytest.skip('n3f_ros.bag.writer has no BagTopics')
    topics = writer.BagTopics()
    args, _, _ = run_description(load_launch_file(BAG_LAUNCH).generate_launch_description(), {'bag': '/b'})
    for name in BAG_TOPICS:
        assert args[name].kwargs['default_value'] == getattr(topics, name)
    assert args['image_compressed'].kwargs['default_value'] == topics.compressed_topic


def test_bag_launch_player_commands(launch_api):
    """ros2 bag play with --clock/--rate/--loop; the n3f player's command parses with `n3f play`."""
    ld = load_launch_file(BAG_LAUNCH).generate_launch_description()
    _, _, actions = run_description(ld, {'bag': '/data/bag'})
    [timer] = [a for a in actions if type(a).__name__ == 'TimerAction']
    assert timer.kwargs['period'] == 1.0
    [proc] = timer.kwargs['actions']
    assert proc.kwargs['cmd'] == ['ros2', 'bag', 'play', '/data/bag', '--clock', '--rate', '1.0']

    _, _, actions = run_description(ld, {'bag': '/data/bag', 'rate': '0.5', 'loop': 'true', 'delay': '0',
                                         'player': 'n3f'})
    [proc] = actions
    cmd = proc.kwargs['cmd']
    assert cmd[0] == str(launch_api.prefix / 'lib' / 'n3f_ros' / 'n3f')
    assert cmd[1:] == ['play', '/data/bag', '--clock', '--rate', '0.5', '--loop']
    from n3f_ros.cli.main import build_parser

    parsed = build_parser().parse_args(cmd[1:])
    assert (parsed.bag, parsed.rate, parsed.loop, parsed.clock) == ('/data/bag', 0.5, True, 40.0)

    with pytest.raises(ValueError, match='bag'):
        run_description(ld, {'bag': ''})
    with pytest.raises(ValueError, match='player'):
        run_description(ld, {'bag': '/b', 'player': 'rosbag'})
