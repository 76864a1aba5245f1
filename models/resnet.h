/* ddn — ResNet-18/34/50 (torchvision v1.5: the stride of a Bottleneck sits on its 3x3 conv).
 *
 * Parameter and buffer names are exactly torchvision's state_dict names ("conv1.weight",
 * "bn1.running_var", "layer3.5.conv2.weight", "fc.bias", ...), so weights exported by
 * tools/export_torchvision.py load by name. In features mode there is no average pool and no fc:
 * the forward returns (N, 512 * expansion, h, w) (2048 channels for ResNet-50). A width
 * multiplier makes small test models. Tests: tests/test_resnet.c.
 *
 * Every BatchNorm has torchvision's int64 0-dim buffer "<bn>.num_batches_tracked": it is loaded
 * and saved like the others (so exported files load strictly and saved ones load into
 * torchvision), and each training-mode forward adds 1, as PyTorch does. With momentum 0.1 it
 * does not enter the computation. Batch norms use momentum 0.1 and eps 1e-5, as torchvision.
 * Pretrained weights: tools/export_torchvision.py writes a torchvision state_dict as safetensors;
 * load it with ddn_params_load(ddn_resnet_params(net), path, opts).
 */
#ifndef DDN_RESNET_H
#define DDN_RESNET_H

#include "params.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ddn_resnet_arch {
    DDN_RESNET18 = 18,
    DDN_RESNET34 = 34,
    DDN_RESNET50 = 50,
} ddn_resnet_arch;

typedef struct ddn_resnet_opts {
    ddn_resnet_arch arch;
    bool features_only;  /* no avgpool, no fc */
    int num_classes;     /* fc outputs (classification mode); 0: 1000 */
    double width;        /* channel multiplier; 0: 1.0. The base width round(64 * width) (>= 1)
                          * doubles at each stage: width 1/16 gives 4, 8, 16, 32 planes */
    int in_channels;     /* 0: 3 */
    uint64_t seed;       /* initialisation RNG seed (torchvision's init scheme) */
    ddn_dtype dtype;     /* of parameters and activations: DDN_DTYPE_F32 (0, the default) or
                          * DDN_DTYPE_F64 (for checks against float64 references) */
} ddn_resnet_opts;

typedef struct ddn_resnet ddn_resnet;

/* Declares every parameter and buffer in torchvision's state_dict order, allocates them in one
 * block and initialises them as torchvision does (Kaiming normal fan-out for convolutions, BN
 * weight 1 and bias 0, running mean 0 and variance 1, nn.Linear's uniform default for fc),
 * drawing from a ddn_rng seeded with opts->seed. NULL with an error on a bad option. */
ddn_resnet *ddn_resnet_new(ddn_ctx *ctx, const ddn_resnet_opts *opts);
void ddn_resnet_free(ddn_resnet *net); /* NULL is a no-op */
ddn_params *ddn_resnet_params(ddn_resnet *net);
int64_t ddn_resnet_feature_channels(const ddn_resnet *net);
/* The side of the features (before pooling) for an input side: conv1 (stride 2), the max pool
 * and the three stride-2 stages each map s to (s - 1) / 2 + 1 (224 -> 7, 32 -> 1, 64 -> 2). */
int64_t ddn_resnet_feature_side(int64_t input_side);
/* x (N, in_channels, H, W) of the model's dtype -> logits (N, classes), or features (N, C, h, w).
 * training selects batch statistics (and updates the running ones and the counters) versus the
 * running statistics. Activations live in the step arena; the tape records when enabled. */
ddn_tensor *ddn_resnet_forward(ddn_resnet *net, ddn_tensor *x, bool training);

#ifdef __cplusplus
}
#endif
#endif
