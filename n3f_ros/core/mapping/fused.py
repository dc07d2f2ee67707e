"""The fused-teacher layer: the teacher's features averaged into the map's voxels, keyframe by keyframe.

What a ConceptFusion-style mapper holds, available from the first keyframe with depth while the
student field is still learning. Each keyframe with depth (measured, or triangulated by stereo for
RGB-only keyframes when it gets it) is fused once: its depth pixels are back-projected into the
world (``T_world_cam``, metres), the keyframe's projected teacher features (the student's
``feature_dim``) are sampled bilinearly at each pixel, and per voxel of a world-aligned grid
(``voxel_size`` metres, index ``floor(xyz / voxel_size)``) the keyframe contributes *one*
observation: the normalised mean of its samples there. A voxel's fused feature is the running mean
of its observations (every keyframe that saw it weighs the same, as in the benchmark's fused
baseline), normalised; its position, colour and viewing direction (towards the cameras that saw it)
are running means too.

**Bounded memory.** At most ``max_voxels`` voxels are kept (float32 sums: about
``max_voxels * (D + 10) * 4`` bytes, 15 MB for 50k voxels at D = 64). When a fusion would exceed
it, the voxels updated longest ago (oldest keyframe counter; ties: fewest observations) are
evicted until 90 % of the limit is used, so a robot that moves on forgets the places it left first.

**Cost.** A 160x120 keyframe is ~19k samples: back-projection, one bilinear gather, one sort of the
voxel keys and a merge into the sorted key table — a few milliseconds on one CPU core, well below a
teacher forward pass (the speed benchmark's ``fuse`` stage measures it).

Not thread safe: the Mapper holds its lock around :meth:`integrate`; readers use :meth:`copy`.
"""
from __future__ import annotations

import numpy as np

#: voxel coordinates are offset by this before packing three of them into one int64 key (21 bits each)
_OFFSET = 1 << 20
#: eviction keeps this share of ``max_voxels`` after evicting
EVICT_TO = 0.9


class FusedLayerError(ValueError):
    """Bad input to, or bad saved state of, a FusedLayer."""


def voxel_keys(xyz: np.ndarray, voxel_size: float) -> np.ndarray:
    """int64 keys (N,) of the voxels holding points (N, 3) metres (``floor(xyz / voxel_size)``)."""
    v = np.floor(np.asarray(xyz, dtype=np.float64) / voxel_size).astype(np.int64) + _OFFSET
    if len(v) and (v.min() < 0 or v.max() >= 2 * _OFFSET):
        raise FusedLayerError(f'points beyond the fused grid (|x| < {_OFFSET * voxel_size:g} m)')
    return (v[:, 0] << 42) | (v[:, 1] << 21) | v[:, 2]


