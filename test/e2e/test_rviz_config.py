"""``rviz/n3f.rviz``: valid RViz2 YAML whose displays show exactly what the node publishes.

rviz2 itself is not installable here; the checks are on the file: the current (rviz2) plugin
class names, every display topic is one the node publishes (SPEC §3) at the root namespace,
latched query/edit topics are subscribed TRANSIENT_LOCAL, the feature cloud is coloured from its
``rgb`` field, and the Publish Point tool sends ``/clicked_point`` (the default remap of the node's
``query/point`` in ``launch/n3f.launch.py``). Every property a display sets exists in that display of
rviz_default_plugins on Humble, Jazzy and Kilted (table below, read from ros2/rviz), and every
channel a PointCloud2 display names is a field of the cloud it shows. The fixed frame here is the
node's default world frame; the launch file passes the effective one with ``-f``
(test_launch_files.py checks that).
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

#: keys every display has (rviz_common::Display / the config format itself)
COMMON_KEYS = {'Class', 'Name', 'Enabled', 'Value'}
#: Topic sub-properties of every topic display (rviz_common RosTopicProperty + QosProfileProperty)
TOPIC_KEYS = {'Value', 'Depth', 'Durability Policy', 'History Policy', 'Reliability Policy'}
#: properties that exist on Humble, Jazzy *and* Kilted (ros2/rviz humble, jazzy and rolling branches:
#: the ``*Property("Name", ...)`` of each display's sources and of its transformers). PointCloud2 is a
#: MessageFilterDisplay only on Humble; from Jazzy on a PointCloud2TransportDisplay, which has no
#: "Filter size" (issue 13, point 6). PoseArray is a MessageFilterDisplay on all three.
RVIZ_PROPERTIES = {
    'rviz_default_plugins/PointCloud2': {
        'Alpha', 'Autocompute Intensity Bounds', 'Autocompute Value Bounds', 'Axis', 'Channel Name', 'Color',
        'Color Transformer', 'Decay Time', 'Invert Rainbow', 'Max Color', 'Max Intensity', 'Max Value',
        'Min Color', 'Min Intensity', 'Min Value', 'Position Transformer', 'Selectable', 'Size (Pixels)',
        'Size (m)', 'Style', 'Use Fixed Frame', 'Use rainbow', 'Topic'},
    'rviz_default_plugins/PoseArray': {
        'Alpha', 'Arrow Length', 'Axes Length', 'Axes Radius', 'Color', 'Head Length', 'Head Radius',
        'Shaft Length', 'Shaft Radius', 'Shape', 'Topic'},
    'rviz_default_plugins/MarkerArray': {'Namespaces', 'Topic'},
    'rviz_default_plugins/Image': {'Max Value', 'Median window', 'Min Value', 'Normalize Range', 'Topic'},
    'rviz_default_plugins/Grid': {
        'Alpha', 'Cell Size', 'Color', 'Line Style', 'Normal Cell Count', 'Offset', 'Plane', 'Plane Cell Count',
        'Reference Frame'},
}
#: extra Topic sub-properties of MessageFilterDisplay-based displays (on all three distros)
FILTER_DISPLAYS = {'rviz_default_plugins/PoseArray'}
#: PointCloud2 colour transformers that read a named channel
CHANNEL_TRANSFORMERS = {'Intensity'}


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
    from n3f_ros.ros.parameters import defaults

    vm = config['Visualization Manager']
    assert vm['Global Options']['Fixed Frame'] == defaults()['world_frame']
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


def test_every_display_property_exists_in_rviz_default_plugins(config):
    """No property RViz would silently ignore on one of the supported distros (e.g. PointCloud2's
    'Filter size', gone since Jazzy)."""
    for d in displays(config['Visualization Manager']['Displays']):
        known = RVIZ_PROPERTIES[d['Class']] | COMMON_KEYS
        extra = set(d) - known
        assert not extra, f"display {d['Name']} ({d['Class']}): {extra} not in rviz_default_plugins"
        if 'Topic' in d:
            topic_keys = TOPIC_KEYS | ({'Filter size'} if d['Class'] in FILTER_DISPLAYS else set())
            assert set(d['Topic']) <= topic_keys, (d['Name'], set(d['Topic']) - topic_keys)


def test_point_cloud_channels_are_fields_of_the_cloud(config):
    """Colour transformer RGB8 needs an ``rgb`` field; every Channel Name is a field the topic has."""
    from n3f_ros.ros.interface import CLOUD_FIELDS

    clouds = [d for d in displays(config['Visualization Manager']['Displays'])
              if d['Class'] == 'rviz_default_plugins/PointCloud2']
    assert {d['Topic']['Value'].lstrip('/') for d in clouds} == set(CLOUD_FIELDS)
    for d in clouds:
        fields = CLOUD_FIELDS[d['Topic']['Value'].lstrip('/')]
        assert d['Channel Name'] in fields, (d['Name'], d['Channel Name'], fields)
        if d['Color Transformer'] == 'RGB8':
            assert 'rgb' in fields
        else:
            assert d['Color Transformer'] in CHANNEL_TRANSFORMERS
