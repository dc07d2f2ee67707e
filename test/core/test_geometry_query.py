"""Queries that respect geometry (issue 9 §3, §4): the support plane, pieces cut at concave creases,
table clicks, small objects touching larger ones, whole-scene guards. Synthetic clouds, milliseconds."""
import numpy as np
import pytest

from n3f_ros.core.cloud import QueryError, iou, query_by_point, query_by_prototype
from n3f_ros.core.cloud.geometry import analyse_geometry, fit_support_plane

STEP = 0.005      # metres between samples


def _box(lo, hi, rng):
    """Surface samples (top and four sides, no bottom) of an axis-aligned box, with outward normals."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    pts, nrm = [], []
    for axis in range(3):
        for side, n in ((lo, -1.0), (hi, 1.0)):
            if axis == 2 and n < 0:
                continue                                   # the bottom rests on the table: unseen
            others = [a for a in range(3) if a != axis]
            g = [np.arange(lo[a], hi[a] + 1e-9, STEP) for a in others]
            uu, vv = np.meshgrid(*g)
            p = np.zeros((uu.size, 3))
            p[:, others[0]], p[:, others[1]], p[:, axis] = uu.ravel(), vv.ravel(), side[axis]
            pts.append(p)
            nn = np.zeros(3)
            nn[axis] = n
            nrm.append(np.repeat(nn[None], len(p), 0))
    p = np.concatenate(pts) + rng.normal(0, 2e-4, (sum(len(x) for x in pts), 3))
    return p, np.concatenate(nrm)


def _inside(p, lo, hi, margin=1e-3):
    return np.all((p > np.asarray(lo) + margin) & (p < np.asarray(hi) - margin), axis=1)


def tabletop(seed=0, blend=0.5, dim=16, table_tilt=0.0):
    """A 0.5 m table (z = 0, label 1), a large box (2), a small box touching its side (3) and a
    separate box (4). Features: a unit prototype per label plus noise; the small box's features are
    ``blend`` of the large box's (a patch-sized object blended with its neighbour)."""
    rng = np.random.default_rng(seed)
    g = np.arange(-0.25, 0.25, STEP)
    tx, ty = np.meshgrid(g, g)
    table = np.stack([tx.ravel(), ty.ravel(), np.zeros(tx.size)], 1)
    big = ((0.0, 0.0, 0.0), (0.1, 0.1, 0.08))
    small = ((0.1, 0.03, 0.0), (0.13, 0.06, 0.02))           # touches the large box's +x face
    other = ((-0.18, -0.18, 0.0), (-0.1, -0.1, 0.05))
    parts = [(table, np.tile([0, 0, 1.0], (len(table), 1)), 1)]
    for lab, (lo, hi) in ((2, big), (3, small), (4, other)):
        p, n = _box(lo, hi, rng)
        parts.append((p, n, lab))
    xyz = np.concatenate([p for p, _, _ in parts])
    normals = np.concatenate([n for _, n, _ in parts])
    labels = np.concatenate([np.full(len(p), lab) for p, _, lab in parts])
    hidden = np.zeros(len(xyz), bool)
    for lab, (lo, hi) in ((2, big), (3, small), (4, other)):            # surfaces inside another box
        hidden |= _inside(xyz, lo, hi, -0.002) & (labels != lab)          # contact faces are unseen too
    hidden |= (labels == 1) & (_inside(xyz, (0, 0, -1), (0.13, 0.1, 1), 0) | _inside(xyz, (-0.18, -0.18, -1),
                                                                                     (-0.1, -0.1, 1), 0))
    xyz, normals, labels = xyz[~hidden], normals[~hidden], labels[~hidden]
    if table_tilt:
        a = np.radians(table_tilt)
        R = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
        xyz, normals = xyz @ R.T, normals @ R.T
    protos = rng.normal(size=(5, dim))
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    protos[3] = blend * protos[2] + (1 - blend) * protos[3]
    f = protos[labels] + rng.normal(0, 0.15, (len(xyz), dim))
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    view = normals + np.array([0, 0, 0.3])                 # cameras above, on the side of each face
    return xyz.astype(np.float32), f.astype(np.float32), labels, view / np.linalg.norm(view, axis=1, keepdims=True)


