"""Build a teacher from its configured name."""
from __future__ import annotations

from n3f_ros.core.teacher.base import Teacher

SYNTHETIC = 'synthetic'


def make_teacher(name: str, **kwargs) -> Teacher:
    """``'synthetic'`` -> :class:`SyntheticTeacher` (``kwargs``: dim, stride, seed, noise, ...);
    any other name -> :class:`DinoTeacher` with ``model_name=name`` (``kwargs``: checkpoint,
    random_init, device, input_width). Unknown kwargs raise TypeError."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f'teacher name must be a non-empty string, got {name!r}')
    if name.strip().lower() == SYNTHETIC:
        from n3f_ros.core.teacher.synthetic import SyntheticTeacher
        return SyntheticTeacher(**kwargs)
    from n3f_ros.core.teacher.dino import DinoTeacher
    return DinoTeacher(model_name=name.strip(), **kwargs)
