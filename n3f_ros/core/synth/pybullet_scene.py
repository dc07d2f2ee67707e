"""Photo-textured tabletop scenes built from pybullet's model library (``pybullet_data``) and
rendered by its CPU TinyRenderer (no GPU, no display, no ROS).

World frame: z up, metres; the table top is the plane z = 0 centred on the origin, as in
``scene.TabletopScene``, and instance ids follow the same convention: 0 = nothing hit, 1 = the
table (support), 2.. = objects. A scene is a pure function of its seed: the models, their
scales and yaws, the layout and the physics settling (``p.DIRECT``, fixed time step, fixed call
order) are all seeded, so the same seed gives bit-identical images.

Rendering (:meth:`PybulletScene.render`) turns an OpenCV camera (``PinholeCamera`` + pose
``T_world_cam`` of the optical frame, x right, y down, z forward) into OpenGL view and
projection matrices (:func:`gl_view_matrix`, :func:`gl_projection_matrix`, compensating where
TinyRenderer samples a pixel: :data:`TINY_RENDERER_SAMPLE`), and the GL depth buffer back into
metric z-depth (:func:`gl_depth_to_z`). ``core.synth.geometry_check`` and
``test/core/test_pybullet_scene.py`` check these conventions against the known table plane,
object positions and a second view.
"""
from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass

import numpy as np

from n3f_ros.core.camera import GeometryError, PinholeCamera, invert_pose, pose_from_xyz_quat
from n3f_ros.core.synth import texture
from n3f_ros.core.synth.scene import TABLE_ID, SceneObject

SOURCE = 'pybullet'
#: clip planes of the rendering frustum, metres (depth outside [NEAR, FAR] is not rendered)
NEAR, FAR = 0.02, 8.0
#: table top (x, y) size and thickness, metres; the top face is z = 0 (pybullet's table.obj top)
TABLE_SIZE = (1.5, 1.0)
TABLE_THICKNESS = 0.05
#: objects are placed (footprint centres) inside a disc of this radius around the table centre
OBJECT_REGION = 0.26
#: free space kept between footprints of objects that should not touch, metres
CLEARANCE = 0.015
#: two objects "touch" when their collision shapes are at most this far apart, metres
TOUCH_DISTANCE = 0.002
#: objects whose largest extent is below this are "small" (below a teacher patch at ~0.7 m)
SMALL_SIZE = 0.05
#: physics settling: time step (s) and number of steps before and after the touching pair is closed
TIME_STEP = 1.0 / 240.0
SETTLE_STEPS = 240
#: light direction (towards the light, world frame) shared with the open3d scenes; distance (m)
LIGHT_DIR = tuple(float(v) for v in texture.LIGHT_DIR)
LIGHT_DISTANCE = 2.0


@dataclass(frozen=True)
class Model:
    """A model of ``pybullet_data`` as used in the scenes.

    urdf:     path relative to ``pybullet_data.getDataPath()``.
    scale:    ``globalScaling`` applied at load.
    texture:  image the model's .mtl maps onto it (relative path), None if plain coloured.
    rpy:      base orientation (roll, pitch, yaw) before the random yaw, radians.
    static:   loaded with zero mass (the URDF's own choice for the tray).
    small:    intended to be smaller than ``SMALL_SIZE`` (checked on the loaded geometry).
    """

    urdf: str
    scale: float = 1.0
    texture: str | None = None
    rpy: tuple = (0.0, 0.0, 0.0)
    static: bool = False
    small: bool = False


