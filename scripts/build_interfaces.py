#!/usr/bin/env python3
"""Build and install the project's ROS 2 interface packages into this Python's prefix (the pip world).

Run by scripts/setup_env.sh with the venv's Python. Each package is an ament_cmake package with a
pyproject.toml (scikit-build-core, ``wheel.install-dir = "${SKBUILD_DATA_DIR}"``): ``pip install
--no-build-isolation`` builds it against the installed, pinned ros-* wheels (the generated code is
compiled against exactly those message headers) and lays it out as an ament prefix at ``sys.prefix``
like the ros-* wheels, so no LD_LIBRARY_PATH or AMENT_PREFIX_PATH is needed at run time.

- ``n3f_interfaces/``: always.
- ``pip_world/tf2_msgs/``: only when ``tf2_msgs`` is not importable already (a ROS install's wins);
  rebuilt when it was built here before and its sources changed.

Idempotent: a package is skipped when the stamp file installed with it
(``<prefix>/share/<pkg>/pip_world_build.sha256``) holds the hash of its sources (every file of the
package folder, the shared CMake work-around, and the versions of the installed ros-* wheels).

Usage: ``python scripts/build_interfaces.py [--check] [--force]``; ``--check`` builds nothing and
exits 1 when a package needs a (re)build.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: the CMake work-around both packages include (part of each package's hash)
SHARED_CMAKE = ROOT / 'n3f_interfaces' / 'cmake' / 'drop_missing_include_dirs.cmake'
STAMP_NAME = 'pip_world_build.sha256'


class Package:
    """One interface package: ``name`` (ROS package = Python module), its folder, its wheel's
    distribution name, and whether it is built only when missing."""

    def __init__(self, name: str, folder: pathlib.Path, dist: str, only_if_missing: bool):
        self.name, self.folder, self.dist, self.only_if_missing = name, folder, dist, only_if_missing

    @property
    def stamp(self) -> pathlib.Path:
        return pathlib.Path(sys.prefix) / 'share' / self.name / STAMP_NAME


PACKAGES = (
    Package('n3f_interfaces', ROOT / 'n3f_interfaces', 'ros-n3f-interfaces', only_if_missing=False),
    Package('tf2_msgs', ROOT / 'pip_world' / 'tf2_msgs', 'n3f-pip-world-tf2-msgs', only_if_missing=True),
)
OUR_DISTS = {p.dist for p in PACKAGES}


def _ros_wheel_versions() -> list[str]:
    """'name==version' of every installed ros-* wheel except ours, sorted (part of the hash: new
    message headers or generators mean a rebuild)."""
    out = set()
    for d in importlib.metadata.distributions():
        name = (d.metadata['Name'] or '').lower()
        if name.startswith('ros-') and name not in OUR_DISTS:
            out.add(f'{name}=={d.version}')
    return sorted(out)


def source_hash(pkg: Package) -> str:
    """sha256 over the package's files (path + content), the shared CMake file and the ros-* wheel
    versions."""
    h = hashlib.sha256()
    files = sorted(p for p in pkg.folder.rglob('*') if p.is_file() and '__pycache__' not in p.parts)
    for path in [*files, SHARED_CMAKE]:
        h.update(str(path.relative_to(ROOT)).encode() + b'\0' + path.read_bytes() + b'\0')
    h.update('\n'.join(_ros_wheel_versions()).encode())
    return h.hexdigest()


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def plan(pkg: Package) -> tuple[bool, str, str]:
    """(needs a build, why, source hash) for ``pkg`` in this prefix."""
    digest = source_hash(pkg)
    ours = pkg.stamp.is_file()
    if pkg.only_if_missing and _importable(pkg.name) and not ours:
        return False, f'{pkg.name} is provided by the environment (not built here)', digest
    if not _importable(pkg.name):
        return True, f'{pkg.name} is not installed', digest
    if not ours or pkg.stamp.read_text().strip() != digest:
        return True, f'{pkg.name} sources or ros-* wheels changed since it was built', digest
    return False, f'{pkg.name} is up to date ({digest[:12]})', digest


def build(pkg: Package, digest: str) -> float:
    """pip-build and install ``pkg`` into sys.prefix, then write its stamp; returns seconds."""
    prefix = sys.prefix
    env = dict(os.environ, AMENT_PREFIX_PATH=prefix, CMAKE_PREFIX_PATH=prefix)
    # scikit-build-core passes Python3_EXECUTABLE=sys.executable to CMake itself (rosidl_generator_py
    # must find this venv's Python and numpy, not the system's).
    cmd = [sys.executable, '-m', 'pip', 'install', '-q', '--disable-pip-version-check', '--no-deps',
           '--no-build-isolation', '--force-reinstall', str(pkg.folder)]
    t0 = time.monotonic()
    subprocess.run(cmd, env=env, check=True)
    pkg.stamp.parent.mkdir(parents=True, exist_ok=True)
    pkg.stamp.write_text(digest + '\n')
    return time.monotonic() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--check', action='store_true', help='build nothing; exit 1 if a package needs a build')
    ap.add_argument('--force', action='store_true', help='rebuild even when up to date')
    args = ap.parse_args(argv)
    stale = []
    for pkg in PACKAGES:
        needed, why, digest = plan(pkg)
        if args.force and not (pkg.only_if_missing and not needed and not pkg.stamp.is_file()):
            needed, why = True, f'{pkg.name}: --force'
        if not needed:
            print(f'interfaces: {why}')
            continue
        if args.check:
            print(f'interfaces: {why}: run scripts/setup_env.sh')
            stale.append(pkg.name)
            continue
        print(f'interfaces: {why}: building (about a minute)', flush=True)
        seconds = build(pkg, digest)
        print(f'interfaces: built and installed {pkg.name} in {seconds:.0f} s')
    return 1 if stale else 0


if __name__ == '__main__':
    sys.exit(main())
