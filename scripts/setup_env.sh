#!/usr/bin/env bash
# Creates the project's environment from nothing: Debian libs, a virtualenv in .venv with the
# pinned requirements, the interface packages n3f_interfaces (+ tf2_msgs where missing) built into
# it, n3f_ros installed editable (console scripts n3f, n3f_node), and the default DINOv2 teacher in
# the local teacher store (scripts/install_teacher.sh). Idempotent: a second run changes nothing
# (interface builds are skipped while their sources are unchanged, the teacher is reused).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ldconfig -p 2>/dev/null | grep -q libusb-1.0.so.0; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq libusb-1.0-0   # open3d's import needs it
fi
if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null; then   # builds n3f_interfaces
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq cmake g++ make
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
.venv/bin/python scripts/build_interfaces.py   # n3f_interfaces, tf2_msgs: ~1 min when sources changed
.venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
bash scripts/install_teacher.sh
.venv/bin/python -c "import torch, timm, open3d, rclpy, rosbags, onnx, pybullet, n3f_interfaces.srv, tf2_msgs.msg; print('n3f_ros environment ready: torch', torch.__version__, 'timm', timm.__version__, 'open3d', open3d.__version__)"
bash scripts/env_stamp.sh > .venv/.n3f_env_stamp   # run_tests.sh / demo.sh: set up again only when this changes
