"""core/keyframes: novelty thresholds, bounded buffer with redundancy-based replacement, ray sampling
consistent with the stored images, bilinear teacher features, state_dict round trip."""
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from n3f_ros.core.camera import PinholeCamera, look_at, project_points
from n3f_ros.core.frame import Frame
from n3f_ros.core.keyframes import KeyframeBuffer, KeyframeConfig, pose_distance

W, H = 32, 24           # input frames
FW, FH = 4, 3           # teacher patch grid (stride 8)
D = 4
CAM = PinholeCamera(fx=30.0, fy=28.0, cx=16.5, cy=11.0, width=W, height=H)


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pose(x=0.0, y=0.0, z=0.0, rotvec=(0.0, 0.0, 0.0)):
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = (x, y, z)
    return T


def make_frame(T, stamp=0.0, seed=0, depth=True):
    """Frame whose colour and depth are constant over 2x2 blocks (so halving them is exact)."""
    rng = np.random.default_rng(seed)
    small_rgb = rng.integers(0, 256, (H // 2, W // 2, 3), dtype=np.uint8)
    small_depth = rng.uniform(0.5, 3.0, (H // 2, W // 2)).astype(np.float32)
    rgb = small_rgb.repeat(2, 0).repeat(2, 1)
    d = small_depth.repeat(2, 0).repeat(2, 1) if depth else None
    return Frame(rgb, CAM, T, stamp=stamp, depth=d), small_rgb, small_depth


def feats(seed=0):
    return torch.nn.functional.normalize(torch.randn(FH, FW, D, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_pose_distance():
    dt, dr = pose_distance(pose(1, 2, 3), pose(1, 2, 3.5, rotvec=(0, math.radians(30), 0)))
    assert dt == pytest.approx(0.5)
    assert dr == pytest.approx(30.0)


def test_novelty_thresholds():
    buf = KeyframeBuffer(KeyframeConfig(min_translation=0.1, min_rotation_deg=10.0, width=16))
    assert buf.is_novel(pose())                  # empty buffer: anything is novel
    buf.add(make_frame(pose())[0], feats())
    assert not buf.is_novel(pose())
    assert not buf.is_novel(pose(x=0.05))
    assert buf.is_novel(pose(x=0.15))
    assert buf.is_novel(pose(y=-0.08, z=0.08))   # 0.113 m
    assert not buf.is_novel(pose(rotvec=(0, math.radians(5), 0)))
    assert buf.is_novel(pose(rotvec=(0, math.radians(15), 0)))
    assert not buf.is_novel(pose(x=0.05, rotvec=(math.radians(5), 0, 0)))
    # the thresholds are taken w.r.t. every keyframe: revisiting a place adds nothing
    buf.add(make_frame(pose(x=1.0))[0], feats())
    assert not buf.is_novel(pose(x=0.96))
    assert buf.is_novel(pose(x=0.5))


def test_frame_stored_downsampled_with_scaled_intrinsics():
    buf = KeyframeBuffer(KeyframeConfig(width=16))
    frame, small_rgb, small_depth = make_frame(pose(), seed=3)
    slot = buf.add(frame, feats())
    assert slot == 0 and len(buf) == 1 and buf.size == (16, 12)
    assert buf.rgb[0].dtype == torch.uint8 and buf.feat.dtype == torch.float16
    np.testing.assert_array_equal(buf.rgb[0].numpy(), small_rgb)
    np.testing.assert_allclose(buf.depth[0].numpy(), small_depth)
    cam = buf.cameras[0]
    assert (cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height) == (15.0, 14.0, 8.25, 5.5, 16, 12)
    assert buf.has_depth


def test_invalid_depth_stored_as_unknown():
    buf = KeyframeBuffer(KeyframeConfig(width=W))
    frame, _, _ = make_frame(pose())
    frame.depth[0, 0] = np.nan
    frame.depth[1, 1] = -2.0
    frame.depth[2, 2] = np.inf
    buf.add(frame, feats())
    d = buf.depth[0]
    assert d[0, 0] == 0 and d[1, 1] == 0 and d[2, 2] == 0
    assert torch.isfinite(d).all() and (d >= 0).all()
    buf2 = KeyframeBuffer(KeyframeConfig(width=16))
    buf2.add(make_frame(pose(), depth=False)[0], feats())
    assert not buf2.has_depth


def orbit_pose(i):
    a = 0.37 * i
    eye = np.array([2 * math.cos(a), 2 * math.sin(a), 0.5 + 0.3 * math.sin(0.11 * i)])
    return look_at(eye, [0, 0, 0])


def test_buffer_stays_bounded_and_never_evicts_the_newest():
    cfg = KeyframeConfig(max_keyframes=6, width=16)
    buf = KeyframeBuffer(cfg)
    rgb_ptr = None
    prev_stamp = None
    for i in range(60):
        frame = make_frame(orbit_pose(i), stamp=float(i), seed=i)[0]
        slot = buf.add(frame, feats(i))
        assert len(buf) == min(i + 1, 6)
        assert buf.rgb.shape[0] == 6                  # memory allocated once, bounded
        if rgb_ptr is None:
            rgb_ptr = buf.rgb.data_ptr()
        assert buf.rgb.data_ptr() == rgb_ptr
        assert buf.stamps[slot] == float(i)
        np.testing.assert_allclose(buf.poses[slot], frame.T_world_cam)
        if prev_stamp is not None:
            assert prev_stamp in buf.stamps           # the previous newest survived
        assert len(set(buf.stamps)) == len(buf)
        prev_stamp = float(i)


def test_replaces_the_most_redundant_keyframe():
    buf = KeyframeBuffer(KeyframeConfig(max_keyframes=5, width=16))
    xs = [0.0, 1.0, 1.01, 2.0, 3.0]
    for i, x in enumerate(xs):
        buf.add(make_frame(pose(x=x), stamp=float(i))[0], feats())
    buf.add(make_frame(pose(x=5.0), stamp=5.0)[0], feats())
    kept = sorted(T[0, 3] for T in buf.poses)
    assert len(kept) == 5
    assert 5.0 in kept and 0.0 in kept and 2.0 in kept and 3.0 in kept
    assert (1.0 in kept) != (1.01 in kept)            # one of the near-duplicate pair went


def test_newest_is_kept_even_when_it_is_the_most_redundant():
    buf = KeyframeBuffer(KeyframeConfig(max_keyframes=4, width=16))
    for i, x in enumerate([0.0, 20.0, 21.0, 40.0]):
        buf.add(make_frame(pose(x=x), stamp=float(i))[0], feats())
    buf.add(make_frame(pose(x=20.5), stamp=4.0)[0], feats())     # replaces 20 or 21
    kept = sorted(T[0, 3] for T in buf.poses)
    assert 20.5 in kept and ((20.0 in kept) != (21.0 in kept))
    # the newest (20.5) and its twin are now the closest pair: the twin must go, not the newest
    buf.add(make_frame(pose(x=60.0), stamp=5.0)[0], feats())
    kept = sorted(T[0, 3] for T in buf.poses)
    assert kept == [0.0, 20.5, 40.0, 60.0]


def filled_buffer(n=3, width=16, max_keyframes=8, depth=True):
    buf = KeyframeBuffer(KeyframeConfig(max_keyframes=max_keyframes, width=width, newest_fraction=0.25))
    small = []
    for i in range(n):
        T = look_at([0.3 * i, -1.0 + 0.2 * i, 0.4 * i - 2.0], [0.1 * i, 0.2, 0.5])
        frame, srgb, sdepth = make_frame(T, stamp=float(i), seed=10 + i, depth=depth)
        buf.add(frame, feats(i))
        small.append((srgb, sdepth))
    return buf, small


def slots_of(buf, origins):
    centres = torch.tensor(np.stack([T[:3, 3] for T in buf.poses]), dtype=torch.float32)
    dist = (origins[:, None] - centres[None]).norm(dim=-1)
    assert (dist.min(1).values < 1e-5).all()         # every origin is a keyframe camera centre
    return dist.argmin(1)


def test_sampled_rays_match_stored_pixels():
    buf, small = filled_buffer()
    n = 600
    b = buf.sample(n, generator=torch.Generator().manual_seed(0))
    assert b.origins.shape == b.dirs.shape == b.rgb.shape == (n, 3)
    assert b.depth.shape == (n,) and b.feat.shape == (n, D)
    assert b.rgb.dtype == torch.float32 and (b.rgb >= 0).all() and (b.rgb <= 1).all()
    slots = slots_of(buf, b.origins)
    assert set(slots.tolist()) == {0, 1, 2}
    # a quarter (and then some, from the uniform share) comes from the newest keyframe
    assert int((slots == 2).sum()) >= n // 4
    checked = 0
    for i in range(n):
        s = int(slots[i])
        T, cam = buf.poses[s], buf.cameras[s]
        d_cam = T[:3, :3].T @ b.dirs[i].double().numpy()
        assert d_cam[2] == pytest.approx(1.0, abs=1e-5)         # unit z in the camera frame
        p = b.origins[i].double().numpy() + float(b.depth[i]) * b.dirs[i].double().numpy()
        uv, z = project_points(p[None], cam, T)
        assert z[0] == pytest.approx(float(b.depth[i]), rel=1e-5)
        u, v = uv[0]
        assert 0 <= u <= cam.width and 0 <= v <= cam.height
        if min(u % 1, 1 - u % 1, v % 1, 1 - v % 1) < 1e-3:
            continue                                             # too close to a pixel border to say
        ui, vi = int(u), int(v)
        srgb, sdepth = small[s]
        np.testing.assert_allclose(b.rgb[i].numpy(), srgb[vi, ui] / 255.0, atol=1e-6)
        assert float(b.depth[i]) == pytest.approx(float(sdepth[vi, ui]), rel=1e-6)
        checked += 1
    assert checked > 0.9 * n


def test_sampled_features_are_bilinear_in_the_patch_grid():
    # features linear in the patch indices: bilinear interpolation reproduces them exactly
    buf = KeyframeBuffer(KeyframeConfig(width=16))
    ii, jj = torch.meshgrid(torch.arange(FH, dtype=torch.float32), torch.arange(FW, dtype=torch.float32),
                            indexing='ij')
    f = torch.stack([ii, jj, torch.ones_like(ii), ii + 2 * jj], -1)
    buf.add(make_frame(pose())[0], f)
    b = buf.sample(300, generator=torch.Generator().manual_seed(1))
    cam = buf.cameras[0]
    d_cam = b.dirs.double().numpy()                       # identity pose
    u = cam.fx * d_cam[:, 0] + cam.cx
    v = cam.fy * d_cam[:, 1] + cam.cy
    # patch (i, j) is centred at ((j + 0.5) w / FW, (i + 0.5) h / FH); clamp at the outer half patches
    gx = np.clip(u / cam.width * FW - 0.5, 0, FW - 1)
    gy = np.clip(v / cam.height * FH - 0.5, 0, FH - 1)
    expected = np.stack([gy, gx, np.ones_like(gx), gy + 2 * gx], 1)
    np.testing.assert_allclose(b.feat.numpy(), expected, atol=2e-3)


def test_feature_at_patch_centre_is_the_stored_patch_feature():
    buf, _ = filled_buffer()
    jj, ii = np.meshgrid(np.arange(FW), np.arange(FH))
    x = torch.tensor((jj.ravel() + 0.5) / FW, dtype=torch.float32)
    y = torch.tensor((ii.ravel() + 0.5) / FH, dtype=torch.float32)
    for s in range(len(buf)):
        slots = torch.full((len(x),), s)
        got = buf.bilinear_feat(slots, x, y).reshape(FH, FW, D)
        want = feats(s).to(torch.float16).float()
        torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-3)


def test_features_resampled_to_the_first_grid_size():
    buf = KeyframeBuffer(KeyframeConfig(width=16))
    buf.add(make_frame(pose())[0], feats())
    buf.add(make_frame(pose(x=1.0))[0], torch.ones(2 * FH, 2 * FW, D))
    assert buf.feat.shape[1:] == (FH, FW, D)
    torch.testing.assert_close(buf.feat[1].float(), torch.ones(FH, FW, D))


def test_sample_from_empty_buffer_raises():
    with pytest.raises(RuntimeError):
        KeyframeBuffer().sample(10)


def test_state_dict_round_trip(tmp_path):
    buf, _ = filled_buffer(n=4, max_keyframes=4)
    buf.add(make_frame(pose(x=7.0), stamp=9.0, seed=99)[0], feats(9))    # a replacement: order not 0..k-1
    state = buf.state_dict()
    path = tmp_path / 'kf.pt'
    torch.save(state, path)
    state = torch.load(path, weights_only=True)            # loadable by the safe map loader
    other = KeyframeBuffer(KeyframeConfig(max_keyframes=4, width=64))
    other.load_state_dict(state)
    assert len(other) == len(buf) == 4
    assert other.size == buf.size and other.feat_size == buf.feat_size
    s1, s2 = buf.state_dict(), other.state_dict()
    assert s1.keys() == s2.keys()
    for k in s1:
        if isinstance(s1[k], torch.Tensor):
            assert torch.equal(s1[k], s2[k]), k
        else:
            assert s1[k] == s2[k], k
    assert other.cameras == buf.cameras
    b1 = buf.sample(200, generator=torch.Generator().manual_seed(5))
    b2 = other.sample(200, generator=torch.Generator().manual_seed(5))
    for name in ('origins', 'dirs', 'rgb', 'depth', 'feat'):
        torch.testing.assert_close(getattr(b1, name), getattr(b2, name))
    # the loaded buffer keeps working: the newest is still the newest
    before = set(other.stamps)
    other.add(make_frame(pose(x=-7.0), stamp=10.0, seed=100)[0], feats(10))
    assert 9.0 in other.stamps and 10.0 in other.stamps
    assert len(set(other.stamps) - before) == 1


def test_load_state_dict_checks():
    buf, _ = filled_buffer(n=3)
    state = buf.state_dict()
    with pytest.raises(ValueError):
        KeyframeBuffer(KeyframeConfig(max_keyframes=2)).load_state_dict(state)
    bad = dict(state, rgb=state['rgb'][:, :-1])
    with pytest.raises(ValueError):
        KeyframeBuffer().load_state_dict(bad)
    empty = KeyframeBuffer()
    empty.load_state_dict(KeyframeBuffer().state_dict())
    assert len(empty) == 0


# -- teacher patch grids and patch sampling (the trainer's patch loss) ---------------------------------


def patch_buffer(n=3, holdout_every=0):
    buf = KeyframeBuffer(KeyframeConfig(width=16, holdout_every=holdout_every))
    for i in range(n):
        f = feats(i)
        upsampled = f.repeat_interleave(2, 0).repeat_interleave(2, 1)
        buf.add(make_frame(pose(x=float(i)), stamp=float(i), seed=i)[0], upsampled, f)
    return buf


def test_patch_rays_fall_inside_their_patch_and_carry_its_token():
    buf = patch_buffer()
    assert buf.patch_size == (FW, FH) and buf.feat_size == (2 * FW, 2 * FH)
    pb = buf.sample_patches(40, 8, generator=torch.Generator().manual_seed(3))
    assert len(pb.rays) == 320 and pb.target.shape == (40, D) and pb.per_patch == 8
    slots = slots_of(buf, pb.rays.origins).reshape(40, 8)
    assert (slots == slots[:, :1]).all()                       # one keyframe per patch
    for p in range(40):
        s = int(slots[p, 0])
        cam, T = buf.cameras[s], buf.poses[s]
        d_cam = (torch.as_tensor(T[:3, :3].T, dtype=torch.float32) @ pb.rays.dirs[p * 8:(p + 1) * 8].T).T.numpy()
        u = cam.fx * d_cam[:, 0] / d_cam[:, 2] + cam.cx
        v = cam.fy * d_cam[:, 1] / d_cam[:, 2] + cam.cy
        col, row = np.floor(u / cam.width * FW), np.floor(v / cam.height * FH)
        assert len(set(col.tolist())) == 1 and len(set(row.tolist())) == 1, (u, v)   # all in one patch
        want = feats(s).to(torch.float16).float()[int(row[0]), int(col[0])]
        torch.testing.assert_close(pb.target[p], want)
    assert set(slots[:, 0].tolist()) == {0, 1, 2}


def test_patches_come_only_from_keyframes_that_teach_features():
    buf = patch_buffer(n=4, holdout_every=2)                   # insertions 1 and 3 are held out
    assert buf.patch_slots() == [0, 2]
    pb = buf.sample_patches(50, 4, generator=torch.Generator().manual_seed(0))
    assert set(slots_of(buf, pb.rays.origins).tolist()) == {0, 2}
    assert (pb.rays.feat_weight == 1).all()


def test_no_patch_grid_no_patch_sampling():
    buf, _ = filled_buffer()
    assert buf.patch is None and buf.sample_patches(10, 4) is None
    buf = patch_buffer(n=1)
    buf.add(make_frame(pose(x=5.0))[0], feats(5), torch.ones(FH + 1, FW, D))   # other grid size: not kept
    assert buf.has_patch[:2].tolist() == [True, False]
    buf.add(make_frame(pose(x=9.0))[0], feats(6))                              # none given
    assert buf.patch_slots() == [0]


def test_patch_grids_survive_a_state_dict_round_trip_and_old_maps_load_without_them():
    buf = patch_buffer()
    state = buf.state_dict()
    other = KeyframeBuffer(KeyframeConfig(width=16))
    other.load_state_dict(state)
    assert other.patch_size == buf.patch_size
    assert torch.equal(other.patch[:3], buf.patch[:3]) and other.has_patch[:3].all()
    old = {k: v for k, v in state.items() if k not in ('patch', 'patch_size', 'has_patch')}
    legacy = KeyframeBuffer(KeyframeConfig(width=16))
    legacy.load_state_dict(old)
    assert legacy.patch is None and legacy.sample_patches(4, 4) is None
    with pytest.raises(ValueError):
        KeyframeBuffer(KeyframeConfig(width=16)).load_state_dict(dict(state, patch=state['patch'][:, :-1]))
