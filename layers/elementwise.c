/* ddn — elementwise ops with NumPy/PyTorch broadcasting: add sub mul div pow, the scalar forms,
 * neg abs exp log sqrt relu sigmoid tanh clamp.
 *
 * One generic unary and one generic binary front end serve every op (a table maps op -> name).
 * Binary inputs are expanded to the broadcast shape with stride-0 views (no copies); the backward
 * computes each operand's full-shape partial into a temporary and lets ddn_grad_accumulate sum it
 * back to the operand's shape. All backward functions accumulate. Derivative conventions follow
 * PyTorch (core/cpu/elementwise_math.h). Tests: tests/test_elementwise.c, test_elementwise_torch.c.
 */
#include <string.h>

#include "ddn_impl.h"
#include "ops.h"

static const char *const unary_names[] = {
    [DDN_UNARY_NEG] = "neg",         [DDN_UNARY_ABS] = "abs",
    [DDN_UNARY_EXP] = "exp",         [DDN_UNARY_LOG] = "log",
    [DDN_UNARY_SQRT] = "sqrt",       [DDN_UNARY_RELU] = "relu",
    [DDN_UNARY_SIGMOID] = "sigmoid", [DDN_UNARY_TANH] = "tanh",
    [DDN_UNARY_CLAMP] = "clamp",     [DDN_UNARY_POW_SCALAR] = "pow_scalar",
    [DDN_UNARY_ADD_SCALAR] = "add_scalar", [DDN_UNARY_MUL_SCALAR] = "mul_scalar",
};
_Static_assert(sizeof unary_names / sizeof unary_names[0] == DDN_UNARY_COUNT,
               "every unary op needs a name");

static const char *const binary_names[] = {
    [DDN_BINARY_ADD] = "add", [DDN_BINARY_SUB] = "sub", [DDN_BINARY_MUL] = "mul",
    [DDN_BINARY_DIV] = "div", [DDN_BINARY_POW] = "pow", [DDN_BINARY_EQ] = "eq",
};
_Static_assert(sizeof binary_names / sizeof binary_names[0] == DDN_BINARY_COUNT,
               "every binary op needs a name");

/* A kernel that failed has set its message; make sure one exists and return NULL. */
static ddn_tensor *kernel_failed(ddn_ctx *ctx, const char *op, ddn_status st)
{
    if (ddn_ctx_status(ctx) == DDN_OK)
        ddn_ctx_set_error(ctx, st, "%s: the %s kernel failed", op, ctx->backend->name);
    return NULL;
}

/* Records a node; false when one was needed but could not be recorded (the error is set). */
static bool record(ddn_ctx *ctx, const char *op, ddn_backward_fn backward, ddn_tensor *out,
                   int n_in, ddn_tensor *const *in, const void *saved, size_t saved_bytes)
{
    bool needed = false;
    for (int i = 0; i < n_in; i++) needed |= in[i]->requires_grad;
    if (!needed || !ddn_grad_enabled(ctx)) return true;
    ddn_node *node = ddn_tape_record(ctx, op, backward, out, n_in, in, saved_bytes);
    if (!node) {
        if (ddn_ctx_status(ctx) == DDN_OK)
            ddn_ctx_set_error(ctx, DDN_ERR_STATE, "%s: could not record a tape node", op);
        return false;
    }
    memcpy(node->saved, saved, saved_bytes);
    return true;
}

/* ---- unary ------------------------------------------------------------------------------------ */
typedef struct {
    ddn_unary_op op;
    double p0, p1; /* clamp bounds, or the scalar of pow/add/mul_scalar */
} unary_saved;

static ddn_status unary_backward(ddn_ctx *ctx, ddn_node *node)
{
    ddn_tensor *x = node->in[0], *y = node->out;
    const unary_saved *sv = node->saved;
    if (!x->requires_grad) return DDN_OK;
    ddn_tensor *dx = ddn_grad_buffer(ctx, x);
    if (!dx) return ddn_ctx_status(ctx);
    return ddn_k(dx)->unary_backward_acc(sv->op, dx, x, y, y->grad, sv->p0, sv->p1);
}

