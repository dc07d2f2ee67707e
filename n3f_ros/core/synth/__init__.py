"""Synthetic tabletop scenes (no ROS): colour, z-depth and ground-truth instance ids along a seeded
camera orbit, plus the on-disk scene folder format. Two scene sources: procedural shapes ray cast
by open3d (``'synth'``) and photo-textured pybullet models (``'pybullet'``, imported on use)."""
from n3f_ros.core.synth.camera_path import OrbitPath
from n3f_ros.core.synth.folder import SceneFolder, SceneFolderError, read_scene_folder, write_scene_folder
from n3f_ros.core.synth.scene import SceneObject, TabletopScene
from n3f_ros.core.synth.sequence import (
    SCENE_SOURCES,
    GroundTruthPoints,
    SyntheticSequence,
    make_camera,
    make_scene,
    make_sequence,
    voxelize_labelled,
)

__all__ = ['SCENE_SOURCES', 'GroundTruthPoints', 'OrbitPath', 'SceneFolder', 'SceneFolderError', 'SceneObject',
           'SyntheticSequence', 'TabletopScene', 'make_camera', 'make_scene', 'make_sequence', 'read_scene_folder',
           'voxelize_labelled', 'write_scene_folder']
