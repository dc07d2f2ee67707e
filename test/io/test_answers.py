"""io/answers.py: the query answer policy as a pure function (messages built, no DDS)."""
import numpy as np
import pytest

from n3f_ros.core.camera import PinholeCamera, quat_to_rot
from n3f_ros.core.cloud import FeatureCloud, query_by_point
from n3f_ros.io import answers, encode
from n3f_ros.io.encode import pointcloud2_to_array


def _scene():
    """A plane of 400 points (feature e0) with a 5x5x5 cube of 125 points (feature e1) on it."""
    g = np.stack(np.meshgrid(np.arange(20), np.arange(20)), -1).reshape(-1, 2) * 0.01
    plane = np.c_[g, np.zeros(len(g))]
    c = np.stack(np.meshgrid(np.arange(5), np.arange(5), np.arange(5)), -1).reshape(-1, 3) * 0.01
    cube = c + [0.05, 0.05, 0.01]
    xyz = np.concatenate([plane, cube]).astype(np.float32)
    f = np.zeros((len(xyz), 4), np.float32)
    f[:len(plane), 0] = 1
    f[len(plane):, 1] = 1
    rgb = np.zeros((len(xyz), 3), np.uint8)
    rgb[len(plane):] = (200, 10, 10)
    labels = np.r_[np.ones(len(plane)), 2 * np.ones(len(cube))].astype(np.uint32)
    return FeatureCloud(xyz, rgb, f, rgb, labels), len(plane)


HEADER = encode.make_header(12.5, 'map')


@pytest.mark.parametrize('mode', ['remove', 'extract'])
def test_object_answer_messages(mode):
    cloud, n_plane = _scene()
    r = query_by_point(cloud.xyz, cloud.features, [0.07, 0.07, 0.05], radius=0.015)
    r.cloud = cloud
    r.feature_source, r.confidence = 'fused', 0.75
    ans = answers.query_answer(r, HEADER, mode)
    assert not ans.empty and ans.points == 125 and ans.reason == ''
    assert ans.feature_source == 'fused' and ans.confidence == 0.75 and ans.kind == 'object'
    assert ans.header.stamp.sec == 12 and ans.header.stamp.nanosec == 500_000_000
    # pose: centroid, orientation = the box axes (a proper rotation, no reflection fix needed)
    p = ans.pose.pose
    assert np.allclose([p.position.x, p.position.y, p.position.z], [0.07, 0.07, 0.03], atol=1e-6)
    R = quat_to_rot([p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w])
    assert np.allclose(R, r.box.R, atol=1e-6) and np.linalg.det(R) > 0
    assert np.allclose(sorted(ans.box_size), [0.04] * 3, atol=1e-6)
    # the object cloud carries observed colours and similarities
    obj = pointcloud2_to_array(ans.cloud)
    assert len(obj) == 125 and np.allclose(obj['similarity'], 1.0)
    assert np.all(encode.unpack_rgb(obj['rgb'])[:, 0] == 200)
    # the edit is the scene without / with only the object, from the cloud the query ran on
    edit = pointcloud2_to_array(ans.edit)
    assert len(edit) == (n_plane if mode == 'remove' else 125)
    assert set(np.unique(edit['label'])) == ({1} if mode == 'remove' else {2})
    from visualization_msgs.msg import Marker
    ms = ans.markers.markers
    assert ms[0].action == Marker.DELETEALL and [m.type for m in ms[1:]] == [Marker.CUBE, Marker.SPHERE,
                                                                          Marker.TEXT_VIEW_FACING]
    assert ms[3].text == 'object 1.00'


def test_empty_answer_policy():
    cloud, n_plane = _scene()
    ans = answers.query_answer(None, HEADER, 'remove', reason='the map is empty', scene=cloud)
    assert ans.empty and ans.pose is None and ans.reason == 'the map is empty'
    assert ans.feature_source == '' and ans.confidence == 0.0
    assert [m.action for m in ans.markers.markers] == [3]            # DELETEALL (3) only
    assert ans.cloud.width == 0
    assert pointcloud2_to_array(ans.edit).shape[0] == len(cloud)     # 'remove': the whole scene
    ans = answers.query_answer(None, HEADER, 'extract', scene=cloud)
    assert ans.edit.width == 0 and ans.reason == 'nothing found'


def test_answer_without_an_attached_cloud_has_no_edit():
    cloud, _ = _scene()
    r = query_by_point(cloud.xyz, cloud.features, [0.07, 0.07, 0.05], radius=0.015)
    ans = answers.query_answer(r, HEADER, 'remove')
    assert ans.points == 125 and ans.edit.width == 0
    assert np.all(encode.unpack_rgb(pointcloud2_to_array(ans.cloud)['rgb']) == 255)


def test_mask_message():
    cam = PinholeCamera(50, 50, 40, 30, 80, 60)
    m = answers.mask_message(None, cam, 3.0, 'cam')
    assert (m.height, m.width, m.encoding, m.header.frame_id) == (60, 80, 'mono8', 'cam') and max(m.data) == 0
    mask = np.zeros((60, 80), bool)
    mask[10:20, 5:9] = True
    m = answers.mask_message(mask, cam, 3.0, 'cam')
    assert np.frombuffer(bytes(m.data), np.uint8).reshape(60, 80)[15, 6] == 255
    m = answers.mask_message(None, None, 3.0, 'cam')
    assert (m.height, m.width, m.header.frame_id) == (0, 0, '')
