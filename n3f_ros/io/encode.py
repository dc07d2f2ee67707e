"""numpy / core types -> ROS messages, plus a pure-numpy PointCloud2 reader.

PointCloud2 clouds are built from a dict of named per-point arrays with a numpy structured dtype
(no per-point Python loop). Field types follow what RViz expects:

* ``x y z`` float32 metres, in the header's frame;
* ``rgb`` float32 whose 4 bytes are the uint32 ``0x00RRGGBB`` (see :func:`pack_rgb`);
* ``label`` uint32, ``similarity`` float32 (any other array keeps its own dtype).

:func:`pointcloud2_to_array` reads any PointCloud2 back into a structured array without rclpy
(used by the tests and the client); it is duck-typed like decode.py.
"""
from __future__ import annotations

import sys

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Pose, PoseArray, PoseStamped
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from n3f_ros.core.camera import pose_to_xyz_quat, rot_to_quat

#: PointField datatype code <-> numpy dtype (little-endian here; byte order comes from the message)
_PF_TO_NP = {
    PointField.INT8: np.dtype('i1'), PointField.UINT8: np.dtype('u1'),
    PointField.INT16: np.dtype('<i2'), PointField.UINT16: np.dtype('<u2'),
    PointField.INT32: np.dtype('<i4'), PointField.UINT32: np.dtype('<u4'),
    PointField.FLOAT32: np.dtype('<f4'), PointField.FLOAT64: np.dtype('<f8'),
}
_NP_TO_PF = {(dt.kind, dt.itemsize): code for code, dt in _PF_TO_NP.items()}
#: default dtypes of the contract's fields (SPEC §3)
FIELD_DTYPES = {'x': np.float32, 'y': np.float32, 'z': np.float32, 'rgb': np.float32,
                'label': np.uint32, 'similarity': np.float32}


# ---------------------------------------------------------------------------------------------
# stamps and headers
# ---------------------------------------------------------------------------------------------

def to_time_msg(stamp) -> Time:
    """builtin_interfaces/Time from a Time (returned as is), an rclpy Time, float seconds or int ns."""
    if isinstance(stamp, Time):
        return stamp
    if hasattr(stamp, 'to_msg'):                      # rclpy.time.Time
        return stamp.to_msg()
    if hasattr(stamp, 'sec') and hasattr(stamp, 'nanosec'):   # rosbags Time
        return Time(sec=int(stamp.sec), nanosec=int(stamp.nanosec))
    if isinstance(stamp, (int, np.integer)):
        ns = int(stamp)
    else:
        ns = round(float(stamp) * 1e9)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def make_header(stamp, frame_id: str) -> Header:
    """std_msgs/Header with ``stamp`` (see :func:`to_time_msg`) and ``frame_id``."""
    return Header(stamp=to_time_msg(stamp), frame_id=str(frame_id))


# ---------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------

def image_msg(array: np.ndarray, header: Header, encoding: str | None = None) -> Image:
    """(H, W, 3) uint8 -> rgb8 (or bgr8 if asked), (H, W) uint8/bool -> mono8 (bool: 0/255)."""
    a = np.asarray(array)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.dtype != np.uint8:
        raise ValueError(f'image_msg needs uint8 or bool, got {a.dtype}')
    if a.ndim == 2:
        encoding = encoding or 'mono8'
        channels = 1
    elif a.ndim == 3 and a.shape[2] == 3:
        encoding = encoding or 'rgb8'
        channels = 3
        if encoding == 'bgr8':
            a = a[:, :, ::-1]
    else:
        raise ValueError(f'image_msg needs (H, W) or (H, W, 3), got {a.shape}')
    a = np.ascontiguousarray(a)
    h, w = a.shape[:2]
    return Image(header=header, height=h, width=w, encoding=encoding, is_bigendian=0,
                 step=w * channels, data=a.tobytes())


def depth_msg(depth: np.ndarray, header: Header, encoding: str = '32FC1') -> Image:
    """(H, W) float metres -> 32FC1 (metres) or 16UC1 (millimetres, NaN/negative -> 0)."""
    d = np.asarray(depth, dtype=np.float32)
    if encoding == '16UC1':
        mm = np.where(np.isfinite(d) & (d > 0), np.round(d * 1000.0), 0)
        a = np.clip(mm, 0, 65535).astype('<u2')
    elif encoding == '32FC1':
        a = d.astype('<f4')
    else:
        raise ValueError(f'depth encoding {encoding!r}: use 16UC1 or 32FC1')
    h, w = a.shape
    return Image(header=header, height=h, width=w, encoding=encoding, is_bigendian=0,
                 step=w * a.itemsize, data=np.ascontiguousarray(a).tobytes())


