#!/usr/bin/env bash
# The main job: installs what it needs, builds ddn in Release, and trains the default model on the
# default dataset. Until the PMaF trainer (`ddn train`, ResNet-50 + IED head) lands, the default
# is the Fashion-MNIST MLP of examples/mlp_fashion_mnist.c. Extra arguments go to the trainer.
set -euo pipefail
source "$(dirname "$0")/common.sh"
root=$(ddn_root)
bash "$root/scripts/deps.sh" "${DDN_BUILD_PACKAGES[@]}" "${DDN_DATA_PACKAGES[@]}"
ddn_build "$root/build/train" -DDDN_BUILD_TESTS=OFF
exec "$root/build/train/mlp_fashion_mnist" "$@"
