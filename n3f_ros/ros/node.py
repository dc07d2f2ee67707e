"""The n3f node (SPEC §3): thin ROS glue around :class:`n3f_ros.core.mapping.Mapper`.

Threads and callback groups (MultiThreadedExecutor):

* ``poses`` (mutually exclusive): pose / odom callbacks, in their own group so that a flood of
  images on a slow CPU cannot starve them (images wait for a pose at or after their stamp).
* ``input`` (mutually exclusive): image / compressed image / depth / camera_info callbacks and a
  20 Hz poll timer. Both input groups only decode, validate, pair (``io.frame_assembler``, thread
  safe), check plausibility (``Mapper.check_frame``) and ``Mapper.submit`` (bounded queue, newest
  wins): never the teacher or training.
* the Mapper's own worker thread: teacher + keyframes + training.
* ``output``: feature_cloud / feature_image / keyframes timer (cloud_rate).
* ``queries``: query/point, query/name, prototypes/save and the services.
* ``diagnostics``: the diagnostics timer.

Every malformed message is dropped, counted per reason (``diagnostics``: ``rejected/<reason>``)
and logged at most every :data:`LOG_PERIOD` seconds per (topic, reason); callbacks never raise.

Query answers (all latched: reliable, transient local, depth 1) are built by
:func:`n3f_ros.io.answers.query_answer` (the answer policy, empty answers included, lives there)
and published in this order: ``query/pose``, ``query/markers``, ``edit/cloud``, ``query/cloud``,
then ``query/mask`` (rendered from the field: the slow part, so it comes last and only while
query/mask has a subscriber). Header stamp = the query's stamp (for ``query/name``, a String
without a stamp, the node clock at arrival). A query that cannot be answered is answered empty,
with the reason logged.

Clouds: ``feature_cloud`` = x y z rgb(PCA of features) label; ``query/cloud`` = x y z rgb(observed
colour) similarity; ``edit/cloud`` = x y z rgb(observed colour) label.
"""
from __future__ import annotations

import os
import signal
import time
import traceback

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray, PoseStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_srvs.srv import SetBool, Trigger

from n3f_ros.core.mapping.config import LIVE_SETTINGS
from n3f_ros.core.mapping.plausibility import FrameRejected, check_pose
from n3f_ros.core.options import constraint_text
from n3f_ros.core.persistence import remove_stale_temp_files
from n3f_ros.io import decode, diagnostics, encode
from n3f_ros.io.decode import MessageError
from n3f_ros.io.frame_assembler import FrameAssembler
from n3f_ros.io.validation import StampMonitor, safe_text
from n3f_ros.ros.interface import READY_LOG
from n3f_ros.ros.parameters import PARAMETERS, descriptor, validate
from n3f_ros.ros.qos import input_qos
from n3f_ros.ros.queries import QueryInterface

#: seconds between two log lines for the same (topic, reason)
LOG_PERIOD = 5.0
#: executor threads: inputs, poses, outputs, diagnostics, request topics and concurrent service calls
EXECUTOR_THREADS = 8
#: QoS of pose / odometry input: best effort matches reliable and best-effort publishers
POSE_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)
#: [s] at shutdown, the mapper worker's current step (one training step or frame, ~1 s on a loaded
#: CPU) may finish within this; the process then exits anyway (launch escalates to SIGTERM after 5 s)
STOP_TIMEOUT = 2.0


class StartupError(RuntimeError):
    """Invalid parameters or a mapper that cannot be built (e.g. no teacher weights)."""


