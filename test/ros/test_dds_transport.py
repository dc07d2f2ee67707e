"""Large images over DDS (issue 14): the shipped Fast DDS profile, and the delivery benchmark at toy size.

The benchmark's peers are real processes with real rclpy / Fast DDS on loopback (this run's
ROS_DOMAIN_ID, see conftest.py). Seconds each: a few hundred small messages, or 1.5 s of a
30 Hz 640x480 rgb8 + 16UC1 stream with the shipped profile (which, without it, mostly does not
arrive: measured in bench/RESULTS.md, not asserted here since it depends on the machine).
"""
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from n3f_ros.bench import dds
from n3f_ros.ros.transport import FASTDDS_PROFILE, FASTDDS_PROFILE_VARIABLES, profile_environment

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / 'config' / FASTDDS_PROFILE
#: bytes of one 1280x720 frame: rgb8 colour + 16UC1 depth
FRAME_720P = 1280 * 720 * 3 + 1280 * 720 * 2


def _local(tag: str) -> str:
    return tag.rsplit('}', 1)[-1]


def _find(root, path: str):
    """Elements under ``root`` along ``path`` ('a/b/c'), namespaces ignored."""
    nodes = [root]
    for name in path.split('/'):
        nodes = [c for n in nodes for c in n if _local(c.tag) == name]
    return nodes


def test_shipped_profile_is_fastdds_xml_with_a_large_shared_memory_segment():
    """Valid XML in Fast DDS' profile layout: a default participant profile whose only transports are
    an SHM transport whose segment holds a few 720p colour + depth frames, and UDPv4 (discovery, other
    hosts); builtin transports off (they would bring back the 512 KB segment)."""
    root = ET.parse(PROFILE).getroot()
    assert _local(root.tag) == 'dds'
    descriptors = {d.findtext('{*}transport_id') or d.findtext('transport_id'): d
                   for d in _find(root, 'profiles/transport_descriptors/transport_descriptor')}
    kinds = {tid: _find(d, 'type')[0].text for tid, d in descriptors.items()}
    assert sorted(kinds.values()) == ['SHM', 'UDPv4'], kinds
    [shm] = [d for d in descriptors.values() if _find(d, 'type')[0].text == 'SHM']
    segment = int(_find(shm, 'segment_size')[0].text)
    assert segment >= 3 * FRAME_720P, f'{segment} bytes hold fewer than three 720p frames'
    [participant] = _find(root, 'profiles/participant')
    assert participant.get('is_default_profile') == 'true'
    used = [t.text for t in _find(participant, 'rtps/userTransports/transport_id')]
    assert sorted(used) == sorted(descriptors)
    assert _find(participant, 'rtps/useBuiltinTransports')[0].text.strip() == 'false'


def test_profile_environment_rules(tmp_path):
    """auto -> the shipped file, unless a profile is already named; none -> nothing; a missing file
    -> a clear error. FASTRTPS_ only where Fast DDS is 2.x (Kilted warns about it)."""
    fastdds, fastrtps = FASTDDS_PROFILE_VARIABLES
    cfg = str(REPO / 'config')
    assert profile_environment('auto', cfg, {}) == {fastdds: str(PROFILE)}
    assert profile_environment('auto', cfg, {'ROS_DISTRO': 'humble'}) == {fastdds: str(PROFILE),
                                                                          fastrtps: str(PROFILE)}
    assert profile_environment('auto', cfg, {fastrtps: '/site.xml'}) == {}
    assert profile_environment('none', cfg, {}) == {} and profile_environment('', cfg, {}) == {}
    assert profile_environment(str(PROFILE), '/nowhere', {}) == {fastdds: str(PROFILE)}
    with pytest.raises(RuntimeError, match='not a file'):
        profile_environment(str(tmp_path / 'x.xml'), cfg, {})


def test_a_640x480_stream_arrives_between_two_processes_with_the_shipped_profile():
    """rgb8 + 16UC1 + camera_info at 30 Hz, the node's default QoS (best effort, depth 5), publisher
    and subscriber in their own processes with the shipped profile: (nearly) every frame arrives."""
    row = dds.run_one(dds.CASES['shipped'], 640, 480, rate=30.0, duration=1.5, grace=1.0)
    assert row['sent'] == 45
    assert row['complete_ratio'] >= 0.9, row


def test_benchmark_toy_size_json_table_plot(tmp_path):
    """``n3f bench dds`` end to end at a toy size: every topic is counted, small images all arrive
    (they fit any transport), and the JSON, table and plot come out."""
    result = dds.run_dds(dds.Settings(sizes=((64, 48),), rate=30.0, duration=1.0, grace=0.5,
                                      cases=[dds.CASES['default']]), log=lambda *_: None)
    [row] = result['rows']
    assert row['size'] == '64x48' and row['sent'] == 30
    assert set(row['delivered']) == set(dds.TOPICS)
    assert min(row['ratio'].values()) >= 0.9, row
    assert row['latency_ms']['p50'] > 0
    table = dds.format_table(result)
    assert '| default | 64x48 | 30 |' in table
    dds.write_json(result, str(tmp_path / 'dds.json'))
    assert json.loads((tmp_path / 'dds.json').read_text())['rows'][0]['sent'] == 30
    dds.save_plot(result, str(tmp_path / 'dds.png'))
    assert (tmp_path / 'dds.png').stat().st_size > 1000
