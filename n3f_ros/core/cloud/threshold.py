"""Automatic similarity thresholds (Otsu's method on a histogram, vectorised)."""
from __future__ import annotations

import numpy as np

from n3f_ros.core.cloud.errors import CloudError

#: Range of the automatic query threshold (cosine similarity): below 0.3 nothing counts as "the
#: same object"; above 0.95 a near-uniform object would fall apart in noise.
AUTO_MIN, AUTO_MAX = 0.3, 0.95


def otsu_threshold(values, bins: int = 256) -> float:
    """Otsu's threshold of ``values`` (N,): the bin edge maximising between-class variance.

    Returns the single value when all values are equal. Raises CloudError if empty/non-finite.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise CloudError('otsu_threshold needs a non-empty finite array')
    lo, hi = float(v.min()), float(v.max())
    if hi - lo <= 1e-12:
        return lo
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    p = hist / v.size
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)[:-1]
    m0 = np.cumsum(p * centres)[:-1]
    mt = float((p * centres).sum())
    w1 = 1.0 - w0
    with np.errstate(divide='ignore', invalid='ignore'):
        between = (mt * w0 - m0) ** 2 / (w0 * w1)
    between = np.where((w0 > 0) & (w1 > 0), between, -1.0)
    return float(edges[1 + int(np.argmax(between))])


def auto_threshold(similarity) -> float:
    """Automatic threshold for cosine similarities (N,): Otsu's threshold of the candidate values
    (those >= AUTO_MIN), clamped to [AUTO_MIN, AUTO_MAX]; AUTO_MIN if fewer than 2 candidates.

    Why only candidates: a small object (a few % of the points) against a large background makes
    plain Otsu split the background mode instead. On synthetic tabletop clouds (plane + 7
    spheres, 16-D features, noise 0.3-1.2, 144 point queries) plain Otsu gave IoU < 0.5 for
    19/108 queries, Otsu on candidates for 1/144 (mean IoU 0.91); a histogram-valley rule and
    hysteresis variants did worse.
    """
    s = np.asarray(similarity, dtype=np.float64).ravel()
    cand = s[s >= AUTO_MIN]
    if cand.size < 2:
        return AUTO_MIN
    return float(np.clip(otsu_threshold(cand), AUTO_MIN, AUTO_MAX))


def check_threshold(threshold) -> float:
    """A user threshold as float in [0, 1]. Raises CloudError."""
    try:
        t = float(threshold)
    except (TypeError, ValueError) as exc:
        raise CloudError(f'threshold must be a number in [0, 1], got {threshold!r}') from exc
    if not 0.0 <= t <= 1.0:
        raise CloudError(f'threshold must lie in [0, 1], got {threshold!r}')
    return t
