"""Settings described once: a dataclass field that carries its own documentation and limits.

Engine settings (``MapperConfig`` and the nested ``FieldConfig``, ``RenderSettings``,
``StereoConfig``) declare each field with :func:`option`; the node's parameter table
(``ros/parameters.py``), ``config/n3f.yaml`` (checked by a test), the README table and the
``n3f process`` command line all read default, description, unit and range from here, so a
default lives in exactly one place.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OptionInfo:
    """One documented setting. ``type``: 'string' | 'bool' | 'int' | 'double' | 'double_array'."""

    name: str
    default: Any
    type: str
    description: str
    unit: str = ''
    range: tuple | None = None              # inclusive (low, high) for numbers
    choices: tuple | None = None            # allowed strings (a regex when ``choice_pattern``)
    choice_pattern: str | None = None
    length: int | None = None               # required length of an array
    live: bool = False                      # may change while running


def option(default, description: str, unit: str = '', range: tuple | None = None,
           choices: tuple | None = None, choice_pattern: str | None = None, length: int | None = None,
           live: bool = False):
    """A dataclass field with its documentation in ``metadata['option']`` (see :class:`OptionInfo`)."""
    meta = {'option': dict(description=description, unit=unit, range=range, choices=choices,
                           choice_pattern=choice_pattern, length=length, live=live)}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(value) -> str:
    if isinstance(value, bool):
        return 'bool'
    if isinstance(value, int):
        return 'int'
    if isinstance(value, float):
        return 'double'
    if isinstance(value, str):
        return 'string'
    if isinstance(value, (tuple, list)) and all(isinstance(v, (int, float)) for v in value):
        return 'double_array'
    raise TypeError(f'no parameter type for {value!r}')


def options_of(cls, prefix: str = '') -> list[OptionInfo]:
    """The documented fields of dataclass ``cls`` (fields declared without :func:`option` are
    internal and left out), names prefixed with ``prefix``."""
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get('option')
        if meta is None:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if isinstance(default, tuple):
            default = [float(v) for v in default]
        out.append(OptionInfo(name=prefix + f.name, default=default, type=_type_name(default), **meta))
    return out


def constraint_text(info: OptionInfo) -> str:
    """Human-readable range / choices (README, ROS descriptors' additional_constraints)."""
    if info.range is not None:
        return f'{info.range[0]:.12g} .. {info.range[1]:.12g}'
    if info.choices:
        return ' | '.join(info.choices)
    if info.length:
        return f'{info.length} values'
    return ''


def check_value(info: OptionInfo, value) -> str | None:
    """None when ``value`` suits the setting, else the reason: finiteness, range, choices, array
    length (types are checked by whoever parses the value, e.g. ROS parameter descriptors)."""
    import math
    import re
    name = info.name
    if info.type in ('double', 'int'):
        try:
            v = float(value)
        except (TypeError, ValueError):
            return f'{name} must be a number, got {value!r}'
        if not math.isfinite(v):
            return f'{name} must be finite'
        if info.range is not None and not (info.range[0] <= v <= info.range[1]):
            return f'{name}={value} outside [{info.range[0]:g}, {info.range[1]:g}]'
    if info.choices is not None:
        ok = re.fullmatch(info.choice_pattern, str(value)) if info.choice_pattern else value in info.choices
        if not ok:
            return f'{name}={value!r}: expected one of {", ".join(info.choices)}'
    if info.length is not None:
        try:
            v = [float(x) for x in value]
        except (TypeError, ValueError):
            return f'{name} must be {info.length} numbers'
        if len(v) != info.length:
            return f'{name} needs {info.length} values, got {len(v)}'
        if not all(math.isfinite(x) for x in v):
            return f'{name} must be finite'
    return None
