#!/usr/bin/env bash
# The main job on the embedded default, from a fresh clone: sets the environment up when it is
# missing or out of date (scripts/setup_env.sh, idempotent; scripts/env_stamp.sh), then streams a photo-textured pybullet tabletop over DDS into n3f_node (shipped
# config, the real DINOv2 teacher), queries every object through ~/query, saves the map through
# ~/save_map and writes demo_out/ (or the folder given): cloud.ply, map.pt, PNGs, summary.json.
# Extra arguments go to `n3f demo` (see `n3f demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(cat .venv/.n3f_env_stamp 2>/dev/null)" != "$(bash scripts/env_stamp.sh)" ]; then
  bash scripts/setup_env.sh
fi
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}
exec .venv/bin/n3f demo "$@"
