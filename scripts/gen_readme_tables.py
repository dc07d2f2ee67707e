#!/usr/bin/env python3
"""Regenerate what is derived from the code: the README's ROS interface tables
(n3f_ros/ros/interface.py, the parameter table of n3f_ros/ros/parameters.py, and the
n3f_interfaces .srv/.msg files with their comments) and config/n3f.yaml (every parameter with its
default, unit, range and description). `--check` exits 1 if either is out of date."""
from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from n3f_ros.ros import interface  # noqa: E402
from n3f_ros.ros.parameters import PARAMETERS, group_of, parameter_table  # noqa: E402

BEGIN = '<!-- BEGIN GENERATED INTERFACE (scripts/gen_readme_tables.py; test/test_readme.py checks it) -->'
END = '<!-- END GENERATED INTERFACE -->'


INTERFACES = ROOT / 'n3f_interfaces'


def parse_interface(path: pathlib.Path) -> tuple[str, list[list[tuple[str, str, str, str]]]]:
    """A .msg/.srv file -> (its leading comment, sections), a section per side of ``---``, each a
    list of (type, name, constant value or '', comment). A field's comment is the comment lines
    directly above it plus its trailing comment; a comment block followed by a blank line before
    any field is the file's description."""
    doc, sections, pending = '', [[]], []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line:
            if pending and not doc and not any(sections):
                doc = ' '.join(pending)
            pending = []
        elif line.startswith('#'):
            pending.append(line.lstrip('#').strip())
        elif line == '---':
            if pending and not doc and not any(sections):
                doc = ' '.join(pending)
            sections.append([])
            pending = []
        else:
            decl, _, trailing = line.partition('#')
            typ, rest = decl.split(None, 1)
            name, _, value = rest.replace(' ', '').partition('=')
            comment = ' '.join(pending + ([trailing.strip()] if trailing.strip() else []))
            sections[-1].append((typ, name, value, comment))
            pending = []
    return doc, sections


def _type_name(typ: str) -> str:
    """Field type as written in the file, package-qualified for this package's own types."""
    base = typ.split('[')[0]
    if '/' not in base and base[:1].isupper():
        return f'n3f_interfaces/{typ}'
    return typ


def interface_tables() -> list[str]:
    """The query services' table and one field table per n3f_interfaces type they use."""
    rows, types = [], []
    for name, typ, effect in interface.QUERY_SERVICES:
        _, sections = parse_interface(INTERFACES / 'srv' / (typ.split('/')[-1] + '.srv'))
        req, res = (', '.join(f'`{f[1]}`' for f in s if not f[2]) or '—' for s in sections)
        rows.append((f'`{name}`', typ, req, res, effect))
        if typ not in types:
            types.append(typ)
    types += sorted(f'n3f_interfaces/msg/{p.stem}' for p in (INTERFACES / 'msg').glob('*.msg'))
    parts = ['**Query services** (package `n3f_interfaces`, an ament_cmake interface package in this repository)',
             '', _table(('service', 'type', 'request', 'response', 'effect'), rows)]
    for typ in types:
        kind, stem = typ.split('/')[1:]
        doc, sections = parse_interface(INTERFACES / kind / f'{stem}.{kind}')
        sides = ('request', 'response') if kind == 'srv' else ('',)
        fields = []
        for side, section in zip(sides, sections):
            for ftype, fname, value, comment in section:
                field = f'`{fname} = {value}`' if value else f'`{fname}`'
                shown = _type_name(ftype) + (' constant' if value else '')
                fields.append(((side,) if kind == 'srv' else ()) + (field, shown, comment))
        head = (('', 'field', 'type', 'meaning') if kind == 'srv' else ('field', 'type', 'meaning'))
        parts += ['', f'`{typ}`: {doc}', '', _table(head, fields)]
    return parts


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
        '', *interface_tables(),
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
