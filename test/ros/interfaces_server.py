"""A server process for test_interfaces_dds.py: serves every n3f_interfaces service type under
``--ns`` with answers computed from the request, so the client can tell that each field crossed DDS.

Not the n3f node (its services are wired there): this checks the generated types themselves, built
by scripts/setup_env.sh, in two processes. Prints 'ready' when the services exist.

    python interfaces_server.py --ns /itf --map-path /tmp/default_map.txt
"""
from __future__ import annotations

import argparse
import math
import pathlib

import numpy as np

#: image size the pixel queries are checked against (the "latest image" of this server)
IMAGE_SIZE = (64, 48)
N_POINTS = 40


def object_points(center, n: int = N_POINTS) -> np.ndarray:
    """(n, 3) float32 points on a 5 cm sphere around ``center`` (the server's "object")."""
    k = np.arange(n) + 0.5
    phi, theta = np.arccos(1 - 2 * k / n), math.pi * (1 + 5 ** 0.5) * k
    unit = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)
    return (np.asarray(center) + 0.05 * unit).astype(np.float32)


def box_rotation(u: int, v: int) -> np.ndarray:
    """Box axes: a yaw of (u + v) degrees (so the pose's orientation depends on the request)."""
    a = math.radians(u + v)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1.0]])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--ns', required=True)
    ap.add_argument('--map-path', required=True)
    args = ap.parse_args()

    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    from n3f_interfaces.srv import FilePath, ListPrototypes, QueryObject, SavePrototype
    from n3f_ros.io import encode

    rclpy.init()
    node = rclpy.create_node('itf_server', namespace=args.ns)
    prototypes: set[str] = set()
    state = {'answered': False}

    def query(req, res):
        res.result.header = encode.make_header(req.point.header.stamp, 'map')
        if req.mode == QueryObject.Request.BY_POINT:
            p = np.array([req.point.point.x, req.point.point.y, req.point.point.z])
            if not np.all(np.isfinite(p)):
                res.success, res.message = False, f'non_finite: point {p.tolist()}'
                return res
            center = p
        elif req.mode == QueryObject.Request.BY_NAME:
            if req.name not in prototypes:
                res.success, res.message = False, f'unknown_prototype: {req.name!r}'
                return res
            center = np.array([float(len(req.name)), 0.0, 0.0])
            res.result.name = req.name
        elif req.mode == QueryObject.Request.BY_PIXEL:
            if not (0 <= req.u < IMAGE_SIZE[0] and 0 <= req.v < IMAGE_SIZE[1]):
                res.success, res.message = False, f'bad_pixel: ({req.u}, {req.v}) outside {IMAGE_SIZE}'
                return res
            center = np.array([req.u * 0.01, req.v * 0.01, 1.0])
        else:
            res.success, res.message = False, f'unknown_mode: {req.mode}'
            return res
        xyz = object_points(center)
        sim = np.linspace(0.5, 1.0, len(xyz), dtype=np.float32)
        rgb = np.tile(np.array([[200, 30, 10]], np.uint8), (len(xyz), 1))
        res.result.cloud = encode.pointcloud2_msg({'xyz': xyz, 'rgb': rgb, 'similarity': sim}, res.result.header)
        res.result.num_points = len(xyz)
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = box_rotation(req.u, req.v), xyz.mean(0)
        res.result.pose = encode.pose_stamped_msg(T, res.result.header)
        res.result.box_size.x = res.result.box_size.y = res.result.box_size.z = 0.1
        res.result.score = float(sim.mean())
        res.result.threshold = req.threshold if req.threshold > 0 else 0.42
        res.result.confidence, res.result.feature_source = 0.9, 'student'
        if req.with_mask:
            mask = np.zeros(IMAGE_SIZE[::-1], bool)
            mask[10:20, 5:15] = True
            res.result.mask = encode.image_msg(mask, encode.make_header(req.point.header.stamp, 'camera'))
        if req.with_edit:
            res.result.edit = encode.pointcloud2_msg(
                {'xyz': xyz[:5], 'rgb': rgb[:5], 'label': np.arange(5, dtype=np.uint32)}, res.result.header)
        state['answered'] = True
        res.success, res.message = True, f'{len(xyz)} points'
        return res

    def save_prototype(req, res):
        name = req.name.strip()
        if not name or not state['answered']:
            res.success, res.message = False, 'empty name' if not name else 'no answer to save yet'
            return res
        res.replaced = name in prototypes
        prototypes.add(name)
        res.success, res.message = True, f'saved {name!r}'
        return res

    def list_prototypes(req, res):
        res.names = sorted(prototypes)
        return res

    def resolve(path: str) -> pathlib.Path:
        return pathlib.Path(path or args.map_path).expanduser().resolve()

    def save_map(req, res):
        path = resolve(req.path)
        try:
            path.write_text('\n'.join(sorted(prototypes)))
        except OSError as e:
            res.success, res.message, res.path = False, f'cannot write {path}: {e}', str(path)
            return res
        res.success, res.message, res.path = True, f'saved {len(prototypes)} prototypes', str(path)
        return res

    def load_map(req, res):
        path = resolve(req.path)
        try:
            names = [n for n in path.read_text().split('\n') if n]
        except OSError as e:
            res.success, res.message, res.path = False, f'cannot read {path}: {e}', str(path)
            return res
        prototypes.clear()
        prototypes.update(names)
        res.success, res.message, res.path = True, f'loaded {len(names)} prototypes', str(path)
        return res

    node.create_service(QueryObject, '~/query', query)
    node.create_service(SavePrototype, '~/save_prototype', save_prototype)
    node.create_service(ListPrototypes, '~/list_prototypes', list_prototypes)
    node.create_service(FilePath, '~/save_map', save_map)
    node.create_service(FilePath, '~/load_map', load_map)
    print('ready', flush=True)
    ex = MultiThreadedExecutor(num_threads=2)
    ex.add_node(node)
    try:
        ex.spin()
    except KeyboardInterrupt:
        pass
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
