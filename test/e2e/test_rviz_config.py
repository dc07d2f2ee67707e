"""``rviz/n3f.rviz``: valid RViz2 YAML whose displays show exactly what the node publishes.

rviz2 itself is not installable here; the checks are on the file: the current (rviz2) plugin
class names, every display topic is one the node publishes (SPEC §3) at the root namespace,
latched query/edit topics are subscribed TRANSIENT_LOCAL, the feature cloud is coloured from its
``rgb`` field, and the Publish Point tool sends ``/clicked_point`` (the default remap of the node's
``query/point`` in ``launch/n3f.launch.py``).
"""
from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RVIZ = REPO / 'rviz' / 'n3f.rviz'

#: SPEC §3 "Published" with their message types (node at the root namespace)
PUBLISHED = {
    '/feature_cloud': 'PointCloud2', '/feature_image': 'Image', '/query/cloud': 'PointCloud2',
    '/query/pose': 'Pose', '/query/markers': 'MarkerArray', '/query/mask': 'Image',
    '/edit/cloud': 'PointCloud2', '/keyframes': 'PoseArray', '/diagnostics': None,
}
#: topics the node publishes latched (transient local)
LATCHED = {'/query/cloud', '/query/pose', '/query/markers', '/query/mask', '/edit/cloud'}
#: rviz_default_plugins displays that subscribe to a topic -> message type they show
DISPLAY_TYPES = {'rviz_default_plugins/' + name: name
                 for name in ('PointCloud2', 'Image', 'MarkerArray', 'PoseArray', 'Pose')}


@pytest.fixture(scope='module')
def config():
    """The parsed RViz config."""
    return yaml.safe_load(RVIZ.read_text())


def displays(items):
    """All displays, groups flattened."""
    for item in items or ():
        if item.get('Class') == 'rviz_common/Group':
            yield from displays(item.get('Displays'))
        else:
            yield item


def test_rviz_file_structure(config):
    """Top-level sections of an rviz2 config, map fixed frame, rviz2 class names only."""
    assert {'Panels', 'Visualization Manager', 'Window Geometry'} <= set(config)
    vm = config['Visualization Manager']
    assert vm['Global Options']['Fixed Frame'] == 'map'
    classes = [d['Class'] for d in displays(vm['Displays'])] + [t['Class'] for t in vm['Tools']] + \
        [p['Class'] for p in config['Panels']]
    for cls in classes:       # rviz2 uses 'package/Name'; ROS 1 rviz used 'rviz/Name'
        assert cls.split('/')[0] in ('rviz_default_plugins', 'rviz_common'), cls
    assert vm['Views']['Current']['Class'].startswith('rviz_default_plugins/')


def test_rviz_displays_match_published_topics(config):
    """Each display shows a topic the node publishes, with the right display class and QoS."""
    shown = {}
    for d in displays(config['Visualization Manager']['Displays']):
        if 'Topic' not in d:
            continue
        topic = d['Topic']['Value']
        assert topic in PUBLISHED, f"display {d['Name']}: {topic} is not published by the node"
        assert DISPLAY_TYPES[d['Class']] == PUBLISHED[topic], (d['Name'], topic, d['Class'])
        durability = d['Topic']['Durability Policy']
        assert durability == ('Transient Local' if topic in LATCHED else 'Volatile'), (topic, durability)
        assert d['Topic']['Reliability Policy'] == 'Reliable'
        shown[topic] = d
    counts = Counter(d['Class'].split('/')[1] for d in shown.values())
    assert counts == {'PointCloud2': 3, 'Image': 2, 'MarkerArray': 1, 'PoseArray': 1}
    assert set(shown) == {'/feature_cloud', '/query/cloud', '/edit/cloud', '/query/markers', '/keyframes',
                          '/feature_image', '/query/mask'}
    cloud = shown['/feature_cloud']
    assert cloud['Color Transformer'] == 'RGB8'   # reads the float32-packed `rgb` field


def test_rviz_publish_point_tool_feeds_query_point(config):
    """Publish Point publishes /clicked_point, the launch file's default remap of query/point."""
    [tool] = [t for t in config['Visualization Manager']['Tools']
              if t['Class'] == 'rviz_default_plugins/PublishPoint']
    assert tool['Topic']['Value'] == '/clicked_point'
    tree = ast.parse((REPO / 'launch' / 'n3f.launch.py').read_text())
    defaults = {}
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, 'id', None) == 'DeclareLaunchArgument':
            kw = {k.arg: k.value for k in call.keywords}
            if isinstance(call.args[0], ast.Constant) and isinstance(kw.get('default_value'), ast.Constant):
                defaults[call.args[0].value] = kw['default_value'].value
    assert defaults['query_point'] == tool['Topic']['Value']


def test_launch_file_remaps_every_rviz_topic_into_a_namespace(config):
    """n3f.launch.py's PUBLISHED_TOPICS (remapped for RViz in a namespace) covers the config's topics."""
    tree = ast.parse((REPO / 'launch' / 'n3f.launch.py').read_text())
    [value] = [n.value for n in tree.body if isinstance(n, ast.Assign)
               and any(getattr(t, 'id', None) == 'PUBLISHED_TOPICS' for t in n.targets)]
    published = {'/' + t for t in ast.literal_eval(value)}
    assert published == set(PUBLISHED)
    shown = displays(config['Visualization Manager']['Displays'])
    topics = {d['Topic']['Value'] for d in shown if 'Topic' in d}
    assert topics <= published
