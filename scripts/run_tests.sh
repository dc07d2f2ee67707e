#!/usr/bin/env bash
# Runs the test suite (core, io, ROS over loopback DDS, end to end) in the project's venv; sets the
# environment up first when it is missing. Arguments go to pytest (default: the whole `test` folder),
# e.g. `bash scripts/run_tests.sh test/core -m "not slow"` for a quick core run.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup_env.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
if [ $# -eq 0 ]; then set -- test; fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
