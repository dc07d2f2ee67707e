"""2D teachers (dense patch features of a frame) and the PCA projector to the student's dimension.

See ``base.py`` for the contract. timm is imported lazily (only when a DinoTeacher is built).
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
from n3f_ros.core.teacher.synthetic import SyntheticTeacher

__all__ = [
    'DEFAULT_MODEL',
    'CheckpointError',
    'DinoTeacher',
    'FeatureProjector',
    'ProjectorError',
    'SyntheticTeacher',
    'Teacher',
    'TeacherError',
    'TeacherInputError',
    'WeightsUnavailableError',
    'make_teacher',
]
