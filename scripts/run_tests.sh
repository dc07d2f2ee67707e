#!/usr/bin/env bash
# Runs the test suite (core, io, ROS over loopback DDS, end to end) in the project's venv, setting
# the environment up first when it is missing or out of date (scripts/env_stamp.sh). Arguments go
# to pytest (default: the whole `test` folder), e.g. `bash scripts/run_tests.sh test/core test/io
# -m "not slow"` for the quick run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(cat .venv/.n3f_env_stamp 2>/dev/null)" != "$(bash scripts/env_stamp.sh)" ]; then
  bash scripts/setup_env.sh
fi
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
if [ $# -eq 0 ]; then set -- test; fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
