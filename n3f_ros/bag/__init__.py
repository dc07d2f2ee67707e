"""rosbag2 output of posed camera streams (via ``rosbags``; no rclpy needed)."""
from n3f_ros.bag.writer import (
    DEFAULT_EXTRINSIC,
    METADATA_FILE,
    BagOptions,
    BagSummary,
    BagTopics,
    BagWriteError,
    BagWriter,
    extrinsic_from_list,
    extrinsic_to_list,
    write_synthetic_bag,
)

__all__ = [
    'DEFAULT_EXTRINSIC',
    'METADATA_FILE',
    'BagOptions',
    'BagSummary',
    'BagTopics',
    'BagWriteError',
    'BagWriter',
    'extrinsic_from_list',
    'extrinsic_to_list',
    'write_synthetic_bag',
]
