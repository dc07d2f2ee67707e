"""pybullet scene source: geometry consistency (depth conversion, pose convention, instance ids),
layout contract (small and touching objects), determinism, and the ``n3f synth`` options."""
import json

import numpy as np
import pytest
from PIL import Image

from n3f_ros.core.camera import PinholeCamera, backproject_depth, look_at, project_points
from n3f_ros.core.synth import SCENE_SOURCES, make_scene, make_sequence, read_scene_folder
from n3f_ros.core.synth.geometry_check import (
    centre_hits,
    check_sequence,
    reprojection_residual,
    table_plane_error,
    view_agreement,
)
from n3f_ros.core.synth.pybullet_scene import (
    MODELS,
    SMALL_SIZE,
    TOUCH_DISTANCE,
    PybulletScene,
    gl_depth_to_z,
    gl_projection_matrix,
    gl_view_matrix,
)
from n3f_ros.core.synth.scene import TABLE_ID

W, H, N, SEED = 160, 120, 8, 3


@pytest.fixture(scope='module')
def seq():
    return make_sequence(SEED, N, W, H, scene='pybullet')


@pytest.fixture(scope='module')
def frames(seq):
    return list(seq)


def test_gl_matrices_match_the_opencv_camera():
    """Pure numpy: the GL view/projection put a world point on the pixel and z-depth that the
    OpenCV model gives, with an off-centre principal point, and the depth buffer inverts."""
    cam = PinholeCamera(300.0, 280.0, 170.0, 110.0, 320, 240)
    T = look_at([0.5, -0.4, 0.6], [0.02, 0.03, 0.0])
    pts = np.array([[0.0, 0.0, 0.0], [0.1, -0.05, 0.04], [-0.2, 0.1, 0.01]])
    uv, z = project_points(pts, cam, T)
    near, far = 0.02, 8.0
    clip = (gl_projection_matrix(cam, near, far) @ gl_view_matrix(T) @ np.c_[pts, np.ones(3)].T).T
    ndc = clip[:, :3] / clip[:, 3:]
    u = (ndc[:, 0] + 1) / 2 * cam.width               # continuous pixel coords, row 0 on top
    v = (1 - ndc[:, 1]) / 2 * cam.height
    np.testing.assert_allclose(np.c_[u, v], uv, atol=1e-9)
    np.testing.assert_allclose(gl_depth_to_z((ndc[:, 2] + 1) / 2, near, far), z, rtol=1e-6)
    # a rasteriser sampling pixel corners (0, 1) needs the principal point moved by half a pixel
    P = gl_projection_matrix(cam, near, far, sample=(0.0, 1.0))
    assert P[0, 2] == pytest.approx(1 - 2 * (cam.cx - 0.5) / cam.width)
    assert P[1, 2] == pytest.approx(2 * (cam.cy + 0.5) / cam.height - 1)


def test_frame_contract_and_scene_description(seq, frames):
    f = frames[1]
    assert len(seq) == N and f.rgb.shape == (H, W, 3) and f.rgb.dtype == np.uint8
    assert f.depth.dtype == np.float32 and f.instance.dtype == np.int32 and f.depth.shape == (H, W)
    assert np.all((f.depth > 0) == (f.instance > 0))            # depth 0 exactly where nothing is hit
    assert f.stamp == pytest.approx(1 / seq.fps) and np.array_equal(f.T_world_cam, seq.poses[1])
    ids = [o.instance_id for o in seq.scene.objects]
    assert ids == list(range(2, 2 + len(ids))) and seq.scene.instance_ids == [TABLE_ID] + ids
    assert 6 <= len(ids) <= 10 and seq.scene.SOURCE == 'pybullet'
    assert {o.shape for o in seq.scene.objects} <= set(MODELS)
    seen = set(np.unique(np.concatenate([fr.instance.ravel() for fr in frames])))
    assert set(ids) <= seen                                   # every object shows up along the orbit
    lo, hi = seq.scene.bounds
    for o in seq.scene.objects:
        assert np.all(np.asarray(o.center) > lo) and np.all(np.asarray(o.center) < hi)


def test_depth_matches_the_known_table_plane(seq, frames):
    """Straight down from a known height, and along the orbit: table z-depth = ray / plane z = 0."""
    cam = seq.camera
    height = 0.9
    T = look_at([0.0, 0.0, height], [0.0, 0.0, 0.0], up=(0.0, 1.0, 0.0))   # sees only the table top
    _, depth, inst = seq.scene.render(cam, T)
    table = inst == TABLE_ID
    assert table.mean() > 0.6 and (inst > 0).all()
    np.testing.assert_allclose(depth[table], height, atol=2e-5)
    err = np.concatenate([table_plane_error(f) for f in frames])
    assert len(err) > 0.3 * N * W * H
    assert np.median(err) < 2e-5 and err.max() < 1e-4                          # metres


