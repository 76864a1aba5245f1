/* ddn — LESS per-item kernels written once, instantiated per dtype by less_solver.c.
 *
 * The includer defines T (float | double), TS(name) (name##_f32 | name##_f64), XB(fn) (the CBLAS
 * routine cblas_s##fn | cblas_d##fn) and XL(fn) (LAPACKE_s##fn##_work | LAPACKE_d##fn##_work).
 * No include guard: this file is meant to be included twice. Buffers are row-major (m, n) for A
 * unless a name ends in _cm (column-major, as LAPACK wants). Math: PMAF-MATH.md §1.
 */

/* ---- small vector helpers (n is at most a few thousand here; loops beat call overhead) ------ */
static T TS(less_dot)(int64_t n, const T *x, const T *y)
{
    T s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i] * y[i];
    return s;
}

/* r = A u - b.  A (m, n), u (n), b (m), r (m) */
static void TS(less_resid)(int64_t m, int64_t n, const T *A, const T *b, const T *u, T *r)
{
    memcpy(r, b, (size_t)m * sizeof(T));
    XB(gemv)(CblasRowMajor, CblasNoTrans, (int)m, (int)n, 1, A, (int)n, u, 1, -1, r, 1);
}

/* ---- the start: minimum-norm least squares u_c = pinv(A) b (Eq. 45, PMAF-MATH §1) ----------- */
/* Workspace query for gelsd on (m, n): optimal lwork (elements of T) and liwork. */
static lapack_int TS(less_gelsd_query)(int64_t m, int64_t n, int64_t *lwork, int64_t *liwork)
{
    T a[1] = {0}, bb[1] = {0}, s[1] = {0}, wq = 0;
    lapack_int rank = 0, iwq = 0;
    int64_t mx = m > n ? m : n, mn = m < n ? m : n;
    lapack_int info = XL(gelsd)(LAPACK_COL_MAJOR, (lapack_int)m, (lapack_int)n, 1, a,
                                (lapack_int)m, bb, (lapack_int)mx, s, -1, &rank, &wq, -1, &iwq);
    *lwork = ddn_solver_lwork((double)wq);
    /* LAPACK documents LIWORK >= 3*MINMN*NLVL + 11*MINMN with SMLSIZ = 25; take the larger of
     * that and what the query reported. */
    int64_t nlvl = 0;
    if (mn > 26) nlvl = (int64_t)(log((double)mn / 26.0) / log(2.0)) + 1;
    int64_t li = 3 * mn * nlvl + 11 * mn + 8;
    *liwork = li > (int64_t)iwq ? li : (int64_t)iwq;
    return info;
}

/* uc = pinv(A) b, singular values <= rcond * sigma_max dropped (rank deficiency, m < n).
 * a_cm (m*n) and bx (max(m,n)) are overwritten scratch; sv (min(m,n)). Returns LAPACK's info. */
static lapack_int TS(less_center)(int64_t m, int64_t n, const T *A, const T *b, T rcond, T *a_cm,
                                  T *bx, T *sv, T *work, int64_t lwork, lapack_int *iwork, T *uc)
{
    int64_t mx = m > n ? m : n;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) a_cm[i + j * m] = A[i * n + j];
    memcpy(bx, b, (size_t)m * sizeof(T));
    for (int64_t i = m; i < mx; i++) bx[i] = 0;
    lapack_int rank = 0;
    lapack_int info = XL(gelsd)(LAPACK_COL_MAJOR, (lapack_int)m, (lapack_int)n, 1, a_cm,
                                (lapack_int)m, bx, (lapack_int)mx, sv, rcond, &rank, work,
                                (lapack_int)lwork, iwork);
    memcpy(uc, bx, (size_t)n * sizeof(T));
    return info;
}

/* ---- the iterative methods (PMAF-MATH §1, paper Eq. 2-9, 47-49) ----------------------------- */
/* Runs the method set o->method from u (in: the unit start; out: the last iterate).
 * uc (n) is pinv(A) b with norm cn (for DW). w: LESS_ITER_SCRATCH(m, n) elements.
 * Sets iterations and converged in *inf. Returns false when the step produced a zero or
 * non-finite vector (the caller reports it). */
