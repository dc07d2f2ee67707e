"""Synthetic tabletop scenes: determinism, geometry conventions, labels, texture, folder format."""
import json

import numpy as np
import open3d as o3d
import pytest
from PIL import Image

from n3f_ros.core.camera import GeometryError, backproject_depth, look_at, pixel_rays, project_points
from n3f_ros.core.synth import (
    SceneFolderError,
    TabletopScene,
    make_sequence,
    read_scene_folder,
    write_scene_folder,
)
from n3f_ros.core.synth.shapes import SHAPES

W, H, N = 64, 48, 6


def surface_distance(mesh, points) -> np.ndarray:
    """Distance (N,) of points (N, 3) to the surface of a legacy open3d mesh."""
    rs = o3d.t.geometry.RaycastingScene()
    rs.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
    return rs.compute_distance(o3d.core.Tensor(np.asarray(points, dtype=np.float32))).numpy()


@pytest.fixture(scope='module')
def seq():
    return make_sequence(7, N, W, H)


@pytest.fixture(scope='module')
def frames(seq):
    return list(seq)


def test_same_seed_same_images_other_seed_other_scene(seq, frames):
    again = make_sequence(7, N, W, H)
    for i in (0, N - 1):
        f = again[i]
        assert np.array_equal(f.rgb, frames[i].rgb)
        assert np.array_equal(f.depth, frames[i].depth)
        assert np.array_equal(f.instance, frames[i].instance)
        assert np.array_equal(f.T_world_cam, frames[i].T_world_cam)
    other = make_sequence(8, N, W, H)
    assert [o.to_dict() for o in other.scene.objects] != [o.to_dict() for o in seq.scene.objects]
    assert not np.array_equal(other[0].rgb, frames[0].rgb)


def test_frame_contract(seq, frames):
    assert len(seq) == N
    f = frames[2]
    assert f.rgb.shape == (H, W, 3) and f.rgb.dtype == np.uint8
    assert f.depth.shape == (H, W) and f.depth.dtype == np.float32
    assert f.instance.shape == (H, W) and f.instance.dtype == np.int32
    assert f.stamp == pytest.approx(2 / seq.fps)
    assert seq[-1].stamp == pytest.approx((N - 1) / seq.fps)
    assert np.all((f.depth > 0) == (f.instance > 0))          # depth 0 exactly where nothing is hit
    hfov = 2 * np.degrees(np.arctan(W / 2 / seq.camera.fx))
    assert hfov == pytest.approx(60.0)
    with pytest.raises(IndexError):
        seq[N]
    with pytest.raises(GeometryError):
        seq.scene.render(seq.camera, np.full((4, 4), np.nan))
    away = look_at((0.0, 0.0, 0.5), (0.0, 0.0, 2.0))                 # looking at the sky
    rgb, depth, inst = seq.scene.render(seq.camera, away)
    assert not inst.any() and not depth.any() and np.all(rgb == rgb[0, 0])


def test_scene_layout():
    for seed in (0, 1, 2):
        scene = TabletopScene.generate(seed)
        objs = scene.objects
        assert len(objs) >= 5
        assert len({o.shape for o in objs}) >= 5 and {o.shape for o in objs} <= set(SHAPES)
        assert [o.instance_id for o in objs] == list(range(2, 2 + len(objs)))
        for o in objs:
            assert 0.02 < max(o.extent) <= 0.15 + 1e-9
            assert o.center[2] - o.extent[2] / 2 == pytest.approx(0.0, abs=1e-9)     # rests on z = 0
        ids = [o.instance_id for o in objs]
        for a in ids:
            for b in ids:
                if a != b:
                    d = surface_distance(scene.mesh(a), np.asarray(scene.mesh(b).vertices))
                    assert d.min() > 0.005, f'seed {seed}: objects {a} and {b} touch'
        lo, hi = scene.bounds
        assert lo[2] < 0.0 < hi[2] and np.all(hi[:2] > 0.3) and np.all(lo[:2] < -0.3)


def test_depth_is_z_depth_of_the_hit_and_round_trips(seq, frames):
    f = frames[1]
    pts, idx = backproject_depth(f.depth, seq.camera, f.T_world_cam)
    vs, us = np.divmod(idx, W)
    # re-projection round trip: back-projected points land on their own pixel centres at their depth
    uv, z = project_points(pts, seq.camera, f.T_world_cam)
    assert np.allclose(uv, np.stack([us + 0.5, vs + 0.5], axis=1), atol=1e-4)
    assert np.allclose(z, f.depth[vs, us], atol=1e-5)
    # depth is z-depth, not the ray length: cast unit-length rays, compare t * cos(angle to axis)
    o, d = pixel_rays(seq.camera, f.T_world_cam, np.stack([us + 0.5, vs + 0.5], axis=1))
    norm = np.linalg.norm(d, axis=1)
    hit = seq.scene.cast(o, d / norm[:, None])
    assert np.allclose(hit['t'] / norm, f.depth[vs, us], rtol=1e-4, atol=1e-5)
    assert np.array_equal(hit['instance'], f.instance[vs, us])
    # an object pixel's 3D point lies on that object's surface
    inst = f.instance[vs, us]
    for oid in np.unique(inst[inst >= 2]):
        assert surface_distance(seq.scene.mesh(oid), pts[inst == oid]).max() < 1e-4
    table = pts[inst == 1]
    assert len(table) > 0 and np.allclose(table[:, 2], 0.0, atol=1e-4)


