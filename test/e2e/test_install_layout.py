"""Install layout: what ``colcon build`` of this ament_python package puts where ROS 2 looks.

The package is installed from a copy of the source into ``tmp_path`` with the same setuptools
command colcon's ament_python build runs (``setup.py install --prefix ... --record ...
--single-version-externally-managed``; setup.cfg sends the console scripts to ``lib/n3f_ros``).
Then, with ``AMENT_PREFIX_PATH`` pointing at the prefix, ``ament_index_python`` must find the
package and its launch/config/rviz files, ``ros2 run n3f_ros n3f_node`` must find the executable
in ``lib/n3f_ros``, and every module of the source tree must be installed.
"""
from __future__ import annotations

import ast
import configparser
import os
import shutil
import subprocess
import sys
import sysconfig
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = 'n3f_ros'
SOURCES = ('setup.py', 'setup.cfg', 'package.xml', 'resource', 'launch', 'config', 'rviz', PACKAGE)
DATA_DIRS = {'launch': '*.launch.py', 'config': '*.yaml', 'rviz': '*.rviz'}


@pytest.fixture(scope='module')
def install(tmp_path_factory):
    """Install a copy of the package into a fresh prefix; returns (prefix, site-packages)."""
    root = tmp_path_factory.mktemp('install_layout')
    src, prefix = root / 'src', root / 'prefix'
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name,
                            ignore=shutil.ignore_patterns('__pycache__', '*.pyc', '*.egg-info'))
        else:
            shutil.copy2(path, src / name)
    cmd = [sys.executable, 'setup.py', '-q', 'egg_info', '--egg-base', str(root), 'build', '--build-base',
           str(root / 'build'), 'install', '--prefix', str(prefix), '--record', str(root / 'install.txt'),
           '--single-version-externally-managed']
    result = subprocess.run(cmd, cwd=src, check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    purelib = Path(sysconfig.get_path('purelib', vars={'base': str(prefix), 'platbase': str(prefix)}))
    assert (purelib / PACKAGE / '__init__.py').is_file(), sorted(p.name for p in prefix.rglob('*'))[:50]
    return prefix, purelib


@pytest.fixture
def ament_env(install, monkeypatch):
    """AMENT_PREFIX_PATH = the install prefix only (as after sourcing its setup script)."""
    prefix, _ = install
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(prefix))
    return prefix


def test_ament_index_finds_package_and_data_files(ament_env):
    """get_package_share_directory resolves, and launch/config/rviz/package.xml are installed there."""
    from ament_index_python.packages import get_package_prefix, get_package_share_directory

    prefix = ament_env
    share = Path(get_package_share_directory(PACKAGE))
    assert share == prefix / 'share' / PACKAGE
    assert Path(get_package_prefix(PACKAGE)) == prefix
    assert (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / PACKAGE).is_file()
    manifest = ET.parse(share / 'package.xml').getroot()
    assert manifest.findtext('name') == PACKAGE
    assert manifest.find('export/build_type').text == 'ament_python'
    for folder, pattern in DATA_DIRS.items():
        sources = sorted(p.name for p in (REPO / folder).glob(pattern))
        assert sources, f'no {pattern} in {folder}/'
        for name in sources:
            installed = share / folder / name
            assert installed.is_file(), f'{folder}/{name} not installed under {share}'
            assert installed.read_bytes() == (REPO / folder / name).read_bytes()
    for required in ('launch/n3f.launch.py', 'launch/n3f_bag.launch.py', 'config/n3f.yaml',
                     'config/realsense_wrist.yaml', 'config/fastdds_large_images.xml', 'rviz/n3f.rviz'):
        assert (share / required).is_file(), required
        assert (share / required).read_bytes() == (REPO / required).read_bytes(), required


def test_launch_file_default_paths_exist_in_install(ament_env):
    """The share-relative defaults of the launch files ('/config/n3f.yaml', '/rviz/n3f.rviz') exist."""
    from ament_index_python.packages import get_package_share_directory

    share = Path(get_package_share_directory(PACKAGE))
    relative = set()
    for path in (share / 'launch').glob('*.launch.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and node.value.startswith(('/config/', '/rviz/')):
                relative.add(node.value)
    assert {'/config/n3f.yaml', '/rviz/n3f.rviz'} <= relative
    for rel in relative:
        assert (share / rel.lstrip('/')).is_file(), rel


def test_executables_where_ros2_run_looks(ament_env):
    """`ros2 run n3f_ros n3f_node` looks in <prefix>/lib/n3f_ros: n3f_node and n3f are there."""
    from ament_index_python.packages import get_package_prefix

    lib = Path(get_package_prefix(PACKAGE)) / 'lib' / PACKAGE
    cfg = configparser.ConfigParser()
    cfg.read(REPO / 'setup.cfg')
    assert cfg['install']['install_scripts'] == '$base/lib/n3f_ros'
    for name in ('n3f_node', 'n3f'):
        exe = lib / name
        assert exe.is_file() and os.access(exe, os.X_OK), f'{exe} missing or not executable'
        assert exe.read_text().startswith('#!'), f'{exe} has no shebang'
    assert not (ament_env / 'bin' / 'n3f_node').exists(), 'console scripts must not go to bin/'


def test_every_module_installed_and_entry_points(install):
    """Every .py of the source package is installed (no folder without __init__.py is left out)."""
    _, purelib = install
    missing = []
    for path in sorted((REPO / PACKAGE).rglob('*.py')):
        if '__pycache__' in path.parts:
            continue
        rel = path.relative_to(REPO)
        if not (purelib / rel).is_file():
            missing.append(str(rel))
    assert not missing, f'not installed (package folder without __init__.py?): {missing}'
    [egg] = list(purelib.glob('n3f_ros*.egg-info'))
    entry_points = (egg / 'entry_points.txt').read_text()
    assert 'n3f_node = n3f_ros.ros.node_main:main' in entry_points
    assert 'n3f = n3f_ros.cli.main:main' in entry_points


def test_installed_cli_runs_from_install(install, tmp_path):
    """The installed `n3f` runs from the installed copy (not the source tree): `n3f play --help`."""
    prefix, purelib = install
    env = dict(os.environ, PYTHONPATH=str(purelib), AMENT_PREFIX_PATH=str(prefix))
    which = subprocess.run([sys.executable, '-c', 'import n3f_ros.cli.play as m; print(m.__file__)'],
                           cwd=tmp_path, env=env, check=False, capture_output=True, text=True, timeout=60)
    assert which.returncode == 0, which.stderr
    assert Path(which.stdout.strip()).is_relative_to(purelib)
    result = subprocess.run([str(prefix / 'lib' / PACKAGE / 'n3f'), 'play', '--help'], cwd=tmp_path,
                            env=env, check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for flag in ('--rate', '--loop', '--topics', '--remap', '--clock'):
        assert flag in result.stdout
