"""The teacher contract (2D feature extractors) and the errors teachers raise.

A teacher maps one :class:`~n3f_ros.core.frame.Frame` to a dense patch-feature grid:

* ``teacher(frame) -> torch.Tensor`` of shape ``(h, w, C)``, float32, L2-normalised along C,
  on ``teacher.device``;
* the grid covers the whole image: feature ``(i, j)`` is centred at pixel
  ``((j + 0.5) * W / w, (i + 0.5) * H / h)`` of the ``W x H`` frame (pixel-centre convention of
  ``core/camera.py``), i.e. each feature summarises a ``W / w`` x ``H / h`` pixel cell;
* ``name`` (str), ``dim`` (int, C), ``stride`` (int, nominal pixels per patch of the network input)
  and ``device`` (torch.device) are plain attributes.
"""
from __future__ import annotations

import abc

import numpy as np
import torch
import torch.nn.functional as F

from n3f_ros.core.frame import Frame


class TeacherError(RuntimeError):
    """Base class of the teacher errors."""


class WeightsUnavailableError(TeacherError):
    """No pretrained weights could be found locally (and random weights were not asked for)."""


class CheckpointError(TeacherError, ValueError):
    """A weights file that cannot be read or does not match the model architecture."""


class TeacherInputError(TeacherError, ValueError):
    """A frame the teacher cannot process (e.g. missing ground-truth instances)."""


def l2_normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``x / max(||x||, eps)`` along the last axis (any shape, float)."""
    return F.normalize(x, p=2.0, dim=-1, eps=eps)


def check_rgb(rgb) -> np.ndarray:
    """Validate an ``(H, W, 3)`` uint8 image; returns it as a numpy array."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise TeacherInputError(f'rgb must be a non-empty (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}')
    return rgb


class Teacher(abc.ABC):
    """Abstract teacher: see the module docstring for the contract."""

    name: str
    dim: int
    stride: int
    device: torch.device

    @abc.abstractmethod
    def grid_shape(self, width: int, height: int) -> tuple[int, int]:
        """Feature grid ``(h, w)`` this teacher returns for a ``width`` x ``height`` image."""

    @abc.abstractmethod
    def __call__(self, frame: Frame) -> torch.Tensor:
        """Frame -> ``(h, w, C)`` float32 L2-normalised features on ``self.device``."""

    def __repr__(self) -> str:
        fields = ', '.join(f'{k}={getattr(self, k, None)!r}' for k in ('name', 'dim', 'stride', 'device'))
        return f'{type(self).__name__}({fields})'
