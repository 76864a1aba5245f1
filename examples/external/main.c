/* A program outside the ddn tree: includes the installed header, builds a tiny graph, runs
 * backward, and checks the gradient of sum(x^T x) wrt x (= 2x), through views only. */
#include <ddn/ddn.h>
#include <stdio.h>

int main(void)
{
    const char *why = NULL;
    ddn_ctx *ctx = ddn_ctx_new(DDN_DEVICE_CPU, &why);
    if (!ctx) {
        fprintf(stderr, "external_example: %s\n", why);
        return 1;
    }
    ddn_tensor *x = ddn_arange(ctx, DDN_DTYPE_F64, 0, 6, 1);
    ddn_tensor_set_requires_grad(x, true);
    ddn_tensor *y = ddn_transpose(ctx, ddn_reshape(ctx, x, DDN_SHAPE(2, 3)), 0, 1);
    ddn_tensor *dy = ddn_ones(ctx, DDN_DTYPE_F64, DDN_SHAPE(3, 2));
    if (ddn_backward_with_grad(ctx, y, dy) != DDN_OK) {
        fprintf(stderr, "external_example: %s\n", ddn_ctx_errmsg(ctx));
        return 1;
    }
    double g = ddn_tensor_item(ddn_slice(ctx, x->grad, 0, 4, 5, 1));
    printf("external example: ddn %d.%d.%d linked, gradient %.1f (expected 1.0)\n",
           DDN_VERSION_MAJOR, DDN_VERSION_MINOR, DDN_VERSION_PATCH, g);
    ddn_ctx_free(ctx);
    return g == 1.0 ? 0 : 1;
}
