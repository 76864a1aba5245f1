/* ddn — ResNet internals shared with tests/test_resnet.c. Not installed.
 *
 * A single residual block can be run on its own, so a test can check one block at its real
 * width (layer1.1 of ResNet-50 is 256 -> 64 -> 256) against PyTorch without running, or storing
 * references for, a whole full-width network.
 */
#ifndef DDN_RESNET_IMPL_H
#define DDN_RESNET_IMPL_H

#include "resnet.h"

/* Runs block `index` of stage `stage` (1..4, as in "layer<stage>.<index>") on x, with the same
 * code as ddn_resnet_forward. NULL with an error when there is no such block. */
ddn_tensor *ddn_resnet_block_forward(ddn_resnet *net, int stage, int index, ddn_tensor *x,
                                     bool training);

#endif
