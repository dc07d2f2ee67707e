"""Feature point clouds: downsampling, PCA colours, segmentation, queries, edits, metrics, PLY.

No ROS import here (SPEC §2). Units: metres, world frame; features L2-normalised rows.
"""
from n3f_ros.core.cloud.box import OrientedBox, oriented_box
from n3f_ros.core.cloud.edit import EDIT_MODES, edit_cloud, edit_mask
from n3f_ros.core.cloud.errors import CloudError, EmptyCloudError, QueryError
from n3f_ros.core.cloud.graph import default_radius, estimate_spacing, radius_components
from n3f_ros.core.cloud.kmeans import kmeans_cosine
from n3f_ros.core.cloud.metrics import average_precision, iou, matched_ious, matched_miou, segment_purity
from n3f_ros.core.cloud.pca import FeaturePCA
from n3f_ros.core.cloud.ply import read_ply, write_ply
from n3f_ros.core.cloud.pointcloud import FeatureCloud
from n3f_ros.core.cloud.query import QueryResult, cosine_similarity, query_by_point, query_by_prototype
from n3f_ros.core.cloud.render import save_cloud_views_png
from n3f_ros.core.cloud.segmentation import segment
from n3f_ros.core.cloud.threshold import auto_threshold, otsu_threshold
from n3f_ros.core.cloud.voxel import voxel_downsample

__all__ = [
    'EDIT_MODES', 'CloudError', 'EmptyCloudError', 'FeatureCloud', 'FeaturePCA', 'OrientedBox',
    'QueryError', 'QueryResult', 'auto_threshold', 'average_precision', 'cosine_similarity',
    'default_radius', 'edit_cloud', 'edit_mask', 'estimate_spacing', 'iou', 'kmeans_cosine',
    'matched_ious', 'matched_miou', 'oriented_box', 'otsu_threshold', 'query_by_point',
    'query_by_prototype', 'radius_components', 'read_ply', 'save_cloud_views_png', 'segment',
    'segment_purity', 'voxel_downsample', 'write_ply',
]
