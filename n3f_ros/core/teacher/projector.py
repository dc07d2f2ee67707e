"""Fixed PCA projection of teacher features to the student's low feature dimension.

Behaviour (exact):

* :meth:`FeatureProjector.observe` adds one frame's features (``(..., C)``) to the fitting set,
  at most ``max_samples`` rows per frame (a seeded random subset). When ``fit_frames`` frames have
  been observed the PCA is fitted and frozen; later ``observe`` calls are no-ops.
* :meth:`FeatureProjector.__call__` projects. If the PCA is not fitted yet, it first observes the
  given features (they count as one frame) and then, if still unfitted, **fits on whatever has been
  observed so far and freezes**. So every projection ever returned uses the same basis. To fit on
  ``fit_frames`` frames, ``observe`` the first frames before projecting any of them; calling
  ``projector(feats)`` directly fits on that first frame only.
* Once fitted the basis never changes (until :meth:`reset` or :meth:`load_state_dict`).
* If the input dimension ``C <= out_dim`` the projection is the identity (no centring): the output
  is the input, renormalised, and ``dim == C``. Otherwise ``dim == out_dim``.
* Output: ``(..., dim)`` float32, L2-normalised along the last axis, on the input's device.
  PCA: ``y = normalize((x - mean) @ components.T)`` with ``components`` the top ``dim``
  eigenvectors of the sample covariance (sign fixed so each one's largest-magnitude entry is
  positive), computed in float64.
"""
from __future__ import annotations

import torch

from n3f_ros.core.teacher.base import l2_normalize


class ProjectorError(ValueError):
    """Bad input to, or bad saved state of, a FeatureProjector."""