static ddn_tensor *unary_op(ddn_ctx *ctx, ddn_unary_op op, ddn_tensor *x, double p0, double p1)
{
    const char *name = unary_names[op];
    if (!ddn_check_float(ctx, name, x)) return NULL;
    ddn_tensor *y = ddn_tensor_new(ctx, x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    ddn_status st = ddn_k(x)->unary(op, y, x, p0, p1);
    if (st != DDN_OK) return kernel_failed(ctx, name, st);
    unary_saved sv = {op, p0, p1};
    if (!record(ctx, name, unary_backward, y, 1, &x, &sv, sizeof sv)) return NULL;
    return ddn_op_finish(ctx, name, y);
}

ddn_tensor *ddn_neg(ddn_ctx *ctx, ddn_tensor *x) { return unary_op(ctx, DDN_UNARY_NEG, x, 0, 0); }
ddn_tensor *ddn_abs(ddn_ctx *ctx, ddn_tensor *x) { return unary_op(ctx, DDN_UNARY_ABS, x, 0, 0); }
ddn_tensor *ddn_exp(ddn_ctx *ctx, ddn_tensor *x) { return unary_op(ctx, DDN_UNARY_EXP, x, 0, 0); }
ddn_tensor *ddn_log(ddn_ctx *ctx, ddn_tensor *x) { return unary_op(ctx, DDN_UNARY_LOG, x, 0, 0); }
ddn_tensor *ddn_sqrt(ddn_ctx *ctx, ddn_tensor *x)
{
    return unary_op(ctx, DDN_UNARY_SQRT, x, 0, 0);
}
ddn_tensor *ddn_relu(ddn_ctx *ctx, ddn_tensor *x)
{
    return unary_op(ctx, DDN_UNARY_RELU, x, 0, 0);
}
ddn_tensor *ddn_sigmoid(ddn_ctx *ctx, ddn_tensor *x)
{
    return unary_op(ctx, DDN_UNARY_SIGMOID, x, 0, 0);
}
ddn_tensor *ddn_tanh(ddn_ctx *ctx, ddn_tensor *x)
{
    return unary_op(ctx, DDN_UNARY_TANH, x, 0, 0);
}
ddn_tensor *ddn_clamp(ddn_ctx *ctx, ddn_tensor *x, double lo, double hi)
{
    return unary_op(ctx, DDN_UNARY_CLAMP, x, lo, hi);
}
ddn_tensor *ddn_pow_scalar(ddn_ctx *ctx, ddn_tensor *x, double p)
{
    return unary_op(ctx, DDN_UNARY_POW_SCALAR, x, p, 0);
}
ddn_tensor *ddn_add_scalar(ddn_ctx *ctx, ddn_tensor *x, double s)
{
    return unary_op(ctx, DDN_UNARY_ADD_SCALAR, x, s, 0);
}
ddn_tensor *ddn_mul_scalar(ddn_ctx *ctx, ddn_tensor *x, double s)
{
    return unary_op(ctx, DDN_UNARY_MUL_SCALAR, x, s, 0);
}

/* ---- binary ----------------------------------------------------------------------------------- */
typedef struct {
    ddn_binary_op op;
    ddn_tensor *a, *b; /* the inputs as views of the output's shape (stride 0 where broadcast) */
} binary_saved;

static ddn_status binary_backward(ddn_ctx *ctx, ddn_node *node)
{
    const binary_saved *sv = node->saved;
    ddn_tensor *y = node->out, *dy = y->grad;
    for (int i = 0; i < 2; i++) {
        ddn_tensor *t = node->in[i];
        if (!t->requires_grad) continue;
        ddn_status st;
        if (sv->op == DDN_BINARY_ADD || sv->op == DDN_BINARY_SUB) {
            /* the partial is +-dy itself: no temporary */
            double sign = sv->op == DDN_BINARY_SUB && i == 1 ? -1.0 : 1.0;
            st = ddn_grad_accumulate(ctx, t, dy, sign);
        } else {
            /* The gradient buffer must outlive the temporary, so it is made before the mark. */
            if (!ddn_grad_buffer(ctx, t)) return ddn_ctx_status(ctx);
            ddn_mark mark = ddn_ctx_mark(ctx);
            ddn_tensor *g = ddn_tensor_new(ctx, dy->dtype, dy->ndim, dy->shape);
            st = g ? ddn_k(g)->binary_backward(sv->op, i, g, sv->a, sv->b, y, dy)
                   : ddn_ctx_status(ctx);
            if (st == DDN_OK) st = ddn_grad_accumulate(ctx, t, g, 1.0);
            ddn_ctx_rewind(ctx, mark);
        }
        if (st != DDN_OK) return st;
    }
    return DDN_OK;
}

static ddn_tensor *binary_op(ddn_ctx *ctx, ddn_binary_op op, ddn_tensor *a, ddn_tensor *b)
{
    const char *name = binary_names[op];
    if (!ddn_check_pair(ctx, name, a, b)) return NULL;
    int n;
    int64_t shape[DDN_MAX_DIMS];
    if (!ddn_broadcast_shapes(ctx, name, a, b, &n, shape)) return NULL;
    ddn_tensor *y = ddn_tensor_new(ctx, a->dtype, n, shape);
    if (!y) return NULL;
    ddn_tensor *av = ddn_tensor_same_shape(a, y) ? a : ddn_broadcast_raw(ctx, a, n, shape);
    ddn_tensor *bv = ddn_tensor_same_shape(b, y) ? b : ddn_broadcast_raw(ctx, b, n, shape);
    if (!av || !bv) return NULL;
    ddn_status st = ddn_k(y)->binary(op, y, av, bv);
    if (st != DDN_OK) return kernel_failed(ctx, name, st);
    binary_saved sv = {op, av, bv};
    if (!record(ctx, name, binary_backward, y, 2, (ddn_tensor *[]){a, b}, &sv, sizeof sv))
        return NULL;
    return ddn_op_finish(ctx, name, y);
}

ddn_tensor *ddn_add(ddn_ctx *ctx, ddn_tensor *a, ddn_tensor *b)
{
    return binary_op(ctx, DDN_BINARY_ADD, a, b);
}
ddn_tensor *ddn_sub(ddn_ctx *ctx, ddn_tensor *a, ddn_tensor *b)
{
    return binary_op(ctx, DDN_BINARY_SUB, a, b);
}
ddn_tensor *ddn_mul(ddn_ctx *ctx, ddn_tensor *a, ddn_tensor *b)
{
    return binary_op(ctx, DDN_BINARY_MUL, a, b);
}
ddn_tensor *ddn_div(ddn_ctx *ctx, ddn_tensor *a, ddn_tensor *b)
{
    return binary_op(ctx, DDN_BINARY_DIV, a, b);
}
ddn_tensor *ddn_pow(ddn_ctx *ctx, ddn_tensor *a, ddn_tensor *b)
{
    return binary_op(ctx, DDN_BINARY_POW, a, b);
}
