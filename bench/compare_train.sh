#!/usr/bin/env bash
# squeeze vs PyTorch fine-tuning throughput on small_cnn / Fashion-MNIST, side by side in one run:
# alternating rounds, median of each, and the ratio (target: squeeze >= PyTorch).
#   bench/compare_train.sh [build-dir] [steps] [batch] [threads] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}; steps=${2:-100}; batch=${3:-128}; threads=${4:-2}; rounds=${5:-3}
sq=(); pt=()
for ((i = 0; i < rounds; i++)); do
  s=$("$build/bench/train_throughput" "$steps" "$batch" "$threads" | sed 's/.*"samples_per_s": \([0-9.]*\).*/\1/')
  p=$(/usr/bin/python3 bench/train_throughput.py "$steps" "$batch" "$threads" | sed 's/.*"samples_per_s": \([0-9.]*\).*/\1/')
  echo "round $((i + 1)): squeeze $s samples/s, pytorch $p samples/s"
  sq+=("$s"); pt+=("$p")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
ms=$(median "${sq[@]}"); mp=$(median "${pt[@]}")
echo "small_cnn fine-tuning, batch $batch, $threads threads, $steps steps, median of $rounds rounds:"
echo "  squeeze  $ms samples/s"
echo "  pytorch  $mp samples/s"
awk -v s="$ms" -v p="$mp" 'BEGIN {printf "  ratio squeeze/pytorch %.3f\n", s / p}'
