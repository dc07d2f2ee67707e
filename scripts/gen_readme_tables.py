#!/usr/bin/env python3
"""Regenerate what is derived from the code: the README's ROS interface tables
(n3f_ros/ros/interface.py and the parameter table of n3f_ros/ros/parameters.py) and
config/n3f.yaml (every parameter with its default, unit, range and description).
`--check` exits 1 if either is out of date."""
from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from n3f_ros.ros import interface  # noqa: E402
from n3f_ros.ros.parameters import PARAMETERS, group_of, parameter_table  # noqa: E402

BEGIN = '<!-- BEGIN GENERATED INTERFACE (scripts/gen_readme_tables.py; test/test_readme.py checks it) -->'
END = '<!-- END GENERATED INTERFACE -->'


def _table(head, rows) -> str:
    out = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    out += ['| ' + ' | '.join(str(c).replace('|', '\\|') for c in r) + ' |' for r in rows]
    return '\n'.join(out)


def generate() -> str:
    parts = [
        'Executable `n3f_node` (`ros2 run n3f_ros n3f_node`), node name `n3f`; names are relative.',
        '', '**Subscribed**', '',
        _table(('topic', 'type', 'notes'), [(f'`{n}`', t, d) for n, t, d in interface.SUBSCRIBED]),
        '', '**Published** (frame `world_frame` unless said; query results carry the query\'s stamp)', '',
        _table(('topic', 'type', 'content'), [(f'`{n}`', t, d) for n, t, d in interface.PUBLISHED]),
        '', '**Services**', '',
        _table(('service', 'type', 'effect'), [(f'`{n}`', t, d) for n, t, d in interface.SERVICES]),
        '', '**Parameters** (defaults in `config/n3f.yaml`)', '',
        _table(('name', 'default', 'type', 'unit', 'range / choices', 'description'),
               [(f"`{p['name']}`", f"`{p['default']}`", p['type'], p.get('unit', ''), p.get('constraint', ''),
                 p['description']) for p in parameter_table()]),
    ]
    return '\n'.join(parts)


YAML_HEAD = """\
# n3f_ros parameters (node `n3f`). Every parameter of the node is listed here with its default.
# Generated from the code by scripts/gen_readme_tables.py (test/ros/test_ros_parameters.py checks it):
# edit the descriptions in n3f_ros/core/mapping/config.py (engine) or n3f_ros/ros/parameters.py (node).
# Loaded with: ros2 run n3f_ros n3f_node --ros-args --params-file config/n3f.yaml
# Works as-is for an RGB-D camera publishing image/camera_info/depth plus a PoseStamped source.
/**:
  ros__parameters:
"""


def generate_yaml() -> str:
    """config/n3f.yaml: parameters in table order, a comment line per section."""
    import yaml
    lines, section = [YAML_HEAD.rstrip('\n')], None
    for p in PARAMETERS:
        if group_of(p.name) != section:
            section = group_of(p.name)
            lines.append(f'    # --- {section} ' + '-' * max(3, 90 - len(section)))
        value = yaml.safe_dump(p.default, default_flow_style=True, width=1000).strip()
        value = value[:-4] if value.endswith('\n...') else value
        unit = f'[{p.unit}] ' if p.unit else ''
        rng = f', range {p.range[0]:.12g}..{p.range[1]:.12g}' if p.range else ''
        lines.append(f'    {p.name}: {value}  # {unit}{p.description}{rng}')
    return '\n'.join(lines) + '\n'


def render(readme: str) -> str:
    i, j = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    return readme[:i] + '\n' + generate() + '\n' + readme[j:]


def main() -> int:
    outputs = {ROOT / 'README.md': render((ROOT / 'README.md').read_text()),
               ROOT / 'config' / 'n3f.yaml': generate_yaml()}
    stale = [p for p, new in outputs.items() if not p.exists() or p.read_text() != new]
    if '--check' in sys.argv:
        for p in stale:
            print(f'{p.relative_to(ROOT)} is out of date: run scripts/gen_readme_tables.py')
        return 1 if stale else 0
    for p in stale:
        p.write_text(outputs[p])
    return 0


if __name__ == '__main__':
    sys.exit(main())