def test_instances_cover_objects_and_camera_orbits(seq, frames):
    seen = set()
    for f in frames:
        seen |= set(np.unique(f.instance).tolist())
    assert 1 in seen and len({i for i in seen if i >= 2}) >= 5
    centre = np.array(seq.path.center)
    az = []
    for T in seq.poses:
        eye = T[:3, 3]
        assert 0.45 < np.linalg.norm(eye - centre) < 0.95 and eye[2] > 0.15
        fwd = T[:3, 2]
        assert np.dot(fwd, centre - eye) / np.linalg.norm(centre - eye) > 0.99    # looks at the table
        az.append(np.arctan2(eye[1], eye[0]))
    sweep = abs(np.sum(np.angle(np.exp(1j * np.diff(np.unwrap(az))))))
    assert sweep == pytest.approx(2 * np.pi * (N - 1) / N, rel=0.1)                # a full circle
    for i in (0, 3):
        assert np.allclose(seq.pose_at(seq.stamp(i)), seq.poses[i])


def test_colour_is_not_a_label():
    seq = make_sequence(3, 2, 160, 120)
    f = seq[0]
    rgb = f.rgb.reshape(-1, 3).astype(np.float64)
    inst = f.instance.reshape(-1)
    ids = [i for i in np.unique(inst) if i >= 1 and np.sum(inst == i) >= 30]
    assert len(ids) >= 4
    for i in ids:                                      # colour varies within every object
        assert rgb[inst == i].std(axis=0).max() > 4.0
    # colours (quantised to 8 levels per channel) shared by at least two different instances
    q = (f.rgb.reshape(-1, 3) // 32).astype(np.int64) @ np.array([64, 8, 1])
    owners = {}
    for code, i in zip(q[inst >= 1], inst[inst >= 1]):
        owners.setdefault(code, set()).add(i)
    shared = [c for c, s in owners.items() if len(s) >= 2]
    assert len(shared) >= 3


def test_gt_points(seq):
    gt = seq.gt_points(voxel=0.01, frame_step=2)
    assert gt.xyz.dtype == np.float32 and gt.labels.dtype == np.int32 and gt.rgb.dtype == np.uint8
    assert len(gt) > 100 and len(np.unique(gt.xyz // 0.01, axis=0)) == len(gt)
    assert len({i for i in gt.labels.tolist() if i >= 2}) >= 5
    for o in seq.scene.objects:
        p = gt.xyz[gt.labels == o.instance_id]
        if len(p):
            lo = np.array(o.center) - np.array(o.extent) / 2 - 0.01
            hi = np.array(o.center) + np.array(o.extent) / 2 + 0.01
            assert np.all((p >= lo) & (p <= hi))


def test_folder_round_trip(tmp_path, seq, frames):
    out = write_scene_folder(seq, tmp_path / 'scene')
    with Image.open(out / 'depth' / '000000.png') as im:
        assert im.mode in ('I;16', 'I') and np.asarray(im).max() > 255        # 16-bit millimetres
    assert json.loads((out / 'camera.json').read_text())['width'] == W
    sf = read_scene_folder(out)
    assert sf.camera == seq.camera and len(sf.frames) == N
    assert [o.to_dict() for o in sf.objects] == [o.to_dict() for o in seq.scene.objects]
    for a, b in zip(sf.frames, frames):
        assert np.array_equal(a.rgb, b.rgb)
        assert np.array_equal(a.instance, b.instance)
        assert np.abs(a.depth - b.depth).max() <= 0.0005 + 1e-6
        assert np.all((a.depth > 0) == (b.depth > 0))
        assert np.allclose(a.T_world_cam, b.T_world_cam, atol=1e-8)
        assert a.stamp == pytest.approx(b.stamp)
    with pytest.raises(FileExistsError):
        write_scene_folder(seq, out)
    (out / 'poses.txt').write_text('0.0 1 2 3 0 0 0 2\n')            # not a unit quaternion
    with pytest.raises(SceneFolderError):
        read_scene_folder(out)
    with pytest.raises(SceneFolderError):
        read_scene_folder(tmp_path / 'missing')


def test_cli_writes_a_folder(tmp_path, capsys):
    from n3f_ros.cli.main import main
    assert main(['synth', str(tmp_path / 's'), '--seed', '5', '--frames', '2', '--size', '32x24',
                 '--quiet', '--no-depth']) == 0
    sf = read_scene_folder(tmp_path / 's')
    assert len(sf.frames) == 2 and sf.frames[0].depth is None and sf.frames[0].instance is not None
    assert sf.camera.size == (32, 24) and sf.meta['seed'] == 5
    assert 'wrote 2 frames' in capsys.readouterr().out
