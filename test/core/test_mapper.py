"""The Mapper facade on a synthetic scene: distillation, queries, threading, persistence."""
import logging
import threading
import time

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from n3f_ros.core.camera import project_points
from n3f_ros.core.cloud import QueryError, iou, matched_miou, query_by_point, segment
from n3f_ros.core.field.render import render_rays
from n3f_ros.core.mapping import Mapper, MapperConfig
from n3f_ros.core.persistence import MapFileError
from n3f_ros.core.synth import make_sequence
from n3f_ros.core.teacher import SyntheticTeacher

pytestmark = pytest.mark.slow

log = logging.getLogger(__name__)

W, H, FRAMES = 192, 144, 12   # the teacher sees 192x144 (16 px patches); keyframes are stored 96 px wide
KW = 96


def make_teacher():
    # ViT-S/8-like patch size: at 192 px a 16 px patch is wider than the small objects
    return SyntheticTeacher(seed=3, stride=8)


@pytest.fixture(scope='module')
def seq():
    return make_sequence(3, FRAMES, W, H)


def _config(**kw):
    base = dict(teacher_model='synthetic', keyframe_translation=0.0, keyframe_rotation=0.0, max_keyframes=FRAMES,
                keyframe_width=KW, rays_per_step=256, bounds_keyframes=FRAMES, voxel_size=0.01, seed=0)
    base.update(kw)
    return MapperConfig(**base)


@pytest.fixture(scope='module')
def trained(seq):
    """A mapper fed every frame and trained long enough for queries (shared by several tests)."""
    torch.manual_seed(0)
    m = Mapper(_config(), teacher=make_teacher())
    for f in seq:
        assert m.integrate(f)
    m.train(200)
    return m


def _feature_loss(m, n=2048):
    g = torch.Generator().manual_seed(123)
    b = m.keyframes.sample(n, g)
    with torch.no_grad():
        out = render_rays(m.field, b.origins, b.dirs, m.config.render_config, depth=b.depth, perturb=False)
    return float(((out.feat - b.feat) ** 2).sum(-1).mean())


def test_distillation_lowers_feature_loss(seq):
    torch.manual_seed(0)
    m = Mapper(_config(), teacher=make_teacher())
    for f in seq:
        m.integrate(f)
    assert m.field is not None and m.trainer.config.use_depth
    before = _feature_loss(m)
    m.train(60)
    after = _feature_loss(m)
    assert after < 0.7 * before, (before, after)


def _gt_labels(seq, xyz):
    gt = seq.gt_points(voxel=0.005)
    d, i = cKDTree(gt.xyz).query(xyz)
    return gt.labels[i], d


def _object_tops(xyz, labels, objects, min_points=30):
    """(instance id, mask, highest point) of every object with enough points in the cloud."""
    out = []
    for obj in objects:
        mask = labels == obj.instance_id
        if mask.sum() >= min_points:
            pts = xyz[mask]
            out.append((obj.instance_id, mask, pts[np.argmax(pts[:, 2])]))
    return out


def test_query_on_scene_with_fused_teacher_features(seq):
    """Segmentation + query on the synthetic scene, with per-point features fused over all views
    (what a converged student holds): a query at each object's top recovers it."""
    teacher = make_teacher()
    gt = seq.gt_points(voxel=0.01)
    acc = np.zeros((len(gt.xyz), teacher.dim))
    for f in seq:
        uv, z = project_points(gt.xyz, f.camera, f.T_world_cam)
        ok = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
        ok[ok] = np.abs(f.depth[uv[ok, 1].astype(int), uv[ok, 0].astype(int)] - z[ok]) < 0.01
        fm = teacher(f).numpy()                                       # (h, w, C) patch grid
        h, w = fm.shape[:2]
        acc[ok] += fm[(uv[ok, 1] * h / H).astype(int), (uv[ok, 0] * w / W).astype(int)]
    feats = (acc / np.maximum(np.linalg.norm(acc, axis=1, keepdims=True), 1e-9)).astype(np.float32)
    # objects of >= 100 points (1 cm voxels): smaller ones are sub-patch for the teacher in every view,
    # so even fused features stay a blend with the table (the benchmark reports all objects)
    tops = _object_tops(gt.xyz, gt.labels, seq.scene.objects, min_points=100)
    assert len(tops) >= 4
    ious = [iou(query_by_point(gt.xyz, feats, top, radius=0.02, seed_radius=0.015).mask(len(gt.xyz)), mask)
            for _, mask, top in tops]
    assert np.mean(np.array(ious) >= 0.5) >= 0.6, ious
    labels = segment(gt.xyz, feats, n_clusters=8, radius=0.02)
    assert matched_miou(labels.astype(int), gt.labels) > 0.5


