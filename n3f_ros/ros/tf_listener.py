"""Camera poses from TF (``pose_source: tf``): ``/tf`` + ``/tf_static`` -> ``T_world_frame`` at a stamp.

One interface, two back-ends (``backend``):

* ``'tf2_ros'`` (a full ROS 2 install, chosen by ``'auto'`` when ``tf2_ros`` imports):
  ``tf2_ros.Buffer`` + ``tf2_ros.TransformListener`` (its own /tf, /tf_static subscriptions).
* ``'local'`` (the pip world: no tf2 wheels): :class:`~n3f_ros.io.tf_tree.TfTree` fed by two
  subscriptions of ``tf2_msgs/msg/TFMessage`` (built by scripts/setup_env.sh): ``/tf`` with
  tf2_ros's listener QoS (reliable, volatile, depth 100) and ``/tf_static`` reliable + transient
  local (depth 100: every static broadcaster's latched message reaches a late-joining node).

What the node calls, for an image stamped ``t`` (float seconds or a builtin_interfaces/Time) with
``header.frame_id`` ``f``, first seen ``waited`` seconds ago (``tf_timeout``: the parameter)::

    T_world_cam = tf.poll(world_frame, f, t, waited, tf_timeout)   # (4, 4) or None = hold the image
    # raises MessageError (tf_unknown_frame, tf_disconnected, tf_extrapolation_past/_future, ...)
    # when it cannot resolve: the node drops the frame and counts the reason

``poll`` waits (returns None) only for reasons that late transforms can clear
(``tf_tree.TRANSIENT_REASONS``) and only while ``waited < timeout``; ``can_lookup`` is the cheap
"can it be answered yet?" check; ``lookup_pose`` looks up once. The pose is that of ``f`` (the
camera's optical frame for a RealSense: ``camera_color_optical_frame``) in ``world_frame``.

Counting: bad incoming transforms (local back-end; tf2_ros drops its own with a log) go to
``reject(topic, MessageError)`` when given (the node's rejection counter), else to
``self.counters`` as ``rejected/<reason>`` and ``rejected/<tf|tf_static>/<reason>`` (received messages
as ``received/<tf|tf_static>``); failed lookups are counted in ``self.counters`` as
``lookup_failed/<reason>``.
"""
from __future__ import annotations

import time

import numpy as np

from n3f_ros.io.tf_tree import CACHE_TIME, TRANSIENT_REASONS, TfTree, decode_transform_stamped
from n3f_ros.io.decode import MessageError
from n3f_ros.io.diagnostics import Counters

TF_TOPIC = '/tf'
TF_STATIC_TOPIC = '/tf_static'
#: history depth of both subscriptions (tf2_ros's listener uses 100 too)
QOS_DEPTH = 100
#: seconds between two log lines of the same (topic, reason)
LOG_PERIOD = 5.0


def _stamp_ns(stamp) -> int:
    """float seconds or a Time-like (``sec``, ``nanosec``) -> integer nanoseconds."""
    if hasattr(stamp, 'sec') and hasattr(stamp, 'nanosec'):
        return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    return int(round(float(stamp) * 1e9))


def _stamp_sec(stamp) -> float:
    if hasattr(stamp, 'sec') and hasattr(stamp, 'nanosec'):
        return int(stamp.sec) + int(stamp.nanosec) * 1e-9
    return float(stamp)


def tf2_ros_available() -> bool:
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        return False
    return True