# ---------------------------------------------------------------------------------------------
# point clouds
# ---------------------------------------------------------------------------------------------

def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 colours -> (N,) float32 whose bytes are uint32 0x00RRGGBB (RViz ``rgb``)."""
    c = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3).astype(np.uint32)
    return ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]).view(np.float32)


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_rgb`: float32 (N,) -> (N, 3) uint8."""
    u = np.ascontiguousarray(packed, dtype=np.float32).view(np.uint32)
    return np.stack([(u >> 16) & 255, (u >> 8) & 255, u & 255], axis=-1).astype(np.uint8)


def cloud_array(fields: dict) -> np.ndarray:
    """dict of named per-point arrays -> (N,) packed structured array.

    ``xyz`` (N, 3) expands to ``x y z``; ``rgb`` given as (N, 3) uint8 is packed with
    :func:`pack_rgb`. Contract fields get their contract dtypes (:data:`FIELD_DTYPES`).
    """
    cols: dict[str, np.ndarray] = {}
    for name, val in fields.items():
        v = np.asarray(val)
        if name == 'xyz':
            v = v.reshape(-1, 3)
            for i, axis in enumerate('xyz'):
                cols[axis] = v[:, i]
        elif name == 'rgb' and v.ndim == 2:
            cols['rgb'] = pack_rgb(v)
        else:
            cols[name] = v.reshape(len(v)) if v.ndim else v.reshape(1)
    n = {len(v) for v in cols.values()}
    if len(n) > 1:
        raise ValueError(f'cloud fields have different lengths: { {k: len(v) for k, v in cols.items()} }')
    dtype = np.dtype([(k, FIELD_DTYPES.get(k, cols[k].dtype)) for k in cols])
    out = np.empty(n.pop() if n else 0, dtype=dtype)
    for k, v in cols.items():
        out[k] = v
    return out


def pointcloud2_msg(fields, header: Header) -> PointCloud2:
    """Unorganised (height 1) PointCloud2 from a dict of arrays (see :func:`cloud_array`) or a
    structured array. ``is_dense`` is True when every float field is finite."""
    arr = fields if isinstance(fields, np.ndarray) and fields.dtype.names else cloud_array(fields)
    pfields = []
    for name in arr.dtype.names:
        dt, offset = arr.dtype.fields[name][:2]
        code = _NP_TO_PF.get((dt.kind, dt.itemsize))
        if code is None or dt.shape:
            raise ValueError(f'field {name!r} has unsupported dtype {dt}')
        pfields.append(PointField(name=name, offset=offset, datatype=code, count=1))
    dense = all(bool(np.all(np.isfinite(arr[k]))) for k in arr.dtype.names
                if arr.dtype[k].kind == 'f' and k != 'rgb')
    n = len(arr)
    return PointCloud2(header=header, height=1, width=n, fields=pfields,
                       is_bigendian=sys.byteorder == 'big', point_step=arr.dtype.itemsize,
                       row_step=arr.dtype.itemsize * n, is_dense=dense,
                       data=np.ascontiguousarray(arr).tobytes())


def pointcloud2_to_array(msg) -> np.ndarray:
    """PointCloud2 (rclpy or rosbags) -> (height*width,) structured array of its named fields.

    Honours offsets, ``point_step``, ``row_step`` padding and ``is_bigendian``; pure numpy.
    """
    order = '>' if msg.is_bigendian else '<'
    names, formats, offsets = [], [], []
    for f in msg.fields:
        base = _PF_TO_NP[int(f.datatype)].newbyteorder(order)
        names.append(f.name)
        formats.append(base if int(f.count) <= 1 else np.dtype((base, int(f.count))))
        offsets.append(int(f.offset))
    dtype = np.dtype({'names': names, 'formats': formats, 'offsets': offsets,
                      'itemsize': int(msg.point_step)})
    h, w = int(msg.height), int(msg.width)
    if h * w == 0:
        return np.zeros(0, dtype=dtype)
    buf = np.frombuffer(msg.data, dtype=np.uint8) if not isinstance(msg.data, np.ndarray) \
        else msg.data.view(np.uint8).reshape(-1)
    rows = buf[:h * int(msg.row_step)].reshape(h, int(msg.row_step))[:, :w * int(msg.point_step)]
    return np.ascontiguousarray(rows).view(dtype).reshape(h * w)


