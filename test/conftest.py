"""Shared test set-up: isolate DDS traffic of this run, keep torch on few threads."""
import os
import random

# Loopback-only discovery and a per-run domain so concurrent runs never hear each other.
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('ROS_DOMAIN_ID', str(random.Random(os.getpid()).randint(1, 100)))
