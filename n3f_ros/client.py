"""Blocking client for the n3f node's services (n3f_interfaces): queries, prototypes, map files.

Example::

    rclpy.init()
    node = rclpy.create_node('grasp_planner')
    client = N3FClient(node)                        # or N3FClient(node, namespace='/robot1')
    ans = client.query_point([0.4, 0.1, 0.05])      # world_frame coordinates, metres
    print(len(ans), ans.centroid, ans.box_size, ans.score, ans.feature_source, ans.confidence)
    client.save_prototype('mug')
    ans = client.query_name('mug')
    ans = client.query_pixel(320, 240)              # a pixel of the node's latest image
    client.save_map('/tmp/kitchen.pt')

Every call is one service call of the node (``<namespace>/<node_name>/query`` etc.), answered with
the request's own response, so answers cannot be mixed up between clients. A query that finds
nothing (empty map, nothing similar, a map not converged yet) returns an answer with 0 points and
the reason in ``message``; a request the node refuses (NaN point, wrong frame, unknown prototype,
pixel outside the image) raises :class:`QueryRejected` with the node's reason;
``TimeoutError`` only when the node does not answer at all.

Masks: ``with_mask=True`` asks the node to render the 2D mask on its latest image (seconds on a
CPU); ``with_edit=True`` also returns the edited scene cloud.

Spinning: by default (``spin=True``) the client spins ``node`` itself while it waits, with its
own executor, so ``node`` must not be spinning in another thread at that time. If the node is
spun elsewhere (e.g. a MultiThreadedExecutor in a background thread), pass ``spin=False``: the
call then only waits for the response (the clients are in a Reentrant callback group).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import PointStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import SingleThreadedExecutor

from n3f_ros.io.decode import decode_pose, stamp_to_ns
from n3f_ros.io.encode import make_header, pointcloud2_to_array, unpack_rgb

#: default name of the n3f node
NODE_NAME = 'n3f'


class QueryRejected(ValueError):
    """The node refused the request (``success: false``); the message is the node's reason."""


@dataclass
class QueryAnswer:
    """One query's answer. Arrays are numpy; coordinates in ``frame_id`` (the node's world_frame).

    xyz (M, 3) float32 metres, rgb (M, 3) uint8 observed colours, similarity (M,) float32;
    pose (4, 4): centroid + oriented-box axes, None when empty; box_size (3,) metres along the box
    axes; mask (H, W) bool on the node's latest camera image (None unless asked for),
    mask_frame_id its optical frame; edit_xyz (K, 3) the edited scene (None unless asked for);
    score (mean similarity), confidence (0..1), threshold, feature_source ('fused' | 'student' |
    'combined'), kind ('object' | 'support') and message as the node reports them.
    """

    stamp_ns: int
    frame_id: str
    xyz: np.ndarray
    rgb: np.ndarray
    similarity: np.ndarray
    pose: np.ndarray | None = None
    box_size: np.ndarray | None = None
    mask: np.ndarray | None = None
    mask_frame_id: str = ''
    edit_xyz: np.ndarray | None = None
    score: float = float('nan')
    confidence: float = 0.0
    threshold: float = 0.0
    feature_source: str = ''
    kind: str = ''
    name: str = ''
    message: str = ''

    def __len__(self) -> int:
        return len(self.xyz)

    @property
    def empty(self) -> bool:
        return len(self.xyz) == 0

    @property
    def centroid(self) -> np.ndarray | None:
        return None if self.pose is None else self.pose[:3, 3].copy()


def _service_name(namespace: str, node_name: str, name: str) -> str:
    ns = namespace.rstrip('/')
    base = f'{ns}/{node_name}' if ns else node_name
    return f'{base}/{name}'


def _xyz(arr) -> np.ndarray:
    if not len(arr):
        return np.zeros((0, 3), np.float32)
    return np.stack([arr['x'], arr['y'], arr['z']], axis=1).astype(np.float32)


