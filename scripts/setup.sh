#!/usr/bin/env bash
# Sets up tf_gkd on a Debian machine: the Fashion-MNIST raw files (Debian package
# dataset-fashion-mnist) and a virtual environment .venv with tf_gkd installed.
# Idempotent: a second run only checks that everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    echo "setup: installing Fashion-MNIST (apt-get install dataset-fashion-mnist)"
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq dataset-fashion-mnist
  else
    echo "setup: no apt-get here; pass --raw_data_dir=DIR with the Fashion-MNIST IDX files, or --download." >&2
  fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$python" -m venv .venv
fi
# Reinstall only when the package metadata changed.
stamp=.venv/.tf_gkd-installed
if [ ! -f "$stamp" ] || ! cmp -s setup.cfg "$stamp"; then
  echo "setup: installing tf_gkd and its dependencies into .venv"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]'
  cp setup.cfg "$stamp"
fi

# The oldest mobile runtime the tests load exported files with: tflite-runtime 2.14, the last
# standalone one on PyPI (it needs numpy < 2, and has wheels for Python 3.8 to 3.11 only).
old_runtime=.venv-tflite-2.14
if [ ! -x "$old_runtime/bin/python" ] || ! "$old_runtime/bin/python" -c "import tflite_runtime" 2>/dev/null; then
  old_python=""
  for candidate in .venv/bin/python python3.11 python3.10 python3.9; do
    if command -v "$candidate" >/dev/null 2>&1 \
      && "$candidate" -c 'import sys; sys.exit(not (3, 8) <= sys.version_info[:2] <= (3, 11))' 2>/dev/null; then
      old_python=$candidate
      break
    fi
  done
  if [ -n "$old_python" ]; then
    echo "setup: creating $old_runtime (tflite-runtime 2.14, for the tests)"
    rm -rf "$old_runtime"
    "$old_python" -m venv "$old_runtime"
    if ! "$old_runtime/bin/python" -m pip install --quiet "tflite-runtime==2.14.0" "numpy<2"; then
      echo "setup: could not install tflite-runtime 2.14: the tests that load exports with it will be skipped." >&2
      rm -rf "$old_runtime"
    fi
  else
    echo "setup: no Python 3.8-3.11 here: the tests that load exports with tflite-runtime 2.14 will be skipped."
  fi
fi
echo "setup: ready (.venv/bin has gkd-train, gkd-evaluate)"