def _group(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unique keys (M,), inverse (N,), counts (M,))."""
    uk, inv, cnt = np.unique(keys, return_inverse=True, return_counts=True)
    return uk, inv.reshape(-1), cnt


def _sum_by(inv: np.ndarray, m: int, values: np.ndarray) -> np.ndarray:
    """Sums (m, C) float64 of rows of ``values`` (N, C) grouped by ``inv`` (N,)."""
    out = np.zeros((m, values.shape[1]), np.float64)
    np.add.at(out, inv, values)
    return out


def keyframe_observations(points, feats, rgb, camera_center, voxel_size: float) -> dict:
    """One keyframe's observation per voxel (see the module docstring).

    points (N, 3) world metres, feats (N, D) teacher features (any norm), rgb (N, 3) uint8,
    camera_center (3,) world metres. Returns dict: ``keys`` (M,) int64 sorted, ``feat`` (M, D)
    unit mean features, ``xyz`` (M, 3) mean positions, ``rgb`` (M, 3) mean colours (float), ``view``
    (M, 3) unit mean directions towards the camera.
    """
    keys, inv, cnt = _group(voxel_keys(points, voxel_size))
    m = len(keys)
    f = _sum_by(inv, m, np.asarray(feats, dtype=np.float64))
    f /= np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    xyz = _sum_by(inv, m, np.asarray(points, dtype=np.float64)) / cnt[:, None]
    col = _sum_by(inv, m, np.asarray(rgb, dtype=np.float64)) / cnt[:, None]
    view = np.asarray(camera_center, dtype=np.float64)[None] - xyz
    view /= np.maximum(np.linalg.norm(view, axis=1, keepdims=True), 1e-12)
    return {'keys': keys, 'feat': f, 'xyz': xyz, 'rgb': col, 'view': view}


class FusedLayer:
    """Voxel hash of running-mean teacher features (see the module docstring).

    Arrays (M voxels, rows sorted by ``keys``): ``keys`` int64, ``feat_sum`` (M, D) float32,
    ``weight`` (M,) float32 (observations), ``xyz_sum`` (M, 3), ``rgb_sum`` (M, 3), ``view_sum``
    (M, 3) float32, ``last`` (M,) int64 (counter of the keyframe that updated it last).
    """

    def __init__(self, voxel_size: float, feature_dim: int, max_voxels: int):
        if not (np.isfinite(voxel_size) and voxel_size > 0):
            raise FusedLayerError(f'voxel_size must be positive, got {voxel_size!r}')
        if int(feature_dim) < 1 or int(max_voxels) < 1:
            raise FusedLayerError(f'feature_dim and max_voxels must be >= 1, got {feature_dim}, {max_voxels}')
        self.voxel_size, self.dim, self.max_voxels = float(voxel_size), int(feature_dim), int(max_voxels)
        self.keys = np.zeros(0, np.int64)
        self.feat_sum = np.zeros((0, self.dim), np.float32)
        self.weight = np.zeros(0, np.float32)
        self.xyz_sum = np.zeros((0, 3), np.float32)
        self.rgb_sum = np.zeros((0, 3), np.float32)
        self.view_sum = np.zeros((0, 3), np.float32)
        self.last = np.zeros(0, np.int64)
        self.fused_keyframes = 0          # keyframes fused so far
        self.evicted = 0                  # voxels evicted so far

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.keys, self.feat_sum, self.weight, self.xyz_sum, self.rgb_sum,
                                      self.view_sum, self.last))

    # --- writing ----------------------------------------------------------------------------------
    def integrate(self, points, feats, rgb, camera_center, tick: int) -> int:
        """Fuse one keyframe's samples: points (N, 3) world metres, feats (N, D), rgb (N, 3) uint8,
        camera_center (3,) metres, ``tick`` its insertion counter. Returns the voxels it touched."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 2 or feats.shape != (len(points), self.dim):
            raise FusedLayerError(f'features of shape {feats.shape}, expected ({len(points)}, {self.dim})')
        ok = np.isfinite(points).all(1) & np.isfinite(feats).all(1)
        if not ok.all():
            points, feats, rgb = points[ok], feats[ok], np.asarray(rgb)[ok]
        if len(points) == 0:
            return 0
        obs = keyframe_observations(points, feats, rgb, camera_center, self.voxel_size)
        k = obs['keys']
        pos = np.searchsorted(self.keys, k)
        hit = (pos < len(self.keys)) & (self.keys[np.minimum(pos, max(len(self.keys) - 1, 0))] == k) \
            if len(self.keys) else np.zeros(len(k), bool)
        i = pos[hit]
        self.feat_sum[i] += obs['feat'][hit].astype(np.float32)
        self.xyz_sum[i] += obs['xyz'][hit].astype(np.float32)
        self.rgb_sum[i] += obs['rgb'][hit].astype(np.float32)
        self.view_sum[i] += obs['view'][hit].astype(np.float32)
        self.weight[i] += 1.0
        self.last[i] = int(tick)
        new = ~hit
        if new.any():
            n = int(new.sum())
            self._insert(k[new], obs['feat'][new], np.ones(n, np.float32), obs['xyz'][new], obs['rgb'][new],
                         obs['view'][new], np.full(n, int(tick), np.int64))
        self.fused_keyframes += 1
        if len(self) > self.max_voxels:
            self._evict()
        return len(k)

    def _insert(self, keys, feat, weight, xyz, rgb, view, last) -> None:
        allk = np.concatenate([self.keys, keys])
        order = np.argsort(allk, kind='stable')
        self.keys = allk[order]
        self.feat_sum = np.concatenate([self.feat_sum, feat.astype(np.float32)])[order]
        self.weight = np.concatenate([self.weight, weight.astype(np.float32)])[order]
        self.xyz_sum = np.concatenate([self.xyz_sum, xyz.astype(np.float32)])[order]
        self.rgb_sum = np.concatenate([self.rgb_sum, rgb.astype(np.float32)])[order]
        self.view_sum = np.concatenate([self.view_sum, view.astype(np.float32)])[order]
        self.last = np.concatenate([self.last, last.astype(np.int64)])[order]

    def _evict(self) -> None:
        keep_n = int(EVICT_TO * self.max_voxels)
        order = np.lexsort((self.weight, self.last))          # oldest first, then fewest observations
        keep = np.sort(order[len(self) - keep_n:])
        self.evicted += len(self) - len(keep)
        self._select(keep)

    def _select(self, idx: np.ndarray) -> None:
        for name in ('keys', 'feat_sum', 'weight', 'xyz_sum', 'rgb_sum', 'view_sum', 'last'):
            setattr(self, name, getattr(self, name)[idx])

    # --- reading ----------------------------------------------------------------------------------
    def lookup(self, points) -> np.ndarray:
        """Row (N,) int64 of the voxel holding each point (N, 3), -1 where there is none."""
        if len(self.keys) == 0:
            return np.full(len(points), -1, np.int64)
        k = voxel_keys(points, self.voxel_size)
        pos = np.minimum(np.searchsorted(self.keys, k), len(self.keys) - 1)
        return np.where(self.keys[pos] == k, pos, -1).astype(np.int64)

    def features(self, rows=None) -> np.ndarray:
        """Unit fused features (M, D) float32 of ``rows`` (default all)."""
        s = self.feat_sum if rows is None else self.feat_sum[rows]
        return (s / np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def points(self) -> dict:
        """Every voxel as a point: ``xyz`` (M, 3) float32 mean position, ``rgb`` (M, 3) uint8,
        ``features`` (M, D) unit, ``view`` (M, 3) unit direction towards its cameras, ``weight`` (M,)."""
        w = np.maximum(self.weight, 1e-6)[:, None]
        view = self.view_sum / np.maximum(np.linalg.norm(self.view_sum, axis=1, keepdims=True), 1e-12)
        return {'xyz': (self.xyz_sum / w).astype(np.float32),
                'rgb': np.clip(np.rint(self.rgb_sum / w), 0, 255).astype(np.uint8),
                'features': self.features(), 'view': view.astype(np.float32), 'weight': self.weight.copy()}

    def copy(self) -> FusedLayer:
        """An independent copy (for snapshots read outside the mapper's lock)."""
        out = FusedLayer(self.voxel_size, self.dim, self.max_voxels)
        for name in ('keys', 'feat_sum', 'weight', 'xyz_sum', 'rgb_sum', 'view_sum', 'last'):
            setattr(out, name, getattr(self, name).copy())
        out.fused_keyframes, out.evicted = self.fused_keyframes, self.evicted
        return out

    # --- persistence ------------------------------------------------------------------------------
    ARRAYS = (('keys', np.int64, None), ('feat_sum', np.float32, 'D'), ('weight', np.float32, None),
              ('xyz_sum', np.float32, 3), ('rgb_sum', np.float32, 3), ('view_sum', np.float32, 3),
              ('last', np.int64, None))

    def state_dict(self) -> dict:
        """Plain numbers and numpy-convertible arrays (copied)."""
        d = {name: getattr(self, name).copy() for name, _, _ in self.ARRAYS}
        d.update(voxel_size=self.voxel_size, dim=self.dim, fused_keyframes=self.fused_keyframes,
                 evicted=self.evicted)
        return d

    @classmethod
    def from_state(cls, state: dict, max_voxels: int, max_position: float) -> FusedLayer:
        """A validated layer from :meth:`state_dict` arrays (numpy); raises FusedLayerError naming the
        part: shapes and dtypes, finite values, sorted distinct keys inside the plausible workspace,
        positive weights, at most ``max_voxels`` voxels."""
        try:
            voxel, dim = float(state['voxel_size']), int(state['dim'])
            arrays = {name: np.asarray(state[name]) for name, _, _ in cls.ARRAYS}
            fused_kf, evicted = int(state['fused_keyframes']), int(state['evicted'])
        except (KeyError, TypeError, ValueError) as e:
            raise FusedLayerError(f'fused layer: missing or malformed entry ({e})') from e
        layer = cls(voxel, dim, max_voxels)
        m = len(arrays['keys'])
        if m > max_voxels:
            raise FusedLayerError(f'fused layer holds {m} voxels, more than fused_max_voxels {max_voxels}')
        for name, dtype, cols in cls.ARRAYS:
            a = arrays[name]
            shape = (m,) if cols is None else (m, dim if cols == 'D' else cols)
            if a.dtype != dtype or a.shape != shape:
                raise FusedLayerError(f'fused layer {name}: {a.dtype} {a.shape}, expected {np.dtype(dtype)} {shape}')
            if a.dtype.kind == 'f' and not np.isfinite(a).all():
                raise FusedLayerError(f'fused layer {name}: NaN or inf values')
        k = arrays['keys']
        if m and (np.any(np.diff(k) <= 0) or k.min() < 0):
            raise FusedLayerError('fused layer keys must be distinct, sorted and non-negative')
        if m and np.any(arrays['weight'] <= 0):
            raise FusedLayerError('fused layer weights must be positive')
        xyz = arrays['xyz_sum'] / np.maximum(arrays['weight'], 1e-6)[:, None]
        if m and np.abs(xyz).max() > max_position:
            raise FusedLayerError(f'fused layer points beyond max_position {max_position:g} m')
        for name, _, _ in cls.ARRAYS:
            setattr(layer, name, arrays[name].copy())
        layer.fused_keyframes, layer.evicted = max(fused_kf, 0), max(evicted, 0)
        return layer
