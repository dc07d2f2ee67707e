"""Shared test set-up: isolate DDS traffic of this run, keep torch on few threads."""
import os
import random

# Loopback-only discovery and a per-run domain so concurrent runs never hear each other.
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('ROS_DOMAIN_ID', str(random.Random(os.getpid()).randint(1, 100)))
# One torch/OpenMP thread per process: node subprocesses and the test process share 2 cores, and
# oversubscribed OpenMP threads spin (measured: a training step 0.2 s alone, 1.7-2.2 s oversubscribed).
os.environ.setdefault('OMP_NUM_THREADS', '1')


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: trains a field or runs a benchmark (seconds to a minute); '
                                       'a quick run: scripts/run_tests.sh test/core test/io -m "not slow"')
