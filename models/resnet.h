/* ddn — ResNet-18/34/50 (torchvision v1.5: the stride of a Bottleneck sits on its 3x3 conv).
 *
 * Parameter and buffer names are exactly torchvision's state_dict names ("conv1.weight",
 * "bn1.running_var", "layer3.5.conv2.weight", "fc.bias", ...), so weights exported by
 * tools/export_torchvision.py load by name. In features mode there is no average pool and no fc:
 * the forward returns (N, 512 * expansion, h, w) (2048 channels for ResNet-50). A width
 * multiplier makes small test models. Tests: tests/test_resnet.c.
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
    double width;        /* channel multiplier; 0: 1.0 (64 base channels) */
    int in_channels;     /* 0: 3 */
    uint64_t seed;       /* initialisation RNG seed (torchvision's init scheme) */
} ddn_resnet_opts;

typedef struct ddn_resnet ddn_resnet;

ddn_resnet *ddn_resnet_new(ddn_ctx *ctx, const ddn_resnet_opts *opts);
void ddn_resnet_free(ddn_resnet *net); /* NULL is a no-op */
ddn_params *ddn_resnet_params(ddn_resnet *net);
int64_t ddn_resnet_feature_channels(const ddn_resnet *net);
/* x (N, in_channels, H, W) -> logits (N, classes), or features (N, C, h, w). training selects
 * batch statistics (and updates the running ones) versus the running statistics. */
ddn_tensor *ddn_resnet_forward(ddn_resnet *net, ddn_tensor *x, bool training);

#ifdef __cplusplus
}
#endif
#endif