class N3FClient:
    """See the module docstring. ``namespace``: the n3f node's namespace ('' = the same as
    ``node``'s: relative names); ``node_name``: its name; ``timeout``: default seconds to wait."""

    def __init__(self, node, namespace: str = '', timeout: float = 10.0, spin: bool = True,
                 node_name: str = NODE_NAME, with_mask: bool = True):
        from n3f_interfaces.srv import FilePath, ListPrototypes, QueryObject, SavePrototype
        self.node = node
        self.timeout = float(timeout)
        self.spin = bool(spin)
        self.with_mask = bool(with_mask)
        self.QueryObject = QueryObject
        self._last_stamp_ns = 0
        group = ReentrantCallbackGroup()

        def client(srv_type, name):
            return node.create_client(srv_type, _service_name(namespace, node_name, name), callback_group=group)
        self._query = client(QueryObject, 'query')
        self._save_prototype = client(SavePrototype, 'save_prototype')
        self._list = client(ListPrototypes, 'list_prototypes')
        self._save_map = client(FilePath, 'save_map')
        self._load_map = client(FilePath, 'load_map')
        self._clients = [self._query, self._save_prototype, self._list, self._save_map, self._load_map]
        self._executor = SingleThreadedExecutor(context=node.context) if self.spin else None

    # --- queries --------------------------------------------------------------------------------
    def query_point(self, xyz, frame_id: str = 'map', threshold: float = 0.0, with_mask: bool | None = None,
                    with_edit: bool = False, timeout: float | None = None) -> QueryAnswer:
        """The object at ``xyz`` (3,) metres in ``frame_id`` (the node's world_frame)."""
        req = self._request(self.QueryObject.Request.BY_POINT, threshold, with_mask, with_edit)
        req.point = PointStamped(header=make_header(self._unique_stamp_ns(), frame_id))
        req.point.point.x, req.point.point.y, req.point.point.z = (float(v) for v in np.asarray(xyz).reshape(3))
        return self._ask(req, timeout, f'query at {np.asarray(xyz).reshape(3).tolist()}')

    def query_name(self, name: str, threshold: float = 0.0, with_mask: bool | None = None,
                   with_edit: bool = False, timeout: float | None = None) -> QueryAnswer:
        """The object best matching the saved prototype ``name``."""
        req = self._request(self.QueryObject.Request.BY_NAME, threshold, with_mask, with_edit)
        req.name = str(name)
        return self._ask(req, timeout, f'query of prototype {name!r}')

    def query_pixel(self, u: int, v: int, threshold: float = 0.0, with_mask: bool | None = None,
                    with_edit: bool = False, timeout: float | None = None) -> QueryAnswer:
        """The object seen at pixel (``u`` column, ``v`` row) of the node's latest image."""
        req = self._request(self.QueryObject.Request.BY_PIXEL, threshold, with_mask, with_edit)
        req.u, req.v = int(u), int(v)
        return self._ask(req, timeout, f'query at pixel ({u}, {v})')

    # --- prototypes and maps ----------------------------------------------------------------------
    def save_prototype(self, name: str, timeout: float | None = None) -> str:
        """Name the last answer's object ``name``; returns the node's message. QueryRejected on failure."""
        req = self._save_prototype.srv_type.Request(name=str(name))
        resp = self._call(self._save_prototype, req, timeout, f'save_prototype {name!r}')
        if not resp.success:
            raise QueryRejected(resp.message)
        return resp.message

    def list_prototypes(self, timeout: float | None = None) -> list[str]:
        return list(self._call(self._list, self._list.srv_type.Request(), timeout, 'list_prototypes').names)

    def save_map(self, path: str = '', timeout: float | None = None) -> str:
        """Save the node's map to ``path`` ('' = its map_path); returns the absolute path written."""
        return self._file(self._save_map, path, timeout)

    def load_map(self, path: str = '', timeout: float | None = None) -> str:
        """Replace the node's map with ``path`` ('' = its map_path); returns the absolute path read."""
        return self._file(self._load_map, path, timeout)

    def close(self) -> None:
        for c in self._clients:
            self.node.destroy_client(c)
        if self._executor is not None:
            self._executor.shutdown()

    # --- internals ------------------------------------------------------------------------------
    def _request(self, mode: int, threshold: float, with_mask, with_edit: bool):
        req = self.QueryObject.Request(mode=mode, threshold=float(threshold), with_edit=bool(with_edit))
        req.with_mask = self.with_mask if with_mask is None else bool(with_mask)
        return req

    def _file(self, client, path: str, timeout) -> str:
        resp = self._call(client, client.srv_type.Request(path=str(path)), timeout, f'{client.srv_name} {path!r}')
        if not resp.success:
            raise QueryRejected(resp.message)
        return resp.path

    def _unique_stamp_ns(self) -> int:
        now = self.node.get_clock().now().nanoseconds
        self._last_stamp_ns = max(now, self._last_stamp_ns + 1)
        return self._last_stamp_ns

    def _call(self, client, request, timeout, what: str):
        timeout = self.timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + timeout
        while not client.service_is_ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f'the n3f node offers no {client.srv_name} within {timeout:g} s '
                                   '(is it running, with this name and namespace?)')
            self._spin_or_wait(0.05)
        future = client.call_async(request)
        if self.spin:
            import rclpy
            rclpy.spin_until_future_complete(self.node, future, executor=self._executor,
                                             timeout_sec=max(0.0, deadline - time.monotonic()))
        else:
            done = threading.Event()
            future.add_done_callback(lambda _: done.set())
            done.wait(max(0.0, deadline - time.monotonic()))
        if not future.done():
            client.remove_pending_request(future)
            raise TimeoutError(f'no answer from the n3f node to {what} within {timeout:g} s')
        return future.result()

    def _spin_or_wait(self, seconds: float) -> None:
        if self.spin:
            import rclpy
            rclpy.spin_once(self.node, executor=self._executor, timeout_sec=seconds)
        else:
            time.sleep(seconds)

    def _ask(self, req, timeout, what: str) -> QueryAnswer:
        resp = self._call(self._query, req, timeout, what)
        if not resp.success:
            raise QueryRejected(resp.message)
        r = resp.result
        arr = pointcloud2_to_array(r.cloud)
        names = arr.dtype.names or ()
        mask = None
        if r.mask.width and r.mask.height:
            m = np.frombuffer(bytes(r.mask.data), np.uint8).reshape(r.mask.height, r.mask.step)
            mask = m[:, :r.mask.width] > 0
        edit = _xyz(pointcloud2_to_array(r.edit)) if req.with_edit else None
        return QueryAnswer(
            stamp_ns=stamp_to_ns(r.header.stamp), frame_id=r.header.frame_id, xyz=_xyz(arr),
            rgb=unpack_rgb(arr['rgb']) if 'rgb' in names else np.zeros((len(arr), 3), np.uint8),
            similarity=(arr['similarity'].astype(np.float32) if 'similarity' in names
                        else np.zeros(len(arr), np.float32)),
            pose=decode_pose(r.pose) if r.num_points else None,
            box_size=np.array([r.box_size.x, r.box_size.y, r.box_size.z]),
            mask=mask, mask_frame_id=r.mask.header.frame_id, edit_xyz=edit,
            score=float(r.score) if r.num_points else float('nan'), confidence=float(r.confidence),
            threshold=float(r.threshold), feature_source=r.feature_source, kind=r.kind, name=r.name,
            message=resp.message)


__all__ = ['N3FClient', 'QueryAnswer', 'QueryRejected']