# ---------------------------------------------------------------------------------------------
# poses
# ---------------------------------------------------------------------------------------------

def pose_msg(T) -> Pose:
    """(4, 4) -> geometry_msgs/Pose."""
    xyz, q = pose_to_xyz_quat(T)
    p = Pose()
    p.position.x, p.position.y, p.position.z = (float(v) for v in xyz)
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = (float(v) for v in q)
    return p


def pose_stamped_msg(T, header: Header) -> PoseStamped:
    """(4, 4) -> geometry_msgs/PoseStamped."""
    return PoseStamped(header=header, pose=pose_msg(T))


def pose_array_msg(poses, header: Header) -> PoseArray:
    """list of (4, 4) -> geometry_msgs/PoseArray."""
    return PoseArray(header=header, poses=[pose_msg(T) for T in poses])


# ---------------------------------------------------------------------------------------------
# markers
# ---------------------------------------------------------------------------------------------

def _marker(header, ns, mid, mtype, position, quat=(0.0, 0.0, 0.0, 1.0), scale=(1, 1, 1),
            color=(1.0, 1.0, 1.0, 1.0)) -> Marker:
    m = Marker(header=header, ns=ns, id=mid, type=mtype, action=Marker.ADD)
    m.pose.position.x, m.pose.position.y, m.pose.position.z = (float(v) for v in position)
    m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z, m.pose.orientation.w = (
        float(v) for v in quat)
    m.scale.x, m.scale.y, m.scale.z = (float(max(v, 1e-4)) for v in scale)
    m.color.r, m.color.g, m.color.b, m.color.a = (float(v) for v in color)
    return m


def query_markers(header: Header, box_center=None, box_extent=None, box_R=None, centroid=None,
                  text: str = '', ns: str = 'n3f_query') -> MarkerArray:
    """MarkerArray for a query result: DELETEALL, then (when given) an oriented CUBE (box centre,
    full extents in metres along the box axes, orientation from the rotation ``box_R`` whose
    columns are the box axes in the header frame), a centroid SPHERE and a TEXT_VIEW_FACING label
    above the box. With no box (empty result) only the DELETEALL is sent."""
    delete = Marker(header=header, ns=ns, id=0, action=Marker.DELETEALL)
    markers = [delete]
    if box_center is not None and box_extent is not None:
        R = np.eye(3) if box_R is None else np.asarray(box_R, dtype=np.float64)   # a rotation (det +1)
        ext = np.asarray(box_extent, dtype=np.float64)
        markers.append(_marker(header, ns, 1, Marker.CUBE, box_center, rot_to_quat(R), ext,
                               (0.1, 0.9, 0.2, 0.35)))
        c = box_center if centroid is None else centroid
        s = max(0.01, 0.1 * float(np.max(ext)))
        markers.append(_marker(header, ns, 2, Marker.SPHERE, c, scale=(s, s, s),
                               color=(1.0, 0.2, 0.1, 0.9)))
        top = np.asarray(box_center, dtype=np.float64) + np.array([0.0, 0.0, 0.5 * float(np.max(ext))
                                                                   + 0.05])
        t = _marker(header, ns, 3, Marker.TEXT_VIEW_FACING, top, scale=(0.05, 0.05, 0.05))
        t.text = text
        markers.append(t)
    return MarkerArray(markers=markers)


# ---------------------------------------------------------------------------------------------
# diagnostics
# ---------------------------------------------------------------------------------------------

LEVELS = {'ok': DiagnosticStatus.OK, 'warn': DiagnosticStatus.WARN,
          'error': DiagnosticStatus.ERROR, 'stale': DiagnosticStatus.STALE}


def diagnostic_array_msg(header: Header, statuses) -> DiagnosticArray:
    """``statuses``: iterable of (name, level 'ok'|'warn'|'error'|'stale', message, dict of values,
    hardware_id). Values are formatted with ``str`` (floats with 6 significant digits)."""
    out = []
    for name, level, message, values, hw in statuses:
        kvs = [KeyValue(key=str(k), value=f'{v:.6g}' if isinstance(v, float) else str(v))
               for k, v in values.items()]
        out.append(DiagnosticStatus(level=LEVELS[level], name=name, message=message,
                                    hardware_id=hw, values=kvs))
    return DiagnosticArray(header=header, status=out)
