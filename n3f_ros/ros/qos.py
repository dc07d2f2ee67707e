"""QoS of the node's camera inputs (``image``, ``image/compressed``, ``depth``, ``camera_info``).

Parameter ``input_qos`` (:data:`INPUT_QOS`) with ``input_qos_depth``:

* ``sensor_data`` (default): best effort, volatile, keep last ``depth`` (ROS' sensor-data profile,
  depth 5). Matches both best-effort and reliable publishers; a busy node drops old frames instead
  of slowing the camera driver down (the mapper keeps only the newest frames anyway).
* ``reliable``: reliable, volatile, keep last ``depth``. Matches only reliable publishers (most
  drivers, ``ros2 bag play``, ``n3f play``); lost fragments are repaired, at the cost of latency and
  of back-pressure on the publisher. For replays where every frame should arrive.

Neither makes images larger than Fast DDS' default 512 KB shared-memory segment arrive reliably at
30 Hz: the writer's transport does (``config/fastdds_large_images.xml``, see README "Large images").
This module imports rclpy only inside :func:`input_qos`.
"""
from __future__ import annotations

#: values of the ``input_qos`` parameter
INPUT_QOS = ('sensor_data', 'reliable')
#: default ``input_qos_depth``: the depth of rclpy's qos_profile_sensor_data
DEFAULT_INPUT_DEPTH = 5


def input_qos(name: str, depth: int = DEFAULT_INPUT_DEPTH):
    """rclpy QoSProfile of an ``input_qos`` value with history depth ``depth`` (messages)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    if name not in INPUT_QOS:
        raise ValueError(f"input_qos must be one of {', '.join(INPUT_QOS)}, got {name!r}")
    reliability = ReliabilityPolicy.BEST_EFFORT if name == 'sensor_data' else ReliabilityPolicy.RELIABLE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth), reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE)