def listener_qos(static: bool):
    """QoS of the /tf (static=False) or /tf_static (static=True) subscription."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    return QoSProfile(depth=QOS_DEPTH, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if static else DurabilityPolicy.VOLATILE)


class TfPoseLookup:
    """Poses of frames in a world frame from TF (see the module docstring)."""

    def __init__(self, node, cache_time: float = CACHE_TIME, backend: str = 'auto', reject=None,
                 callback_group=None):
        if backend == 'auto':
            backend = 'tf2_ros' if tf2_ros_available() else 'local'
        if backend not in ('tf2_ros', 'local'):
            raise ValueError(f"backend must be 'auto', 'tf2_ros' or 'local', not {backend!r}")
        self.node, self.backend, self.cache_time = node, backend, float(cache_time)
        self.counters = Counters()
        self._reject_hook = reject
        self._log_times: dict = {}
        self._subs = []
        if backend == 'tf2_ros':
            import tf2_ros
            from rclpy.duration import Duration
            self._buffer = tf2_ros.Buffer(cache_time=Duration(seconds=self.cache_time), node=node)
            self._listener = tf2_ros.TransformListener(self._buffer, node, spin_thread=False,
                                                       qos=listener_qos(False), static_qos=listener_qos(True))
            self.tree = None
        else:
            from tf2_msgs.msg import TFMessage
            self.tree = TfTree(cache_time=self.cache_time)
            self._buffer = self._listener = None
            for topic, static in ((TF_TOPIC, False), (TF_STATIC_TOPIC, True)):
                self._subs.append(node.create_subscription(
                    TFMessage, topic, lambda msg, s=static, t=topic: self._on_tf(msg, s, t), listener_qos(static),
                    callback_group=callback_group))

    # ------------------------------------------------------------------------------------------
    # input (local back-end)
    # ------------------------------------------------------------------------------------------
    def _on_tf(self, msg, static: bool, topic: str) -> None:
        self.counters.add(f'received/{topic.lstrip("/")}')
        for err in self.tree.add_message(msg, static=static):
            self._reject(topic, err)

    def _reject(self, topic: str, err: MessageError) -> None:
        if self._reject_hook is not None:
            self._reject_hook(topic, err)
            return
        self.counters.add(f'rejected/{err.reason}')
        self.counters.add(f'rejected/{topic.lstrip("/")}/{err.reason}')
        key, now = (topic, err.reason), time.monotonic()
        if now - self._log_times.get(key, -np.inf) >= LOG_PERIOD:
            self._log_times[key] = now
            self.node.get_logger().warning(f"dropped a transform on '{topic}': {err.reason}: {err.text}")

    # ------------------------------------------------------------------------------------------
    # lookups
    # ------------------------------------------------------------------------------------------
    def _lookup(self, world_frame: str, frame_id: str, stamp) -> np.ndarray:
        if self.tree is not None:
            return self.tree.lookup(world_frame, frame_id, None if stamp is None else _stamp_sec(stamp))
        import tf2_ros
        from rclpy.time import Time
        t = Time() if stamp is None else Time(nanoseconds=_stamp_ns(stamp))
        try:
            msg = self._buffer.lookup_transform(world_frame, frame_id, t)
        except tf2_ros.ExtrapolationException as e:
            reason = 'tf_extrapolation_future' if 'future' in str(e) else 'tf_extrapolation_past'
            raise MessageError(reason, f'{world_frame} <- {frame_id}: {e}') from e
        except tf2_ros.LookupException as e:
            raise MessageError('tf_unknown_frame', f'{world_frame} <- {frame_id}: {e}') from e
        except tf2_ros.ConnectivityException as e:
            raise MessageError('tf_disconnected', f'{world_frame} <- {frame_id}: {e}') from e
        except tf2_ros.InvalidArgumentException as e:
            raise MessageError('tf_invalid', f'{world_frame} <- {frame_id}: {e}') from e
        except tf2_ros.TransformException as e:
            raise MessageError('tf_lookup_failed', f'{world_frame} <- {frame_id}: {e}') from e
        return decode_transform_stamped(msg)[3]

    def check(self, world_frame: str, frame_id: str, stamp) -> str | None:
        """None when :meth:`lookup_pose` would succeed now, else its failure reason (not counted)."""
        try:
            self._lookup(world_frame, frame_id, stamp)
        except MessageError as e:
            return e.reason
        return None

    def can_lookup(self, world_frame: str, frame_id: str, stamp) -> bool:
        """Cheap "can it be answered yet?" (a lookup in the buffer, nothing counted)."""
        return self.check(world_frame, frame_id, stamp) is None

    def lookup_pose(self, world_frame: str, frame_id: str, stamp) -> np.ndarray:
        """T_world_frame (4, 4) float64: the pose of ``frame_id`` in ``world_frame`` at ``stamp``
        (float seconds or a Time; None = latest), interpolated; raises MessageError (counted as
        ``lookup_failed/<reason>``)."""
        try:
            return self._lookup(world_frame, frame_id, stamp)
        except MessageError as e:
            self.counters.add(f'lookup_failed/{e.reason}')
            raise

    def poll(self, world_frame: str, frame_id: str, stamp, waited: float, timeout: float) -> np.ndarray | None:
        """The pose when it resolves; None while it may still resolve (a transient reason and
        ``waited < timeout`` seconds); raises MessageError (counted) when it will not."""
        reason = self.check(world_frame, frame_id, stamp)
        if reason is not None and reason in TRANSIENT_REASONS and waited < timeout:
            return None
        return self.lookup_pose(world_frame, frame_id, stamp)

    def destroy(self) -> None:
        """Remove the subscriptions (local back-end) or the tf2_ros listener."""
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        self._subs.clear()
        if self._listener is not None:
            self._listener.unregister()
            self._listener = None
