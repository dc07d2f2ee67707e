#!/usr/bin/env python3
"""Regenerate the README's ROS interface tables from the code (n3f_ros/ros/interface.py and the
parameter table in n3f_ros/ros/parameters.py). `--check` exits 1 if the README is out of date."""
from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from n3f_ros.ros import interface  # noqa: E402
from n3f_ros.ros.parameters import parameter_table  # noqa: E402

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


def render(readme: str) -> str:
    i, j = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    return readme[:i] + '\n' + generate() + '\n' + readme[j:]


def main() -> int:
    path = ROOT / 'README.md'
    text = path.read_text()
    new = render(text)
    if '--check' in sys.argv:
        if new != text:
            print('README.md interface tables are out of date: run scripts/gen_readme_tables.py')
            return 1
        return 0
    path.write_text(new)
    return 0


if __name__ == '__main__':
    sys.exit(main())
