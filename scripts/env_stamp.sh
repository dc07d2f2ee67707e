#!/usr/bin/env bash
# Prints a fingerprint of what scripts/setup_env.sh installs from (pins, package metadata, interface
# sources, the set-up scripts) plus whether the default teacher is in the teacher store. setup_env.sh
# writes it to .venv/.n3f_env_stamp when it succeeds; run_tests.sh and demo.sh run the set-up when
# the fingerprint differs (a fresh clone, changed pins, a wiped teacher cache).
set -euo pipefail
cd "$(dirname "$0")/.."
store=${N3F_TEACHER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/n3f_ros/teachers}
{
  find requirements.txt setup.py setup.cfg package.xml scripts/setup_env.sh scripts/install_teacher.sh \
       scripts/build_interfaces.py n3f_interfaces pip_world -type f 2>/dev/null | LC_ALL=C sort | xargs sha256sum
  if [ "${N3F_SKIP_TEACHER:-0}" = 1 ] || ls "$store"/*.safetensors >/dev/null 2>&1; then echo teacher; fi
} | sha256sum | cut -d' ' -f1
