#!/usr/bin/env bash
# The main job: installs what it needs, builds ddn in Release and runs `ddn train` with its
# defaults: a ResNet-50 with the IED head (m = 16, power iteration, DDN-E backward) trained from
# scratch on Fashion-MNIST (32x32, 3 channels), SGD with momentum, batch 64. The whole job, install
# and build included, ends within DDN_TRAIN_MINUTES (default 14) minutes: training gets what is
# left after the build minus a minute for the final test evaluation and the files, and the learning
# rate follows a cosine over that budget (so the run ends annealed whatever the machine's speed).
# The output (model, plot, metrics, checkpoint) goes to runs/main; `ddn train` prints where.
# Extra arguments go to `ddn train` and win over these (e.g. --epochs 5, --out DIR).
set -euo pipefail
SECONDS=0
source "$(dirname "$0")/common.sh"
root=$(ddn_root)
bash "$root/scripts/deps.sh" "${DDN_BUILD_PACKAGES[@]}" "${DDN_DATA_PACKAGES[@]}"
# The trainer runs on the CPU: the CUDA backend would only add nvcc time here.
ddn_build "$root/build/train" -DDDN_BUILD_TESTS=OFF -DDDN_BUILD_EXAMPLES=OFF -DDDN_CUDA=OFF
minutes=${DDN_TRAIN_MINUTES:-14}
budget=$((minutes * 60 - 60 - SECONDS))
if ((budget < 60)); then
    echo "train.sh: only ${budget}s left of ${minutes} minutes after the build" >&2
    exit 1
fi
echo "train.sh: built in ${SECONDS}s; training for ${budget}s"
exec "$root/build/train/ddn" train --time-budget "$budget" --schedule cosine \
    --out "$root/runs/main" "$@"
