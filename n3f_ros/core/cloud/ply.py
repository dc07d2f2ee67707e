"""Binary little-endian PLY files of point clouds (numpy structured arrays, no per-point loop)."""
from __future__ import annotations

import os
import re
import tempfile

import numpy as np

from n3f_ros.core.cloud.errors import CloudError
from n3f_ros.core.cloud.validate import check_labels, check_uint8_colors, check_xyz
from n3f_ros.core.persistence import default_file_mode

_PLY_TYPES = {
    'char': 'i1', 'int8': 'i1', 'uchar': 'u1', 'uint8': 'u1', 'short': '<i2', 'int16': '<i2',
    'ushort': '<u2', 'uint16': '<u2', 'int': '<i4', 'int32': '<i4', 'uint': '<u4', 'uint32': '<u4',
    'float': '<f4', 'float32': '<f4', 'double': '<f8', 'float64': '<f8',
}
_NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')


def write_ply(path, xyz, rgb=None, labels=None, extra: dict | None = None) -> None:
    """Write a binary little-endian PLY ``vertex`` element.

    Fields: x y z (float32, metres), then red green blue (uchar) if ``rgb`` (N, 3) uint8 is
    given, label (uint) if ``labels`` (N,) is given, then one float field per ``extra`` entry
    {name: (N,) array} (e.g. similarity). Written to a temporary file and renamed, so a reader
    never sees a half-written file. Raises CloudError on bad shapes or field names.
    """
    xyz = check_xyz(xyz, allow_empty=True)
    n = len(xyz)
    fields = [('x', '<f4'), ('y', '<f4'), ('z', '<f4')]
    cols = {'x': xyz[:, 0], 'y': xyz[:, 1], 'z': xyz[:, 2]}
    if rgb is not None:
        c = check_uint8_colors(rgb, n)
        fields += [('red', 'u1'), ('green', 'u1'), ('blue', 'u1')]
        cols.update(red=c[:, 0], green=c[:, 1], blue=c[:, 2])
    if labels is not None:
        fields.append(('label', '<u4'))
        cols['label'] = check_labels(labels, n)
    for name, values in (extra or {}).items():
        v = np.asarray(values)
        if not _NAME.match(str(name)) or name in cols:
            raise CloudError(f'invalid or duplicate PLY field name {name!r}')
        if v.shape != (n,) or not (np.issubdtype(v.dtype, np.floating) or np.issubdtype(v.dtype, np.integer)):
            raise CloudError(f'extra field {name!r} must be a numeric ({n},) array, got {v.shape}')
        fields.append((name, '<f4'))
        cols[name] = v.astype(np.float32)
    data = np.empty(n, dtype=np.dtype(fields))
    for name, _ in fields:
        data[name] = cols[name]
    inv = {v: k for k, v in (('float', '<f4'), ('uchar', 'u1'), ('uint', '<u4'))}
    header = ['ply', 'format binary_little_endian 1.0', 'comment n3f_ros feature cloud',
              f'element vertex {n}'] + [f'property {inv[t]} {name}' for name, t in fields] + ['end_header']
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix='.tmp_', suffix='.ply', dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, 'wb') as fh:
            fh.write(('\n'.join(header) + '\n').encode('ascii'))
            fh.write(data.tobytes())
        os.chmod(tmp, default_file_mode())       # mkstemp makes 0600; a PLY is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_ply(path) -> dict:
    """Read the ``vertex`` element of a binary little-endian PLY -> {field name: (N,) array}.

    Only single-element, non-list binary_little_endian files (as ``write_ply`` writes) are
    supported. Raises CloudError on anything else or on truncated data.
    """
    with open(path, 'rb') as fh:
        if fh.readline().strip() != b'ply':
            raise CloudError(f'{path}: not a PLY file')
        fields, n, fmt, element = [], None, None, None
        while True:
            line = fh.readline()
            if not line:
                raise CloudError(f'{path}: missing end_header')
            tok = line.decode('ascii', 'replace').split()
            if not tok or tok[0] in ('comment', 'obj_info'):
                continue
            if tok[0] == 'end_header':
                break
            if tok[0] == 'format':
                fmt = tok[1] if len(tok) > 1 else None
            elif tok[0] == 'element':
                if element is not None or len(tok) != 3 or tok[1] != 'vertex':
                    raise CloudError(f'{path}: only a single vertex element is supported')
                element, n = tok[1], int(tok[2])
            elif tok[0] == 'property':
                if len(tok) != 3 or tok[1] not in _PLY_TYPES:
                    raise CloudError(f'{path}: unsupported property {" ".join(tok[1:])!r}')
                fields.append((tok[2], _PLY_TYPES[tok[1]]))
        if fmt != 'binary_little_endian' or n is None or not fields:
            raise CloudError(f'{path}: need a binary_little_endian vertex element, got format {fmt}')
        dtype = np.dtype(fields)
        raw = fh.read(dtype.itemsize * n)
    if len(raw) != dtype.itemsize * n:
        raise CloudError(f'{path}: truncated ({len(raw)} of {dtype.itemsize * n} bytes)')
    data = np.frombuffer(raw, dtype=dtype, count=n)
    return {name: data[name].copy() for name in dtype.names}
