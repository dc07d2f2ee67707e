"""SPEC §2: the core layer imports no ROS (rclpy, *_msgs, rosbags, launch)."""
import ast
import pathlib

CORE = pathlib.Path(__file__).resolve().parents[2] / 'n3f_ros' / 'core'
FORBIDDEN = ('rclpy', 'sensor_msgs', 'geometry_msgs', 'std_msgs', 'nav_msgs', 'std_srvs',
             'visualization_msgs', 'diagnostic_msgs', 'builtin_interfaces', 'launch', 'launch_ros',
             'rosbags', 'n3f_ros.ros', 'n3f_ros.cli', 'n3f_ros.client', 'n3f_ros.bag')


def _imports(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_core_has_no_ros_import():
    files = sorted(CORE.rglob('*.py'))
    assert files, 'core package not found'
    bad = [(str(f.relative_to(CORE)), mod) for f in files for mod in _imports(f)
           if any(mod == p or mod.startswith(p + '.') for p in FORBIDDEN)]
    assert bad == []