class FeatureProjector:
    """PCA ``C -> out_dim`` fitted once on the first ``fit_frames`` frames, then fixed.

    Attributes: ``out_dim``, ``fit_frames``, ``fitted`` (bool), ``frames_seen`` (int),
    ``in_dim`` (C, None until data seen), ``dim`` (output size, None until data seen),
    ``mean`` (C,) and ``components`` (dim, C) float32 CPU tensors once fitted.
    """

    def __init__(self, out_dim: int = 64, fit_frames: int = 3, max_samples: int = 4096, seed: int = 0):
        for nm, v in (('out_dim', out_dim), ('fit_frames', fit_frames), ('max_samples', max_samples)):
            if int(v) != v or v < 1:
                raise ProjectorError(f'{nm} must be a positive integer, got {v!r}')
        self.out_dim, self.fit_frames, self.max_samples, self.seed = int(out_dim), int(fit_frames), \
            int(max_samples), int(seed)
        self.reset()

    def reset(self) -> None:
        """Forget the samples and the fitted basis."""
        self.fitted = False
        self.frames_seen = 0
        self.in_dim: int | None = None
        self.mean: torch.Tensor | None = None
        self.components: torch.Tensor | None = None
        self._samples: list[torch.Tensor] = []
        self._on_device: dict = {}

    @property
    def dim(self) -> int | None:
        """Output feature size: ``min(C, out_dim)`` (None before any data)."""
        return None if self.in_dim is None else min(self.in_dim, self.out_dim)

    def _flat(self, feats) -> torch.Tensor:
        if not isinstance(feats, torch.Tensor) or feats.ndim < 1 or not feats.is_floating_point():
            raise ProjectorError('features must be a floating-point torch tensor of shape (..., C)')
        C = feats.shape[-1]
        if C < 1 or feats.numel() == 0:
            raise ProjectorError(f'empty features {tuple(feats.shape)}')
        if self.in_dim is not None and C != self.in_dim:
            raise ProjectorError(f'features have C={C} but the projector was set up for C={self.in_dim}')
        return feats.reshape(-1, C)

    def observe(self, feats: torch.Tensor) -> bool:
        """Add one frame's features ``(..., C)`` to the fitting set; returns ``self.fitted``."""
        if self.fitted:
            return True
        x = self._flat(feats).detach().to('cpu', torch.float32)
        if not torch.isfinite(x).all():
            raise ProjectorError('features contain NaN/inf')
        self.in_dim = x.shape[1]
        if x.shape[0] > self.max_samples:
            g = torch.Generator().manual_seed(self.seed * 100003 + self.frames_seen)
            x = x[torch.randperm(x.shape[0], generator=g)[:self.max_samples]]
        self._samples.append(x.clone())
        self.frames_seen += 1
        if self.frames_seen >= self.fit_frames:
            self.fit()
        return self.fitted

    def fit(self) -> None:
        """Fit the PCA on the observed samples and freeze it (no-op if already fitted)."""
        if self.fitted:
            return
        if not self._samples:
            raise ProjectorError('cannot fit the feature projector: no features observed')
        C = self.in_dim
        if C <= self.out_dim:
            mean, comps = torch.zeros(C), torch.eye(C)
        else:
            X = torch.cat(self._samples).double()
            mean = X.mean(0)
            Xc = X - mean
            cov = Xc.T @ Xc / max(X.shape[0] - 1, 1)
            _, vecs = torch.linalg.eigh(cov)                   # ascending eigenvalues
            comps = vecs[:, -self.out_dim:].flip(1).T          # (out_dim, C), largest first
            idx = comps.abs().argmax(1)
            sign = torch.sign(comps[torch.arange(comps.shape[0]), idx])
            comps = comps * torch.where(sign == 0, torch.ones_like(sign), sign)[:, None]
        self.mean, self.components = mean.float(), comps.float()
        self.fitted = True
        self._samples = []
        self._on_device = {}

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        """``(..., C)`` features -> ``(..., dim)`` float32 L2-normalised (see module docstring)."""
        x = self._flat(feats)
        if not self.fitted:
            self.observe(feats)
            self.fit()
        dev = x.device
        if dev not in self._on_device:
            self._on_device[dev] = (self.mean.to(dev), self.components.to(dev))
        mean, comps = self._on_device[dev]
        y = (x.float() - mean) @ comps.T
        return l2_normalize(y).reshape(*feats.shape[:-1], comps.shape[0])

    def state_dict(self) -> dict:
        """Plain ints and CPU tensors: ``out_dim``, ``fit_frames``, ``fitted`` (0/1), ``in_dim`` (0 if
        unknown), ``mean`` (C,), ``components`` (dim, C); empty tensors when unfitted (the samples
        of an unfinished fit are not saved)."""
        return {
            'out_dim': self.out_dim, 'fit_frames': self.fit_frames, 'fitted': int(self.fitted),
            'in_dim': int(self.in_dim or 0) if self.fitted else 0,
            'mean': self.mean.clone() if self.fitted else torch.zeros(0),
            'components': self.components.clone() if self.fitted else torch.zeros(0, 0),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`; raises ProjectorError on inconsistent state."""
        try:
            out_dim, fit_frames = int(state['out_dim']), int(state['fit_frames'])
            fitted, in_dim = bool(int(state['fitted'])), int(state['in_dim'])
            mean, comps = state['mean'], state['components']
        except (KeyError, TypeError, ValueError) as e:
            raise ProjectorError(f'invalid projector state: {e!r}') from e
        if out_dim < 1 or fit_frames < 1:
            raise ProjectorError(f'invalid projector state: out_dim={out_dim} fit_frames={fit_frames}')
        if fitted:
            dim = min(in_dim, out_dim)
            if not (isinstance(mean, torch.Tensor) and isinstance(comps, torch.Tensor)) or in_dim < 1 \
                    or tuple(mean.shape) != (in_dim,) or tuple(comps.shape) != (dim, in_dim):
                raise ProjectorError(f'invalid projector state: in_dim={in_dim}, out_dim={out_dim}, '
                                     f'mean {getattr(mean, "shape", None)}, '
                                     f'components {getattr(comps, "shape", None)}')
            if not (torch.isfinite(mean).all() and torch.isfinite(comps).all()):
                raise ProjectorError('invalid projector state: NaN/inf in mean or components')
        self.out_dim, self.fit_frames = out_dim, fit_frames
        self.reset()
        if fitted:
            self.in_dim = in_dim
            self.mean = mean.detach().to('cpu', torch.float32).clone()
            self.components = comps.detach().to('cpu', torch.float32).clone()
            self.fitted = True
