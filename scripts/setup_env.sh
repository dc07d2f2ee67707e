#!/usr/bin/env bash
# Creates the project's environment from nothing: Debian libs, a virtualenv in .venv with the
# pinned requirements, n3f_ros installed editable (console scripts n3f, n3f_node), and the default
# DINOv2 teacher in the local teacher store (scripts/install_teacher.sh; fast once installed).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ldconfig -p 2>/dev/null | grep -q libusb-1.0.so.0; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq libusb-1.0-0   # open3d's import needs it
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
.venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
bash scripts/install_teacher.sh
.venv/bin/python -c "import torch, timm, open3d, rclpy, rosbags, onnx; print('n3f_ros environment ready: torch', torch.__version__, 'timm', timm.__version__, 'open3d', open3d.__version__)"