def test_two_views_back_project_onto_one_surface(frames):
    """Back-projected depth of two views (two orbit steps apart) lies on one surface."""
    nn, res = [], []
    for i in range(0, N, 2):
        a, b = frames[i], frames[(i + 2) % N]
        nn.append(view_agreement(a, b))
        res.append(reprojection_residual(a, b))
    nn, res = np.concatenate(nn), np.concatenate(res)
    assert len(nn) > 0.2 * 4 * W * H and len(res) > 0.2 * 4 * W * H
    pixel = 1.2 / (W / 2 / np.tan(np.deg2rad(30)))           # footprint of a pixel at 1.2 m, metres
    assert np.median(nn) < pixel and np.percentile(nn, 90) < 2 * pixel
    assert np.median(res) < 1e-4 and np.percentile(res, 90) < 5e-4


def test_objects_land_on_their_own_pixels(seq, frames):
    """Known centres project onto their own instance id; every pixel of an instance back-projects
    inside that object's box."""
    hits = [centre_hits(f, seq.scene.objects) for f in frames]
    tested = [h for fh in hits for h in fh.values() if h is not None]
    assert len(tested) >= 0.6 * N * len(seq.scene.objects) and all(tested)
    boxes = {o.instance_id: (np.asarray(o.center), np.asarray(o.extent)) for o in seq.scene.objects}
    for f in frames[::2]:
        p, idx = backproject_depth(f.depth, f.camera, f.T_world_cam)
        lab = f.instance.reshape(-1)[idx]
        for iid, (c, e) in boxes.items():
            q = p[lab == iid]
            if len(q):
                assert np.all(np.abs(q - c) <= e / 2 + 0.004), iid


def test_small_and_touching_objects(seq, frames):
    """At least two objects below SMALL_SIZE; the touching pair is in contact in 3D and its two
    masks share a boundary in the images."""
    objs = {o.instance_id: o for o in seq.scene.objects}
    assert sum(max(o.extent) < SMALL_SIZE for o in objs.values()) >= 2
    (a, b, dist), = seq.scene.touching
    assert dist <= TOUCH_DISTANCE and max(objs[b].extent) < SMALL_SIZE
    ca, ea = np.asarray(objs[a].center), np.asarray(objs[a].extent)
    cb, eb = np.asarray(objs[b].center), np.asarray(objs[b].extent)
    assert np.all(np.abs(ca - cb) <= (ea + eb) / 2 + TOUCH_DISTANCE)     # boxes meet
    adjacent = 0
    for f in frames:
        m_a, m_b = f.instance == a, f.instance == b
        grown = m_a | np.roll(m_a, 1, 0) | np.roll(m_a, -1, 0) | np.roll(m_a, 1, 1) | np.roll(m_a, -1, 1)
        adjacent += bool((grown & m_b).any())
    assert adjacent >= N // 2


def test_same_seed_same_images_other_seed_other_scene(frames):
    again = make_sequence(SEED, N, W, H, scene='pybullet')
    for i in (0, N - 1):
        f = again[i]
        assert np.array_equal(f.rgb, frames[i].rgb) and np.array_equal(f.depth, frames[i].depth)
        assert np.array_equal(f.instance, frames[i].instance)
    assert np.array_equal(again.scene.render(again.camera, again.poses[2])[0], frames[2].rgb)  # re-render
    other = make_scene(SEED + 1, source='pybullet')
    try:
        assert [o.to_dict() for o in other.objects] != [o.to_dict() for o in again.scene.objects]
    finally:
        other.close()
        again.scene.close()
    with pytest.raises(RuntimeError, match='closed'):
        again[0]


def test_check_sequence_numbers(seq):
    r = check_sequence(seq, frame_step=4)
    assert r['frames_checked'] == 2 and r['table_depth_error_m']['max'] < 1e-4
    assert r['two_view_depth_residual_m']['median'] < 1e-4
    assert r['centre_hits']['tested'] > 0 and r['centre_hits']['hit'] == r['centre_hits']['tested']


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match='scene source'):
        make_scene(0, source='gazebo')
    with pytest.raises(ValueError, match='n_objects'):
        PybulletScene.generate(0, n_objects=11)
    from n3f_ros.cli.synth import SCENES
    assert SCENES == SCENE_SOURCES


def test_cli_folder_preview_and_check(tmp_path, capsys):
    from n3f_ros.cli.main import main
    png = tmp_path / 'prev.png'
    assert main(['synth', str(tmp_path / 's'), '--scene', 'pybullet', '--seed', '2', '--frames', '2',
                 '--size', '64x48', '--quiet', '--objects', '6', '--preview', str(png), '--preview-views', '2',
                 '--preview-width', '64', '--check']) == 0
    out = capsys.readouterr().out
    check = json.loads(next(line for line in out.splitlines() if line.startswith('{')))
    assert check['scene'] == 'pybullet' and check['table_depth_error_m']['max'] < 1e-4
    sf = read_scene_folder(tmp_path / 's')
    assert sf.meta['scene'] == 'pybullet' and len(sf.objects) == 6 and len(sf.frames) == 2
    assert sf.frames[1].depth is not None and set(np.unique(sf.frames[1].instance)) >= {TABLE_ID}
    with Image.open(png) as im:
        assert im.size == (2 * 64, 3 * 48)
    assert main(['synth', '--scene', 'pybullet']) == 2                  # no OUT, no --preview, no --check
