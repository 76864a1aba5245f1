#!/bin/sh
# bench/run_heads.sh — test accuracy after the same time budget for the PMaF heads: `ddn train`
# with its defaults (ResNet-50 from scratch on Fashion-MNIST 32x32, batch 64, SGD momentum 0.9,
# lr 0.1, a cosine over the budget) and --head ied (m = 16), less
# (m = 16, n = 8) and linear (global average pool -> fc), one after the other on an otherwise
# idle machine. Prints a markdown table: steps done, images/s (training images over the run's
# wall time, test evaluations included) and the final test accuracy.
#
# The linear baseline runs at LINEAR_LR (default 0.025, ddn train's default for --head linear):
# at 0.1, the other heads' rate, its loss explodes (39 after 50 steps: the pooled features of a
# fresh ResNet-50 are large and nothing bounds the classifier's input, where IED and LESS feed it
# a unit vector), and over 300-step cosine runs 0.025 beat 0.05 and 0.1 (test accuracy 66.9%,
# 39.2%, 32.2%).
#
#     OMP_WAIT_POLICY=passive bench/run_heads.sh [BUILD_DIR] [SECONDS] [HEADS]
#     (defaults: ./build, 300, "ied less linear")
set -eu
build=${1:-build}
budget=${2:-300}
heads=${3:-"ied less linear"}
linear_lr=${LINEAR_LR:-0.025}
ddn=$build/ddn
[ -x "$ddn" ] || { echo "run_heads.sh: $ddn not found; build first" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "ddn train, ResNet-50 defaults, time budget ${budget}s per head, 2 threads; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| head | lr | steps | images/s | test accuracy |"
echo "|---|---:|---:|---:|---:|"
for h in $heads; do
    lr=0.1
    [ "$h" = linear ] && lr=$linear_lr
    start=$(date +%s)
    "$ddn" train --head "$h" --lr "$lr" --time-budget "$budget" --schedule cosine --threads 2 \
        --log-every 50 --out "$out/$h" >"$out/$h.log" 2>&1 || {
        echo "run_heads.sh: ddn train --head $h failed:" >&2
        tail -3 "$out/$h.log" >&2
        exit 1
    }
    end=$(date +%s)
    steps=$(sed -n 's/^final at step \([0-9]*\).*/\1/p; s/^epoch [0-9]* done at step \([0-9]*\).*/\1/p' "$out/$h.log" | tail -1)
    acc=$(sed -n 's/.*test accuracy \([0-9.]*\)%.*/\1/p' "$out/$h.log" | tail -1)
    ips=$(awk -v s="$steps" -v t=$((end - start)) 'BEGIN { printf "%.0f", s * 64 / t }')
    echo "| $h | $lr | $steps | $ips | $acc% |"
done
