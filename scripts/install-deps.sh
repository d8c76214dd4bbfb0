#!/usr/bin/env bash
# Installs the Debian packages squeeze needs (DESIGN.md section 2) when they are missing.
# As root it runs apt-get; otherwise it prints the command to run.
# Then installs ONNX Runtime for the tests (onnxruntime-node, pinned in package.json and
# package-lock.json) into .deps/onnxruntime, when npm is there. That part never fails the build:
# without it the ONNX Runtime tests skip and say why.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# ONNX Runtime's Node.js package carries its CPU binary, so it installs from the npm registry alone
# (--ignore-scripts: its install script only fetches GPU parts, and fails without a network).
# Idempotent: nothing is fetched while .deps/onnxruntime holds the lock file checked in.
install_onnxruntime() {
  local dest="$root/.deps/onnxruntime"
  if cmp -s "$root/package-lock.json" "$dest/package-lock.json" &&
     [ -f "$dest/node_modules/onnxruntime-node/package.json" ]; then
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "squeeze: npm not found: ONNX Runtime tests will be skipped (install nodejs and npm, then rerun)"
    return 0
  fi
  echo "squeeze: installing onnxruntime-node into $dest"
  mkdir -p "$dest"
  cp "$root/package.json" "$root/package-lock.json" "$dest/"
  # The lock file copy is the "installed" marker: remove it so a failed install is retried.
  if ! (cd "$dest" && timeout 600 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error); then
    rm -f "$dest/package-lock.json"
    echo "squeeze: warning: npm could not install onnxruntime-node: ONNX Runtime tests will be skipped"
  fi
  return 0
}

packages=(
  cmake ninja-build ccache g++ pkg-config
  libtorch-dev libdnnl-dev libopenblas0-pthread libgloo-dev
  libyaml-cpp-dev nlohmann-json3-dev libcli11-dev
  libonnx-dev libprotobuf-dev protobuf-compiler
  libhdf5-dev libsqlite3-dev zlib1g-dev
  libpq-dev postgresql
  libgtest-dev libgmock-dev libbenchmark-dev
  dataset-fashion-mnist
  python3-torch python3-torchvision python3-numpy python3-onnx
  clang
)

# node and npm serve only the ONNX Runtime tests, so they are optional: as root, Debian's are
# installed when there is no npm at all (a node from elsewhere that bundles npm is fine); their
# failure never fails this script.
install_npm() {
  command -v npm >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "squeeze: optional: apt-get install -y --no-install-recommends nodejs npm (ONNX Runtime tests)"
    return 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends nodejs npm ||
    echo "squeeze: warning: could not install nodejs and npm: ONNX Runtime tests will be skipped"
}

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  install_npm
  install_onnxruntime
  exit 0
fi

echo "squeeze: missing Debian packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "squeeze: run as root (or with sudo):"
  echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
install_npm
install_onnxruntime