class N3FNode(Node):
    """Node ``n3f``. ``mapper``: an already built Mapper (tests); built from parameters if None."""

    def __init__(self, node_name: str = 'n3f', mapper=None, **kwargs):
        super().__init__(node_name, **kwargs)
        self.counters = diagnostics.Counters()
        self._log_times: dict = {}
        self._log_suppressed: dict = {}
        self._last_rejected_total = 0
        self._mapper_prev = (time.monotonic(), 0)
        self.latest = None              # (PinholeCamera, T_world_cam, frame_id, stamp, depth|None) of the newest frame
        self.tf = None                  # TfPoseLookup with pose_source tf
        self.p = self._declare_parameters()
        self.world_frame = self.p['world_frame']
        try:
            self.T_child_cam = decode.decode_extrinsic(self.p['camera_extrinsic'])
        except MessageError as e:
            raise StartupError(f'camera_extrinsic: {e.text}') from e

        self.stamps = StampMonitor(self.p['max_future_dt'])
        self.assembler = FrameAssembler(max_pose_dt=self.p['max_pose_dt'], use_depth=self.p['use_depth'],
                                        min_depth=self.p['min_depth'], max_depth=self.p['max_depth'])
        self.mapper = mapper if mapper is not None else self._build_mapper()
        map_dir = os.path.dirname(self._map_path())
        if os.path.isdir(map_dir):
            for path in remove_stale_temp_files(map_dir):
                self.get_logger().info(f'removed {path}, left by a save that was interrupted')
        self.mapper.start()
        try:
            self._create_interfaces()
        except BaseException:
            # e.g. a Ctrl-C shut the context down meanwhile: no training thread outlives the node
            self.mapper.stop(timeout=STOP_TIMEOUT)
            raise
        self.add_on_set_parameters_callback(self._on_set_parameters)
        teacher = self.mapper.teacher
        prov = getattr(teacher, 'provenance', None) or {}
        self._teacher_info = {'teacher': getattr(teacher, 'name', '?'),
                              'teacher_source': 'random init' if self.p['teacher_random_init'] else
                              str(prov.get('source', '')),
                              'teacher_weights': str(prov.get('weights', getattr(teacher, 'weights_source', '')))}
        weights = (f" ({prov.get('source')}: {prov.get('origin')}, weights {prov.get('weights')}, "
                   f"licence {prov.get('licence')})") if prov and prov.get('source') != 'random' else ''
        self.get_logger().info(
            f"{READY_LOG} world_frame '{self.world_frame}', pose_source '{self.p['pose_source']}', "
            f"image_transport '{self.p['image_transport']}', teacher '{getattr(teacher, 'name', '?')}'"
            f"{weights}{' (random init)' if self.p['teacher_random_init'] else ''} on {self.mapper.device}")

    def create_timer(self, timer_period_sec, callback, callback_group=None, clock=None, **kwargs):
        """Every timer of this node runs on the steady clock unless a clock is given.

        The outputs (feature_cloud, keyframes, diagnostics) and the input poll are wall-rate jobs:
        on the node clock they would stop with ``use_sim_time`` whenever ``/clock`` does (a bag
        that ended, a paused player, no player yet). Message stamps still use the node clock.
        """
        return super().create_timer(timer_period_sec, callback, callback_group,
                                     clock or Clock(clock_type=ClockType.STEADY_TIME), **kwargs)

    # ------------------------------------------------------------------------------------------
    # set-up
    # ------------------------------------------------------------------------------------------
    def _declare_parameters(self) -> dict:
        for p in PARAMETERS:
            try:
                self.declare_parameter(p.name, p.default, descriptor(p))
            except Exception as e:                # wrong type/range from --params-file or -p
                raise StartupError(f"parameter '{p.name}' ({p.type}, {constraint_text(p) or 'any'}): {e}") from e
        values = {p.name: self.get_parameter(p.name).value for p in PARAMETERS}
        for name, value in values.items():
            values[name] = list(value) if isinstance(value, (tuple, np.ndarray)) or \
                type(value).__name__ == 'array' else value
            err = validate(name, values[name])
            if err:
                raise StartupError(f'parameter {err}')
        if values['min_depth'] >= values['max_depth']:
            raise StartupError('parameter min_depth must be < max_depth')
        return values

    def _build_mapper(self):
        from n3f_ros.core.mapping import Mapper, MapperConfig
        try:
            return Mapper(MapperConfig.from_dict(self.p))
        except Exception as e:
            raise StartupError(f'cannot build the mapper: {type(e).__name__}: {e}') from e

    def _create_interfaces(self) -> None:
        self._g_input = MutuallyExclusiveCallbackGroup()
        self._g_output = MutuallyExclusiveCallbackGroup()
        self._g_services = ReentrantCallbackGroup()
        self._g_diag = MutuallyExclusiveCallbackGroup()
        self._g_pose = MutuallyExclusiveCallbackGroup()
        sub = self.create_subscription
        sensor = input_qos(self.p['input_qos'], self.p['input_qos_depth'])     # camera inputs
        if self.p['pose_source'] == 'odom':
            from nav_msgs.msg import Odometry
            sub(Odometry, 'odom', self.guard('odom', self._on_odom), POSE_QOS,
                callback_group=self._g_pose)
        elif self.p['pose_source'] == 'tf':
            from n3f_ros.ros.tf_listener import TfPoseLookup
            self.tf = TfPoseLookup(self, reject=self.reject, callback_group=self._g_pose)
            self.assembler.tf_poses = self._tf_pose
        else:
            sub(PoseStamped, 'pose', self.guard('pose', self._on_pose), POSE_QOS,
                callback_group=self._g_pose)
        # subscription order = executor priority within a group: what images wait for comes first
        sub(CameraInfo, 'camera_info', self.guard('camera_info', self._on_camera_info), sensor,
            callback_group=self._g_input)
        sub(Image, 'depth', self.guard('depth', self._on_depth), sensor, callback_group=self._g_input)
        if self.p['image_transport'] == 'compressed':
            sub(CompressedImage, 'image/compressed', self.guard('image/compressed', self._on_compressed),
                sensor, callback_group=self._g_input)
        else:
            sub(Image, 'image', self.guard('image', self._on_image), sensor, callback_group=self._g_input)

        pub = self.create_publisher
        self.pub_cloud = pub(PointCloud2, 'feature_cloud', 1)
        self.pub_feature_image = pub(Image, 'feature_image', 1)
        self.pub_keyframes = pub(PoseArray, 'keyframes', 1)
        self.pub_diag = pub(DiagnosticArray, 'diagnostics', 10)
        self.queries = QueryInterface(self)

        srv = self.create_service
        srv(Trigger, '~/reset', self._srv_reset, callback_group=self._g_services)
        srv(Trigger, '~/save', self._srv_save, callback_group=self._g_services)
        srv(Trigger, '~/load', self._srv_load, callback_group=self._g_services)
        srv(SetBool, '~/pause', self._srv_pause, callback_group=self._g_services)

        self.create_timer(0.05, self.guard('poll', lambda: self._flush()), callback_group=self._g_input)
        self._cloud_timer = self.create_timer(1.0 / self.p['cloud_rate'],
                                              self.guard('publish', self._publish_outputs),
                                              callback_group=self._g_output)
        self._diag_timer = self.create_timer(1.0 / self.p['diagnostics_rate'],
                                             self.guard('diagnostics', self._publish_diagnostics),
                                             callback_group=self._g_diag)

    # ------------------------------------------------------------------------------------------
    # errors and logging
    # ------------------------------------------------------------------------------------------
    def guard(self, topic: str, fn):
        """Wrap a callback: count, turn MessageError into a rejection, never raise."""
        def callback(*args):
            if args:
                self.counters.add(f'received/{topic}')
            try:
                return fn(*args)
            except MessageError as e:
                self.reject(topic, e)
            except Exception as e:  # noqa: BLE001 - a callback must never take the node down
                if not self.context.ok():
                    return None           # shutting down: handles are being destroyed
                self.reject(topic, MessageError('internal_error', f'{type(e).__name__}: {e}'))
                self.throttled(topic, 'traceback', traceback.format_exc(), error=True)
        return callback

    def reject(self, topic: str, err: MessageError) -> None:
        self.counters.add(f'rejected/{err.reason}')
        self.counters.add(f'rejected/{topic}/{err.reason}')
        self.throttled(topic, err.reason, f"dropped a message on '{topic}': {err.reason}: {err.text}")

    def throttled(self, topic: str, key: str, text: str, error: bool = False, info: bool = False) -> None:
        k = (topic, key)
        now = time.monotonic()
        if now - self._log_times.get(k, -np.inf) < LOG_PERIOD:
            self._log_suppressed[k] = self._log_suppressed.get(k, 0) + 1
            return
        n = self._log_suppressed.pop(k, 0)
        self._log_times[k] = now
        text = text + (f' ({n} more like this in the last {LOG_PERIOD:g} s)' if n else '')
        log = self.get_logger()      # one call site per severity: rclpy requires it
        if error:
            log.error(text)
        elif info:
            log.info(text)
        else:
            log.warning(text)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _check_stamp(self, topic: str, msg) -> float:
        stamp = decode.header_sec(msg)
        self.stamps.check(topic, stamp, self._now())
        return stamp

    # ------------------------------------------------------------------------------------------
    # input callbacks
    # ------------------------------------------------------------------------------------------
    def _on_image(self, msg) -> None:
        rgb = decode.decode_image(msg)
        self._add_image('image', msg, rgb)

    def _on_compressed(self, msg) -> None:
        rgb = decode.decode_compressed_image(msg)
        self._add_image('image/compressed', msg, rgb)

    def _add_image(self, topic: str, msg, rgb) -> None:
        frame_id = decode.header_frame(msg)
        stamp = self._check_stamp(topic, msg)
        for err in self.assembler.add_image(stamp, rgb, frame_id, time.monotonic()):
            self.reject(topic, err)
        self._flush()

    def _on_camera_info(self, msg) -> None:
        cam = decode.decode_camera_info(msg)
        frame_id = decode.header_frame(msg)
        stamp = self._check_stamp('camera_info', msg)
        self.assembler.set_camera(cam, stamp, frame_id)

    def _on_depth(self, msg) -> None:
        if not self.p['use_depth']:
            return
        depth = decode.decode_depth(msg)
        frame_id = decode.header_frame(msg)
        stamp = self._check_stamp('depth', msg)
        frac = self.assembler.add_depth(stamp, depth, time.monotonic(), frame_id)
        if frac < 0.05:
            self.counters.add('warning/depth_mostly_invalid')
        self._flush()

    def _check_world(self, topic: str, frame_id: str) -> None:
        if frame_id not in ('', self.world_frame):
            raise MessageError('wrong_frame', f"frame {safe_text(frame_id)!r} is not world_frame "
                                              f"'{self.world_frame}' (set world_frame, transform upstream, or use "
                                              'pose_source tf)')

    def _tf_pose(self, frame_id: str, stamp: float, waited: float):
        """pose_source tf: T_world_cam of the image's frame at its stamp, None while late transforms
        may still come (at most tf_timeout seconds), MessageError when it cannot resolve."""
        return self.tf.poll(self.world_frame, frame_id, stamp, waited, self.p['tf_timeout'])

    def _on_pose(self, msg) -> None:
        T = decode.decode_pose(msg)
        self._check_world('pose', msg.header.frame_id)
        self._add_pose('pose', msg, T)

    def _on_odom(self, msg) -> None:
        T_world_child = decode.decode_odometry(msg)
        self._check_world('odom', msg.header.frame_id)
        self._add_pose('odom', msg, T_world_child @ self.T_child_cam)

    def _add_pose(self, topic: str, msg, T_world_cam) -> None:
        try:
            check_pose(T_world_cam, self.mapper.config.max_position)
        except FrameRejected as e:
            raise MessageError(e.reason, e.text) from e
        stamp = self._check_stamp(topic, msg)
        self.assembler.add_pose(stamp, T_world_cam)
        self._flush()

    def _flush(self) -> None:
        frames, errors = self.assembler.poll(time.monotonic())
        for err in errors:
            self.reject('image', err)
        for w, n in list(self.assembler.warnings.items()):
            if n:
                self.counters.add(f'warning/{w}', n)
                self.assembler.warnings[w] = 0
        for af in frames:
            f = af.frame
            try:
                self.mapper.check_frame(f)
            except FrameRejected as e:
                self.reject('image', MessageError(e.reason, e.text))
                continue
            self.latest = (f.camera, f.T_world_cam, af.frame_id, f.stamp, f.depth)
            if self.mapper.paused:
                self.counters.add('frames_paused')
                continue
            self.counters.add('frames_submitted')
            if not self.mapper.submit(f):
                self.counters.add('frames_replaced_in_queue')

    # ------------------------------------------------------------------------------------------
    # periodic outputs
    # ------------------------------------------------------------------------------------------
    def _publish_outputs(self) -> None:
        """feature_cloud and feature_image are computed only while someone subscribes (lazy, as
        image_transport does): cloud extraction and rendering are the expensive part."""
        want_image = self.pub_feature_image.get_subscription_count() > 0
        want_cloud = self.pub_cloud.get_subscription_count() > 0
        cloud = self.mapper.cloud() if (want_cloud or want_image) else None
        now = self.get_clock().now()
        header = encode.make_header(now, self.world_frame)
        if cloud is not None and want_cloud:
            self.pub_cloud.publish(encode.pointcloud2_msg(
                {'xyz': cloud.xyz, 'rgb': cloud.pca_rgb, 'label': cloud.labels}, header))
            self.counters.add('clouds_published')
        latest = self.latest
        if latest is not None and cloud is not None and want_image:
            cam, T, frame_id, stamp, depth = latest
            img = self.mapper.feature_image(cam, T, depth)
            if img is not None:
                self.pub_feature_image.publish(encode.image_msg(img, encode.make_header(stamp, frame_id)))
        self.pub_keyframes.publish(encode.pose_array_msg(self.mapper.keyframe_poses(), header))

    def _publish_diagnostics(self) -> None:
        snap = self.counters.snapshot()
        rates = self.counters.rates()
        stats = self.mapper.stats()
        t0, n0 = self._mapper_prev
        t1, n1 = time.monotonic(), int(stats.get('frames_integrated', 0))
        self._mapper_prev = (t1, n1)
        total = sum(v for k, v in snap.items() if k.startswith('rejected/') and k.count('/') == 1)
        new = total - self._last_rejected_total
        self._last_rejected_total = total
        stats['query_latency_ms'] = self.queries.latency_ms
        stats.update(self._teacher_info)
        stats['requests_waiting'] = len(self.queries.requests)
        if self.tf is not None:
            snap.update(self.tf.counters.snapshot())
        sts = diagnostics.statuses(self.get_name(), snap, rates, stats, (n1 - n0) / max(t1 - t0, 1e-6), new)
        header = encode.make_header(self.get_clock().now(), '')
        self.pub_diag.publish(encode.diagnostic_array_msg(header, sts))

    # ------------------------------------------------------------------------------------------
    # services
    # ------------------------------------------------------------------------------------------
    def _srv_reset(self, request, response):
        self.mapper.reset()
        self.assembler.clear(keep_camera=True)      # intrinsics stay valid across a reset
        self.stamps.reset()
        response.success, response.message = True, 'map, pose buffer and stamp history cleared'
        self.get_logger().info(response.message)
        return response

    def _map_path(self) -> str:
        return os.path.expanduser(self.p['map_path'])

    def _srv_save(self, request, response):
        path = self._map_path()
        try:
            self.mapper.save(path)
            response.success, response.message = True, f'map saved to {path}'
        except Exception as e:  # noqa: BLE001 - report any failure to the caller, keep running
            response.success, response.message = False, f'cannot save the map to {path}: {e}'
        self.log_result(response)
        return response

    def _srv_load(self, request, response):
        path = self._map_path()
        try:
            self.mapper.load(path)
            response.success, response.message = True, f'map loaded from {path}'
        except Exception as e:  # noqa: BLE001 - a crafted or missing file must not kill the node
            response.success, response.message = False, f'cannot load the map from {path}: {e}'
        self.log_result(response)
        return response

    def log_result(self, response) -> None:
        if response.success:
            self.get_logger().info(response.message)
        else:
            self.counters.add('map_file_errors')
            self.get_logger().error(response.message)

    def _srv_pause(self, request, response):
        self.mapper.set_paused(bool(request.data))
        response.success = True
        response.message = 'paused' if request.data else 'resumed'
        self.get_logger().info(f'integration and training {response.message}')
        return response

    # ------------------------------------------------------------------------------------------
    # parameters
    # ------------------------------------------------------------------------------------------
    def _on_set_parameters(self, params) -> SetParametersResult:
        new = dict(self.p)
        for prm in params:
            value = prm.value
            if isinstance(value, (tuple, np.ndarray)) or type(value).__name__ == 'array':
                value = list(value)
            err = validate(prm.name, value)
            if err:
                return SetParametersResult(successful=False, reason=err)
            if prm.name in new:
                new[prm.name] = value
        if new['min_depth'] >= new['max_depth']:
            return SetParametersResult(successful=False, reason='min_depth must be < max_depth')
        changed = {k for k in new if new[k] != self.p[k]}
        self.p = new
        self.assembler.configure(max_pose_dt=new['max_pose_dt'], use_depth=new['use_depth'],
                                 min_depth=new['min_depth'], max_depth=new['max_depth'])
        self.stamps.max_future_dt = new['max_future_dt']
        self.mapper.update_settings(**{k: new[k] for k in changed & LIVE_SETTINGS})
        if 'cloud_rate' in changed:
            self._cloud_timer.cancel()
            self.destroy_timer(self._cloud_timer)
            self._cloud_timer = self.create_timer(1.0 / new['cloud_rate'],
                                                  self.guard('publish', self._publish_outputs),
                                                  callback_group=self._g_output)
        if 'diagnostics_rate' in changed:
            self._diag_timer.cancel()
            self.destroy_timer(self._diag_timer)
            self._diag_timer = self.create_timer(1.0 / new['diagnostics_rate'],
                                                 self.guard('diagnostics', self._publish_diagnostics),
                                                 callback_group=self._g_diag)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the timers and the mapper's worker thread (call before destroy_node)."""
        for t in (self._cloud_timer, self._diag_timer):
            t.cancel()
        self.queries.close()
        self.mapper.stop()


def main(args=None) -> int:
    """Run the node until SIGINT / SIGTERM / shutdown; bounded clean-up; returns the exit status.

    The process entry point is :func:`n3f_ros.ros.node_main.main` (``n3f_node``), which ends the
    process right after this returns. Once spin has returned a second SIGINT ends the process at
    once; the mapper worker gets :data:`STOP_TIMEOUT` s to finish its step.
    """
    rclpy.init(args=args)
    node = None
    rc = 0
    try:
        node = N3FNode()
        executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except StartupError as e:
        rclpy.logging.get_logger('n3f').fatal(str(e))
        rc = 1
    except Exception:
        if rclpy.ok():
            raise
        # SIGINT / SIGTERM arrived while the node was being built: rclpy's handler shut the
        # context down and whatever was being created raised ('context is not valid'): a stop
    finally:
        signal.signal(signal.SIGINT, lambda *_: os._exit(130))   # impatient second Ctrl-C
        if node is not None:
            node.mapper.stop(timeout=STOP_TIMEOUT)
            node.close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return rc


if __name__ == '__main__':
    raise SystemExit(main())