def test_trained_field_cloud_and_query(seq, trained):
    cloud = trained.cloud()
    assert cloud is not None and len(cloud) > 500
    labels, dist = _gt_labels(seq, cloud.xyz)
    assert np.median(dist) < 0.01          # extracted surface lies on the true surface
    assert len(np.unique(cloud.labels)) >= 3
    ious = []
    for _, mask, top in _object_tops(cloud.xyz, labels, seq.scene.objects):
        r = trained.query_point(top)
        ious.append(iou(r.mask(len(cloud)), mask))
        assert np.isfinite(r.centroid).all() and r.box.extent.shape == (3,)
    assert len(ious) >= 3
    # after 200 CPU steps the student recovers the best-separated objects (the benchmark measures all)
    assert max(ious) >= 0.5, ious


def test_prototype_query_edit_and_mask(seq, trained):
    cloud = trained.cloud()
    labels, _ = _gt_labels(seq, cloud.xyz)
    obj = max(seq.scene.objects, key=lambda o: (labels == o.instance_id).sum())
    pts = cloud.xyz[labels == obj.instance_id]
    r = trained.query_point(pts[np.argmax(pts[:, 2])])
    trained.save_prototype('thing')
    r2 = trained.query_prototype('thing')
    assert r2.name == 'thing'
    assert iou(r2.mask(len(cloud)), r.mask(len(cloud))) > 0.5
    removed = trained.edit(r, 'remove')
    extracted = trained.edit(r, 'extract')
    assert len(removed) + len(extracted) == len(cloud)
    # 2D retrieval: the rendered mask overlaps the object's ground-truth pixels in a view
    f = max(seq, key=lambda fr: (fr.instance == obj.instance_id).sum())
    gt = f.instance == obj.instance_id
    fast = trained.render_mask(r, f.camera, f.T_world_cam, depth=f.depth)   # field read at the depth
    volume = trained.render_mask(r, f.camera, f.T_world_cam)                # full volume rendering
    assert fast.shape == volume.shape == (H, W)
    log.info('2D mask IoU vs ground truth: depth path', iou(fast, gt), 'volume path', iou(volume, gt))
    assert iou(fast, gt) > 0.3 and iou(volume, gt) > 0.3
    with pytest.raises(KeyError):
        trained.query_prototype('unknown')
    with pytest.raises(QueryError):
        trained.query_point([10.0, 10.0, 10.0])


def test_save_reset_load_restores_queries(seq, trained, tmp_path):
    path = str(tmp_path / 'map.pt')
    cloud = trained.cloud()
    p = cloud.xyz[np.argmax(cloud.xyz[:, 2])]
    before = trained.query_point(p)
    trained.save_prototype('saved_here', before)
    trained.save(path)
    m = Mapper(_config(), teacher=make_teacher())
    assert m.cloud() is None
    m.load(path)
    after = m.query_point(p)
    assert len(m.cloud()) == len(cloud)
    assert iou(after.mask(len(cloud)), before.mask(len(cloud))) > 0.95
    assert np.allclose(m.prototypes.get('saved_here'), before.prototype, atol=1e-6)
    # a broken file leaves the loaded map untouched
    bad = tmp_path / 'bad.pt'
    bad.write_bytes(b'not a map')
    with pytest.raises(MapFileError):
        m.load(str(bad))
    assert len(m.cloud()) == len(cloud)
    m.reset()
    assert m.cloud() is None and len(m.keyframes) == 0


def test_rgb_only_without_stereo_trains_geometry_from_colour(seq):
    lo, hi = seq.scene.bounds
    m = Mapper(_config(use_depth=False, stereo_depth=False, scene_bounds=tuple(np.concatenate([lo - 0.05, hi + 0.05]))),
               teacher=make_teacher())
    for f in seq:
        m.integrate(f)
    assert m.trainer is not None and not m.trainer.config.use_depth
    first = m.train(5)
    last = m.train(60)
    assert last < first


def test_worker_thread_queue_and_pause(seq):
    m = Mapper(_config(queue_size=1, bounds_keyframes=3), teacher=make_teacher())
    # without a worker, a full queue drops the oldest frame and counts it
    assert m.submit(seq[0]) is True
    assert m.submit(seq[1]) is False
    assert m.stats()['frames_dropped_queue'] == 1
    m.start()
    try:
        for f in seq:
            m.submit(f)
            time.sleep(0.05)
        deadline = time.time() + 60
        while time.time() < deadline and (m.train_steps < 3 or len(m.keyframes) < 3):
            time.sleep(0.1)
        assert len(m.keyframes) >= 3 and m.train_steps >= 3
        m.set_paused(True)
        n_kf, steps = len(m.keyframes), m.train_steps
        assert m.submit(seq[-1]) is False
        time.sleep(0.5)
        assert len(m.keyframes) == n_kf and m.train_steps == steps      # nothing after the pause returned
        assert m.stats()['frames_dropped_paused'] >= 1
    finally:
        m.stop()
    assert m.stats().get('worker_errors', 0) == 0


