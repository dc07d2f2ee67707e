"""core/persistence: map files round trip, are read with a safe loader and written atomically."""
import os
import pickle
import zipfile

import pytest
import torch

from n3f_ros.core import persistence
from n3f_ros.core.persistence import MAP_FORMAT, REQUIRED_KEYS, MapFileError, load_map_file, save_map_file


def make_state(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        'format': MAP_FORMAT, 'version': 1,
        'field_config': {'feature_dim': 8, 'geo_levels': 4},
        'bounds': torch.tensor([[-1.0, -2.0, 0.0], [1.0, 2.0, 1.5]]),
        'field': {'geo_grid.table': torch.randn(64, 2, generator=g), 'head.bias': torch.randn(8, generator=g)},
        'keyframes': {'count': 2, 'size': [16, 12], 'rgb': torch.randint(0, 255, (2, 12, 16, 3), dtype=torch.uint8,
                                                                       generator=g),
                      'feat': torch.randn(2, 3, 4, 8, generator=g).half(),
                      'T': torch.eye(4, dtype=torch.float64).repeat(2, 1, 1)},
        'projector': None, 'pca': {'mean': [0.1, 0.2], 'components': [[1.0, 0.0], [0.0, 1.0]]},
        'prototypes': {'mug': torch.randn(8, generator=g)},
        'train_steps': 1234, 'use_depth': True,
    }


