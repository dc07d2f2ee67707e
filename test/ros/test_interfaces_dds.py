"""n3f_interfaces over real DDS: a server process (interfaces_server.py) and this test process as
the client exchange every service type, QueryObject carrying PointCloud2, PoseStamped, Image.

The packages are the ones scripts/setup_env.sh built into the venv (scripts/build_interfaces.py);
a test also checks that build is current, so an edited .srv without a rebuild fails here first.
"""
from __future__ import annotations

import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from interfaces_server import IMAGE_SIZE, N_POINTS, box_rotation, object_points
from ros_test_utils import spinning_node, stop_process, wait_for

from n3f_ros.io import encode

ROOT = pathlib.Path(__file__).resolve().parents[2]
NS = '/itf'
SERVER = f'{NS}/itf_server'


def test_installed_interface_builds_match_the_sources():
    r = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'build_interfaces.py'), '--check'],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def _point_stamped(xyz, header):
    from geometry_msgs.msg import PointStamped
    m = PointStamped(header=header)
    m.point.x, m.point.y, m.point.z = map(float, xyz)
    return m


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp('itf')
    log = d / 'server.log'
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    with open(log, 'w') as out:
        proc = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).with_name('interfaces_server.py')),
                                 '--ns', NS, '--map-path', str(d / 'default_map.txt')],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: proc.poll() is not None or 'ready' in log.read_text(), 60, what='server ready')
        assert proc.poll() is None, log.read_text()
        yield d
    finally:
        stop_process(proc, log)


@pytest.fixture(scope='module')
def client(server):
    with spinning_node('itf_client') as node:
        yield node


def call(node, srv_type, service: str, **fields):
    """call_service with the request given as a dict (a request field may be called 'name')."""
    cli = node.create_client(srv_type, service)
    try:
        assert cli.wait_for_service(30.0), f'service {service} not available'
        fut = cli.call_async(srv_type.Request(**fields))
        wait_for(fut.done, 30.0, what=f'service {service}')
        return fut.result()
    finally:
        node.destroy_client(cli)


def test_services_are_advertised_with_their_types(client):
    want = {f'{SERVER}/query': 'n3f_interfaces/srv/QueryObject',
            f'{SERVER}/save_prototype': 'n3f_interfaces/srv/SavePrototype',
            f'{SERVER}/list_prototypes': 'n3f_interfaces/srv/ListPrototypes',
            f'{SERVER}/save_map': 'n3f_interfaces/srv/FilePath',
            f'{SERVER}/load_map': 'n3f_interfaces/srv/FilePath'}

    def seen():
        got = dict((n, t) for n, t in client.get_service_names_and_types() if n in want)
        return got if len(got) == len(want) else None
    got = wait_for(seen, 30, what=f'services {sorted(want)}')
    assert {n: t for n, t in got.items()} == {n: [t] for n, t in want.items()}


