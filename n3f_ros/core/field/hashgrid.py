"""Multi-resolution hash-grid encoding (Instant-NGP, Müller et al. 2022) in pure PyTorch.

Input points are normalised to the unit cube [0, 1]^3 by the caller (the field does it from its
scene bounds). Coarse levels whose grid fits in the table are indexed densely (1:1), finer levels
through the spatial hash of the paper. tiny-cuda-nn is used instead when it is importable and the
device is CUDA (same interface), see ``make_hash_grid``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_PRIMES = (1, 2654435761, 805459861)



class HashGrid(nn.Module):
    """Trainable multi-resolution grid of feature vectors.

    forward(x (N, 3) in [0, 1]) -> (N, n_levels * n_features) float32.
    """

    def __init__(self, n_levels: int = 12, n_features: int = 2, log2_table: int = 17,
                 base_resolution: int = 16, max_resolution: int = 512):
        super().__init__()
        if n_levels < 1 or n_features < 1 or not 8 <= log2_table <= 24:
            raise ValueError('invalid hash grid size')
        self.n_levels, self.n_features = n_levels, n_features
        self.table_size = 2 ** log2_table
        growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / max(n_levels - 1, 1))
        res = [int(math.floor(base_resolution * growth ** lvl)) for lvl in range(n_levels)]
        self.register_buffer('resolution', torch.tensor(res, dtype=torch.float32), persistent=False)
        dense = [(r + 1) ** 3 <= self.table_size for r in res]
        self.register_buffer('dense', torch.tensor(dense), persistent=False)
        self.register_buffer('level_offset', torch.arange(n_levels, dtype=torch.int64) * self.table_size,
                             persistent=False)
        # (n_levels * table_size, n_features), small uniform init as in Instant-NGP
        self.table = nn.Parameter(torch.empty(n_levels * self.table_size, n_features).uniform_(-1e-4, 1e-4))

    @property
    def out_dim(self) -> int:
        return self.n_levels * self.n_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, 3) in [0, 1]
        n = x.shape[0]
        pos = x.clamp(0.0, 1.0)[:, None, :] * self.resolution[None, :, None]   # (N, L, 3)
        p0f = pos.floor()
        frac = pos - p0f                                                       # (N, L, 3)
        p0 = p0f.to(torch.int64)
        # per-axis integer coordinates of the two corners: (N, L, 3, 2)
        c = torch.stack([p0, p0 + 1], dim=-1)
        res1 = self.resolution.to(torch.int64)[None, :, None] + 1                # (1, L, 1)
        dense = self.dense[None, :, None, None, None]
        # dense index x + y (r+1) + z (r+1)^2, hashed index x*p0 ^ y*p1 ^ z*p2; (N, L, 2, 2, 2)
        dx, dy, dz = c[:, :, 0], c[:, :, 1] * res1, c[:, :, 2] * res1 * res1
        hx, hy, hz = c[:, :, 0] * _PRIMES[0], c[:, :, 1] * _PRIMES[1], c[:, :, 2] * _PRIMES[2]
        d_idx = dx[..., :, None, None] + dy[..., None, :, None] + dz[..., None, None, :]
        h_idx = hx[..., :, None, None] ^ hy[..., None, :, None] ^ hz[..., None, None, :]
        idx = torch.where(dense, d_idx, h_idx) % self.table_size
        idx = (idx + self.level_offset[None, :, None, None, None]).reshape(n * self.n_levels, 8)
        # trilinear weights (N, L, 2, 2, 2)
        wa = torch.stack([1 - frac, frac], dim=-1)                             # (N, L, 3, 2)
        w = wa[:, :, 0, :, None, None] * wa[:, :, 1, None, :, None] * wa[:, :, 2, None, None, :]
        # gather + weighted sum in one op with a sparse-friendly backward
        out = _WeightedGather.apply(self.table, idx, w.reshape(n * self.n_levels, 8))  # (N*L, F)
        return out.reshape(n, -1)


class _WeightedGather(torch.autograd.Function):
    """out[b] = sum_k w[b, k] * table[idx[b, k]]; gradient only into ``table`` (index_add)."""

    @staticmethod
    def forward(ctx, table, idx, w):
        ctx.save_for_backward(idx, w)
        ctx.table_shape = table.shape
        return F.embedding_bag(idx, table, per_sample_weights=w, mode='sum')

    @staticmethod
    def backward(ctx, grad_out):
        idx, w = ctx.saved_tensors
        contrib = (w[:, :, None] * grad_out[:, None, :]).reshape(-1, grad_out.shape[-1])
        flat = idx.reshape(-1)
        if grad_out.is_cuda:
            grad = torch.zeros(ctx.table_shape, dtype=grad_out.dtype, device=grad_out.device)
            grad.index_add_(0, flat, contrib)
        else:   # bincount is ~2-3x faster than index_add_ on CPU for this access pattern
            grad = torch.stack([torch.bincount(flat, weights=contrib[:, f], minlength=ctx.table_shape[0])
                                for f in range(ctx.table_shape[1])], dim=1).to(grad_out.dtype)
        return grad, None, None


def make_hash_grid(device: torch.device, **kwargs) -> nn.Module:
    """A hash grid on ``device``: tiny-cuda-nn's fused encoding when available on CUDA."""
    if device.type == 'cuda':
        try:
            import tinycudann as tcnn  # noqa: PLC0415 (optional dependency)
        except ImportError:
            tcnn = None
        if tcnn is not None:
            return _TcnnGrid(tcnn, **kwargs).to(device)
    return HashGrid(**kwargs).to(device)


class _TcnnGrid(nn.Module):
    """tiny-cuda-nn HashGrid with HashGrid's interface (float32 out)."""

    def __init__(self, tcnn, n_levels=12, n_features=2, log2_table=17, base_resolution=16,
                 max_resolution=512):
        super().__init__()
        growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / max(n_levels - 1, 1))
        self.enc = tcnn.Encoding(3, {'otype': 'HashGrid', 'n_levels': n_levels,
                                     'n_features_per_level': n_features, 'log2_hashmap_size': log2_table,
                                     'base_resolution': base_resolution, 'per_level_scale': growth})
        self.out_dim = n_levels * n_features

    def forward(self, x):
        return self.enc(x.clamp(0.0, 1.0)).float()
