"""The node's query interface (SPEC §3): topics for RViz, services for other nodes, same answers.

* Topics: ``query/point`` (PointStamped, e.g. RViz Publish Point), ``query/name`` and
  ``prototypes/save`` (String). Their callbacks only put the request into a bounded
  :class:`~n3f_ros.io.request_queue.RequestQueue` (never blocking, drops counted as
  ``requests_dropped``); one worker thread answers them in order on the latched result topics
  ``query/pose``, ``query/markers``, ``edit/cloud``, ``query/cloud``, then ``query/mask`` (slow:
  last, and only while subscribed).
* Services (n3f_interfaces, in a reentrant callback group: calls run concurrently with each other
  and with the inputs, each blocking only its caller): ``~/query`` (BY_POINT, BY_NAME, BY_PIXEL of
  the latest image; optional mask and edit), ``~/save_prototype``, ``~/list_prototypes``,
  ``~/save_map`` / ``~/load_map`` (a path; empty = ``map_path``). A ``~/query`` answer is also
  published on the result topics, so RViz shows what a client asked for.

Both paths build their messages with :func:`n3f_ros.io.answers.query_answer`. Request errors (NaN
point, wrong frame, unknown prototype, pixel outside the image, unknown mode, bad threshold) are
answered ``success: false`` with the reason and counted (``rejected/<reason>``); a valid query that
finds nothing (empty map, nothing similar, a map not converged yet) is ``success: true`` with 0
points and the reason in ``message``.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np
from geometry_msgs.msg import PointStamped, PoseStamped, Vector3
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from n3f_ros.core.cloud import CloudError
from n3f_ros.io import answers, decode, encode
from n3f_ros.io.decode import MessageError
from n3f_ros.io.request_queue import RequestQueue
from n3f_ros.io.validation import safe_text

#: QoS of query results (SPEC §3: latched)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: QoS depth of the request topics (a burst of clicks or a script's queries is not lost in DDS)
REQUEST_DEPTH = 100
#: requests waiting for the worker; beyond it the oldest is dropped and counted
REQUEST_QUEUE = 64


class QueryInterface:
    """Topics and services of the queries of ``node`` (an N3FNode: mapper, counters, params, latest)."""

    def __init__(self, node):
        from n3f_interfaces.srv import FilePath, ListPrototypes, QueryObject, SavePrototype
        self.node = node
        self.mapper = node.mapper
        self.QueryObject = QueryObject
        self.latency_ms = float('nan')
        self.requests = RequestQueue(REQUEST_QUEUE, on_drop=self._on_drop, on_error=self._on_error)
        g_topics, g_srv = MutuallyExclusiveCallbackGroup(), ReentrantCallbackGroup()
        sub = node.create_subscription
        sub(PointStamped, 'query/point', node.guard('query/point', self._on_point), REQUEST_DEPTH,
            callback_group=g_topics)
        sub(String, 'query/name', node.guard('query/name', self._on_name), REQUEST_DEPTH, callback_group=g_topics)
        sub(String, 'prototypes/save', node.guard('prototypes/save', self._on_save_prototype), REQUEST_DEPTH,
            callback_group=g_topics)
        pub = node.create_publisher
        self.pub_cloud = pub(PointCloud2, 'query/cloud', LATCHED)
        self.pub_pose = pub(PoseStamped, 'query/pose', LATCHED)
        self.pub_markers = pub(MarkerArray, 'query/markers', LATCHED)
        self.pub_mask = pub(Image, 'query/mask', LATCHED)
        self.pub_edit = pub(PointCloud2, 'edit/cloud', LATCHED)
        srv = node.create_service
        srv(QueryObject, '~/query', self._service('~/query', self._srv_query), callback_group=g_srv)
        srv(SavePrototype, '~/save_prototype', self._service('~/save_prototype', self._srv_save_prototype),
            callback_group=g_srv)
        srv(ListPrototypes, '~/list_prototypes', self._service('~/list_prototypes', self._srv_list),
            callback_group=g_srv)
        srv(FilePath, '~/save_map', self._service('~/save_map', self._srv_save_map), callback_group=g_srv)
        srv(FilePath, '~/load_map', self._service('~/load_map', self._srv_load_map), callback_group=g_srv)

    def close(self) -> None:
        self.requests.stop()

    # ------------------------------------------------------------------------------------------
    # the queries both paths run
    # ------------------------------------------------------------------------------------------
    def _check_world(self, frame_id: str) -> None:
        if frame_id not in ('', self.node.world_frame):
            raise MessageError('wrong_frame', f"frame {safe_text(frame_id)!r} is not world_frame "
                                              f"'{self.node.world_frame}' (transform the point upstream)")

    def _run(self, query, what: str):
        """(result or None, why) of a mapper query; query errors become an empty answer's reason."""
        t0 = time.perf_counter()
        try:
            result, why = query(), ''
        except (CloudError, KeyError, ValueError) as e:
            text = str(e).strip('"\'')
            reason = getattr(e, 'reason', None)              # QueryError's stable code (empty_map, too_large, ...)
            result, why = None, f'{reason}: {text}' if reason else text
        self.latency_ms = 1000.0 * (time.perf_counter() - t0)
        self.node.counters.add('queries')
        if result is None or len(result) == 0:
            self.node.counters.add('queries_empty')
            self.node.throttled('query', 'empty', f'{what}: empty answer ({why or "nothing found"})', info=True)
        else:
            self.node.get_logger().info(f'{what}: {len(result)} points, score {result.score:.2f}, centroid '
                                        f'{np.round(result.centroid, 3).tolist()}')
        return result, why

    def _mask(self, stamp, result, latest) -> Image:
        """query/mask of a result at the latest frame (all zero when empty; 0x0 without an image)."""
        if latest is None:
            return answers.mask_message(None, None, stamp, '')
        cam, T, frame_id, _, depth = latest
        mask = self.mapper.render_mask(result, cam, T, depth) if result is not None and len(result) else None
        return answers.mask_message(mask, cam, stamp, frame_id)

    def _publish(self, ans: answers.QueryAnswer, result, latest, mask: Image | None = None) -> None:
        """The answer on the latched topics, mask last (rendered only while someone subscribes)."""
        if not ans.empty:
            self.pub_pose.publish(ans.pose)
        self.pub_markers.publish(ans.markers)
        self.pub_edit.publish(ans.edit)
        self.pub_cloud.publish(ans.cloud)
        if self.pub_mask.get_subscription_count() > 0:
            self.pub_mask.publish(mask if mask is not None else self._mask(ans.header.stamp, result, latest))

    def _answer(self, stamp, result, why: str):
        scene = self.mapper.latest_cloud() if self.node.p['edit_mode'] == 'remove' else None
        header = encode.make_header(stamp, self.node.world_frame)
        return answers.query_answer(result, header, self.node.p['edit_mode'], why, scene)

    # ------------------------------------------------------------------------------------------
    # topics (queued, answered by the worker thread)
    # ------------------------------------------------------------------------------------------
    def _on_drop(self, name: str) -> None:
        self.node.counters.add('requests_dropped')
        self.node.throttled('requests', 'dropped', f'request on {name} dropped: {REQUEST_QUEUE} requests were '
                                                   'waiting (queries arrive faster than they are answered)')

    def _on_error(self, name: str, e: Exception) -> None:
        err = e if isinstance(e, MessageError) else MessageError('internal_error', f'{type(e).__name__}: {e}')
        self.node.reject(name, err)

    def _on_point(self, msg) -> None:
        self.requests.put('query/point', self._answer_point, msg, self.node.latest)

    def _on_name(self, msg) -> None:
        self.requests.put('query/name', self._answer_name, msg.data, self.node.get_clock().now().to_msg(),
                          self.node.latest)

    def _on_save_prototype(self, msg) -> None:
        self.requests.put('prototypes/save', self._save_prototype_from_topic, msg.data)

    def _answer_point(self, msg, latest) -> None:
        stamp = msg.header.stamp
        try:
            xyz = decode.decode_point(msg)
            self._check_world(msg.header.frame_id)
        except MessageError as e:
            self._publish(self._answer(stamp, None, f'{e.reason}: {e.text}'), None, latest)
            raise
        result, why = self._run(lambda: self.mapper.query_point(xyz), f'point {np.round(xyz, 3).tolist()}')
        self._publish(self._answer(stamp, result, why), result, latest)

    def _answer_name(self, name: str, stamp, latest) -> None:
        name = name.strip()
        result, why = self._run(lambda: self.mapper.query_prototype(name), f'prototype {safe_text(name)!r}')
        self._publish(self._answer(stamp, result, why), result, latest)

    def _save_prototype_from_topic(self, name: str) -> None:
        try:
            saved = self.mapper.save_prototype(name)
        except ValueError as e:
            raise MessageError('bad_prototype', f'cannot save the prototype {safe_text(name)!r}: {e}') from e
        self.node.counters.add('prototypes_saved')
        self.node.get_logger().info(f"saved the last query's prototype as {saved!r}")

    # ------------------------------------------------------------------------------------------
    # services
    # ------------------------------------------------------------------------------------------
    def _service(self, name: str, fn):
        """Wrap a service handler: count the call, answer ``success: false`` (counted by reason)
        for a bad request, never raise into the executor."""
        def handler(request, response):
            self.node.counters.add(f'received/{name}')
            try:
                return fn(request, response)
            except MessageError as e:
                self.node.reject(name, e)
                response.success, response.message = False, f'{e.reason}: {e.text}'
            except Exception as e:  # noqa: BLE001 - a service must answer, whatever happens
                self.node.reject(name, MessageError('internal_error', f'{type(e).__name__}: {e}'))
                response.success, response.message = False, f'internal error: {type(e).__name__}: {e}'
            return response
        return handler

    def _request_query(self, req):
        """(query callable, description) of a QueryObject request; raises MessageError when bad."""
        Q = self.QueryObject.Request
        if not (math.isfinite(req.threshold) and 0.0 <= req.threshold <= 1.0):
            raise MessageError('bad_threshold', f'threshold {req.threshold} outside [0, 1] (0 = automatic)')
        thr = float(req.threshold) if req.threshold > 0 else None
        if req.mode == Q.BY_POINT:
            xyz = decode.decode_point(req.point)
            self._check_world(req.point.header.frame_id)
            return lambda: self.mapper.query_point(xyz, thr), f'point {np.round(xyz, 3).tolist()}'
        if req.mode == Q.BY_NAME:
            name = req.name.strip()
            if name not in self.mapper.prototypes:
                known = self.mapper.prototypes.names()
                raise MessageError('unknown_prototype', f'no prototype named {safe_text(name)!r} (known: '
                                                        f'{[safe_text(k) for k in known[:10]]})')
            return lambda: self.mapper.query_prototype(name, thr), f'prototype {safe_text(name)!r}'
        if req.mode == Q.BY_PIXEL:
            latest = self.node.latest
            if latest is None:
                raise MessageError('no_image', 'no image received yet: BY_PIXEL needs the latest image')
            cam, T, _, _, depth = latest
            if not (0 <= req.u < cam.width and 0 <= req.v < cam.height):
                raise MessageError('bad_pixel', f'pixel ({req.u}, {req.v}) is outside the latest image '
                                                f'({cam.width}x{cam.height})')
            u, v = req.u, req.v
            return lambda: self.mapper.query_pixel(cam, T, depth, u, v, thr), f'pixel ({u}, {v})'
        raise MessageError('bad_mode', f'mode {req.mode} is none of BY_POINT ({Q.BY_POINT}), BY_NAME '
                                       f'({Q.BY_NAME}), BY_PIXEL ({Q.BY_PIXEL})')

    def _srv_query(self, req, resp):
        stamp = req.point.header.stamp
        if stamp.sec == 0 and stamp.nanosec == 0:
            stamp = self.node.get_clock().now().to_msg()
        latest = self.node.latest
        query, what = self._request_query(req)
        result, why = self._run(query, what)
        ans = self._answer(stamp, result, why)
        mask = self._mask(stamp, result, latest) if req.with_mask else None
        self._publish(ans, result, latest, mask)
        r = resp.result
        r.header, r.name, r.num_points, r.cloud = ans.header, ans.name, ans.points, ans.cloud
        if ans.pose is not None:
            r.pose = ans.pose
        r.box_size = Vector3(x=ans.box_size[0], y=ans.box_size[1], z=ans.box_size[2])
        r.score, r.confidence, r.threshold = ans.score, ans.confidence, ans.threshold
        r.feature_source, r.kind = ans.feature_source, ans.kind
        if mask is not None:
            r.mask = mask
        if req.with_edit:
            r.edit = ans.edit
        resp.success = True
        resp.message = ans.reason or f'{ans.points} points'
        return resp

    def _srv_save_prototype(self, req, resp):
        existed = req.name.strip() in self.mapper.prototypes
        try:
            name = self.mapper.save_prototype(req.name)
        except ValueError as e:
            raise MessageError('bad_prototype', str(e)) from e
        self.node.counters.add('prototypes_saved')
        resp.success, resp.replaced = True, existed
        resp.message = f"saved the last answer's prototype as {name!r}" + (' (replaced)' if existed else '')
        self.node.get_logger().info(resp.message)
        return resp

    def _srv_list(self, req, resp):
        resp.names = self.mapper.prototypes.names()
        return resp

    def _file(self, req) -> str:
        return os.path.abspath(os.path.expanduser(req.path.strip() or self.node.p['map_path']))

    def _srv_save_map(self, req, resp):
        path = resp.path = self._file(req)
        try:
            self.mapper.save(path)
            resp.success, resp.message = True, f'map saved to {path}'
        except Exception as e:  # noqa: BLE001 - report any failure to the caller, keep running
            resp.success, resp.message = False, f'cannot save the map to {path}: {e}'
        self.node.log_result(resp)
        return resp

    def _srv_load_map(self, req, resp):
        path = resp.path = self._file(req)
        try:
            self.mapper.load(path)
            resp.success, resp.message = True, f'map loaded from {path}'
        except Exception as e:  # noqa: BLE001 - a crafted or missing file must not kill the node
            resp.success, resp.message = False, f'cannot load the map from {path}: {e}'
        self.node.log_result(resp)
        return resp
