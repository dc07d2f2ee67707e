"""The student: a neural feature field over an axis-aligned box of the world.

Two hash grids: a fine *geometry* grid feeding the density and colour heads, and a coarser
*feature* grid feeding the feature head together with the (detached) geometry encoding. The
feature branch never sends gradients into the geometry grid or the density head (stop-gradient,
as in feature-field distillation), so distilling features cannot degrade geometry.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from n3f_ros.core.field.hashgrid import GRID_CHOICES, make_hash_grid
from n3f_ros.core.options import option


@dataclass
class FieldConfig:
    """Sizes of the field. Resolutions are grid cells across the longest side of the bounds."""

    feature_dim: int = 64              # set from the teacher features' (PCA) size, not a parameter
    geo_levels: int = option(12, 'levels of the geometry hash grid', range=(1, 24))
    geo_log2_table: int = option(17, 'log2 of the geometry hash table size per level', range=(8, 24))
    geo_max_resolution: int = option(256, 'finest geometry grid resolution across the scene', 'cells',
                                     (16, 8192))
    feat_levels: int = option(8, 'levels of the feature hash grid', range=(1, 24))
    feat_log2_table: int = option(16, 'log2 of the feature hash table size per level', range=(8, 24))
    feat_max_resolution: int = option(128, 'finest feature grid resolution across the scene', 'cells',
                                      (8, 8192))
    hidden: int = option(64, 'hidden width of the density / colour / feature heads', range=(8, 1024))
    geo_features: int = option(15, 'geometry features passed from the density head to the colour head',
                               range=(1, 256))
    grid: str = option('auto', "hash grid implementation: 'torch' (pure PyTorch, any device), 'tcnn' "
                       "(tiny-cuda-nn, CUDA only) or 'auto' (tcnn when on CUDA and importable). Maps record "
                       'the one used', choices=GRID_CHOICES)


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, n_out))


class FeatureField(nn.Module):
    """Density, colour and D-dim feature at world points inside ``bounds``.

    bounds: (2, 3) metres in the world frame, [min, max].
    """

    def __init__(self, bounds: np.ndarray, config: FieldConfig | None = None, device='cpu'):
        super().__init__()
        self.config = cfg = config or FieldConfig()
        device = torch.device(device)
        bounds = np.asarray(bounds, dtype=np.float32).reshape(2, 3)
        if not np.all(np.isfinite(bounds)) or np.any(bounds[1] - bounds[0] <= 0):
            raise ValueError(f'invalid scene bounds {bounds.tolist()}')
        self.register_buffer('bounds', torch.as_tensor(bounds, device=device))
        self.geo_grid = make_hash_grid(device, cfg.grid, n_levels=cfg.geo_levels, n_features=2,
                                       log2_table=cfg.geo_log2_table, base_resolution=16,
                                       max_resolution=cfg.geo_max_resolution)
        self.feat_grid = make_hash_grid(device, cfg.grid, n_levels=cfg.feat_levels, n_features=2,
                                        log2_table=cfg.feat_log2_table, base_resolution=8,
                                        max_resolution=cfg.feat_max_resolution)
        self.density_head = _mlp(self.geo_grid.out_dim, cfg.hidden, 1 + cfg.geo_features)
        self.color_head = _mlp(cfg.geo_features, cfg.hidden, 3)
        self.feature_head = _mlp(self.feat_grid.out_dim + self.geo_grid.out_dim, cfg.hidden, cfg.feature_dim)
        with torch.no_grad():   # start nearly empty so early renders are transparent, not fog
            self.density_head[-1].bias[0] = -2.0
        self.to(device)

    @property
    def device(self) -> torch.device:
        return self.bounds.device

    @property
    def grid_impl(self) -> str:
        """The hash grid implementation in use: 'torch' or 'tcnn' (state dicts of the two differ)."""
        return self.geo_grid.impl

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """World points (N, 3) -> unit cube coordinates (N, 3) (the longest side spans [0, 1])."""
        lo, hi = self.bounds[0], self.bounds[1]
        return (x - lo) / (hi - lo).max()

    def inside(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) bool: point inside the bounds."""
        return ((x >= self.bounds[0]) & (x <= self.bounds[1])).all(-1)

    def _geometry(self, x: torch.Tensor):
        enc = self.geo_grid(self.normalise(x))
        h = self.density_head(enc)
        sigma = torch.exp(h[:, 0].clamp(max=12.0)) * self.inside(x)   # (N,) 1/m, 0 outside bounds
        return sigma, h[:, 1:], enc

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3) world points -> (N,) density in 1/metre."""
        return self._geometry(x)[0]

    def geometry(self, x: torch.Tensor):
        """x (N, 3) world -> sigma (N,) 1/m, rgb (N, 3) in [0, 1], geometry encoding (N, E)."""
        sigma, geo, enc = self._geometry(x)
        return sigma, torch.sigmoid(self.color_head(geo)), enc

    def forward(self, x: torch.Tensor, with_features: bool = True):
        """x (N, 3) world -> sigma (N,), rgb (N, 3) in [0, 1], feat (N, D) or None."""
        sigma, rgb, enc = self.geometry(x)
        feat = self.features(x, enc.detach()) if with_features else None
        return sigma, rgb, feat

    def features(self, x: torch.Tensor, geo_enc: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 3) world points -> (N, D) raw (unnormalised) student features."""
        if geo_enc is None:
            with torch.no_grad():
                geo_enc = self.geo_grid(self.normalise(x))
        return self.feature_head(torch.cat([self.feat_grid(self.normalise(x)), geo_enc], dim=-1))

    @torch.no_grad()
    def query_features(self, points: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """World points (N, 3) -> L2-normalised features (N, D) float32 numpy."""
        out = []
        for i in range(0, len(points), chunk):
            x = torch.as_tensor(points[i:i + chunk], dtype=torch.float32, device=self.device)
            out.append(F.normalize(self.features(x), dim=-1).cpu())
        if not out:
            return np.zeros((0, self.config.feature_dim), np.float32)
        return torch.cat(out).numpy()
