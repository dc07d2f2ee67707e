"""Helpers of the ROS tests: a synthetic-scene publisher, the node as a process, waiting.

``ScenePlayer`` turns a core.synth sequence into the node's input messages (Image, CameraInfo,
depth, PoseStamped / Odometry) with stamps on the wall clock, so the node's future/backwards
checks see realistic times.
"""
from __future__ import annotations

import contextlib
import io
import threading
import time

import numpy as np
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from n3f_ros.core.camera import invert_pose, pose_from_xyz_quat
from n3f_ros.io import encode

WORLD = 'map'
CAM_FRAME = 'camera_color_optical_frame'


def wait_for(pred, timeout: float, step: float = 0.02, what: str = 'condition'):
    """Poll ``pred()`` until truthy (returned) or raise AssertionError after ``timeout`` s
    (``what``: a text or a callable giving one, evaluated on failure)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            text = what() if callable(what) else what
            raise AssertionError(f'timed out after {timeout:g} s waiting for {text}')
        time.sleep(step)


def camera_info_msg(camera, header, scale: float = 1.0) -> CameraInfo:
    """CameraInfo of ``camera``; ``scale`` != 1 publishes it for a resized image (K scaled)."""
    c = camera.scaled(round(camera.width * scale), round(camera.height * scale)) if scale != 1.0 else camera
    return CameraInfo(header=header, width=c.width, height=c.height, distortion_model='plumb_bob',
                      d=[0.0] * 5, k=c.K.reshape(-1).tolist(),
                      p=np.hstack([c.K, np.zeros((3, 1))]).reshape(-1).tolist(),
                      r=np.eye(3).reshape(-1).tolist())


def compressed_msg(rgb, header, fmt='png') -> CompressedImage:
    from PIL import Image as PILImage
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format=fmt.upper())
    return CompressedImage(header=header, format=fmt, data=buf.getvalue())


def _transform(T, stamp: float, parent: str, child: str):
    """geometry_msgs/TransformStamped of T_parent_child (4, 4) at ``stamp`` seconds."""
    from geometry_msgs.msg import TransformStamped

    from n3f_ros.core.camera import pose_to_xyz_quat
    xyz, q = pose_to_xyz_quat(T)
    t = TransformStamped(header=encode.make_header(stamp, parent), child_frame_id=child)
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = (float(v) for v in xyz)
    t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z, t.transform.rotation.w = \
        (float(v) for v in q)
    return t


class ScenePlayer:
    """Publishes frames of a synthetic sequence through ``node``'s publishers.

    ``pose_source``: 'pose' (PoseStamped of the camera), 'odom' (Odometry of a child frame
    with ``T_child_cam`` given) or 'tf' (``/tf``: WORLD -> base_link at each pose stamp; ``/tf_static``
    once, latched: base_link -> camera_link -> CAM_FRAME, a RealSense-like tree with
    ``T_child_cam`` = T_base_link_camera_link). ``pose_offsets``: stamps of pose messages relative to
    each image, seconds (several per image to stream poses faster, offset from the images).
    """

    def __init__(self, node, seq, ns: str = '', pose_source: str = 'pose', T_child_cam=None,
                 encoding: str = 'rgb8', depth: bool = True, compressed: bool = False,
                 pose_offsets=(0.0,), info_scale: float = 1.0):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        p = (ns.rstrip('/') + '/') if ns else ''
        self.node, self.seq = node, seq
        self.encoding, self.use_depth, self.compressed = encoding, depth, compressed
        self.pose_source, self.pose_offsets, self.info_scale = pose_source, pose_offsets, info_scale
        self.T_child_cam = np.eye(4) if T_child_cam is None else np.asarray(T_child_cam)
        self.pub_image = node.create_publisher(Image, p + 'image', qos)
        self.pub_compressed = node.create_publisher(CompressedImage, p + 'image/compressed', qos)
        self.pub_info = node.create_publisher(CameraInfo, p + 'camera_info', qos)
        self.pub_depth = node.create_publisher(Image, p + 'depth', qos)
        self.pub_pose = node.create_publisher(PoseStamped, p + 'pose', qos)
        self.pub_odom = node.create_publisher(Odometry, p + 'odom', qos)
        self.t0 = time.time() - 30.0          # stamps in the recent past of the wall clock
        self.published = []                   # (stamp, frame index)
        if pose_source == 'tf':
            from rclpy.qos import DurabilityPolicy
            from tf2_msgs.msg import TFMessage
            self.TFMessage = TFMessage
            self.pub_tf = node.create_publisher(TFMessage, '/tf', QoSProfile(depth=100,
                                                reliability=ReliabilityPolicy.RELIABLE))
            self.pub_tf_static = node.create_publisher(TFMessage, '/tf_static', QoSProfile(
                depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
            # camera_link (x forward, y left, z up) -> optical frame (x right, y down, z forward)
            self.T_link_opt = pose_from_xyz_quat([0.0, 0.015, 0.0], [-0.5, 0.5, -0.5, 0.5])
            self.pub_tf_static.publish(TFMessage(transforms=[
                _transform(self.T_child_cam, 0.0, 'base_link', 'camera_link'),
                _transform(self.T_link_opt, 0.0, 'camera_link', CAM_FRAME)]))

    def stamp(self, i: int) -> float:
        return self.t0 + self.seq.stamp(i)

    def publish_pose(self, t_seq: float) -> None:
        T = self.seq.pose_at(t_seq)
        stamp = self.t0 + t_seq
        if self.pose_source == 'tf':
            T_world_base = T @ invert_pose(self.T_child_cam @ self.T_link_opt)
            self.pub_tf.publish(self.TFMessage(transforms=[_transform(T_world_base, stamp, WORLD, 'base_link')]))
        elif self.pose_source == 'odom':
            msg = Odometry(header=encode.make_header(stamp, WORLD), child_frame_id='base_link')
            msg.pose.pose = encode.pose_msg(T @ invert_pose(self.T_child_cam))
            self.pub_odom.publish(msg)
        else:
            self.pub_pose.publish(encode.pose_stamped_msg(T, encode.make_header(stamp, WORLD)))

    def publish_frame(self, i: int, frame=None) -> None:
        f = frame if frame is not None else self.seq[i]
        t_seq = self.seq.stamp(i)
        stamp = self.t0 + t_seq
        h = encode.make_header(stamp, CAM_FRAME)
        for off in self.pose_offsets:
            self.publish_pose(t_seq + off)
        self.pub_info.publish(camera_info_msg(f.camera, h, self.info_scale))
        if self.use_depth:
            self.pub_depth.publish(encode.depth_msg(f.depth, h, '16UC1'))
        if self.compressed:
            self.pub_compressed.publish(compressed_msg(f.rgb, h))
        else:
            self.pub_image.publish(encode.image_msg(f.rgb, h, encoding=self.encoding))
        self.published.append((stamp, i))

    def play(self, indices, period: float = 0.1, frames=None) -> None:
        for k, i in enumerate(indices):
            self.publish_frame(i, None if frames is None else frames[i])
            time.sleep(period)


# ---------------------------------------------------------------------------------------------
# helpers of the tests that run the real node as a process
# ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def running_node(params: dict, ns: str, workdir, env: dict | None = None):
    """A :class:`NodeProcess` (log in ``workdir``/node.log) for the block; stopped afterwards, its
    exit code and log tail printed (pytest shows them with a failure)."""
    from n3f_ros.bench.node_process import NodeProcess
    proc = NodeProcess(params, ns, workdir / 'node.log', env)
    try:
        yield proc
    finally:
        rc = proc.stop()
        print(f'--- node exit code {rc}; log tail ---\n{proc.tail()}')


def stop_process(proc, log) -> int:
    """SIGINT a helper process, kill it after 10 s; logs the end of its output (pytest shows it on
    failure). Returns the exit code."""
    import signal
    import subprocess
    proc.send_signal(signal.SIGINT)
    try:
        rc = proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait(5)
    print(log.read_text()[-2000:])
    return rc


def diag_value(diags, key):
    """Latest value of ``key`` in the received DiagnosticArrays (str) or None."""
    for msg in reversed(diags[-3:]):
        for st in msg.status:
            for kv in st.values:
                if kv.key == key:
                    return kv.value
    return None


def diag_counts(diags, prefixes=('received/', 'rejected/', 'frames_', 'warning/')) -> str:
    """The latest diagnostics' input counters as one line, for failure messages."""
    if not diags:
        return 'no diagnostics received'
    vals = [(kv.key, kv.value) for st in diags[-1].status for kv in st.values if kv.key.startswith(prefixes)]
    return ', '.join(f'{k}={v}' for k, v in vals) or 'no input counters yet'