static bool TS(less_iterate)(int64_t m, int64_t n, const T *A, const T *b, const T *uc, T cn,
                             const ddn_less_opts *o, T *u, T *w, ddn_less_info *inf)
{
    T *un = w, *g = un + n, *d = g + n; /* (n) each */
    T *r = d + n, *Ad = r + m, *rt = Ad + m; /* (m) each */
    const unsigned meth = o->method;
    const bool rm = meth & DDN_LESS_RM, twd = meth & DDN_LESS_TWD, dw = meth & DDN_LESS_DW;
    const bool bls = meth & (DDN_LESS_BLS_ONE | DDN_LESS_BLS_GRAD);
    /* DW (Eq. 3): d_t = -g when the centre is outside the sphere, +g inside; its cosine with the
     * centre direction u_c. With u_c = 0 there is no direction: weight 1. */
    const T dw_sign = cn >= 1 ? (T)-1 : (T)1;
    T tw = 1; /* TWD's running step weight (see the comment at the step below) */
    bool ok = true, conv = false;
    int64_t it = 0;

    TS(less_resid)(m, n, A, b, u, r);
    XB(gemv)(CblasRowMajor, CblasTrans, (int)m, (int)n, 1, A, (int)n, r, 1, 0, g, 1); /* A^T r */
    T f = (T)0.5 * TS(less_dot)(m, r, r);

    while (it < o->max_iter) {
        /* Direction: d = g (PGD) or its tangent part P g = g - (u.g) u (RM, Eq. 4 / 52). */
        T ug = rm ? TS(less_dot)(n, u, g) : 0;
        for (int64_t i = 0; i < n; i++) d[i] = g[i] - ug * u[i];
        T gd = TS(less_dot)(n, g, d);
        /* g.d = ||g||^2 (PGD) or ||P g||^2 (RM): zero only at a stationary point (KKT holds). */
        if (!(gd > 0)) {
            conv = true;
            break;
        }
        XB(gemv)(CblasRowMajor, CblasNoTrans, (int)m, (int)n, 1, A, (int)n, d, 1, 0, Ad, 1);
        T den = TS(less_dot)(m, Ad, Ad);
        if (!(den > 0)) { /* A d = 0 forces g.d = r.(A d) = 0: stationary up to round-off */
            conv = true;
            break;
        }
        /* Exact line search along the straight line u - eta d: Eq. 49 (PGD), Eq. 6 (RM). */
        T eta_ls = gd / den;
        T wt = 1;
        if (dw && cn > 0) {
            T gn = XB(nrm2)((int)n, g, 1);
            wt = 1 - dw_sign * TS(less_dot)(n, g, uc) / (gn * cn); /* Eq. 2 */
        }
        T eta;
        if (bls) {
            /* Backtracking (Eq. 7) on the projected point, as PMAF-MATH §1 states it:
             * f(Proj(u - s d)) <= f(u) - alpha s g.d with s = w eta. A Proj(v) - b is formed from
             * A u = r + b and A d in O(m + n), so a trial costs no matrix product. The cap only
             * guards against round-off: for a tangent d the test holds for all small s. */
            eta = (meth & DDN_LESS_BLS_ONE) ? (T)1 : eta_ls;
            for (int k = 0; k < 200; k++) {
                T s = wt * eta;
                for (int64_t i = 0; i < n; i++) un[i] = u[i] - s * d[i];
                T nv = XB(nrm2)((int)n, un, 1);
                for (int64_t j = 0; j < m; j++) rt[j] = ((r[j] + b[j]) - s * Ad[j]) / nv - b[j];
                T ft = (T)0.5 * TS(less_dot)(m, rt, rt);
                if (ft <= f - (T)o->bls_alpha * s * gd) break;
                eta *= (T)o->bls_beta;
            }
        } else if (twd) {
            /* TWD (Eq. 8-9, PMAF-MATH §1 "keep a running eta, start 1"): we read that eta as a
             * running weight on the RM line-search step of Eq. 6, decayed by beta whenever the
             * tangent direction reverses. A bare eta = 1 step is not scale-invariant: with
             * ||A||^2 ~ 190 (64x32, N(0,1)) it failed on 155 of 200 samples when prototyped,
             * while the weighted form reproduces the reference counts (PMAF-MATH §6). */
            eta = tw * eta_ls;
        } else {
            eta = eta_ls;
        }
        T s = wt * eta;
        for (int64_t i = 0; i < n; i++) un[i] = u[i] - s * d[i];
        T nv = XB(nrm2)((int)n, un, 1);
        if (!(nv > 0) || !isfinite(nv)) {
            ok = false;
            break;
        }
        for (int64_t i = 0; i < n; i++) un[i] /= nv; /* Proj onto the sphere (Eq. 48) */

        TS(less_resid)(m, n, A, b, un, r); /* r, g now belong to u_{t+1} */
        XB(gemv)(CblasRowMajor, CblasTrans, (int)m, (int)n, 1, A, (int)n, r, 1, 0, g, 1);
        T fn = (T)0.5 * TS(less_dot)(m, r, r);
        if (twd) {
            /* cos(P_t(-g_t), P_{t+1}(-g_{t+1})) < 0  <=>  d_t . (g' - (u'.g') u') < 0 (Eq. 8) */
            T gu = TS(less_dot)(n, un, g);
            if (TS(less_dot)(n, d, g) - gu * TS(less_dot)(n, d, un) < 0) tw *= (T)o->twd_beta;
        }
        memcpy(u, un, (size_t)n * sizeof(T));
        it++;
        /* Stop on the objective change (App. B.1). |.|: an increase larger than tol (PGD can
         * overshoot) is not convergence. */
        T df = f - fn;
        f = fn;
        if (!isfinite(f)) {
            ok = false;
            break;
        }
        if ((df < 0 ? -df : df) <= (T)o->tol) {
            conv = true;
            break;
        }
    }
    inf->iterations = it;
    inf->converged = conv && ok;
    return ok;
}

