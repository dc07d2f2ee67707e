"""Evaluation metrics: mask IoU, average precision, matched segmentation mIoU, segment purity."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from n3f_ros.core.cloud.errors import CloudError


def _bool(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != bool:
        if not (np.issubdtype(a.dtype, np.integer) and np.all((a == 0) | (a == 1))):
            raise CloudError(f'{name} must be a boolean mask')
        a = a.astype(bool)
    return a


def iou(pred_mask, gt_mask) -> float:
    """Intersection over union of two boolean masks of the same shape (1.0 if both are empty)."""
    p, g = _bool(pred_mask, 'pred_mask'), _bool(gt_mask, 'gt_mask')
    if p.shape != g.shape:
        raise CloudError(f'mask shapes differ: {p.shape} vs {g.shape}')
    union = np.count_nonzero(p | g)
    return 1.0 if union == 0 else np.count_nonzero(p & g) / union


def average_precision(scores, positives) -> float:
    """Area under the precision-recall curve, as sklearn's ``average_precision_score``:

    AP = sum_n (R_n - R_{n-1}) P_n over the distinct score thresholds in decreasing order (tied
    scores form one threshold). scores (N,) finite, positives (N,) bool. NaN when there is no
    positive. Raises CloudError on mismatched shapes or NaN scores.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = _bool(np.asarray(positives).ravel(), 'positives')
    if s.shape != y.shape:
        raise CloudError(f'scores and positives differ in length: {s.size} vs {y.size}')
    if not np.all(np.isfinite(s)):
        raise CloudError('scores contain NaN or inf')
    n_pos = int(np.count_nonzero(y))
    if n_pos == 0:
        return float('nan')
    order = np.argsort(-s, kind='mergesort')
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _labels(pred_labels, gt_labels):
    p, g = np.asarray(pred_labels), np.asarray(gt_labels)
    if p.shape != g.shape or p.ndim != 1:
        raise CloudError(f'label arrays must be 1-D of equal length, got {p.shape} and {g.shape}')
    if not (np.issubdtype(p.dtype, np.integer) and np.issubdtype(g.dtype, np.integer)):
        raise CloudError('labels must be integers')
    return p.astype(np.int64), g.astype(np.int64)


def _contingency(p, g):
    """Unique ids and the (G, P) table of co-occurrence counts."""
    gid, gi = np.unique(g, return_inverse=True)
    pid, pi = np.unique(p, return_inverse=True)
    flat = gi.reshape(-1) * len(pid) + pi.reshape(-1)
    table = np.bincount(flat, minlength=len(gid) * len(pid)).reshape(len(gid), len(pid))
    return gid, pid, table


def matched_ious(pred_labels, gt_labels, ignore=(0,), pred_ignore=(0,)) -> dict:
    """IoU of each GT instance with its Hungarian-matched predicted segment.

    Points whose GT label is in ``ignore`` are left out of the evaluation entirely; predicted
    labels in ``pred_ignore`` (unlabelled) can match nothing. Each predicted segment matches at
    most one GT instance (maximum total IoU); unmatched instances score 0.
    Returns {gt_id: iou}.
    """
    p, g = _labels(pred_labels, gt_labels)
    keep = ~np.isin(g, np.asarray(ignore, dtype=np.int64))
    p, g = p[keep], g[keep]
    if g.size == 0:
        return {}
    gid, pid, inter = _contingency(p, g)
    union = inter.sum(1, keepdims=True) + inter.sum(0, keepdims=True) - inter
    ious = inter / np.maximum(union, 1)
    ious[:, np.isin(pid, np.asarray(pred_ignore, dtype=np.int64))] = 0.0
    rows, cols = linear_sum_assignment(ious, maximize=True)
    out = dict.fromkeys(gid.tolist(), 0.0)
    for r, c in zip(rows.tolist(), cols.tolist()):
        out[int(gid[r])] = float(ious[r, c])
    return out


def matched_miou(pred_labels, gt_labels, ignore=(0,), pred_ignore=(0,)) -> float:
    """Mean over GT instances of ``matched_ious`` (NaN if no GT instance is evaluated)."""
    vals = list(matched_ious(pred_labels, gt_labels, ignore, pred_ignore).values())
    return float(np.mean(vals)) if vals else float('nan')


def segment_purity(pred_labels, gt_labels, pred_ignore=(0,), weighted: bool = False) -> float:
    """Mean over predicted segments of the fraction of their points in their majority GT label.

    Segments in ``pred_ignore`` are skipped. ``weighted`` weighs segments by size (= fraction of
    all segmented points that lie in their segment's majority instance). NaN if no segment.
    """
    p, g = _labels(pred_labels, gt_labels)
    keep = ~np.isin(p, np.asarray(pred_ignore, dtype=np.int64))
    p, g = p[keep], g[keep]
    if p.size == 0:
        return float('nan')
    _, _, table = _contingency(p, g)
    majority, sizes = table.max(axis=0), table.sum(axis=0)
    if weighted:
        return float(majority.sum() / sizes.sum())
    return float(np.mean(majority / sizes))
