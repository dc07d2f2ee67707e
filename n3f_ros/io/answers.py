"""A query answer as messages: one pure function, used by the topic answers and the query service.

:func:`query_answer` turns a core ``QueryResult`` (or no result, with the reason) into the message
set the node publishes on ``query/pose``, ``query/markers``, ``query/cloud`` and ``edit/cloud``
(and returns in the ``~/query`` service's result); :func:`mask_message` builds ``query/mask``,
rendered separately because it is the slow part. No rclpy here: testable without DDS.

The answer policy (SPEC §3):

* header = the query's stamp and ``world_frame`` (so a client can match answer to question);
* an answer with points: ``pose`` = centroid with the oriented box's axes as orientation (a
  rotation: ``OrientedBox.R`` is right-handed), ``markers`` = DELETEALL + box + centroid + label,
  ``cloud`` = the object's points ``x y z rgb(observed colour) similarity``, ``edit`` = the scene
  without ('remove') or with only ('extract') the object, from the cloud the query ran on;
* an *empty* answer (nothing found, empty map, bad request; ``reason`` says why): no pose, a
  DELETEALL-only marker array, a 0-point cloud, ``edit`` = the whole scene ('remove') or nothing
  ('extract'), and a 0x0 or all-zero mask — so a client waiting for an answer never hangs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from n3f_ros.core.cloud import FeatureCloud, QueryResult, edit_cloud
from n3f_ros.io import encode


@dataclass
class QueryAnswer:
    """The messages of one answer (see the module docstring). ``pose`` is None when empty."""

    header: object                 # std_msgs/Header: query stamp, world_frame
    pose: object | None            # geometry_msgs/PoseStamped
    markers: object                # visualization_msgs/MarkerArray
    cloud: object                  # sensor_msgs/PointCloud2 x y z rgb similarity
    edit: object                   # sensor_msgs/PointCloud2 x y z rgb label
    points: int                    # points in the answer
    score: float                   # mean similarity (0 when empty)
    box_size: tuple                # (3,) metres, full extents along the box axes (zeros when empty)
    reason: str                    # why it is empty ('' otherwise)
    threshold: float = 0.0         # similarity threshold the query used
    confidence: float = 0.0        # in [0, 1], see core.cloud.QueryResult (0 when empty)
    feature_source: str = ''       # 'fused' | 'student' | 'combined' ('' when empty)
    kind: str = ''                 # 'object' | 'support' ('' when empty)
    name: str = ''                 # prototype name of a named query

    @property
    def empty(self) -> bool:
        return self.points == 0


def scene_cloud_message(cloud: FeatureCloud, header):
    """``edit/cloud`` layout: x y z, rgb (observed colour), label."""
    return encode.pointcloud2_msg({'xyz': cloud.xyz, 'rgb': cloud.rgb, 'label': cloud.labels}, header)


def _empty_object_cloud(header):
    return encode.pointcloud2_msg({'xyz': np.zeros((0, 3)), 'rgb': np.zeros((0, 3), np.uint8),
                                   'similarity': np.zeros(0, np.float32)}, header)


def query_answer(result: QueryResult | None, header, edit_mode: str, reason: str = '',
                 scene: FeatureCloud | None = None) -> QueryAnswer:
    """Messages of a query's answer (see the module docstring).

    result:    the core result, or None when the query could not be answered (``reason``).
    header:    std_msgs/Header with the query's stamp and world_frame.
    edit_mode: 'remove' | 'extract'.
    scene:     the current cloud, for the 'remove' edit of an empty answer (None: nothing).
    """
    if result is None or len(result) == 0:
        full = scene if (edit_mode == 'remove' and scene is not None) else FeatureCloud.empty(1)
        return QueryAnswer(header, None, encode.query_markers(header), _empty_object_cloud(header),
                           scene_cloud_message(full, header), 0, 0.0, (0.0, 0.0, 0.0),
                           reason or 'nothing found')
    box = result.box
    T_obj = np.eye(4)
    T_obj[:3, :3] = box.R
    T_obj[:3, 3] = result.centroid
    label = f'{result.name or "object"} {result.score:.2f}'
    markers = encode.query_markers(header, box.center, box.extent, box.R, result.centroid, label)
    cloud = result.cloud
    if cloud is not None and len(cloud) == len(result.all_similarity):
        edit = scene_cloud_message(edit_cloud(cloud, result, edit_mode), header)
        rgb = cloud.rgb[result.indices]
    else:                              # no cloud attached: no colours, no edit
        edit = scene_cloud_message(FeatureCloud.empty(1), header)
        rgb = np.full((len(result), 3), 255, np.uint8)
    obj = encode.pointcloud2_msg({'xyz': result.xyz, 'rgb': rgb, 'similarity': result.similarity}, header)
    return QueryAnswer(header, encode.pose_stamped_msg(T_obj, header), markers, obj, edit, len(result),
                       float(result.score), tuple(float(v) for v in box.extent), '',
                       threshold=float(result.threshold), confidence=float(result.confidence),
                       feature_source=result.feature_source, kind=result.kind, name=result.name or '')


def mask_message(mask: np.ndarray | None, camera, stamp, frame_id: str):
    """``query/mask``: mono8 (0/255) in the camera frame, stamped with the query's stamp.
    ``mask`` None: all zero at the camera's size, or 0x0 when no camera is known."""
    header = encode.make_header(stamp, frame_id if camera is not None else '')
    if mask is None:
        shape = (camera.height, camera.width) if camera is not None else (0, 0)
        mask = np.zeros(shape, bool)
    return encode.image_msg(np.asarray(mask, dtype=bool), header)
