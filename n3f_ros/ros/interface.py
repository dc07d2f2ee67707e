"""The node's ROS interface (SPEC §3) as data: the README tables are generated from it and a DDS test
checks a running node against it, so documentation and code cannot drift. No ROS import here."""
from __future__ import annotations

import re

#: first word of the node's INFO log line once its topics, services and timers exist and the
#: mapper runs (``ready: world_frame 'map', ...``): launch/n3f_bag.launch.py starts the bag player on it
READY_LOG = 'ready:'
#: regex (re.MULTILINE) finding that line in the node's output: READY_LOG as the message of an
#: rcutils log line (``[INFO] [t] [ns.n3f]: ready: ...``), or at a line start, possibly after a
#: colour code (custom RCUTILS_CONSOLE_OUTPUT_FORMAT / colourised output)
READY_PATTERN = r'(?:^|\]: |\x1b\[[0-9;]*m)' + re.escape(READY_LOG)
#: the node's default name (``n3f_node``; the launch files name it so too)
NODE_NAME = 'n3f'

# (relative name, type, notes); names are relative to the node's namespace
SUBSCRIBED = (
    ('image', 'sensor_msgs/msg/Image', 'rgb8, bgr8, rgba8, bgra8, mono8 (when `image_transport: raw`)'),
    ('image/compressed', 'sensor_msgs/msg/CompressedImage', 'jpeg/png (when `image_transport: compressed`)'),
    ('camera_info', 'sensor_msgs/msg/CameraInfo', 'pinhole K; may be another size than `image` (K is scaled)'),
    ('depth', 'sensor_msgs/msg/Image', 'optional; 16UC1 (mm) or 32FC1 (m), aligned to colour'),
    ('pose', 'geometry_msgs/msg/PoseStamped', 'camera optical frame in `world_frame` (`pose_source: pose`)'),
    ('odom', 'nav_msgs/msg/Odometry', 'child frame pose, composed with `camera_extrinsic` (`pose_source: odom`)'),
    ('/tf', 'tf2_msgs/msg/TFMessage', "dynamic transforms: the pose of the image's `header.frame_id` in "
     '`world_frame` at the image stamp, interpolated (`pose_source: tf`)'),
    ('/tf_static', 'tf2_msgs/msg/TFMessage', 'static transforms (reliable, transient local: a tree published before '
     'the node started arrives) (`pose_source: tf`)'),
    ('query/point', 'geometry_msgs/msg/PointStamped', 'query by 3D point in `world_frame` (remap /clicked_point)'),
    ('query/name', 'std_msgs/msg/String', 'query by saved prototype name'),
    ('prototypes/save', 'std_msgs/msg/String', "save the last query's prototype under this name"),
)

PUBLISHED = (
    ('feature_cloud', 'sensor_msgs/msg/PointCloud2', '`x y z` float32, `rgb` (PCA of features), `label` uint32; '
     'voxel-downsampled, at `cloud_rate`'),
    ('feature_image', 'sensor_msgs/msg/Image', 'rgb8 PCA of rendered student features at the latest frame'),
    ('query/cloud', 'sensor_msgs/msg/PointCloud2', 'matched object: `x y z rgb similarity` (latched)'),
    ('query/pose', 'geometry_msgs/msg/PoseStamped', 'object centroid, orientation = box axes (latched)'),
    ('query/markers', 'visualization_msgs/msg/MarkerArray', 'box, centroid, name + score text (latched)'),
    ('query/mask', 'sensor_msgs/msg/Image', 'mono8 2D retrieval mask on the latest frame (latched)'),
    ('edit/cloud', 'sensor_msgs/msg/PointCloud2', 'scene without / only the last object, per `edit_mode` (latched)'),
    ('keyframes', 'geometry_msgs/msg/PoseArray', 'keyframe camera poses'),
    ('diagnostics', 'diagnostic_msgs/msg/DiagnosticArray', 'rates, drops, rejections by reason, loss, memory'),
)

#: PointField names of the node's PointCloud2 outputs, in order (SPEC §3; rviz/n3f.rviz colours by them)
CLOUD_FIELDS = {
    'feature_cloud': ('x', 'y', 'z', 'rgb', 'label'),
    'query/cloud': ('x', 'y', 'z', 'rgb', 'similarity'),
    'edit/cloud': ('x', 'y', 'z', 'rgb', 'label'),
}

SERVICES = (
    ('~/reset', 'std_srvs/srv/Trigger', 'forget the map (prototypes kept)'),
    ('~/save', 'std_srvs/srv/Trigger', 'write the map atomically to `map_path`'),
    ('~/load', 'std_srvs/srv/Trigger', 'replace the map with `map_path` (safe loader; on error the map is kept)'),
    ('~/pause', 'std_srvs/srv/SetBool', 'pause (true) / resume (false) integration and training; a pause answers '
     'once the work in flight has finished: from then on the map does not change'),
)

# Query, prototype and map services of n3f_interfaces (SPEC §3): the node's service interface; their
# request/response fields in the README are generated from the .srv files in n3f_interfaces/srv/.
QUERY_SERVICES = (
    ('~/query', 'n3f_interfaces/srv/QueryObject', 'find an object by point, prototype name or pixel of the latest '
     'image; optional 2D mask and scene edit'),
    ('~/save_prototype', 'n3f_interfaces/srv/SavePrototype', "name the last answer's object (a prototype)"),
    ('~/list_prototypes', 'n3f_interfaces/srv/ListPrototypes', 'names of the saved prototypes'),
    ('~/save_map', 'n3f_interfaces/srv/FilePath', 'write the map atomically to `path` (empty = `map_path`)'),
    ('~/load_map', 'n3f_interfaces/srv/FilePath', 'replace the map with `path` (empty = `map_path`; safe loader, '
     'on error the map is kept)'),
)