def test_query_by_point_carries_cloud_pose_mask_and_edit(client):
    from n3f_interfaces.srv import QueryObject
    header = encode.make_header(1234.5, 'map')
    point = [0.4, -0.1, 0.05]
    res = call(client, QueryObject, f'{SERVER}/query', mode=QueryObject.Request.BY_POINT,
                       point=_point_stamped(point, header), u=20, v=10, threshold=0.0, with_mask=True,
                       with_edit=True)
    assert res.success, res.message
    r = res.result
    assert (r.header.stamp.sec, r.header.stamp.nanosec, r.header.frame_id) == (1234, 500_000_000, 'map')
    cloud = encode.pointcloud2_to_array(r.cloud)
    assert r.num_points == len(cloud) == N_POINTS
    assert {f.name for f in r.cloud.fields} == {'x', 'y', 'z', 'rgb', 'similarity'}
    xyz = np.stack([cloud['x'], cloud['y'], cloud['z']], 1)
    np.testing.assert_allclose(xyz, object_points(point), atol=1e-7)
    np.testing.assert_allclose(cloud['similarity'], np.linspace(0.5, 1.0, N_POINTS), atol=1e-6)
    assert np.all(encode.unpack_rgb(cloud['rgb']) == [200, 30, 10])
    p, q = r.pose.pose.position, r.pose.pose.orientation
    np.testing.assert_allclose([p.x, p.y, p.z], object_points(point).mean(0), atol=1e-6)
    from n3f_ros.core.camera import quat_to_rot
    np.testing.assert_allclose(quat_to_rot([q.x, q.y, q.z, q.w]), box_rotation(20, 10), atol=1e-9)
    assert r.pose.header.frame_id == 'map'
    assert r.score == pytest.approx(0.75, abs=1e-6) and r.threshold == pytest.approx(0.42)
    assert (r.mask.width, r.mask.height, r.mask.encoding) == (*IMAGE_SIZE, 'mono8')
    mask = np.frombuffer(bytes(r.mask.data), np.uint8).reshape(IMAGE_SIZE[1], IMAGE_SIZE[0])
    assert int((mask > 0).sum()) == 100 and mask[15, 10] > 0
    assert encode.pointcloud2_to_array(r.edit)['label'].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize('request_fields, reason', [
    ({}, 'unknown_mode'),                                           # a request left at its defaults
    ({'mode': 7}, 'unknown_mode'),
    ({'mode': 1, 'point': _point_stamped([math.nan, 0, 0], encode.make_header(0.0, 'map'))}, 'non_finite'),
    ({'mode': 2, 'name': 'never_saved'}, 'unknown_prototype'),
    ({'mode': 3, 'u': -1, 'v': 5}, 'bad_pixel'),                    # int32: negative is an error, not a wrap
    ({'mode': 3, 'u': IMAGE_SIZE[0], 'v': 0}, 'bad_pixel'),
])
def test_bad_query_requests_are_answered_with_the_reason(client, request_fields, reason):
    from n3f_interfaces.srv import QueryObject
    res = call(client, QueryObject, f'{SERVER}/query', **request_fields)
    assert not res.success and res.message.startswith(reason), res.message
    assert res.result.num_points == 0 and res.result.cloud.width == 0


def test_pixel_query_prototypes_and_map_files_round_trip(client, server):
    from n3f_interfaces.srv import FilePath, ListPrototypes, QueryObject, SavePrototype
    res = call(client, QueryObject, f'{SERVER}/query', mode=QueryObject.Request.BY_PIXEL, u=30, v=40,
                       threshold=0.6)
    assert res.success and res.result.threshold == pytest.approx(0.6) and res.result.mask.width == 0
    cloud = encode.pointcloud2_to_array(res.result.cloud)
    np.testing.assert_allclose(cloud['x'], object_points([0.30, 0.40, 1.0])[:, 0], atol=1e-7)
    for name, replaced in (('mug', False), ('bowl', False), ('mug', True)):
        r = call(client, SavePrototype, f'{SERVER}/save_prototype', name=name)
        assert r.success and r.replaced == replaced, r.message
    assert not call(client, SavePrototype, f'{SERVER}/save_prototype', name=' ').success
    assert list(call(client, ListPrototypes, f'{SERVER}/list_prototypes').names) == ['bowl', 'mug']
    res = call(client, QueryObject, f'{SERVER}/query', mode=QueryObject.Request.BY_NAME, name='bowl')
    assert res.success and res.result.name == 'bowl'

    path = server / 'maps' / 'kitchen.txt'
    path.parent.mkdir()
    r = call(client, FilePath, f'{SERVER}/save_map', path=str(path))
    assert r.success and r.path == str(path) and path.read_text() == 'bowl\nmug'
    r = call(client, FilePath, f'{SERVER}/save_map', path='')           # '' = the default path
    assert r.success and r.path == str(server / 'default_map.txt')
    path.write_text('cup')
    r = call(client, FilePath, f'{SERVER}/load_map', path=str(path))
    assert r.success, r.message
    assert list(call(client, ListPrototypes, f'{SERVER}/list_prototypes').names) == ['cup']
    r = call(client, FilePath, f'{SERVER}/load_map', path=str(server / 'missing.txt'))
    assert not r.success and 'cannot read' in r.message