#: the model library: every model here ships with ``pip install pybullet`` (pybullet_data)
MODELS = {
    'duck': Model('duck_vhacd.urdf', 1.0, 'duckCM.png'),
    'jenga': Model('jenga/jenga.urdf', 0.8, 'jenga/jenga.png'),
    'soccerball': Model('soccerball.urdf', 0.07, 'colors16.png'),
    'tray': Model('tray/traybox.urdf', 0.3, 'tray/tray.jpg', static=True),
    'mug': Model('objects/mug.urdf', 1.0, None),
    'teddy': Model('teddy_vhacd.urdf', 1.0, None),
    'cube': Model('cube_small.urdf', 0.6, 'cube.png', small=True),
    'domino': Model('domino/domino.urdf', 0.8, 'domino/domino.jpg', rpy=(0.0, -np.pi / 2, 0.0), small=True),
    'ball': Model('sphere_small.urdf', 0.7, 'checker_huge.gif', small=True),
    'lego': Model('lego/lego.urdf', 0.8, None, small=True),
}
LARGE = tuple(k for k, m in MODELS.items() if not m.small)
SMALL = tuple(k for k, m in MODELS.items() if m.small)
#: models that may be pushed against another (not the static tray, not the rolling soccer ball)
TOUCHABLE = tuple(k for k in MODELS if k not in ('tray', 'soccerball'))
TABLE_MESH, TABLE_TEXTURE = 'table/table.obj', 'table/table.png'


class PybulletSceneError(RuntimeError):
    """The scene could not be built (model missing, layout that does not fit or does not settle)."""


# ---------------------------------------------------------------------------------------------
# OpenCV camera <-> OpenGL matrices, depth buffer -> z-depth (pure numpy)
# ---------------------------------------------------------------------------------------------

#: OpenCV optical frame (x right, y down, z forward) -> OpenGL eye frame (x right, y up, z back)
CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


