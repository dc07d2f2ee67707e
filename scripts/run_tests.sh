#!/usr/bin/env bash
# Runs the whole test suite (core, ROS over loopback DDS, end to end) in the project's venv.
set -euo pipefail
cd "$(dirname "$0")/.."
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@" test
