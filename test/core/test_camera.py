"""core/camera: quaternions, poses, interpolation, look_at, rays, back-projection, projection."""
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from n3f_ros.core.camera import (
    GeometryError,
    PinholeCamera,
    backproject_depth,
    interpolate_pose,
    invert_pose,
    look_at,
    pixel_grid,
    pixel_rays,
    pose_from_xyz_quat,
    pose_to_xyz_quat,
    project_points,
    quat_to_rot,
    rot_to_quat,
    rotation_angle,
    slerp,
)

CAM = PinholeCamera(fx=50.0, fy=45.0, cx=31.0, cy=23.5, width=64, height=48)


def random_pose(rng):
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=rng).as_matrix()
    T[:3, 3] = rng.uniform(-3, 3, 3)
    return T


def axis_angle_quat(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    return np.r_[axis * math.sin(angle / 2), math.cos(angle / 2)]


# --- quaternions ------------------------------------------------------------------------------

def test_quaternion_rotation_round_trip_random_and_half_turns():
    rng = np.random.default_rng(0)
    rots = list(Rotation.random(200, random_state=rng).as_matrix())
    # half turns and near-half turns exercise every branch of the matrix -> quaternion conversion
    for axis in np.eye(3).tolist() + [[1, 1, 0], [0, 1, -1], [1, -1, 1]]:
        for angle in (math.pi, math.pi - 1e-3, 2.5):
            rots.append(Rotation.from_rotvec(np.asarray(axis, float) / np.linalg.norm(axis) * angle).as_matrix())
    for R in rots:
        q = rot_to_quat(R)
        assert q.shape == (4,)
        assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-12)
        assert q[3] >= 0
        np.testing.assert_allclose(quat_to_rot(q), R, atol=1e-9)
        # same convention (x, y, z, w) as scipy / geometry_msgs, up to the sign ambiguity
        q_ref = Rotation.from_matrix(R).as_quat()
        assert min(np.abs(q - q_ref).max(), np.abs(q + q_ref).max()) < 1e-9


def test_quat_to_rot_matches_known_rotation():
    # +90 degrees about z maps x to y
    R = quat_to_rot(axis_angle_quat([0, 0, 1], math.pi / 2))
    np.testing.assert_allclose(R @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(R @ [0, 0, 1], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(quat_to_rot([0, 0, 0, 1]), np.eye(3))


@pytest.mark.parametrize('q', [
    [0, 0, 0, 0], [0, 0, 0, 2.0], [0.1, 0.1, 0.1, 0.9], [float('nan'), 0, 0, 1],
    [0, float('inf'), 0, 1], [0, 0, 0, 1.01],
])
def test_invalid_quaternion_raises(q):
    with pytest.raises(GeometryError):
        quat_to_rot(q)
    with pytest.raises(GeometryError):
        pose_from_xyz_quat([0, 0, 0], q)


def test_nearly_unit_quaternion_is_accepted_and_normalised():
    q = np.array([0.0, 0.0, 0.0, 1.0004])
    R = quat_to_rot(q)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)


@pytest.mark.parametrize('xyz', [[float('nan'), 0, 0], [0, 0, float('inf')]])
def test_non_finite_position_raises(xyz):
    with pytest.raises(GeometryError):
        pose_from_xyz_quat(xyz, [0, 0, 0, 1])


def test_pose_xyz_quat_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(20):
        T = random_pose(rng)
        xyz, q = pose_to_xyz_quat(T)
        np.testing.assert_allclose(pose_from_xyz_quat(xyz, q), T, atol=1e-9)


# --- poses ------------------------------------------------------------------------------------

def test_invert_pose():
    rng = np.random.default_rng(2)
    for _ in range(20):
        T = random_pose(rng)
        Ti = invert_pose(T)
        np.testing.assert_allclose(Ti @ T, np.eye(4), atol=1e-10)
        np.testing.assert_allclose(T @ Ti, np.eye(4), atol=1e-10)
        np.testing.assert_allclose(Ti, np.linalg.inv(T), atol=1e-10)
        p = rng.normal(size=3)
        np.testing.assert_allclose((Ti @ np.r_[(T @ np.r_[p, 1])[:3], 1])[:3], p, atol=1e-10)


def test_slerp_endpoints_and_half_angle():
    rng = np.random.default_rng(3)
    for _ in range(20):
        axis = rng.normal(size=3)
        angle = rng.uniform(0.1, 3.0)
        q0 = Rotation.random(random_state=rng).as_quat()
        q1 = (Rotation.from_rotvec(axis / np.linalg.norm(axis) * angle) * Rotation.from_quat(q0)).as_quat()
        np.testing.assert_allclose(quat_to_rot(slerp(q0, q1, 0.0)), quat_to_rot(q0), atol=1e-9)
        np.testing.assert_allclose(quat_to_rot(slerp(q0, q1, 1.0)), quat_to_rot(q1), atol=1e-9)
        for alpha in (0.25, 0.5, 0.8):
            qa = slerp(q0, q1, alpha)
            assert np.linalg.norm(qa) == pytest.approx(1.0, abs=1e-9)
            Ra = quat_to_rot(qa)
            R0, R1 = quat_to_rot(q0), quat_to_rot(q1)
            assert rotation_angle(Ra @ R0.T) == pytest.approx(alpha * angle, abs=1e-7)
            assert rotation_angle(R1 @ Ra.T) == pytest.approx((1 - alpha) * angle, abs=1e-7)
        # q and -q are the same rotation: slerp must take the short way either way
        np.testing.assert_allclose(quat_to_rot(slerp(q0, -q1, 0.5)), quat_to_rot(slerp(q0, q1, 0.5)),
                                   atol=1e-9)


def test_slerp_of_nearly_equal_quaternions_is_unit_and_between():
    q0 = axis_angle_quat([0, 0, 1], 0.3)
    q1 = axis_angle_quat([0, 0, 1], 0.3 + 1e-4)
    q = slerp(q0, q1, 0.5)
    assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-12)
    assert rotation_angle(quat_to_rot(q)) == pytest.approx(0.3 + 0.5e-4, abs=1e-8)


