"""``FeaturePCA``: stable false-colour view of D-dimensional features (3 principal components)."""
from __future__ import annotations

import numpy as np

from n3f_ros.core.cloud.errors import CloudError, EmptyCloudError
from n3f_ros.core.cloud.validate import check_features


class FeaturePCA:
    """Project features on 3 principal components and map them to RGB.

    The components, the mean and the colour ranges are fixed by ``fit`` and reused by every
    ``colors`` call, so a point keeps its colour while the map grows; call ``fit`` again only to
    refit on purpose. ``colors`` fits on its input the first time if nothing was fitted yet.

    Colour mapping: channel c = 255 * clip((proj_c - lo_c) / (hi_c - lo_c), 0, 1), rounded, with
    ``lo``/``hi`` the ``percentiles`` (default 1st / 99th) of the fit projections, so outliers
    do not wash the colours out. Component signs are fixed (largest |loading| positive) so a
    refit on similar data gives similar colours.
    """

    def __init__(self, n_components: int = 3, percentiles=(1.0, 99.0), max_fit_samples: int = 50000,
                 seed: int = 0):
        lo, hi = (float(p) for p in percentiles)
        if not 0.0 <= lo < hi <= 100.0:
            raise CloudError(f'percentiles must satisfy 0 <= lo < hi <= 100, got {percentiles}')
        if int(n_components) != 3:
            raise CloudError('FeaturePCA maps to RGB: n_components must be 3')
        self.percentiles = (lo, hi)
        self.max_fit_samples = int(max_fit_samples)
        self.seed = int(seed)
        self.mean: np.ndarray | None = None        # (D,) float32
        self.components: np.ndarray | None = None  # (3, D) float32, orthonormal rows (or zero)
        self.lo: np.ndarray | None = None          # (3,) float32
        self.hi: np.ndarray | None = None          # (3,) float32

    @property
    def fitted(self) -> bool:
        return self.components is not None

    @property
    def dim(self) -> int | None:
        """Feature dimension D of the fit, None before fitting."""
        return None if self.components is None else int(self.components.shape[1])

    def fit(self, features) -> FeaturePCA:
        """(Re)fit on features (N, D) or a feature image (H, W, D); uses at most
        ``max_fit_samples`` rows drawn with ``seed``. Returns self."""
        f = self._rows(features, check_dim=False)
        if len(f) == 0:
            raise EmptyCloudError('cannot fit FeaturePCA on zero features')
        if len(f) > self.max_fit_samples:
            idx = np.random.default_rng(self.seed).choice(len(f), self.max_fit_samples, replace=False)
            f = f[np.sort(idx)]
        x = f.astype(np.float64)
        mean = x.mean(axis=0)
        xc = x - mean
        cov = xc.T @ xc / max(len(x) - 1, 1)
        _, evecs = np.linalg.eigh(cov)  # ascending eigenvalues
        d = x.shape[1]
        comps = np.zeros((3, d))
        k = min(3, d)
        comps[:k] = evecs[:, ::-1][:, :k].T
        big = np.argmax(np.abs(comps), axis=1)
        comps *= np.where(comps[np.arange(3), big] < 0, -1.0, 1.0)[:, None]
        proj = xc @ comps.T
        lo, hi = np.percentile(proj, self.percentiles, axis=0)
        flat = (hi - lo) < 1e-12
        lo, hi = np.where(flat, lo - 1.0, lo), np.where(flat, hi + 1.0, hi)
        self.mean = mean.astype(np.float32)
        self.components = comps.astype(np.float32)
        self.lo, self.hi = lo.astype(np.float32), hi.astype(np.float32)
        return self

    def project(self, features) -> np.ndarray:
        """Principal-component coordinates (..., 3) float32 of features (..., D)."""
        shape = np.shape(features)[:-1]
        if not self.fitted:
            raise CloudError('FeaturePCA is not fitted')
        f = self._rows(features, check_dim=True)
        return ((f - self.mean) @ self.components.T).reshape(shape + (3,))

    def colors(self, features) -> np.ndarray:
        """RGB (..., 3) uint8 for features (N, D) or a feature image (H, W, D).

        Fits on ``features`` first if the PCA is not fitted. Raises CloudError on a dimension
        different from the fit's, NaN/inf, or a wrong rank.
        """
        if not self.fitted:
            self.fit(features)
        p = self.project(features)
        t = (p - self.lo) / (self.hi - self.lo)
        return np.rint(np.clip(t, 0.0, 1.0) * 255.0).astype(np.uint8)

    def state_dict(self) -> dict:
        """Plain state: floats and nested lists of floats (None before fitting), so it is safe for
        JSON/YAML and ``torch.load(weights_only=True)`` (which refuses numpy arrays)."""
        def plain(a):
            return None if a is None else np.asarray(a, dtype=np.float64).tolist()
        return {'percentiles': list(self.percentiles), 'mean': plain(self.mean),
                'components': plain(self.components), 'lo': plain(self.lo), 'hi': plain(self.hi)}

    def load_state_dict(self, state: dict) -> FeaturePCA:
        """Restore from ``state_dict()`` output (lists, numpy arrays or CPU tensors). Raises CloudError."""
        try:
            lo_p, hi_p = (float(p) for p in state['percentiles'])
            arrays = [state[k] for k in ('mean', 'components', 'lo', 'hi')]
        except (KeyError, TypeError, ValueError) as exc:
            raise CloudError(f'invalid FeaturePCA state: {exc}') from exc
        self.percentiles = (lo_p, hi_p)
        if all(a is None for a in arrays):
            self.mean = self.components = self.lo = self.hi = None
            return self
        try:
            mean, comps, lo, hi = (np.asarray(a, dtype=np.float32) for a in arrays)
        except (TypeError, ValueError) as exc:
            raise CloudError(f'invalid FeaturePCA state: {exc}') from exc
        d = mean.shape[0] if mean.ndim == 1 else -1
        if (d < 1 or comps.shape != (3, d) or lo.shape != (3,) or hi.shape != (3,)
                or not all(np.all(np.isfinite(a)) for a in (mean, comps, lo, hi)) or np.any(hi <= lo)):
            raise CloudError('invalid FeaturePCA state: inconsistent shapes or values')
        self.mean, self.components, self.lo, self.hi = mean, comps, lo, hi
        return self

    def _rows(self, features, check_dim: bool) -> np.ndarray:
        a = np.asarray(features)
        if a.ndim not in (2, 3):
            raise CloudError(f'features must be (N, D) or (H, W, D), got shape {a.shape}')
        if a.shape[-1] < 1:
            raise CloudError(f'features must have D >= 1, got shape {a.shape}')
        f = check_features(a.reshape(-1, a.shape[-1]))
        if check_dim and f.shape[1] != self.dim:
            raise CloudError(f'features have dimension {f.shape[1]}, PCA was fitted on {self.dim}')
        return f
