"""Blocking query client for the n3f node: "publish a query, wait for its stamped answer".

Example::

    rclpy.init()
    node = rclpy.create_node('grasp_planner')
    client = N3FClient(node)                        # or N3FClient(node, namespace='/robot1/n3f')
    ans = client.query_point([0.4, 0.1, 0.05])      # world_frame coordinates, metres
    print(len(ans), ans.centroid, ans.pose, ans.mask.shape if ans.mask is not None else None)
    client.save_prototype('mug')
    ans = client.query_name('mug')

How an answer is matched to its question: a point query carries a unique header stamp and the
node stamps every result topic with it; ``query_point`` waits for ``query/cloud`` with that stamp,
then (unless the result is empty) ``query/pose`` and ``query/mask`` with the same stamp.
``query/name`` is a std_msgs/String without a stamp, so the node stamps that answer with its own
clock when the query arrives; ``query_name`` takes the first answer stamped later than every
answer seen before publishing (one client at a time per node for name queries).

An empty result (nothing found, empty map, unknown prototype) comes back as an answer with 0
points and no pose; the node logs why. Result topics are latched (transient local), so the client
can be created just before asking.

Masks: the node renders ``query/mask`` only while someone subscribes to it, and rendering the
field costs seconds on a CPU; ``wait_mask=False`` does not subscribe (answers have ``mask=None``)
and so gets answers much sooner when no other node listens to the mask.

Spinning: by default (``spin=True``) the client spins ``node`` itself while it waits, with its
own executor, so ``node`` must not be spinning in another thread at that time. If the node is
spun elsewhere (e.g. a MultiThreadedExecutor in a background thread), pass ``spin=False``: the
call then only waits for the callbacks (which run in a Reentrant callback group).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
from geometry_msgs.msg import PointStamped, PoseStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import String
from visualization_msgs.msg import Marker, MarkerArray

from n3f_ros.io.decode import decode_pose, stamp_to_ns
from n3f_ros.io.encode import make_header, pointcloud2_to_array, to_time_msg, unpack_rgb

#: QoS of the node's result topics (SPEC §3: latched)
RESULT_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)


@dataclass
class QueryAnswer:
    """One query's answer. Arrays are numpy; coordinates in ``frame_id`` (the node's world_frame).

    xyz (M, 3) float32 metres, rgb (M, 3) uint8 observed colours, similarity (M,) float32;
    pose (4, 4): centroid + oriented-box axes, None when empty; mask (H, W) bool on the node's
    latest camera image (None when the node had no camera), mask_frame_id its optical frame;
    score: mean similarity (nan when empty); text: the marker label ('name score').
    """

    stamp_ns: int
    frame_id: str
    xyz: np.ndarray
    rgb: np.ndarray
    similarity: np.ndarray
    pose: np.ndarray | None = None
    mask: np.ndarray | None = None
    mask_frame_id: str = ''
    markers: MarkerArray | None = None
    extras: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.xyz)

    @property
    def empty(self) -> bool:
        return len(self.xyz) == 0

    @property
    def centroid(self) -> np.ndarray | None:
        return None if self.pose is None else self.pose[:3, 3].copy()

    @property
    def score(self) -> float:
        return float(self.similarity.mean()) if len(self.similarity) else float('nan')

    @property
    def text(self) -> str:
        if self.markers is None:
            return ''
        return next((m.text for m in self.markers.markers if m.type == Marker.TEXT_VIEW_FACING), '')


def _topic(namespace: str, name: str) -> str:
    ns = namespace.rstrip('/')
    return f'{ns}/{name}' if ns else name


class N3FClient:
    """See the module docstring. ``namespace``: the n3f node's namespace ('' = same as ``node``'s,
    relative names); ``timeout``: default seconds to wait for an answer."""

    def __init__(self, node, namespace: str = '', timeout: float = 10.0, spin: bool = True,
                 wait_mask: bool = True):
        self.node = node
        self.timeout = float(timeout)
        self.spin = bool(spin)
        self.wait_mask = bool(wait_mask)
        self._cv = threading.Condition()
        self._msgs: dict[str, dict[int, object]] = {'cloud': {}, 'pose': {}, 'mask': {}, 'markers': {}}
        self._max_seen = -1
        self._last_stamp_ns = 0
        group = ReentrantCallbackGroup()
        self._pub_point = node.create_publisher(PointStamped, _topic(namespace, 'query/point'), 10)
        self._pub_name = node.create_publisher(String, _topic(namespace, 'query/name'), 10)
        self._pub_save = node.create_publisher(String, _topic(namespace, 'prototypes/save'), 10)
        topics = [('cloud', PointCloud2, 'query/cloud'), ('pose', PoseStamped, 'query/pose'),
                  ('markers', MarkerArray, 'query/markers')]
        if self.wait_mask:
            topics.append(('mask', Image, 'query/mask'))
        self._subs = [
            node.create_subscription(t, _topic(namespace, topic), self._callback(key), RESULT_QOS,
                                     callback_group=group)
            for key, t, topic in topics]
        self._executor = SingleThreadedExecutor(context=node.context) if self.spin else None

    # --- public API -----------------------------------------------------------------------------
    def query_point(self, xyz, frame_id: str = 'map', timeout: float | None = None) -> QueryAnswer:
        """Ask for the object at ``xyz`` (3,) metres in ``frame_id`` (must be the node's
        world_frame). Raises TimeoutError when no complete answer comes within ``timeout`` s."""
        p = np.asarray(xyz, dtype=np.float64).reshape(3)
        stamp_ns = self._unique_stamp_ns()
        msg = PointStamped(header=make_header(stamp_ns, frame_id))
        msg.point.x, msg.point.y, msg.point.z = (float(v) for v in p)
        self._pub_point.publish(msg)
        return self._wait(lambda s: s == stamp_ns, timeout, f'query/point at {p.tolist()}')

    def query_name(self, name: str, timeout: float | None = None) -> QueryAnswer:
        """Ask for the object matching the saved prototype ``name``."""
        with self._cv:
            after = self._max_seen
        self._pub_name.publish(String(data=str(name)))
        return self._wait(lambda s: s > after, timeout, f'query/name {name!r}')

    def save_prototype(self, name: str) -> None:
        """Ask the node to save the last query's prototype under ``name`` (fire and forget)."""
        self._pub_save.publish(String(data=str(name)))

    def close(self) -> None:
        for s in self._subs:
            self.node.destroy_subscription(s)
        for p in (self._pub_point, self._pub_name, self._pub_save):
            self.node.destroy_publisher(p)
        if self._executor is not None:
            self._executor.shutdown()

    # --- internals ------------------------------------------------------------------------------
    def _unique_stamp_ns(self) -> int:
        now = self.node.get_clock().now().nanoseconds
        self._last_stamp_ns = max(now, self._last_stamp_ns + 1)
        return self._last_stamp_ns

    def _callback(self, key: str):
        def cb(msg):
            s = stamp_to_ns(msg.markers[0].header.stamp) if key == 'markers' and msg.markers else \
                stamp_to_ns(msg.header.stamp) if key != 'markers' else -1
            with self._cv:
                box = self._msgs[key]
                box[s] = msg
                while len(box) > 32:
                    box.pop(next(iter(box)))
                if key == 'cloud':
                    self._max_seen = max(self._max_seen, s)
                self._cv.notify_all()
        return cb

    def _complete(self, match) -> QueryAnswer | None:
        """The answer for the first stamp accepted by ``match`` whose parts have all arrived."""
        with self._cv:
            for s, cloud in self._msgs['cloud'].items():
                if not match(s):
                    continue
                arr = pointcloud2_to_array(cloud)
                pose = self._msgs['pose'].get(s)
                mask = self._msgs['mask'].get(s)
                if len(arr) and pose is None:
                    return None
                if self.wait_mask and mask is None:
                    return None
                return self._answer(s, cloud, arr, pose, mask)
        return None

    def _answer(self, s, cloud, arr, pose, mask) -> QueryAnswer:
        xyz = np.stack([arr['x'], arr['y'], arr['z']], axis=1).astype(np.float32) if len(arr) else \
            np.zeros((0, 3), np.float32)
        names = arr.dtype.names or ()
        rgb = unpack_rgb(arr['rgb']) if 'rgb' in names else np.zeros((len(arr), 3), np.uint8)
        sim = arr['similarity'].astype(np.float32) if 'similarity' in names else \
            np.zeros(len(arr), np.float32)
        m = None
        if mask is not None and mask.width and mask.height:
            m = np.frombuffer(bytes(mask.data), np.uint8).reshape(mask.height, mask.step)[:, :mask.width] > 0
        return QueryAnswer(stamp_ns=s, frame_id=cloud.header.frame_id, xyz=xyz, rgb=rgb, similarity=sim,
                           pose=None if pose is None else decode_pose(pose), mask=m,
                           mask_frame_id='' if mask is None else mask.header.frame_id,
                           markers=self._msgs['markers'].get(s))

    def _wait(self, match, timeout, what: str) -> QueryAnswer:
        timeout = self.timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + timeout
        while True:
            ans = self._complete(match)
            if ans is not None:
                if ans.markers is None:                      # markers are published before the cloud
                    self._spin_or_wait(0.05)                 # give them a moment, don't require them
                    ans.markers = self._msgs['markers'].get(ans.stamp_ns)
                return ans
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f'no answer from the n3f node to {what} within {timeout:g} s '
                                   f'(is it running, in this namespace, and is the map non-empty?)')
            self._spin_or_wait(min(left, 0.05))

    def _spin_or_wait(self, seconds: float) -> None:
        if self.spin:
            import rclpy
            rclpy.spin_once(self.node, executor=self._executor, timeout_sec=seconds)
        else:
            with self._cv:
                self._cv.wait(seconds)


__all__ = ['RESULT_QOS', 'N3FClient', 'QueryAnswer', 'to_time_msg']
