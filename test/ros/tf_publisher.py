"""A TF publisher process for test_tf_listener_dds.py: a robot with a RealSense on it.

* ``/tf_static`` once at start (reliable, transient local, depth 1: tf2's static broadcaster QoS):
  base_link -> camera_link -> camera_color_optical_frame. Prints 'static sent'.
* ``/tf`` at ``--rate`` Hz: map -> base_link along :func:`T_map_base` of (stamp - ``--t0``), stamps on
  the wall clock; once a second also a NaN transform of ``broken_link`` (to be rejected).

    python tf_publisher.py --t0 1712345678.9 --rate 30 --duration 60
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from n3f_ros.core.camera import pose_from_xyz_quat

WORLD, BASE, CAMERA_LINK, OPTICAL = 'map', 'base_link', 'camera_link', 'camera_color_optical_frame'
#: camera_link 30 cm ahead of and 50 cm above base_link, pitched down 20 degrees (about y)
T_BASE_CAMLINK = pose_from_xyz_quat([0.3, 0.0, 0.5], [0.0, math.sin(math.radians(10)), 0.0,
                                                       math.cos(math.radians(10))])
#: the RealSense driver's camera_link -> camera_color_optical_frame (x right, y down, z forward)
T_CAMLINK_OPT = pose_from_xyz_quat([0.0, 0.015, 0.0], [-0.5, 0.5, -0.5, 0.5])


def T_map_base(t: float) -> np.ndarray:
    """The robot's pose at ``t`` seconds: driving at 0.5 m/s, weaving 0.2 m, turning and wobbling."""
    yaw = 0.3 * t + 0.1 * math.sin(2 * t)
    T = np.eye(4)
    T[:3, :3] = [[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]]
    T[:3, 3] = [0.5 * t, 0.2 * math.sin(t), 0.0]
    return T


def T_map_optical(t: float) -> np.ndarray:
    """Ground truth of the camera's optical frame in map at ``t``."""
    return T_map_base(t) @ T_BASE_CAMLINK @ T_CAMLINK_OPT


def transform_msg(parent: str, child: str, stamp: float, T):
    from geometry_msgs.msg import TransformStamped

    from n3f_ros.core.camera import pose_to_xyz_quat
    from n3f_ros.io import encode
    m = TransformStamped(header=encode.make_header(stamp, parent), child_frame_id=child)
    xyz, q = pose_to_xyz_quat(T)
    m.transform.translation.x, m.transform.translation.y, m.transform.translation.z = map(float, xyz)
    m.transform.rotation.x, m.transform.rotation.y, m.transform.rotation.z, m.transform.rotation.w = map(float, q)
    return m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--t0', type=float, required=True)
    ap.add_argument('--rate', type=float, default=30.0)
    ap.add_argument('--duration', type=float, default=60.0)
    args = ap.parse_args()

    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from tf2_msgs.msg import TFMessage

    rclpy.init()
    node = rclpy.create_node('tf_publisher')
    pub_static = node.create_publisher(TFMessage, '/tf_static', QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    pub = node.create_publisher(TFMessage, '/tf', QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    now = time.time()
    pub_static.publish(TFMessage(transforms=[transform_msg(BASE, CAMERA_LINK, now, T_BASE_CAMLINK),
                                             transform_msg(CAMERA_LINK, OPTICAL, now, T_CAMLINK_OPT)]))
    print('static sent', flush=True)
    end, k, period = time.monotonic() + args.duration, 0, 1.0 / args.rate
    try:
        while time.monotonic() < end and rclpy.ok():
            stamp = time.time()
            pub.publish(TFMessage(transforms=[transform_msg(WORLD, BASE, stamp, T_map_base(stamp - args.t0))]))
            if k % int(args.rate) == 0:
                bad = transform_msg(BASE, 'broken_link', stamp, np.eye(4))
                bad.transform.translation.x = float('nan')
                pub.publish(TFMessage(transforms=[bad]))
            k += 1
            time.sleep(max(0.0, period - (time.time() - stamp)))
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
