#!/usr/bin/env bash
# Runs every benchmark side by side (ratios, never absolute targets): `make bench`.
#   bench/run_all.sh [build-dir]
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
status=0
echo "== fine-tuning throughput: squeeze vs PyTorch (small_cnn, Fashion-MNIST)"
bench/compare_train.sh "$build" 100 128 2 3 || status=1
for b in "$build"/bench/*; do
  name=$(basename "$b")
  [ -x "$b" ] && [ -f "$b" ] || continue
  [ "$name" = train_throughput ] && continue
  if [ "$name" = structured_speed ]; then
    # Also the same graphs in PyTorch (exported as TorchScript), for the side-by-side table.
    ts=$(mktemp -d)
    "$b" 2 3 profile "export=$ts" || status=1
    echo "== structured_speed in PyTorch (same graphs)"
    /usr/bin/python3 bench/structured_speed.py "$ts" || status=1
    rm -rf "$ts"
    continue
  fi
  echo "== $name"
  "$b" || status=1
done
exit $status
