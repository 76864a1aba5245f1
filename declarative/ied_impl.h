/* ddn — internals shared by the IED layer's files (ied.c: front end, forward nodes; ied_backward.c:
 * the implicit VJPs; ied_unroll.c: the recorded iterations and the differentiable QR). Not
 * installed. Math: /work/shared/PMAF-MATH.md §2 (and §6 for what the reference code got wrong).
 */
#ifndef DDN_IED_IMPL_H
#define DDN_IED_IMPL_H

#include "ied.h"
#include "ied_power.h"

/* The options a declarative IED node carries (copied by ddn_declarative). o.ref is only read by
 * the forward: the backward never dereferences it. */
typedef struct ied_node_opts {
    ddn_ied_opts o;
    ddn_ied_backward mode;
} ied_node_opts;

/* What the forward leaves for the backward (step arena): O(B) flags for DDN/IFT (y is the node's
 * output; lambda is recomputed from it in float64), the dense eigendecomposition (O(B m^2), what
 * an autodiff eigh keeps) for EIGH. */
typedef struct ied_saved {
    unsigned char *tied; /* (B) the solver's gap check found a (near) repeated eigenvalue */
    double *V, *w;       /* EIGH: (B, m, m) eigenvectors (column j of item b: eigenvalue w[b,j]),
                          * (B, m) eigenvalues ascending */
    int64_t *idx;        /* EIGH: (B) the column returned as y */
    double *sign;        /* EIGH: (B) y = sign * V[:, idx] */
    ddn_tensor *Vt;      /* EIGH on a device: (B, m, m) eigenvectors of A's dtype there; V NULL */
} ied_saved;

static inline const char *ddn_ied_mode_name_(ddn_ied_backward m)
{
    static const char *names[] = {"DDN_E", "DDN_J", "IFT_E", "IFT_J", "UNROLL", "EIGH"};
    return (int)m >= 0 && (int)m <= 5 ? names[m] : "?";
}

/* Implicit VJPs (ied_backward.c), the vjp members of the declarative vtables in ied.c. */
ddn_status ddn_ied_vjp_(ddn_ctx *ctx, const void *opts, ddn_tensor *const *in,
                        const ddn_tensor *y, const ddn_tensor *dy, void *saved);
ddn_status ddn_ied_eigh_vjp_(ddn_ctx *ctx, const void *opts, ddn_tensor *const *in,
                             const ddn_tensor *y, const ddn_tensor *dy, void *saved);

/* How IFT_E solves H^T k = v (ied_backward.c): AUTO, the layer's choice, is the fixed-point
 * (Neumann) iteration with the LU (and its condition check) as the fallback; NEUMANN and LU force
 * one path (NEUMANN fails with DDN_ERR_NOT_CONVERGED where AUTO would fall back). */
typedef enum ddn_ied_ift_path {
    DDN_IED_IFT_AUTO = 0,
    DDN_IED_IFT_NEUMANN = 1,
    DDN_IED_IFT_LU = 2,
} ddn_ied_ift_path;

/* One item's IFT_E solve as the VJP does it, float64: A (m, m) row-major, y unit (m), v (m) ->
 * k (m). *used (may be NULL): the path that produced k; *sweeps (may be NULL): Neumann sweeps
 * run. Errors (a singular H, A y = 0, a forced NEUMANN that did not converge) are set on ctx.
 * Exported for tests only. */
ddn_status ddn_ied_ift_solve_(ddn_ctx *ctx, ddn_ied_ift_path path, int64_t m, const double *A,
                              const double *y, const double *v, double *k,
                              ddn_ied_ift_path *used, int64_t *sweeps);

/* PI on a tensor of any backend through its ied_power kernel (ied_power.c): A (B, m, m) float,
 * y (B, m) of A's dtype and device, info (B) host; o already validated, method PI. Failures and
 * (strict) non-convergence are reported as ddn_ied_solve words them. */
ddn_status ddn_ied_power_solve(ddn_ctx *ctx, const ddn_tensor *A, const ddn_ied_opts *o,
                               ddn_tensor *y, ddn_ied_info *info);

/* The eigenvalue PI targets, so that EIGH and the solver's y compare: the largest algebraic one
 * with the shift, else the largest in magnitude (ties: the larger algebraic one, as for a
 * non-negative A's Perron root). w ascending. */
static inline int64_t ddn_ied_eigh_pick_(int64_t m, const double *w, bool shift)
{
    if (shift) return m - 1;
    int64_t p = m - 1;
    for (int64_t i = m - 2; i >= 0; i--)
        if (fabs(w[i]) > fabs(w[p])) p = i;
    return p;
}

/* The EIGH forward and backward in a device context (ied_eigh_device.c): the backend's eigh
 * kernel (cuSOLVER syevd), the column pick, sign and diagnostics from O(B m) host copies, the
 * backward by batched products on the device. sv->Vt keeps the eigenvectors on the device. */
ddn_status ddn_ied_eigh_solve_device_(ddn_ctx *ctx, const ddn_ied_opts *o, const ddn_tensor *A,
                                      ddn_tensor *y, ddn_decl_info *info, void **saved);
