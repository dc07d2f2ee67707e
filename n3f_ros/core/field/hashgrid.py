"""Multi-resolution hash-grid encoding (Instant-NGP, Müller et al. 2022) in pure PyTorch.

Input points are normalised to the unit cube [0, 1]^3 by the caller (the field does it from its
scene bounds). Coarse levels whose grid fits in the table are indexed densely (1:1), finer levels
through the spatial hash of the paper. tiny-cuda-nn is used instead when it is importable and the
device is CUDA (same interface), see ``make_hash_grid``; the two lay out their parameters
differently, so a map records which one it was trained with (``impl``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_PRIMES = (1, 2654435761, 805459861)
#: values of ``FieldConfig.grid``
GRID_CHOICES = ('auto', 'torch', 'tcnn')


class HashGrid(nn.Module):
    """Trainable multi-resolution grid of feature vectors.

    forward(x (N, 3) in [0, 1]) -> (N, n_levels * n_features) float32.
    """

    impl = 'torch'

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
        # levels are coarse to fine, so the densely indexed ones come first
        self.n_dense = sum((r + 1) ** 3 <= self.table_size for r in res)
        self.register_buffer('res1_i32', torch.tensor(res, dtype=torch.int32) + 1, persistent=False)
        # the primes as wrapped int32: int32 products then equal the uint32 products mod 2^32
        self.register_buffer('primes', torch.tensor(_PRIMES, dtype=torch.int64).to(torch.int32), persistent=False)
        self.register_buffer('level_offset', torch.arange(n_levels, dtype=torch.int32) * self.table_size,
                             persistent=False)
        # (n_levels * table_size, n_features), small uniform init as in Instant-NGP
        self.table = nn.Parameter(torch.empty(n_levels * self.table_size, n_features).uniform_(-1e-4, 1e-4))

    @property
    def out_dim(self) -> int:
        return self.n_levels * self.n_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, 3) in [0, 1]
        n = x.shape[0]
        # NaN / inf can never become an index: NaN -> 0, +-inf -> the cube's faces (then clamped)
        x = torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0).clamp(0.0, 1.0)
        pos = x[:, None, :] * self.resolution[None, :, None]                  # (N, L, 3)
        # clamp so x = 1 lands in the last cell with frac = 1 (its upper corner stays inside the level)
        p0f = torch.minimum(pos.floor(), self.resolution[None, :, None] - 1)
        frac = pos - p0f                                                       # (N, L, 3)
        # per-axis integer coordinates of the two corners, int32: (N, L, 3, 2)
        p0 = p0f.to(torch.int32)
        c = torch.stack([p0, p0 + 1], dim=-1)
        nd = self.n_dense
        # coarse levels: dense index x + y (r+1) + z (r+1)^2
        cd = c[:, :nd]
        r1 = self.res1_i32[None, :nd, None]
        dx, dy, dz = cd[:, :, 0], cd[:, :, 1] * r1, cd[:, :, 2] * r1 * r1
        d_idx = dx[..., :, None, None] + dy[..., None, :, None] + dz[..., None, None, :]   # (N, Ld, 2, 2, 2)
        # fine levels: spatial hash (x p0) ^ (y p1) ^ (z p2) mod 2^32, then mod table size (power of 2)
        ch = c[:, nd:]
        hx, hy, hz = ch[:, :, 0] * self.primes[0], ch[:, :, 1] * self.primes[1], ch[:, :, 2] * self.primes[2]
        h_idx = (hx[..., :, None, None] ^ hy[..., None, :, None] ^ hz[..., None, None, :]) & (self.table_size - 1)
        idx = torch.cat([d_idx, h_idx], dim=1) + self.level_offset[None, :, None, None, None]
        idx = idx.reshape(n * self.n_levels, 8)
        # trilinear weights (N, L, 2, 2, 2)
        wa = torch.stack([1 - frac, frac], dim=-1)                             # (N, L, 3, 2)
        w = wa[:, :, 0, :, None, None] * wa[:, :, 1, None, :, None] * wa[:, :, 2, None, None, :]
        out = _WeightedGather.apply(self.table, idx, w.reshape(n * self.n_levels, 8))  # (N*L, F)
        return out.reshape(n, self.out_dim)


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


def tcnn_available(device: torch.device) -> bool:
    """True when tiny-cuda-nn imports and ``device`` is CUDA."""
    if device.type != 'cuda':
        return False
    try:
        import tinycudann  # noqa: F401, PLC0415 (optional dependency)
    except ImportError:
        return False
    return True


def make_hash_grid(device: torch.device, grid: str = 'auto', **kwargs) -> nn.Module:
    """A hash grid on ``device``. ``grid``: 'torch', 'tcnn' (raises ValueError when tiny-cuda-nn or
    CUDA is missing) or 'auto' (tcnn when available, else torch)."""
    if grid not in GRID_CHOICES:
        raise ValueError(f'hash grid must be one of {GRID_CHOICES}, got {grid!r}')
    use_tcnn = tcnn_available(device) if grid == 'auto' else grid == 'tcnn'
    if use_tcnn:
        if not tcnn_available(device):
            raise ValueError(f"hash grid 'tcnn' needs CUDA and the tinycudann package (device {device})")
        import tinycudann as tcnn  # noqa: PLC0415
        return _TcnnGrid(tcnn, **kwargs).to(device)
    return HashGrid(**kwargs).to(device)


class _TcnnGrid(nn.Module):
    """tiny-cuda-nn HashGrid with HashGrid's interface (float32 out)."""

    impl = 'tcnn'

    def __init__(self, tcnn, n_levels=12, n_features=2, log2_table=17, base_resolution=16,
                 max_resolution=512):
        super().__init__()
        growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / max(n_levels - 1, 1))
        self.enc = tcnn.Encoding(3, {'otype': 'HashGrid', 'n_levels': n_levels,
                                     'n_features_per_level': n_features, 'log2_hashmap_size': log2_table,
                                     'base_resolution': base_resolution, 'per_level_scale': growth})
        self.out_dim = n_levels * n_features

    def forward(self, x):
        return self.enc(torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0).clamp(0.0, 1.0)).float()
