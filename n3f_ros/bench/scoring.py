"""Scoring answers against ground truth, shared by the benchmarks, the demo and the tests.

Ground truth is a labelled surface point set (``GroundTruthPoints`` of ``core.synth``: xyz (N, 3)
metres, labels (N,) instance ids, 1 = support, >= 2 objects).
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def answer_iou(answer_xyz, rest_xyz, gt, label: int) -> float:
    """IoU of a query answer with ground-truth object ``label``: every returned point, and every other
    point of the queried cloud (``rest_xyz``, e.g. the 'remove' edit), takes the instance of its
    nearest ground-truth point; IoU = answer points on the object / (answer points + object
    points the answer missed)."""
    tree = cKDTree(gt.xyz)
    lab_ans = gt.labels[tree.query(answer_xyz)[1]] if len(answer_xyz) else np.zeros(0, int)
    lab_rest = gt.labels[tree.query(rest_xyz)[1]] if len(rest_xyz) else np.zeros(0, int)
    inter = int(np.sum(lab_ans == label))
    return inter / max(len(answer_xyz) + int(np.sum(lab_rest == label)), 1)


def _top_centre(p: np.ndarray) -> np.ndarray:
    """The point of ``p`` (N, 3) nearest the top centre of the points (median x, y; 90th percentile z)."""
    top = np.array([*np.median(p[:, :2], 0), np.percentile(p[:, 2], 90)])
    return p[np.argmin(np.linalg.norm(p - top, axis=1))]


def object_seed_points(gt, object_ids=None, min_points: int = 10) -> dict:
    """Per object (id -> (3,) metres): the ground-truth point nearest the top centre of the object's
    points, where a user would click on it. Objects with fewer than ``min_points`` points are left out."""
    return {k: c[0] for k, c in object_click_points(gt, object_ids, 1, min_points=min_points).items()}


def object_click_points(gt, object_ids=None, clicks: int = 1, seed: int = 0, min_points: int = 10,
                        margin: float = 0.02) -> dict:
    """Per object (id -> (clicks, 3) metres): the top-centre point (``object_seed_points``) first,
    then ``clicks - 1`` of the object's points drawn at random (``seed``) among those at least
    ``margin`` metres from every point of another label (all of its points when too few are), i.e.
    the places a user might click. Objects with fewer than ``min_points`` points are left out."""
    ids = np.unique(gt.labels[gt.labels >= 2]) if object_ids is None else object_ids
    rng = np.random.default_rng(seed)
    out = {}
    for k in ids:
        mine = gt.labels == k
        p = gt.xyz[mine]
        if len(p) < min_points:
            continue
        pts = [_top_centre(p)]
        if clicks > 1:
            others = gt.xyz[~mine]
            d = cKDTree(others).query(p)[0] if len(others) else np.full(len(p), np.inf)
            inner = d >= margin
            pool = p[inner] if inner.sum() >= clicks - 1 else p
            pts += list(pool[rng.choice(len(pool), clicks - 1, replace=len(pool) < clicks - 1)])
        out[int(k)] = np.stack(pts)
    return out


def mask_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """IoU of two (H, W) bool masks (0 when both are empty)."""
    union = np.logical_or(pred, truth).sum()
    return float(np.logical_and(pred, truth).sum() / union) if union else 0.0