class _GatedTeacher(SyntheticTeacher):
    """The real synthetic teacher, held at a gate: the test decides when an integration may go on."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.entered, self.gate = threading.Event(), threading.Event()

    def __call__(self, frame):
        self.entered.set()
        assert self.gate.wait(60)
        return super().__call__(frame)


def test_pause_waits_for_the_work_in_flight_and_then_nothing_changes(seq):
    """~/pause: an integration in flight when the pause is asked finishes before ``set_paused``
    returns (it is not dropped half-way, nor finished after), and afterwards neither keyframes
    nor training steps change, so two queries after a pause see the same map."""
    teacher = _GatedTeacher(seed=3, stride=8)
    teacher.gate.set()
    m = Mapper(_config(bounds_keyframes=2), teacher=teacher)           # the field exists after 2
    m.integrate(seq[0])
    m.integrate(seq[2])
    m.start()
    try:
        deadline = time.time() + 60
        while time.time() < deadline and m.train_steps < 2:
            time.sleep(0.05)
        assert m.train_steps >= 2
        teacher.gate.clear()
        teacher.entered.clear()
        m.submit(seq[4])
        assert teacher.entered.wait(60)                       # the worker is inside the integration
        paused = threading.Event()
        threading.Thread(target=lambda: (m.set_paused(True), paused.set()), daemon=True).start()
        assert not paused.wait(0.5)                           # the pause waits for it
        teacher.gate.set()
        assert paused.wait(60)
        n_kf, steps = len(m.keyframes), m.train_steps
        assert n_kf == 3                                      # the frame in flight was integrated
        time.sleep(0.5)
        assert (len(m.keyframes), m.train_steps) == (n_kf, steps)
        m.set_paused(False)
        deadline = time.time() + 60
        while time.time() < deadline and m.train_steps == steps:
            time.sleep(0.05)
        assert m.train_steps > steps                          # resumed
    finally:
        teacher.gate.set()
        m.stop()
    assert m.stats().get('worker_errors', 0) == 0


def test_answers_from_the_first_keyframe(seq):
    """RGB-D: right after one keyframe, before the field exists, the fused-teacher layer answers:
    an object query returns the object (not the scene), a click on the table the table region."""
    m = Mapper(_config(), teacher=make_teacher())
    f = seq[0]
    assert m.integrate(f) and m.field is None
    cloud = m.cloud()
    assert cloud is not None and len(cloud) > 500 and cloud.feature_source == 'fused'
    assert cloud.geometry is not None and cloud.geometry.plane is not None
    labels, _ = _gt_labels(seq, cloud.xyz)
    tops = _object_tops(cloud.xyz, labels, seq.scene.objects, min_points=20)
    assert len(tops) >= 3
    ious = []
    for k, mask, top in tops:
        r = m.query_point(top)
        assert r.kind == 'object' and r.feature_source == 'fused' and 0.0 <= r.confidence <= 1.0
        assert len(r) < 0.5 * len(cloud) and not cloud.geometry.on_plane[r.indices].any()
        ious.append(iou(r.mask(len(cloud)), mask))
    assert np.mean(ious) > 0.6, ious
    table = cloud.xyz[(labels == 1) & cloud.geometry.on_plane]
    r = m.query_point(table[len(table) // 2])
    # the table region connected to the click (one view: objects' occlusion gaps split the rest off)
    assert r.kind == 'support' and iou(r.mask(len(cloud)), labels == 1) > 0.7
    assert np.count_nonzero(labels[r.indices] != 1) < 0.01 * len(r)
    # the same object by a pixel of the camera view, with its depth or from the cloud alone
    u, v = np.argwhere(f.instance == tops[0][0]).mean(0)[::-1].astype(int)
    by_depth = m.query_pixel(f.camera, f.T_world_cam, f.depth, u, v)
    by_cloud = m.query_pixel(f.camera, f.T_world_cam, None, u, v)
    assert iou(by_depth.mask(len(cloud)), tops[0][1]) > 0.5 and iou(by_cloud.mask(len(cloud)), tops[0][1]) > 0.5
    for uv, reason in (((W, 10), 'outside_image'), ((-1, 10), 'outside_image'), ((float('nan'), 1), 'outside_image')):
        with pytest.raises(QueryError) as e:
            m.query_pixel(f.camera, f.T_world_cam, f.depth, *uv)
        assert e.value.reason == reason
    sky = np.argwhere(f.depth == 0)
    if len(sky):
        with pytest.raises(QueryError) as e:
            m.query_pixel(f.camera, f.T_world_cam, f.depth, sky[0][1], sky[0][0])
        assert e.value.reason == 'no_surface'
    with pytest.raises(QueryError):
        m.query_point([10.0, 10.0, 10.0])
    st = m.stats()
    assert st['queries_refused_outside_image'] == 3 and st['queries_refused_far'] == 1
    assert st['queries_answered'] >= len(tops) + 3 and st['fused_voxels'] == len(cloud)
    assert st['feature_source'] == 'fused'


def test_held_out_keyframes_measure_student_against_fused(seq):
    m = Mapper(_config(holdout_every=3, holdout_eval_steps=40), teacher=make_teacher())
    for f in seq:
        m.integrate(f)
    held = m.keyframes.held_out_slots()
    assert held == [2, 5, 8, 11]
    b = m.keyframes.sample(4096, torch.Generator().manual_seed(0))
    assert b.feat_weight is not None and 0 < float(b.feat_weight.mean()) < 1     # held-out rays teach no features
    m.train(80)
    st = m.stats()
    assert st['heldout_measurements'] >= 2 and st['heldout_pixels'] > 1000
    for k in ('heldout_error_fused', 'heldout_error_student', 'heldout_error_combined'):
        assert 0.0 <= st[k] < 2.0, (k, st[k])
    assert st['feature_source'] in ('fused', 'student', 'combined')
    cloud = m.cloud()
    assert cloud.feature_source == st['feature_source']
    r = m.query_point(cloud.xyz[np.argmax(cloud.xyz[:, 2])])
    assert r.feature_source == cloud.feature_source and r.confidence > 0


def _assert_an_over_fitting_live_field_does_not_answer(m, best):
    """Noise on the live field ("over-fitting"), then a measurement: the kept copy ``best`` answers."""
    with torch.no_grad():
        for p in m.field.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    m.measure_sources()
    st = m.stats()
    assert st['heldout_error_student_live'] > st['heldout_error_student'] + 0.01, st
    assert m.student is best and st['student_kept_over_live'] >= 1


def test_an_over_fitting_live_field_does_not_answer(seq):
    """Early stopping online (best_student.py): when the live field gets worse on the held-out
    keyframes, answers keep coming from the copy kept at its best; a new keyframe ends that."""
    m = Mapper(_config(holdout_every=3, holdout_eval_steps=40, bounds_keyframes=FRAMES - 1), teacher=make_teacher())
    for f in seq[:FRAMES - 1]:
        m.integrate(f)
    m.train(80)
    st = m.stats()
    assert st['student_copies'] >= 1 and st['student_steps'] in (40, 80)
    best = m.student
    assert best is not m.field                                       # a copy, not the training field
    pts = m.cloud(force=True).xyz
    before = best.query_features(pts)
    _assert_an_over_fitting_live_field_does_not_answer(m, best)
    np.testing.assert_allclose(m.student.query_features(pts), before)
    cloud = m.cloud(force=True)
    if cloud.feature_source == 'student':
        np.testing.assert_allclose(cloud.features, m.student.query_features(cloud.xyz), atol=1e-5)
    assert m.integrate(seq[FRAMES - 1])                               # a new keyframe: the copy is stale
    assert m.student is m.field


def test_a_colour_only_map_measures_its_student_by_rendering(seq):
    """Colour alone (no depth, no stereo, so no fused layer): the held-out keyframes measure the
    students by their rendered features, and an over-fitting live field still does not answer."""
    lo, hi = seq.scene.bounds
    m = Mapper(_config(use_depth=False, stereo_depth=False, holdout_every=3, holdout_eval_steps=40,
                       scene_bounds=tuple(np.concatenate([lo - 0.05, hi + 0.05]))), teacher=make_teacher())
    for f in seq:
        m.integrate(f)
    assert m.map.fused is None
    m.train(80)
    st = m.stats()
    assert st['heldout_measurements'] >= 2 and st['heldout_pixels'] > 1000, st
    assert np.isnan(st['heldout_error_fused']) and 0.0 <= st['heldout_error_student'] < 2.0, st
    assert st['feature_source'] == 'student' and st['student_copies'] >= 1, st
    best = m.student
    assert best is not m.field
    _assert_an_over_fitting_live_field_does_not_answer(m, best)