def test_interpolate_pose():
    T0 = pose_from_xyz_quat([1.0, 2.0, 3.0], axis_angle_quat([1, 0, 0], 0.2))
    T1 = pose_from_xyz_quat([3.0, -2.0, 4.0], axis_angle_quat([1, 0, 0], 1.4))
    np.testing.assert_allclose(interpolate_pose(T0, T1, 0.0), T0, atol=1e-9)
    np.testing.assert_allclose(interpolate_pose(T0, T1, 1.0), T1, atol=1e-9)
    Tm = interpolate_pose(T0, T1, 0.25)
    np.testing.assert_allclose(Tm[:3, 3], [1.5, 1.0, 3.25], atol=1e-12)
    np.testing.assert_allclose(Tm[:3, :3], quat_to_rot(axis_angle_quat([1, 0, 0], 0.5)), atol=1e-9)
    np.testing.assert_allclose(Tm[3], [0, 0, 0, 1])


def test_rotation_angle():
    for angle in (0.0, 0.3, 1.7, math.pi):
        R = Rotation.from_rotvec([0.0, angle, 0.0]).as_matrix()
        assert rotation_angle(R) == pytest.approx(angle, abs=1e-6)


# --- look_at ----------------------------------------------------------------------------------

@pytest.mark.parametrize('eye,target', [
    ([2.0, 0.0, 1.0], [0.0, 0.0, 0.0]),
    ([-1.0, 3.0, 0.5], [0.5, 0.2, 0.1]),
    ([0.0, 0.0, 0.0], [1.0, 0.0, 0.0]),
])
def test_look_at_is_opencv_frame(eye, target):
    T = look_at(eye, target, up=(0, 0, 1))
    R = T[:3, :3]
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(T[:3, 3], eye)
    np.testing.assert_allclose(T[3], [0, 0, 0, 1])
    fwd = np.subtract(target, eye) / np.linalg.norm(np.subtract(target, eye))
    np.testing.assert_allclose(R[:, 2], fwd, atol=1e-12)        # z toward the target
    assert R[:, 1] @ [0, 0, 1] < -1e-6                         # y points down (against world up)
    assert abs(R[:, 0] @ [0, 0, 1]) < 1e-12                    # x is horizontal (no roll)
    # the target projects onto the principal point, in front of the camera
    uv, z = project_points(np.array([target]), CAM, T)
    np.testing.assert_allclose(uv[0], [CAM.cx, CAM.cy], atol=1e-9)
    assert z[0] == pytest.approx(np.linalg.norm(np.subtract(target, eye)))


def test_look_at_right_is_image_right():
    # looking along +x with z up: world -y is on the right, world +z is up (smaller v)
    T = look_at([0, 0, 0], [1, 0, 0])
    uv, _ = project_points(np.array([[2.0, -0.5, 0.0], [2.0, 0.0, 0.5]]), CAM, T)
    assert uv[0, 0] > CAM.cx
    assert uv[1, 1] < CAM.cy


def test_look_at_straight_down_is_still_a_rotation():
    T = look_at([0, 0, 2], [0, 0, 0], up=(0, 0, 1))
    R = T[:3, :3]
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(R[:, 2], [0, 0, -1], atol=1e-12)


# --- rays, depth, projection -------------------------------------------------------------------

def test_pixel_grid_centres():
    g = pixel_grid(4, 3)
    assert g.shape == (12, 2)
    np.testing.assert_allclose(g[0], [0.5, 0.5])
    np.testing.assert_allclose(g[1], [1.5, 0.5])        # row-major: u varies fastest
    np.testing.assert_allclose(g[-1], [3.5, 2.5])
    assert pixel_grid(4, 3, stride=2).shape == (4, 2)


