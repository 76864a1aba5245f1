/* ddn — deep declarative networks in C. The umbrella header: include this one.
 *
 *     ddn_ctx *ctx = ddn_ctx_new(DDN_DEVICE_CPU, NULL);
 *     ddn_tensor *w = ddn_tensor_new_persistent(ctx, DDN_DTYPE_F32, DDN_SHAPE(10, 784));
 *     ddn_tensor_set_requires_grad(w, true);
 *     ...
 *     ddn_tensor *loss = ddn_cross_entropy(ctx, ddn_linear(ctx, x, w, NULL), y,
 *                                          DDN_REDUCTION_MEAN);
 *     if (ddn_backward(ctx, loss) != DDN_OK) fprintf(stderr, "%s\n", ddn_ctx_errmsg(ctx));
 *     ddn_ctx_reset_step(ctx);
 *
 * Module headers: context.h (errors, arena, stats), tensor.h, autograd.h (tape, backward,
 * gradcheck), ops.h (differentiable ops), declarative.h (argmin layers), safetensors.h,
 * optim.h, idx.h (IDX files), dataset.h (datasets, transforms, the loader).
 */
#ifndef DDN_H
#define DDN_H

#define DDN_VERSION_MAJOR 0
#define DDN_VERSION_MINOR 1
#define DDN_VERSION_PATCH 0

#include "autograd.h"
#include "context.h"
#include "dataset.h"
#include "declarative.h"
#include "idx.h"
#include "ied.h"
#include "less.h"
#include "nn.h"
#include "ops.h"
#include "optim.h"
#include "params.h"
#include "pmaf.h"
#include "resnet.h"
#include "rng.h"
#include "safetensors.h"
#include "tensor.h"

#endif
