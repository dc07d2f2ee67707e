"""parameters.py is the one table of parameters: it must equal config/n3f.yaml (names, defaults,
ranges written in the comments), and its validation rejects bad values (no rclpy.init)."""
import pathlib
import re

import pytest
import yaml

from n3f_ros.ros import parameters as P

YAML = pathlib.Path(__file__).resolve().parents[2] / 'config' / 'n3f.yaml'
NUM = r'[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?'


def _yaml():
    doc = yaml.safe_load(YAML.read_text())
    return doc['/**']['ros__parameters']


def test_names_and_defaults_equal_yaml():
    y = _yaml()
    assert [p.name for p in P.PARAMETERS] == list(y), 'same names in the same order'
    for p in P.PARAMETERS:
        assert y[p.name] == p.default and type(y[p.name]) is type(p.default), p.name


def test_ranges_equal_yaml_comments():
    ranges = {}
    for line in YAML.read_text().splitlines():
        m = re.match(rf'\s*([\w.]+):.*range ({NUM})\.\.({NUM})', line)
        if m:
            ranges[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    assert ranges == {p.name: tuple(float(v) for v in p.range) for p in P.PARAMETERS if p.range}


def test_types_match_defaults():
    py = {'string': str, 'bool': bool, 'int': int, 'double': float, 'double_array': list}
    for p in P.PARAMETERS:
        assert isinstance(p.default, py[p.type]), p.name
        assert P.validate(p.name, p.default) is None, p.name
        assert p.description


@pytest.mark.parametrize('name,value', [
    ('pose_source', 'gps'), ('image_transport', 'theora'), ('edit_mode', 'delete'), ('device', 'gpu'),
    ('device', 'cuda:x'), ('min_depth', -1.0), ('queue_size', 0), ('cloud_rate', float('nan')),
    ('camera_extrinsic', [0.0] * 7), ('camera_extrinsic', [0.0] * 6),
    ('scene_bounds', [0.0, 0, 0, -1, 1, 1]), ('input_qos', 'best_effort'), ('input_qos', ''),
    ('input_qos_depth', 0), ('input_qos_depth', 101),
])
def test_validate_rejects(name, value):
    assert P.validate(name, value)


def test_validate_accepts():
    assert P.validate('device', 'cuda:1') is None
    assert P.validate('scene_bounds', [-1.0, -1, 0, 1, 1, 1]) is None
    assert P.validate('use_sim_time', True) is None
    assert P.validate('input_qos', 'reliable') is None and P.validate('input_qos_depth', 1) is None


def test_table_and_descriptors():
    rows = P.parameter_table()
    assert len(rows) == len(P.PARAMETERS) and {'name', 'default', 'constraint', 'live'} <= set(rows[0])
    d = P.descriptor(P.BY_NAME['min_depth'])
    assert d.floating_point_range[0].to_value == 10.0 and not d.read_only and '[m]' in d.description
    d = P.descriptor(P.BY_NAME['queue_size'])
    assert d.integer_range[0].from_value == 1 and d.read_only
