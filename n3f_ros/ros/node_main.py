"""Process entry point of ``n3f_node``: start quietly, stop quickly (SIGINT/SIGTERM exit < 5 s).

Measured on this project's 2-core CPU, contended (issue 13, point 5), with the node training and a
feature_cloud subscriber: after SIGINT the node's own clean-up (leave spin, stop the mapper worker,
destroy the node, shut rclpy down) took 0.03-1.6 s (up to one training step in flight), but the
process then spent another 3.5-8 s in Python's interpreter finalization (garbage-collecting and
tearing down the torch / timm / open3d / rclpy module state), so ``ros2 launch`` escalated to SIGTERM
after its 5 s. And a SIGINT while the node module was still importing (the first ~1-2 s) printed
a ``KeyboardInterrupt`` traceback, since that import ran before any handler.

So this module imports nothing heavy at the top level; a Ctrl-C during the import is only noted
(no ``KeyboardInterrupt`` is raised inside third-party imports, where a broad ``except`` can
swallow it: under CI load a node sent SIGINT 2 s after its start went on to start), and the
process exits quietly with status 130 once the import is done; :func:`n3f_ros.ros.node.main`
runs and cleans up (bounded); then the process ends with ``os._exit`` after flushing stdio and
logging. Nothing left needs finalization: maps are only written by the ``~/save`` service
(atomically), never at exit.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import traceback

#: exit status of a process stopped by SIGINT before it was running (128 + SIGINT)
EXIT_INTERRUPTED = 130


def _exit_now(rc: int) -> None:
    """Flush what the process printed and end it without interpreter finalization."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):      # closed or broken pipe: nothing more to save
            pass
    os._exit(rc)


class _NoteInterrupt:
    """SIGINT handler while the node module imports: remembers the Ctrl-C instead of raising."""

    def __init__(self):
        self.hit = False

    def __call__(self, signum, frame):
        self.hit = True


def main(args=None) -> None:
    """``n3f_node``: run the node until shutdown, then exit at once with its status (also after
    an unexpected error, whose traceback is printed: finalizing with a live worker thread could
    hang the process)."""
    note = _NoteInterrupt()
    previous = signal.signal(signal.SIGINT, note)
    try:
        from n3f_ros.ros.node import main as run_node
    except KeyboardInterrupt:               # raised by an import itself: nothing to clean up
        _exit_now(EXIT_INTERRUPTED)
    finally:
        signal.signal(signal.SIGINT, previous)
    if note.hit:                            # Ctrl-C while importing rclpy / torch: nothing to clean up
        _exit_now(EXIT_INTERRUPTED)
    try:
        rc = run_node(args)
    except KeyboardInterrupt:               # Ctrl-C before rclpy's handler was installed
        rc = EXIT_INTERRUPTED
    except Exception:
        traceback.print_exc()
        rc = 1
    _exit_now(rc)


if __name__ == '__main__':
    main()
