"""The n3f node as a separate process, the way a user starts it: its console script ``n3f_node``
with the shipped ``config/n3f.yaml``, ``-p`` overrides and ``-r`` remaps, its output in a log file.

Used by the live benchmarks and the demo (``bench/live.py``) and by the tests that run the node
over real DDS. The process inherits the environment (``ROS_DOMAIN_ID``,
``ROS_AUTOMATIC_DISCOVERY_RANGE``, ...).
"""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

from n3f_ros.ros.interface import READY_LOG

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: the shipped parameters (a source checkout; an installed package has them under share/)
CONFIG = ROOT / 'config' / 'n3f.yaml'


class NodeExited(RuntimeError):
    """The node process ended (or never became ready); the message holds its log tail."""


def node_command(params: dict, ns: str, remaps: dict | None = None, params_file=CONFIG) -> list:
    """``n3f_node`` (or ``python -m``) with the params file, namespace, remaps and ``-p`` overrides."""
    exe = pathlib.Path(sys.executable).parent / 'n3f_node'
    cmd = [str(exe)] if exe.exists() else [sys.executable, '-m', 'n3f_ros.ros.node_main']
    cmd += ['--ros-args', '--params-file', str(params_file), '-r', f'__ns:={ns}']
    for src, dst in (remaps or {}).items():
        cmd += ['-r', f'{src}:={dst}']
    for k, v in params.items():
        cmd += ['-p', f'{k}:={v}']
    return cmd


class NodeProcess:
    """The node in its own process, output to ``log`` (a path). ``env``: variables to set (a value
    of None removes one); ``nice``: a positive niceness runs it at lower priority (same pid)."""

    def __init__(self, params: dict, ns: str, log, env: dict | None = None, remaps: dict | None = None,
                 nice: int = 0):
        self.log = pathlib.Path(log)
        full = dict(os.environ, PYTHONUNBUFFERED='1', RCUTILS_COLORIZED_OUTPUT='0')
        for k, v in (env or {}).items():
            if v is None:
                full.pop(k, None)
            else:
                full[k] = str(v)
        cmd = node_command(params, ns, remaps)
        if nice:
            cmd = ['nice', '-n', str(int(nice))] + cmd
        with open(self.log, 'w') as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full)
        self.pid = self.proc.pid                  # nice execs the node: same pid
        self.started = time.monotonic()

    def text(self) -> str:
        try:
            return self.log.read_text(errors='replace')
        except OSError:
            return ''

    def wait_ready(self, timeout: float = 300.0) -> float:
        """Seconds until the node logged its ready line; NodeExited if it died or timed out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if READY_LOG in self.text():
                return time.monotonic() - self.started
            if self.proc.poll() is not None:
                raise NodeExited(f'the node exited with code {self.proc.returncode} before it was ready:\n'
                                 + self.tail())
            time.sleep(0.1)
        raise NodeExited(f'the node was not ready within {timeout:g} s:\n' + self.tail())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise NodeExited(f'the node exited with code {self.proc.returncode}:\n' + self.tail())

    def stop(self, timeout: float = 20.0) -> int:
        """SIGINT (clean shutdown), then kill after ``timeout`` s. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def tail(self, n: int = 40) -> str:
        return '\n'.join(self.text().splitlines()[-n:])