ddn_status ddn_ied_eigh_vjp_device_(ddn_ctx *ctx, const ddn_ied_opts *o, ddn_tensor *A,
                                    const ddn_tensor *y, const ddn_tensor *dy,
                                    const ied_saved *sv);

/* The layer's errors, worded once: an item's NaN / Inf (nonfinite) or zero A, and a mode that
 * needs symmetric A given a non-symmetric item (ied.c). */
ddn_status ddn_ied_input_error_(ddn_ctx *ctx, const char *mode, int64_t b, int64_t B, int64_t m,
                                bool nonfinite);
ddn_status ddn_ied_refuse_nonsymmetric_(ddn_ctx *ctx, ddn_ied_backward mode, int64_t item,
                                       const ddn_tensor *A);

/* The status ddn_ied_solve gives for these per-item outcomes (its messages): the lowest item
 * whose err is set, else (o->strict) the lowest not converged; DDN_OK otherwise. */
ddn_status ddn_ied_power_report(ddn_ctx *ctx, const ddn_tensor *A, const ddn_ied_opts *o,
                                double tol, const ddn_ied_info *info,
                                const ddn_ied_power_err *err);

/* The block kernel's input checks alone (no iterations): per item info->symmetric (pairs with
 * a NaN not counted), info->shift (Gershgorin, when shift) and err->code
 * DDN_IED_POWER_NONFINITE / _ZERO / _OK. For layers that need them on a device without copying
 * A to the host (EIGH, SI). */
ddn_status ddn_ied_power_check(ddn_ctx *ctx, const ddn_tensor *A, bool shift, ddn_ied_info *info,
                               ddn_ied_power_err *err);
/* The kernel's diagnostics and gap check (o->check_gap, shift, tie_tol) for a given unit y
 * (B, m) (SI's answer): info's lambda, fpd, eigen_dist, lambda2, gap_ratio, tied, gap_steps,
 * symmetric and shift; y is renormalised in place (changes by rounding only). */
ddn_status ddn_ied_power_diagnose(ddn_ctx *ctx, const ddn_tensor *A, const ddn_ied_opts *o,
                                  ddn_tensor *y, ddn_ied_info *info, ddn_ied_power_err *err);

/* SI (k >= 2) where A lives, from batched products and the backend's qr kernel (cuSOLVER geqrf
 * + orgqr on CUDA), items iterated together and frozen as they converge (ied_si_device.c): the
 * rules of ddn_ied_solve's SI, whose messages it gives. o validated, method SI. */
ddn_status ddn_ied_si_solve(ddn_ctx *ctx, const ddn_tensor *A, const ddn_ied_opts *o,
                            ddn_tensor *y, ddn_ied_info *info);
/* The E modes' backward through the backend's ied_vjp_e kernel (ied_backward.c): what
 * ddn_ied_vjp_ runs for A on a device other than the CPU. A->grad already made (or A needs none);
 * the solver's tie flags in sv, as the CPU path. Exported for tests, which run it on the CPU (the
 * block algorithm's CPU instance) to check its reporting without a GPU. */
ddn_status ddn_ied_vjp_e_device_(ddn_ctx *ctx, const ied_node_opts *no, const ied_saved *sv,
                                 ddn_tensor *A, const ddn_tensor *y, const ddn_tensor *dy);

/* The IFT_E probe column z (m): fixed pseudo-random N(0, 1) entries (ied_backward.c; the device
 * path uploads the same). Exported for tests. */
void ddn_ied_ift_probe_(int64_t m, double *z);

/* UNROLL (ied_unroll.c): PI or SI recorded op by op; A already validated (B, m, m) float;
 * o already validated by ddn_ied_solve's checks. */
ddn_tensor *ddn_ied_unroll_(ddn_ctx *ctx, ddn_tensor *A, const ddn_ied_opts *o,
                            ddn_decl_info *info);

/* Differentiable thin QR, Z (B, m, k) -> Q (B, m, k), m >= k, Householder (LAPACK geqrf/orgqr)
 * in Z's dtype, Q exactly as LAPACK returns it (no sign normalisation). One tape node; the
 * backward (float64) needs R invertible. Used by the SI unroll; exported for tests only. */
ddn_tensor *ddn_ied_qr_(ddn_ctx *ctx, ddn_tensor *Z);

/* Adds the float64 host gradient g (shape of t, row-major) to t->grad in t's dtype. */
ddn_status ddn_ied_accumulate_(ddn_ctx *ctx, ddn_tensor *t, const double *g);

/* Per-item input checks shared by EIGH and UNROLL (the solver makes its own): NaN/Inf ->
 * DDN_ERR_NUMERIC, all zero -> DDN_ERR_SINGULAR, naming the item and the backward mode. A is
 * float64 host (B, m, m). */
ddn_status ddn_ied_check_finite_nonzero_(ddn_ctx *ctx, const char *mode, int64_t B, int64_t m,
                                         const double *A);

#endif