/* ---- diagnostics on the returned y, accumulated in float64 ---------------------------------- */
/* Fills fpd, objective and nu. Returns false if y is not finite. */
static bool TS(less_diag)(int64_t m, int64_t n, const T *A, const T *b, const T *y,
                          ddn_less_info *inf)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite((double)y[i])) return false;
    double rr = 0, yAr = 0; /* nu = 1/2 y^T A^T r = 1/2 (A y).r */
    for (int64_t j = 0; j < m; j++) {
        double ay = 0;
        const T *row = A + j * n;
        for (int64_t i = 0; i < n; i++) ay += (double)row[i] * (double)y[i];
        double r = ay - (double)b[j];
        rr += r * r;
        yAr += ay * r;
    }
    inf->fpd = sqrt(rr);
    inf->objective = 0.5 * rr;
    inf->nu = 0.5 * yAr;
    return true;
}

/* Item input checks: 1 = non-finite entry, 2 = A is all zero, 0 = fine. */
static int TS(less_check_input)(int64_t m, int64_t n, const T *A, const T *b)
{
    bool nonzero = false;
    for (int64_t i = 0; i < m * n; i++) {
        if (!isfinite((double)A[i])) return 1;
        if (A[i] != 0) nonzero = true;
    }
    for (int64_t j = 0; j < m; j++)
        if (!isfinite((double)b[j])) return 1;
    return nonzero ? 0 : 2;
}

/* ---- one item, iterative methods ------------------------------------------------------------ */
/* The start: input checks, u_c = pinv(A) b into ws->uc, y = Proj(u_c) (or 1/sqrt(n) * ones when
 * u_c = 0), center_norm and inner into *inf. Returns false with *err set on failure. Used alone by
 * the device forward (ddn_less_solve_start), which iterates elsewhere. */
static bool TS(less_start)(int64_t m, int64_t n, const T *A, const T *b, T *y, T rcond,
                           const less_ws *ws, ddn_less_info *inf, ddn_solver_err *err)
{
    int bad = TS(less_check_input)(m, n, A, b);
    if (bad) {
        ddn_solver_fail(err, bad == 1 ? DDN_ERR_NUMERIC : DDN_ERR_SINGULAR,
                        bad == 1 ? "A or b contains NaN or Inf"
                                 : "A is zero: every unit vector is optimal, no unique solution");
        return false;
    }
    T *uc = ws->uc;
    lapack_int info = TS(less_center)(m, n, A, b, rcond, ws->a_cm, ws->bx, ws->sv, ws->work,
                                      ws->lwork, ws->iwork, uc);
    if (info != 0) {
        ddn_solver_fail(err, DDN_ERR_BACKEND,
                        "LAPACK gelsd (least-squares start, %lldx%lld) returned info %d%s",
                        (long long)m, (long long)n, (int)info,
                        info > 0 ? " (SVD did not converge)" : "");
        return false;
    }
    T cn = XB(nrm2)((int)n, uc, 1);
    inf->center_norm = (double)cn;
    inf->inner = cn < 1;
    inf->hard_case = false;
    if (cn > 0 && isfinite(cn)) {
        for (int64_t i = 0; i < n; i++) y[i] = uc[i] / cn; /* Eq. 46 */
    } else {
        /* pinv(A) b = 0 (b = 0 or b orthogonal to range(A)): Proj is undefined; start at the
         * deterministic 1/sqrt(n) * ones (documented in less_solver.h). */
        for (int64_t i = 0; i < n; i++) y[i] = (T)(1.0 / sqrt((double)n));
    }
    return true;
}

/* A (m, n), b (m), y (n) out. ws holds this thread's buffers, typed T. */
static void TS(less_item)(int64_t item, int64_t m, int64_t n, const T *A, const T *b, T *y,
                          const ddn_less_opts *o, T rcond, const less_ws *ws,
                          ddn_less_info *inf, ddn_solver_err *err)
{
    (void)item;
    if (!TS(less_start)(m, n, A, b, y, rcond, ws, inf, err)) return;
    T cn = (T)inf->center_norm;
    if (!TS(less_iterate)(m, n, A, b, ws->uc, cn, o, y, ws->iter, inf)) {
        ddn_solver_fail(err, DDN_ERR_NUMERIC,
                        "iteration %lld produced a zero or non-finite point (overflow?)",
                        (long long)inf->iterations + 1);
        return;
    }
    if (!TS(less_diag)(m, n, A, b, y, inf))
        ddn_solver_fail(err, DDN_ERR_NUMERIC, "the solution is not finite (overflow?)");
}
