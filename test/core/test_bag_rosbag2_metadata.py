"""Bags from ``n3f synth --bag`` carry the metadata rosbag2 itself writes (issue 13, point 7).

Read back with readers independent of rosbags: the ``mcap`` library (+ ``mcap-ros2-support`` to
decode a message from the embedded schema) and ``sqlite3``. What rosbag2_storage_mcap writes and
reads (ros2/rosbag2, ``MCAPStorage::create_topic`` / ``read_metadata``): per channel the metadata
keys ``offered_qos_profiles`` and ``topic_type_hash``; a ``rosbag2`` metadata record whose
``serialized_metadata`` is the bag metadata, ``ros_distro`` included. The hashes are compared with
the RIHS01 hashes of the installed (Kilted) message packages' type descriptions.
"""
import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest
import yaml

from n3f_ros.bag import BagOptions, write_synthetic_bag
from n3f_ros.core.synth import make_sequence

mcap_reader = pytest.importorskip('mcap.reader')
mcap_ros2_decoder = pytest.importorskip('mcap_ros2.decoder')


@pytest.fixture(scope='module')
def seq():
    """Three tiny frames."""
    return make_sequence(5, 3, 32, 24, fps=10.0)


def installed_type_hash(msgtype: str) -> str | None:
    """RIHS01 hash of ``pkg/msg/Type`` from the installed package's type description (or None)."""
    pkg, _, name = msgtype.split('/')
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p] + [sys.prefix]
    for prefix in prefixes:
        path = Path(prefix) / 'share' / pkg / 'msg' / f'{name}.json'
        if path.is_file():
            hashes = json.loads(path.read_text())['type_hashes']
            return next(h['hash_string'] for h in hashes if h['type_name'] == msgtype)
    return None


def bag_info(path: Path) -> dict:
    """metadata.yaml's rosbag2_bagfile_information."""
    return yaml.safe_load((path / 'metadata.yaml').read_text())['rosbag2_bagfile_information']


@pytest.mark.parametrize('distro', ['kilted', 'humble'])
def test_mcap_channels_and_metadata_as_rosbag2_writes(tmp_path, seq, distro):
    """ros_distro everywhere; topic_type_hash per channel = type_description_hash = the installed hash."""
    summary = write_synthetic_bag(seq, tmp_path / 'bag', BagOptions(storage='mcap', distro=distro))
    info = bag_info(summary.path)
    assert info['ros_distro'] == distro
    listed = {t['topic_metadata']['name']: t['topic_metadata'] for t in info['topics_with_message_count']}
    with open(next(summary.path.glob('*.mcap')), 'rb') as f:
        reader = mcap_reader.make_reader(f, decoder_factories=[mcap_ros2_decoder.DecoderFactory()])
        assert reader.get_header().profile == 'ros2'
        channels = {c.topic: c for c in reader.get_summary().channels.values()}
        assert set(channels) == set(listed) == set(summary.counts)
        for topic, ch in channels.items():
            assert set(ch.metadata) == {'offered_qos_profiles', 'topic_type_hash'}, ch.metadata
            assert ch.metadata['topic_type_hash'] == listed[topic]['type_description_hash']
            assert ch.metadata['topic_type_hash'].startswith('RIHS01_')
            assert ch.message_encoding == 'cdr'
            if distro == 'kilted':                     # the installed ROS 2 packages are Kilted's
                expected = installed_type_hash(listed[topic]['type'])
                if expected is not None:
                    assert ch.metadata['topic_type_hash'] == expected, topic
        [record] = [m for m in reader.iter_metadata() if m.name == 'rosbag2']
        embedded = yaml.safe_load(record.metadata['serialized_metadata'])
        assert embedded['ros_distro'] == distro
        assert embedded['topics_with_message_count'] == info['topics_with_message_count']
        # the embedded schema decodes the data (independent of rosbags' own deserialiser)
        _schema, channel, _message, image = next(reader.iter_decoded_messages(topics=['/camera/color/image_raw']))
        assert (image.width, image.height, image.encoding) == (32, 24, 'rgb8')
        assert bytes(image.data) == seq[0].rgb.tobytes()


def test_sqlite3_metadata_table_names_the_distro(tmp_path, seq):
    """The sqlite3 storage's embedded metadata (table ``metadata``) and metadata.yaml say 'jazzy'."""
    summary = write_synthetic_bag(seq, tmp_path / 'bag', BagOptions(storage='sqlite3', distro='jazzy'))
    assert bag_info(summary.path)['ros_distro'] == 'jazzy'
    [db] = summary.path.glob('*.db3')
    with sqlite3.connect(db) as con:
        [(text,)] = con.execute('SELECT metadata FROM metadata').fetchall()
        topics = dict(con.execute('SELECT name, type_description_hash FROM topics').fetchall())
    assert yaml.safe_load(text)['ros_distro'] == 'jazzy'
    listed = {t['topic_metadata']['name']: t['topic_metadata']['type_description_hash']
              for t in bag_info(summary.path)['topics_with_message_count']}
    assert topics == listed