def test_principal_point_ray_is_optical_axis_and_t_is_z_depth():
    rng = np.random.default_rng(4)
    T = random_pose(rng)
    o, d = pixel_rays(CAM, T, [[CAM.cx, CAM.cy]])
    np.testing.assert_allclose(o[0], T[:3, 3])
    np.testing.assert_allclose(d[0], T[:3, 2], atol=1e-12)
    uv = rng.uniform(0, 64, (50, 2))
    o, d = pixel_rays(CAM, T, uv)
    assert o.shape == d.shape == (50, 3)
    T_cam_world = invert_pose(T)
    for t in (0.3, 2.0):
        p = o + t * d
        pc = p @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
        np.testing.assert_allclose(pc[:, 2], t, atol=1e-9)     # z-depth, not range
        np.testing.assert_allclose(CAM.fx * pc[:, 0] / pc[:, 2] + CAM.cx, uv[:, 0], atol=1e-9)
        np.testing.assert_allclose(CAM.fy * pc[:, 1] / pc[:, 2] + CAM.cy, uv[:, 1], atol=1e-9)
    # off-axis rays are longer than unit: t is not the Euclidean distance
    assert np.all(np.linalg.norm(d, axis=1) >= 1.0 - 1e-12)


def test_backproject_then_project_gives_pixel_centres_and_depths():
    rng = np.random.default_rng(5)
    T = random_pose(rng)
    depth = rng.uniform(0.2, 5.0, (CAM.height, CAM.width)).astype(np.float32)
    depth[3, 7] = 0.0
    depth[10, 1] = np.nan
    depth[20, 30] = -1.0
    depth[40, 60] = np.inf
    pts, idx = backproject_depth(depth, CAM, T)
    assert len(pts) == len(idx) == CAM.width * CAM.height - 4
    for bad in (3 * 64 + 7, 10 * 64 + 1, 20 * 64 + 30, 40 * 64 + 60):
        assert bad not in idx
    uv, z = project_points(pts, CAM, T)
    np.testing.assert_allclose(uv[:, 0], idx % CAM.width + 0.5, atol=1e-7)
    np.testing.assert_allclose(uv[:, 1], idx // CAM.width + 0.5, atol=1e-7)
    np.testing.assert_allclose(z, depth.reshape(-1)[idx], rtol=1e-6)


def test_backproject_stride_and_size_check():
    depth = np.ones((CAM.height, CAM.width), np.float32)
    pts, idx = backproject_depth(depth, CAM, np.eye(4), stride=4)
    assert len(pts) == (64 // 4) * (48 // 4)
    assert np.all(idx % CAM.width % 4 == 0) and np.all(idx // CAM.width % 4 == 0)
    np.testing.assert_allclose(pts[:, 2], 1.0)
    with pytest.raises(GeometryError):
        backproject_depth(np.ones((CAM.height, CAM.width + 1), np.float32), CAM, np.eye(4))


def test_project_points_behind_camera_has_negative_z():
    _, z = project_points(np.array([[0.0, 0.0, -1.0], [0.0, 0.0, 2.0]]), CAM, np.eye(4))
    assert z[0] < 0 < z[1]


# --- intrinsics -------------------------------------------------------------------------------

def test_scaled_intrinsics_keep_rays():
    cam2 = CAM.scaled(128, 96)
    assert cam2.size == (128, 96)
    assert (cam2.fx, cam2.fy, cam2.cx, cam2.cy) == (100.0, 90.0, 62.0, 47.0)
    rng = np.random.default_rng(6)
    T = random_pose(rng)
    uv = rng.uniform(0, 48, (30, 2))
    _, d1 = pixel_rays(CAM, T, uv)
    _, d2 = pixel_rays(cam2, T, uv * 2)     # same continuous image position at twice the size
    np.testing.assert_allclose(d1, d2, atol=1e-12)
    # non-uniform scale
    cam3 = CAM.scaled(32, 12)
    _, d3 = pixel_rays(cam3, T, uv * [0.5, 0.25])
    np.testing.assert_allclose(d1, d3, atol=1e-12)


def test_K_and_from_K_round_trip():
    K = CAM.K
    np.testing.assert_allclose(K, [[50, 0, 31], [0, 45, 23.5], [0, 0, 1]])
    assert PinholeCamera.from_K(K.ravel().tolist(), 64, 48) == CAM


@pytest.mark.parametrize('kw', [
    dict(fx=0.0), dict(fy=-1.0), dict(fx=float('nan')), dict(cx=float('inf')),
    dict(width=0), dict(height=-5),
])
def test_invalid_intrinsics_raise(kw):
    args = dict(fx=10.0, fy=10.0, cx=5.0, cy=5.0, width=10, height=10)
    args.update(kw)
    with pytest.raises(GeometryError):
        PinholeCamera(**args)