def gl_view_matrix(T_world_cam) -> np.ndarray:
    """OpenGL view matrix (4, 4) (world -> GL eye) of an OpenCV camera at pose ``T_world_cam``."""
    T = np.asarray(T_world_cam, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise GeometryError(f'T_world_cam must be a finite 4x4 matrix, got shape {T.shape}')
    return CV_TO_GL @ invert_pose(T)


#: where pybullet's TinyRenderer samples image pixel (u, v), in OpenCV continuous pixel coordinates
#: relative to (u, v), when given a projection built for the camera as is: (0, 1), i.e. pixel
#: corners in its y-up window, flipped (measured against the analytic table plane: with this
#: offset compensated the z-depth error on the table is ~1e-6 m, without it ~1.5 mm at 320x240)
TINY_RENDERER_SAMPLE = (0.0, 1.0)


def gl_projection_matrix(camera: PinholeCamera, near: float = NEAR, far: float = FAR,
                         sample: tuple = (0.5, 0.5)) -> np.ndarray:
    """OpenGL projection (4, 4) (GL eye frame -> clip space) such that pixel (u, v) of the
    rendered image (row 0 on top) shows the ray through (u + 0.5, v + 0.5) of ``camera``
    (the project's pixel-centre convention), for any fx, fy, cx, cy.

    ``sample``: where the rasteriser samples pixel (u, v) relative to (u, v) for an uncorrected
    matrix; (0.5, 0.5) for pixel-centre sampling (OpenGL), ``TINY_RENDERER_SAMPLE`` for
    pybullet's TinyRenderer. The principal point is shifted to compensate.
    """
    if not 0.0 < near < far:
        raise ValueError(f'clip planes must satisfy 0 < near < far, got {near}, {far}')
    W, H = camera.size
    cx = camera.cx + (float(sample[0]) - 0.5)
    cy = camera.cy + (float(sample[1]) - 0.5)
    P = np.zeros((4, 4))
    P[0, 0], P[0, 2] = 2.0 * camera.fx / W, 1.0 - 2.0 * cx / W
    P[1, 1], P[1, 2] = 2.0 * camera.fy / H, 2.0 * cy / H - 1.0
    P[2, 2], P[2, 3] = -(far + near) / (far - near), -2.0 * far * near / (far - near)
    P[3, 2] = -1.0
    return P


def gl_depth_to_z(buffer, near: float = NEAR, far: float = FAR) -> np.ndarray:
    """GL depth buffer values in [0, 1] (any shape) -> z-depth in metres (same shape, float32).

    Inverts the perspective depth of :func:`gl_projection_matrix`: ``d = 0`` at ``near``,
    ``d = 1`` at ``far``, ``z = far * near / (far - (far - near) * d)``.
    """
    d = np.asarray(buffer, dtype=np.float64)
    return (far * near / (far - (far - near) * d)).astype(np.float32)


def _gl_list(M: np.ndarray) -> list:
    """Column-major flat list of a (4, 4) matrix, as pybullet (OpenGL) expects."""
    return [float(v) for v in np.asarray(M, dtype=np.float64).T.reshape(-1)]


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send C-level stdout (pybullet's loader warnings) to stderr, so stdout stays clean for
    commands that print results (JSON) there."""
    try:
        fd = os.dup(1)
    except OSError:          # no stdout at all
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(fd, 1)
        os.close(fd)


def _pybullet():
    with _stdout_to_stderr():
        import pybullet
        import pybullet_data
    return pybullet, pybullet_data


# ---------------------------------------------------------------------------------------------
# the scene
# ---------------------------------------------------------------------------------------------

class PybulletScene:
    """A textured table with ``pybullet_data`` objects resting on it; build with :meth:`generate`,
    draw with :meth:`render`. Holds its own pybullet physics client until :meth:`close`.

    objects:  list of ``SceneObject`` (``shape`` is the model key of :data:`MODELS`, ``color``
              the model colour times the mean of its texture image, ``center``/``extent`` the
              axis-aligned box of its visual mesh after settling; world frame, metres).
    touching: list of (instance_id_a, instance_id_b, distance_m) pairs placed in contact.
    """

    SOURCE = SOURCE

    def __init__(self, client: int, body_instance: dict, objects: list, touching: list,
                 bounds: tuple, objects_bounds: tuple, seed: int | None = None):
        self._p, _ = _pybullet()
        self._client = client
        self.seed = seed
        self.objects = list(objects)
        self.touching = list(touching)
        self._bounds = bounds
        self._objects_bounds = objects_bounds
        # segmentation value (body unique id, -1 = nothing) + 1 -> instance id
        lut = np.zeros(max(body_instance) + 2, dtype=np.int32)
        for body, iid in body_instance.items():
            lut[body + 1] = iid
        self._lut = lut
        self._body_instance = dict(body_instance)

    # -----------------------------------------------------------------------------------------
    @classmethod
    def generate(cls, seed: int, n_objects: int | None = None) -> PybulletScene:
        """Seeded scene: the table and ``n_objects`` (default 7..9, at most ``len(MODELS)``) distinct
        models, at least two of them smaller than ``SMALL_SIZE`` and one pair touching.

        Objects are dropped at random yaws and positions (footprints ``CLEARANCE`` apart) and
        settled by ``SETTLE_STEPS`` physics steps; then one small object is slid against a larger
        one until their collision shapes are within ``TOUCH_DISTANCE`` and everything settles
        again. Raises ``PybulletSceneError`` if a layout does not fit or objects leave the table.
        """
        rng = np.random.default_rng([int(seed), 0xB0117E7])
        if n_objects is None:
            n_objects = int(rng.integers(7, 10))
        if not 3 <= int(n_objects) <= len(MODELS):
            raise ValueError(f'n_objects must be in [3, {len(MODELS)}] for pybullet scenes, got {n_objects}')
        n_objects = int(n_objects)
        n_small = min(len(SMALL), max(2, n_objects // 3 + 1))
        small = [str(k) for k in rng.choice(SMALL, size=n_small, replace=False)]
        large = [str(k) for k in rng.choice(LARGE, size=n_objects - n_small, replace=False)]
        keys = [str(k) for k in rng.permutation(large + small)]
        yaws = rng.uniform(-np.pi, np.pi, size=len(keys))
        pusher = str(rng.choice([k for k in keys if MODELS[k].small]))
        anchors = [k for k in keys if k in TOUCHABLE and k != pusher]
        anchor = str(rng.choice([k for k in anchors if not MODELS[k].small] or anchors))
        p, data = _pybullet()
        client = p.connect(p.DIRECT)
        try:
            return cls._build(p, data.getDataPath(), client, rng, keys, yaws, anchor, pusher, int(seed))
        except BaseException:
            p.disconnect(physicsClientId=client)
            raise

    @classmethod
    def _build(cls, p, root: str, client: int, rng, keys, yaws, anchor: str, pusher: str, seed: int):
        kw = {'physicsClientId': client}
        p.resetSimulation(**kw)
        p.setPhysicsEngineParameter(fixedTimeStep=TIME_STEP, deterministicOverlappingPairs=1, **kw)
        p.setGravity(0.0, 0.0, -9.81, **kw)
        table = cls._load_table(p, root, client)
        bodies = {}
        for key, yaw in zip(keys, yaws):
            bodies[key] = cls._load_model(p, root, client, key, float(yaw))
        # footprint (AABB centre offset from the base, radius) of each object as loaded at the origin
        foot = {}
        for key, b in bodies.items():
            v = visual_vertices(p, client, b)
            lo, hi = v.min(axis=0), v.max(axis=0)
            base = np.asarray(p.getBasePositionAndOrientation(b, **kw)[0])
            foot[key] = ((lo + hi)[:2] / 2 - base[:2], 0.5 * float(np.hypot(*(hi - lo)[:2])), lo[2] - base[2])
        order = [k for k in keys if k != pusher]
        centres = _place([foot[k][1] for k in order], rng, OBJECT_REGION, CLEARANCE)
        for key, c in zip(order, centres):
            cls._put(p, client, bodies[key], c - foot[key][0], foot[key][2], 0.0 if MODELS[key].static else 0.002)
        # the pusher starts next to its anchor (free of the others), then is slid against it
        others = {k: c for k, c in zip(order, centres)}
        start = _place_next_to(others[anchor], foot[anchor][1], foot[pusher][1],
                               [(c, foot[k][1]) for k, c in others.items() if k != anchor], rng, CLEARANCE)
        cls._put(p, client, bodies[pusher], start - foot[pusher][0], foot[pusher][2], 0.002)
        cls._settle(p, client)
        cls._slide_into_contact(p, client, bodies[pusher], bodies[anchor])
        cls._settle(p, client)
        dist = _distance(p, client, bodies[pusher], bodies[anchor])
        if dist > TOUCH_DISTANCE:
            raise PybulletSceneError(f'seed {seed}: {pusher} and {anchor} ended {dist * 1000:.1f} mm apart')

        body_instance = {table: TABLE_ID}
        objects, los, his = [], [], []
        for i, key in enumerate(keys):
            b, iid = bodies[key], i + 2
            body_instance[b] = iid
            v = visual_vertices(p, client, b)
            lo, hi = v.min(axis=0), v.max(axis=0)
            c = (lo + hi) / 2
            if lo[2] < -0.005 or np.hypot(c[0], c[1]) > OBJECT_REGION + 0.1:
                raise PybulletSceneError(f'seed {seed}: {key} left the table while settling (centre {c.round(3)})')
            los.append(lo)
            his.append(hi)
            objects.append(SceneObject(iid, f'{key}_{iid}', key, _model_colour(p, client, b, root, MODELS[key]),
                                       tuple(c.tolist()), tuple((hi - lo).tolist())))
        iid = {key: body_instance[bodies[key]] for key in keys}
        touching = [(iid[anchor], iid[pusher], float(dist))]
        olo, ohi = np.min(los, axis=0), np.max(his, axis=0)
        tlo = np.array([-TABLE_SIZE[0] / 2, -TABLE_SIZE[1] / 2, -TABLE_THICKNESS])
        thi = np.array([TABLE_SIZE[0] / 2, TABLE_SIZE[1] / 2, 0.0])
        bounds = (np.minimum(tlo, olo), np.maximum(thi, ohi))
        return cls(client, body_instance, objects, touching, bounds, (olo, ohi), seed=seed)

    @staticmethod
    def _load_table(p, root: str, client: int) -> int:
        """The top of pybullet's textured table (``table/table.obj``, wood photo texture) as one
        static box whose top face is z = 0 (the URDF's legs are left out: never in view)."""
        kw = {'physicsClientId': client}
        sx, sy = TABLE_SIZE
        mesh = os.path.join(root, TABLE_MESH)
        if not os.path.exists(mesh):
            raise PybulletSceneError(f'pybullet_data has no {TABLE_MESH} (looked in {root})')
        with _stdout_to_stderr():
            vis = p.createVisualShape(p.GEOM_MESH, fileName=mesh, meshScale=[sx, sy, TABLE_THICKNESS], **kw)
            col = p.createCollisionShape(p.GEOM_BOX, halfExtents=[sx / 2, sy / 2, TABLE_THICKNESS / 2], **kw)
            body = p.createMultiBody(0.0, col, vis, basePosition=[0.0, 0.0, -TABLE_THICKNESS / 2], **kw)
            tex = p.loadTexture(os.path.join(root, TABLE_TEXTURE), **kw)
        p.changeVisualShape(body, -1, textureUniqueId=tex, **kw)
        p.changeDynamics(body, -1, lateralFriction=0.8, restitution=0.0, **kw)
        return body

    @staticmethod
    def _load_model(p, root: str, client: int, key: str, yaw: float) -> int:
        kw = {'physicsClientId': client}
        m = MODELS[key]
        path = os.path.join(root, m.urdf)
        if not os.path.exists(path):
            raise PybulletSceneError(f'pybullet_data has no {m.urdf} (looked in {root})')
        orn = p.getQuaternionFromEuler([m.rpy[0], m.rpy[1], m.rpy[2] + yaw])
        with _stdout_to_stderr():
            body = p.loadURDF(path, [0.0, 0.0, 0.0], orn, globalScaling=m.scale,
                              useFixedBase=m.static, **kw)
        p.changeDynamics(body, -1, lateralFriction=0.8, rollingFriction=0.002, spinningFriction=0.002,
                         restitution=0.0, linearDamping=0.2, angularDamping=0.2, **kw)
        return body

    @staticmethod
    def _put(p, client: int, body: int, xy, bottom: float, lift: float) -> None:
        """Move ``body`` (base at ``xy``, orientation kept) so its AABB bottom is ``lift`` above z = 0."""
        _, orn = p.getBasePositionAndOrientation(body, physicsClientId=client)
        p.resetBasePositionAndOrientation(body, [float(xy[0]), float(xy[1]), lift - bottom], orn,
                                          physicsClientId=client)

    @staticmethod
    def _settle(p, client: int) -> None:
        for _ in range(SETTLE_STEPS):
            p.stepSimulation(physicsClientId=client)

    @staticmethod
    def _slide_into_contact(p, client: int, mover: int, anchor: int, gap: float = 0.0003) -> None:
        """Translate ``mover`` horizontally towards ``anchor`` until their collision shapes are
        ``gap`` .. ``TOUCH_DISTANCE / 2`` apart (closest-point iteration; no penetration)."""
        kw = {'physicsClientId': client}
        for _ in range(30):
            pts = p.getClosestPoints(mover, anchor, 1.0, **kw)
            if not pts:
                break
            best = min(pts, key=lambda c: c[8])
            d = float(best[8])
            if d <= TOUCH_DISTANCE / 2:
                break
            step = np.asarray(best[6][:2]) - np.asarray(best[5][:2])     # mover -> anchor, xy
            if np.linalg.norm(step) < 1e-6:
                a = np.asarray(p.getBasePositionAndOrientation(anchor, **kw)[0][:2])
                step = a - np.asarray(p.getBasePositionAndOrientation(mover, **kw)[0][:2])
            step = step / max(np.linalg.norm(step), 1e-9) * (d - gap)
            pos, orn = p.getBasePositionAndOrientation(mover, **kw)
            p.resetBasePositionAndOrientation(mover, [pos[0] + step[0], pos[1] + step[1], pos[2]], orn, **kw)
        p.resetBaseVelocity(mover, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], **kw)

    # -----------------------------------------------------------------------------------------
    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounds of all geometry (table top and objects): (min (3,), max (3,)), metres."""
        return self._bounds[0].copy(), self._bounds[1].copy()

    @property
    def objects_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounds of the objects only (visual meshes after settling), metres."""
        return self._objects_bounds[0].copy(), self._objects_bounds[1].copy()

    @property
    def instance_ids(self) -> list[int]:
        """All instance ids in the scene (table and objects)."""
        return sorted(self._body_instance.values())

    def render(self, camera: PinholeCamera, T_world_cam, shadows: bool = True):
        """Render the view of ``camera`` at pose ``T_world_cam`` (4, 4) (OpenCV optical frame).

        Returns ``rgb`` (H, W, 3) uint8, ``depth`` (H, W) float32 z-depth in metres (0 where
        nothing is hit) and ``instance`` (H, W) int32 (0 = nothing hit, 1 = table, 2.. objects).
        TinyRenderer (CPU); ``shadows`` turns its shadow map on.
        """
        if self._client is None:
            raise PybulletSceneError('the scene is closed')
        W, H = camera.size
        view, proj = gl_view_matrix(T_world_cam), gl_projection_matrix(camera, sample=TINY_RENDERER_SAMPLE)
        p = self._p
        extra = {'shadow': 1, 'lightDistance': LIGHT_DISTANCE} if shadows else {'shadow': 0}
        _, _, rgba, buf, seg = p.getCameraImage(int(W), int(H), _gl_list(view), _gl_list(proj),
                                                lightDirection=list(LIGHT_DIR), renderer=p.ER_TINY_RENDERER,
                                                physicsClientId=self._client, **extra)
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(H, W, 4)[..., :3].copy()   # (H, W, 3)
        seg = np.asarray(seg, dtype=np.int64).reshape(H, W)                         # body id, -1 none
        inst = np.zeros((H, W), dtype=np.int32)
        ok = (seg >= -1) & (seg + 1 < len(self._lut))
        inst[ok] = self._lut[seg[ok] + 1]
        depth = gl_depth_to_z(np.asarray(buf, dtype=np.float32).reshape(H, W))
        hit = inst > 0
        depth[~hit] = 0.0
        rgb[~hit] = np.round(texture.BACKGROUND * 255.0).astype(np.uint8)
        return rgb, depth, inst

    def close(self) -> None:
        """Disconnect the physics client (idempotent); :meth:`render` fails afterwards."""
        if getattr(self, '_client', None) is not None:
            with contextlib.suppress(Exception):
                self._p.disconnect(physicsClientId=self._client)
            self._client = None

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------------------------
# layout helpers
# ---------------------------------------------------------------------------------------------

def _place(radii, rng: np.random.Generator, region: float, clearance: float,
           restarts: int = 50, tries: int = 300) -> np.ndarray:
    """xy centres (N, 2) of discs of ``radii`` inside a disc of radius ``region``, ``clearance`` apart.

    Largest first, rejection sampling, whole layout restarted when one does not fit; raises
    ``PybulletSceneError`` when no layout is found.
    """
    radii = np.asarray(radii, dtype=np.float64)
    for _ in range(restarts):
        out = np.zeros((len(radii), 2))
        placed = []
        for i in np.argsort(-radii, kind='stable'):
            for _ in range(tries):
                r = region * np.sqrt(rng.uniform())
                a = rng.uniform(0, 2 * np.pi)
                c = np.array([r * np.cos(a), r * np.sin(a)])
                if all(np.linalg.norm(c - out[j]) >= radii[i] + radii[j] + clearance for j in placed):
                    out[i] = c
                    placed.append(i)
                    break
            else:
                break
        if len(placed) == len(radii):
            return out
    raise PybulletSceneError(f'{len(radii)} objects do not fit in a {region} m disc')


def _place_next_to(anchor, r_anchor: float, r_new: float, others, rng: np.random.Generator,
                   clearance: float) -> np.ndarray:
    """A footprint centre for a disc of radius ``r_new`` just outside the anchor's footprint
    (``clearance`` away) and free of ``others`` [(centre, radius)], at a seeded bearing."""
    start = rng.uniform(0, 2 * np.pi)
    for k in range(72):
        a = start + k * (2 * np.pi / 72)
        c = np.asarray(anchor) + (r_anchor + r_new + clearance) * np.array([np.cos(a), np.sin(a)])
        if all(np.linalg.norm(c - np.asarray(o)) >= r_new + ro + clearance for o, ro in others):
            return c
    raise PybulletSceneError('no free place next to the anchor object')


def visual_vertices(p, client: int, body: int) -> np.ndarray:
    """World-frame vertices (N, 3) float64 of the visual meshes of ``body``'s base link, metres.

    pybullet reports the base pose at the centre of mass; the visual frames are given in the URDF
    link frame, which sits at the inverse of the local inertial frame from the centre of mass.
    """
    kw = {'physicsClientId': client}
    pos, orn = p.getBasePositionAndOrientation(body, **kw)
    ipos, iorn = p.getDynamicsInfo(body, -1, **kw)[3:5]
    T_world_com = _pose(pos, orn)
    T_link_com = _pose(ipos, iorn)
    T_world_link = T_world_com @ np.linalg.inv(T_link_com)
    out = []
    for shape in p.getVisualShapeData(body, **kw):
        if shape[1] != -1 or shape[2] != p.GEOM_MESH:
            continue
        v = _obj_vertices(shape[4].decode()) * np.asarray(shape[3], dtype=np.float64)   # (N, 3) link-local
        T = T_world_link @ _pose(shape[5], shape[6])
        out.append(v @ T[:3, :3].T + T[:3, 3])
    if not out:
        raise PybulletSceneError(f'body {body} has no visual mesh')
    return np.concatenate(out)


def _pose(xyz, quat_xyzw) -> np.ndarray:
    return pose_from_xyz_quat(np.asarray(xyz, dtype=np.float64), np.asarray(quat_xyzw, dtype=np.float64))


@functools.lru_cache(maxsize=64)
def _obj_vertices(path: str) -> np.ndarray:
    """Vertex positions (N, 3) of a Wavefront .obj file (its ``v`` lines), file units."""
    rows = []
    with open(path, encoding='utf-8', errors='replace') as fh:
        for line in fh:
            if line.startswith('v '):
                rows.append([float(x) for x in line.split()[1:4]])
    if not rows:
        raise PybulletSceneError(f'{path} has no vertices')
    arr = np.asarray(rows, dtype=np.float64)
    arr.setflags(write=False)
    return arr


def _distance(p, client: int, a: int, b: int) -> float:
    """Closest distance (m) between the collision shapes of bodies ``a`` and ``b`` (< 0: overlap)."""
    pts = p.getClosestPoints(a, b, 1.0, physicsClientId=client)
    return float(min(c[8] for c in pts)) if pts else float('inf')


def _model_colour(p, client: int, body: int, root: str, model: Model) -> tuple:
    """Base colour (r, g, b) in [0, 1]: the URDF colour times the mean of the texture image."""
    rgba = np.asarray(p.getVisualShapeData(body, physicsClientId=client)[0][7][:3], dtype=np.float64)
    if model.texture is not None:
        from PIL import Image
        with Image.open(os.path.join(root, model.texture)) as im:
            rgba = rgba * np.asarray(im.convert('RGB'), dtype=np.float64).reshape(-1, 3).mean(axis=0) / 255.0
    return tuple(float(v) for v in np.clip(rgba, 0.0, 1.0))
