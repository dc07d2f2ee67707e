"""A synthetic stand-in for DINO (SPEC §5): noisy, low-resolution, view-inconsistent features of
the ground-truth instance ids of a frame.

Model, for a frame with instance map ``I`` (H, W) and stamp ``t``:

* every instance id ``k`` has a fixed random unit **prototype** ``p_k`` in R^dim, deterministic in
  ``(seed, k)`` and generated lazily for any id (0 = background, 1 = table, >= 2 objects).
  Objects come in **families** of ``family_size`` consecutive ids (2-3, 4-5, ...) whose prototypes
  share a component: ``p_k = normalize(sqrt(rho) g_family + sqrt(1 - rho) u_k)`` with
  ``rho = family_correlation``, so siblings have cosine ~= rho and are easy to confuse;
* **view inconsistency**: in frame ``t`` instance ``k`` is seen as ``p_k + d_{t,k}`` with
  ``d_{t,k}`` Gaussian of expected norm ``view_noise``, deterministic in ``(seed, t, k)``;
* **low resolution**: per-pixel features are average-pooled over ``stride`` x ``stride`` cells
  (grid ``(h, w) = (round(H / stride), round(W / stride))``, at least 1), so cells on
  boundaries mix instances;
* **patch noise**: i.i.d. Gaussian per cell of expected norm ``noise``, deterministic in
  ``(seed, t)``; then L2 normalisation.

The same frame (same stamp) therefore always gives the same features; two frames with the same
instance map but different stamps give different features whose average tends to the prototypes.

Measured with the defaults (dim=32, stride=16, noise=1.5, view_noise=0.7, family_correlation=0.6),
on interior cells of 10 instances (ids 0..9; clean sibling cosines 0.39..0.67), 300 views:

* single view: cosine to the own prototype 0.52 +- 0.12, to the most similar other prototype
  0.32 +- 0.11 (the other one wins for 8.7 % of cells: nearest-prototype accuracy 91 %);
  patch-to-patch retrieval between two views (query a cell, rank all cells of the other view):
  mAP 0.49;
* mean of 5 views of the same cells: own cosine 0.80, retrieval mAP 0.98;
* mean of 15 views: own cosine 0.92, nearest-prototype accuracy 100 %, retrieval mAP 1.00.

Boundary cells (mixed instances) make real scenes harder than these numbers.
test/core/test_teacher.py re-checks the single-view vs 15-view gap on a smaller sample.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from n3f_ros.core.frame import Frame
from n3f_ros.core.device import resolve_device
from n3f_ros.core.teacher.base import Teacher, TeacherInputError, l2_normalize

_PROTO, _FAMILY, _VIEW, _PATCH = 0, 1, 2, 3   # stream tags of the random generators


def stamp_key(stamp: float) -> int:
    """Integer key of a stamp (microsecond resolution), for seeding per-view randomness."""
    if not math.isfinite(stamp):
        raise TeacherInputError(f'frame stamp must be finite, got {stamp}')
    return round(float(stamp) * 1e6) % (2 ** 63)


class SyntheticTeacher(Teacher):
    """Synthetic teacher over ``frame.instance`` (see the module docstring for the model).

    Args:
        dim:    feature size C.
        stride: pixels per patch (pooling cell size).
        seed:   seeds prototypes and noise.
        noise:  expected L2 norm of the per-cell i.i.d. noise (prototypes have norm 1).
        view_noise: expected L2 norm of the per-frame, per-instance perturbation.
        family_size: consecutive object ids sharing a component (1 = no families).
        family_correlation: variance share of the family component (~ cosine between siblings).
        device: where the output lives.
    """

    def __init__(self, dim: int = 32, stride: int = 16, seed: int = 0, noise: float = 1.5,
                 view_noise: float = 0.7, family_size: int = 2, family_correlation: float = 0.6,
                 device='cpu', name: str = 'synthetic'):
        if int(dim) != dim or dim < 2:
            raise ValueError(f'dim must be an integer >= 2, got {dim!r}')
        if int(stride) != stride or stride < 1:
            raise ValueError(f'stride must be a positive integer, got {stride!r}')
        if not (noise >= 0 and view_noise >= 0 and math.isfinite(noise) and math.isfinite(view_noise)):
            raise ValueError(f'noise levels must be finite and >= 0, got {noise}, {view_noise}')
        if int(family_size) != family_size or family_size < 1 or not 0.0 <= family_correlation < 1.0:
            raise ValueError(f'need family_size >= 1 and 0 <= family_correlation < 1, got '
                             f'{family_size}, {family_correlation}')
        self.name, self.dim, self.stride, self.seed = str(name), int(dim), int(stride), int(seed)
        self.noise, self.view_noise = float(noise), float(view_noise)
        self.family_size, self.family_correlation = int(family_size), float(family_correlation)
        self.device = resolve_device(device)
        self._protos: dict[int, np.ndarray] = {}

    # -- prototypes --------------------------------------------------------------------------------
    def _unit(self, *key: int) -> np.ndarray:
        v = np.random.default_rng([self.seed, *key]).standard_normal(self.dim)
        return v / np.linalg.norm(v)

    def prototype(self, instance_id: int) -> np.ndarray:
        """Clean unit prototype ``(dim,)`` float64 of an instance id (>= 0)."""
        k = int(instance_id)
        if k < 0:
            raise TeacherInputError(f'instance ids must be >= 0, got {k}')
        if k not in self._protos:
            own = self._unit(_PROTO, k)
            if k >= 2 and self.family_size > 1 and self.family_correlation > 0:
                g = self._unit(_FAMILY, (k - 2) // self.family_size)
                r = self.family_correlation
                own = math.sqrt(r) * g + math.sqrt(1 - r) * own
                own /= np.linalg.norm(own)
            self._protos[k] = own
        return self._protos[k]

    def prototypes(self, ids) -> torch.Tensor:
        """``(len(ids), dim)`` float32 clean prototypes on ``self.device``."""
        return torch.tensor(np.stack([self.prototype(k) for k in ids]), dtype=torch.float32,
                            device=self.device)

    # -- features ----------------------------------------------------------------------------------
    def grid_shape(self, width: int, height: int) -> tuple[int, int]:
        """Feature grid ``(h, w)`` for a ``width`` x ``height`` image."""
        return max(1, round(height / self.stride)), max(1, round(width / self.stride))

    def _instance(self, frame: Frame) -> np.ndarray:
        inst = frame.instance
        if inst is None:
            raise TeacherInputError('SyntheticTeacher needs frame.instance (ground-truth instance ids); '
                                    'this frame has none (only synthetic scenes provide it)')
        inst = np.asarray(inst)
        H, W = frame.rgb.shape[:2]
        if inst.shape != (H, W) or not np.issubdtype(inst.dtype, np.integer):
            raise TeacherInputError(f'frame.instance must be an ({H}, {W}) integer array, '
                                    f'got {inst.shape} {inst.dtype}')
        if inst.size and inst.min() < 0:
            raise TeacherInputError(f'instance ids must be >= 0, got min {inst.min()}')
        return inst

    def __call__(self, frame: Frame) -> torch.Tensor:
        """Frame (with ``instance``) -> ``(h, w, dim)`` float32 L2-normalised features."""
        inst = self._instance(frame)
        H, W = inst.shape
        h, w = self.grid_shape(W, H)
        key = stamp_key(frame.stamp)
        ids, inv = np.unique(inst, return_inverse=True)
        # per-view appearance of each instance present
        protos = np.stack([self.prototype(k) for k in ids])
        sigma_v = self.view_noise / math.sqrt(self.dim)
        deltas = np.stack([np.random.default_rng([self.seed, _VIEW, key, int(k)]).standard_normal(self.dim)
                           for k in ids]) * sigma_v
        appearance = torch.tensor(protos + deltas, dtype=torch.float32)
        # fraction of each instance in each cell: (K, h, w)
        inv_t = torch.from_numpy(inv.reshape(H, W).astype(np.int64))
        onehot = F.one_hot(inv_t, num_classes=len(ids)).permute(2, 0, 1).float()
        frac = F.adaptive_avg_pool2d(onehot[None], (h, w))[0]
        feats = torch.einsum('khw,kc->hwc', frac, appearance)
        noise = np.random.default_rng([self.seed, _PATCH, key]).standard_normal((h, w, self.dim))
        feats = feats + torch.from_numpy(noise).float() * (self.noise / math.sqrt(self.dim))
        return l2_normalize(feats).to(self.device)
