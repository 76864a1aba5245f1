/* ddn — layer internals shared with the models (models/resnet.c). Not installed. */
#ifndef DDN_NN_IMPL_H
#define DDN_NN_IMPL_H

#include "nn.h"

/* ddn_batch_norm2d (residual NULL, relu false) or ddn_batch_norm2d_relu (relu true; residual
 * also works without the relu) writing into out, a contiguous step tensor of x's dtype and shape
 * made by the caller (NULL: a new one). It lets a no-grad forward allocate a block's output
 * before an arena mark, compute the block above the mark and rewind everything but the output.
 * out may be x itself (in place) only when the call records nothing. */
ddn_tensor *ddn_batch_norm2d_into(ddn_ctx *ctx, ddn_tensor *x, ddn_tensor *weight,
                                  ddn_tensor *bias, ddn_tensor *running_mean,
                                  ddn_tensor *running_var, bool training, double momentum,
                                  double eps, ddn_tensor *residual, bool relu, ddn_tensor *out);

#endif