@pytest.fixture(scope='module')
def scene():
    xyz, f, labels, view = tabletop()
    return xyz, f, labels, analyse_geometry(xyz, 2 * STEP, view)


def _top(xyz, labels, k):
    p = xyz[labels == k]
    return p[np.argmax(p[:, 2])]


def test_support_plane_found_with_a_tight_band(scene):
    xyz, _, labels, geom = scene
    plane = geom.plane
    assert plane is not None and plane.normal[2] > 0.999 and abs(plane.offset) < 1e-3
    assert 0.002 <= plane.band <= 0.004 and plane.share > 0.5
    assert np.all(geom.on_plane[labels == 1])                            # the table is the plane
    assert not geom.on_plane[labels >= 2][np.asarray(xyz)[labels >= 2][:, 2] > 0.005].any()
    # a tilted table is found too; no plane in a cloud without one
    t = tabletop(table_tilt=20.0)
    p = fit_support_plane(t[0])
    assert p is not None and np.degrees(np.arccos(p.normal[2])) == pytest.approx(20.0, abs=0.5)
    wall = np.stack(np.meshgrid(np.arange(0, 0.3, STEP), [0.0], np.arange(0, 0.3, STEP)), -1).reshape(-1, 3)
    assert fit_support_plane(wall) is None                               # vertical: not a support


@pytest.mark.parametrize('k', [2, 3, 4])
def test_object_answers_are_the_object_and_never_the_plane(scene, k):
    xyz, f, labels, geom = scene
    r = query_by_point(xyz, f, _top(xyz, labels, k), geometry=geom)
    assert r.kind == 'object'
    assert not np.any(labels[r.indices] == 1)                             # no point of the table, ever
    # the small box touching the large one is returned alone (crease points at the contact may go either way)
    assert iou(r.mask(len(xyz)), labels == k) > (0.7 if k == 3 else 0.85)
    if k == 3:
        assert np.count_nonzero(labels[r.indices] == 2) < 0.05 * np.count_nonzero(labels == 2)
    # the feature-only query of the blended small object leaks into the large one
    if k == 3:
        plain = query_by_point(xyz, f, _top(xyz, labels, k), radius=2 * STEP)
        assert iou(plain.mask(len(xyz)), labels == 3) < iou(r.mask(len(xyz)), labels == 3)


def test_a_click_on_the_table_returns_the_table_region(scene):
    xyz, f, labels, geom = scene
    r = query_by_point(xyz, f, [0.2, -0.2, 0.0], geometry=geom)
    assert r.kind == 'support' and iou(r.mask(len(xyz)), labels == 1) > 0.95
    assert not geom.above[r.indices].any()
    # whole-scene guard: the table is most of the cloud, but support answers are the plane by design
    assert len(r) / len(xyz) > 0.5


def test_prototype_queries_respect_the_plane(scene):
    xyz, f, labels, geom = scene
    saved = query_by_point(xyz, f, _top(xyz, labels, 4), geometry=geom)
    r = query_by_prototype(xyz, f, saved.prototype, geometry=geom)
    assert iou(r.mask(len(xyz)), labels == 4) > 0.9 and not np.any(labels[r.indices] == 1)


def test_whole_scene_answers_are_refused_with_their_reason(scene):
    xyz, f, labels, geom = scene
    flat = np.tile(f[:1], (len(xyz), 1))                                  # features that do not discriminate
    with pytest.raises(QueryError, match='not converged') as e:
        query_by_point(xyz, flat, _top(xyz, labels, 2), geometry=geom)
    assert e.value.reason == 'not_converged'
    # the same query without geometry and with the spread guard off would be the whole scene: refused
    with pytest.raises(QueryError, match='cover') as e:
        query_by_point(xyz, flat, _top(xyz, labels, 2), radius=2 * STEP, min_spread=None)
    assert e.value.reason == 'too_large'
    r = query_by_point(xyz, flat, _top(xyz, labels, 2), radius=2 * STEP, min_spread=None, max_share=None)
    assert len(r) == len(xyz)                                             # what the guard prevents
    with pytest.raises(QueryError) as e:
        query_by_point(xyz, f, [5.0, 5.0, 5.0], geometry=geom)
    assert e.value.reason == 'far'
