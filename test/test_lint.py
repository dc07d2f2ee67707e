"""Lint (the ament_flake8 role): ruff with the project's ruff.toml over the package, tests, launch."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_ruff_clean():
    r = subprocess.run([sys.executable, '-m', 'ruff', 'check', 'n3f_ros', 'launch', 'test', 'scripts', 'setup.py'],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