def assert_same(a, b, path='state'):
    assert type(a) is type(b), path
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same(a[k], b[k], f'{path}.{k}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f'{path}[{i}]')
    else:
        assert a == b, path


def leftovers(directory):
    return [n for n in os.listdir(directory) if n.endswith('.tmp') or n.startswith('.n3f_map_')]


def test_save_then_load_returns_equal_state(tmp_path):
    state = make_state()
    path = tmp_path / 'sub' / 'dir' / 'map.pt'           # missing folders are created
    save_map_file(str(path), state)
    loaded = load_map_file(str(path))
    assert_same(state, loaded)
    assert leftovers(path.parent) == []


def test_save_overwrites_previous_map(tmp_path):
    path = str(tmp_path / 'map.pt')
    save_map_file(path, make_state(0))
    save_map_file(path, make_state(1))
    assert_same(load_map_file(path), make_state(1))
    assert leftovers(tmp_path) == []


class _Exploit:
    """Unpickling this runs ``exec`` (writes a marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f'open({self.marker!r}, "w").write("pwned")',)


def _crafted_files(tmp_path, marker):
    payload = dict(make_state(), projector=_Exploit(marker))
    zip_path = tmp_path / 'crafted_zip.pt'
    torch.save(payload, zip_path)                             # torch's own (zip) container
    raw_path = tmp_path / 'crafted_raw.pt'
    with open(raw_path, 'wb') as f:                           # a bare pickle
        pickle.dump(payload, f, protocol=2)
    return zip_path, raw_path


def test_crafted_pickle_is_refused_without_running_code(tmp_path):
    marker = tmp_path / 'marker'
    for path in _crafted_files(tmp_path, str(marker)):
        with pytest.raises(MapFileError):
            load_map_file(str(path))
        assert not marker.exists()


def test_crafted_pickle_would_run_code_with_an_unsafe_loader(tmp_path):
    # control for the test above: the crafted file really is dangerous
    marker = tmp_path / 'marker_unsafe'
    zip_path, _ = _crafted_files(tmp_path, str(marker))
    torch.load(zip_path, weights_only=False)
    assert marker.read_text() == 'pwned'


def test_missing_file(tmp_path):
    with pytest.raises(MapFileError):
        load_map_file(str(tmp_path / 'nope.pt'))
    with pytest.raises(MapFileError):
        load_map_file(str(tmp_path))                          # a directory is not a map


def test_garbage_and_truncated_files(tmp_path):
    garbage = tmp_path / 'garbage.pt'
    garbage.write_bytes(b'this is not a map' * 10)
    empty = tmp_path / 'empty.pt'
    empty.write_bytes(b'')
    good = tmp_path / 'good.pt'
    save_map_file(str(good), make_state())
    truncated = tmp_path / 'truncated.pt'
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for p in (garbage, empty, truncated):
        with pytest.raises(MapFileError):
            load_map_file(str(p))


@pytest.mark.parametrize('obj', [
    torch.zeros(3), [1, 2, 3], {'format': 'something_else'}, {'weights': torch.ones(2)},
])
def test_valid_torch_file_that_is_not_a_map(tmp_path, obj):
    p = tmp_path / 'other.pt'
    torch.save(obj, p)
    with pytest.raises(MapFileError):
        load_map_file(str(p))


@pytest.mark.parametrize('key', REQUIRED_KEYS[1:])
def test_map_lacking_a_key(tmp_path, key):
    state = make_state()
    del state[key]
    p = tmp_path / 'partial.pt'
    torch.save(state, p)
    with pytest.raises(MapFileError, match=key):
        load_map_file(str(p))


def test_crash_mid_save_leaves_previous_map_intact(tmp_path, monkeypatch):
    path = str(tmp_path / 'map.pt')
    save_map_file(path, make_state(0))
    before = open(path, 'rb').read()
    real_save = torch.save

    def crashing_save(obj, f, *a, **kw):
        real_save(obj, f, *a, **kw)
        f.seek(0)
        f.truncate(100)                                       # half-written file...
        raise OSError('disk full')                            # ...then the writer dies

    monkeypatch.setattr(persistence.torch, 'save', crashing_save)
    with pytest.raises(OSError, match='disk full'):
        save_map_file(path, make_state(1))
    monkeypatch.undo()
    assert open(path, 'rb').read() == before
    assert_same(load_map_file(path), make_state(0))
    assert sorted(os.listdir(tmp_path)) == ['map.pt']          # no temp file left behind


def test_crash_in_rename_leaves_previous_map_intact(tmp_path, monkeypatch):
    path = str(tmp_path / 'map.pt')
    save_map_file(path, make_state(0))

    def failing_replace(src, dst):
        assert os.path.dirname(os.path.abspath(src)) == os.path.dirname(os.path.abspath(dst))  # same fs
        assert zipfile.is_zipfile(src)                        # the complete new map is already written
        raise KeyboardInterrupt

    monkeypatch.setattr(persistence.os, 'replace', failing_replace)
    with pytest.raises(KeyboardInterrupt):
        save_map_file(path, make_state(1))
    monkeypatch.undo()
    assert_same(load_map_file(path), make_state(0))
    assert sorted(os.listdir(tmp_path)) == ['map.pt']


def test_keyframe_buffer_state_loads_with_the_safe_loader(tmp_path):
    import numpy as np

    from n3f_ros.core.camera import PinholeCamera
    from n3f_ros.core.frame import Frame
    from n3f_ros.core.keyframes import KeyframeBuffer, KeyframeConfig

    buf = KeyframeBuffer(KeyframeConfig(width=8))
    cam = PinholeCamera(8.0, 8.0, 4.0, 3.0, 8, 6)
    buf.add(Frame(np.full((6, 8, 3), 7, np.uint8), cam, np.eye(4), stamp=1.5,
                  depth=np.ones((6, 8), np.float32)), torch.ones(2, 2, 4))
    state = dict(make_state(), keyframes=buf.state_dict())
    p = str(tmp_path / 'map.pt')
    save_map_file(p, state)
    assert_same(load_map_file(p)['keyframes'], buf.state_dict())


def test_stale_temp_files_of_dead_writers_are_removed_on_the_next_save(tmp_path):
    import subprocess
    dead = subprocess.Popen(['true'])
    dead.wait()                                               # a pid that no longer runs
    stale = tmp_path / f'.n3f_map_{dead.pid}_abc.tmp'
    legacy = tmp_path / '.n3f_map_xyz.tmp'                    # the naming before pids were recorded
    alive = tmp_path / f'.n3f_map_{os.getppid()}_def.tmp'     # a writer that still runs: kept
    for p in (stale, legacy, alive):
        p.write_bytes(b'partial')
    save_map_file(str(tmp_path / 'map.pt'), make_state())
    assert sorted(os.listdir(tmp_path)) == sorted(['map.pt', alive.name])


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(MapFileError, match='is a directory'):
        load_map_file(str(tmp_path))
    fifo = tmp_path / 'fifo'
    os.mkfifo(fifo)
    with pytest.raises(MapFileError, match='not a regular file'):
        load_map_file(str(fifo))                              # and does not block reading it
    with pytest.raises(MapFileError, match='does not exist'):
        load_map_file(str(tmp_path / 'nope.pt'))
    marker = tmp_path / 'marker'
    zip_path, _ = _crafted_files(tmp_path, str(marker))
    with pytest.raises(MapFileError) as e:
        load_map_file(str(zip_path))
    assert 'weights_only=False' not in str(e.value) and 'safe weights-only loader' in str(e.value)