def call_service(helper, srv_type, name: str, timeout: float = 60.0, **request):
    cli = helper.create_client(srv_type, name)
    try:
        assert cli.wait_for_service(30.0), f'service {name} not available'
        fut = cli.call_async(srv_type.Request(**request))
        wait_for(fut.done, timeout, what=f'service {name}')
        return fut.result()
    finally:
        helper.destroy_client(cli)


def object_iou(answer_xyz, rest_xyz, gt, label) -> float:
    """IoU of a query answer with ground-truth object ``label`` (``bench.scoring.answer_iou``)."""
    from n3f_ros.bench.scoring import answer_iou
    return answer_iou(answer_xyz, rest_xyz, gt, label)


def isolated_objects(gt, k: int = 2, min_points: int = 40):
    """Up to ``k`` object ids (>= 2) standing furthest from every other object (ground truth), among
    those with at least ``min_points`` points: the unambiguous targets of a query by point."""
    from scipy.spatial import cKDTree
    scored = []
    for i in np.unique(gt.labels[gt.labels >= 2]):
        a = gt.xyz[gt.labels == i]
        b = gt.xyz[(gt.labels >= 2) & (gt.labels != i)]
        if len(a) >= min_points:
            scored.append((cKDTree(b).query(a)[0].min() if len(b) else np.inf, int(i)))
    return [i for _, i in sorted(scored, reverse=True)[:k]]


def surface_point(gt, label):
    """The ground-truth surface point of object ``label`` nearest its centre (a 'click')."""
    pts = gt.xyz[gt.labels == label]
    return pts[np.argmin(np.linalg.norm(pts - pts.mean(0), axis=1))]


@contextlib.contextmanager
def spinning_node(name: str, threads: int = 3):
    """rclpy.init(), a helper node spun by a MultiThreadedExecutor in a daemon thread; everything
    is shut down (executor, node, rclpy) when the block ends."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    rclpy.init()
    ex = MultiThreadedExecutor(num_threads=threads)
    node = rclpy.create_node(name)
    ex.add_node(node)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    try:
        yield node
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown()
        th.join(5)
