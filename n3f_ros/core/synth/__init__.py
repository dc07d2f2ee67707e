"""Synthetic tabletop scenes rendered by open3d ray casting (no ROS): colour, z-depth and
ground-truth instance ids along a seeded camera orbit, plus the on-disk scene folder format."""
from n3f_ros.core.synth.camera_path import OrbitPath
from n3f_ros.core.synth.folder import SceneFolder, SceneFolderError, read_scene_folder, write_scene_folder
from n3f_ros.core.synth.scene import SceneObject, TabletopScene
from n3f_ros.core.synth.sequence import (
    GroundTruthPoints,
    SyntheticSequence,
    make_camera,
    make_sequence,
    voxelize_labelled,
)

__all__ = ['GroundTruthPoints', 'OrbitPath', 'SceneFolder', 'SceneFolderError', 'SceneObject',
           'SyntheticSequence', 'TabletopScene', 'make_camera', 'make_sequence', 'read_scene_folder',
           'voxelize_labelled', 'write_scene_folder']
