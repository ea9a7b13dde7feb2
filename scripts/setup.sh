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
echo "setup: ready (.venv/bin has gkd-train, gkd-evaluate)"
