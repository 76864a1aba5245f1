/* ddn — IED per-item kernels written once, instantiated per dtype by ied_solver.c.
 *
 * The includer defines T (float | double), TS(name), XB(fn) (cblas_s/d##fn) and XL(fn)
 * (LAPACKE_s/d##fn##_work). No include guard: included twice. A is row-major (m, m); SI's Q and
 * Z are column-major (m, k) with leading dimension m, as LAPACK wants. Math: PMAF-MATH.md §2, §6.
 */

static T TS(ied_dot)(int64_t n, const T *x, const T *y)
{
    T s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i] * y[i];
    return s;
}

/* ||x - s y|| */
static T TS(ied_dist)(int64_t n, const T *x, T s, const T *y)
{
    T acc = 0;
    for (int64_t i = 0; i < n; i++) acc += (x[i] - s * y[i]) * (x[i] - s * y[i]);
    return (T)sqrt((double)acc);
}

/* Input check: 1 = non-finite entry, 2 = all zero, 0 = fine; *sym = (A == A^T exactly). */
static int TS(ied_check_input)(int64_t m, const T *A, bool *sym)
{
    bool nonzero = false, s = true;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < m; j++) {
            T a = A[i * m + j];
            if (!isfinite((double)a)) return 1;
            if (a != 0) nonzero = true;
            if (j > i && a != A[j * m + i]) s = false;
        }
    *sym = s;
    return nonzero ? 0 : 2;
}

/* Gershgorin shift (PMAF-MATH §6): every eigenvalue has real part >= min_i(a_ii - R_i), so with
 * sigma = max(0, -that) the spectrum of A + sigma I has non-negative real parts; for a real
 * spectrum its largest-magnitude eigenvalue is then A's largest algebraic one, plus sigma. */
static double TS(ied_gershgorin)(int64_t m, const T *A)
{
    double lo = INFINITY;
    for (int64_t i = 0; i < m; i++) {
        double r = 0;
        for (int64_t j = 0; j < m; j++)
            if (j != i) r += fabs((double)A[i * m + j]);
        double l = (double)A[i * m + i] - r;
        if (l < lo) lo = l;
    }
    return lo < 0 ? -lo : 0;
}

/* geqrf + orgqr workspace for (m, k), elements of T. */
static lapack_int TS(ied_qr_query)(int64_t m, int64_t k, int64_t *lwork)
{
    T a[1] = {0}, tau[1] = {0}, w1 = 0, w2 = 0;
    lapack_int info = XL(geqrf)(LAPACK_COL_MAJOR, (lapack_int)m, (lapack_int)k, a,
                                (lapack_int)m, tau, &w1, -1);
    if (info == 0)
        info = XL(orgqr)(LAPACK_COL_MAJOR, (lapack_int)m, (lapack_int)k, (lapack_int)k, a,
                         (lapack_int)m, tau, &w2, -1);
    double w = (double)w1 > (double)w2 ? (double)w1 : (double)w2;
    *lwork = ddn_solver_lwork(w);
    return info;
}

/* Q <- the Q factor of Q (m, k), column-major. Returns LAPACK's info. */
static lapack_int TS(ied_qr)(int64_t m, int64_t k, T *Q, T *tau, T *work, int64_t lwork)
{
    lapack_int info = XL(geqrf)(LAPACK_COL_MAJOR, (lapack_int)m, (lapack_int)k, Q, (lapack_int)m,
                                tau, work, (lapack_int)lwork);
    if (info != 0) return info;
    return XL(orgqr)(LAPACK_COL_MAJOR, (lapack_int)m, (lapack_int)k, (lapack_int)k, Q,
                     (lapack_int)m, tau, work, (lapack_int)lwork);
}

/* Fills x (m*k) with N(0,1) draws. */
static void TS(ied_randn)(ddn_rng *rng, int64_t n, T *x)
{
    for (int64_t i = 0; i < n; i++) x[i] = (T)ddn_rng_normal(rng);
}

/* The start: Q (m, k) orthonormal (k = 1: a unit vector). random: from rng; else ones / sqrt(m),
 * and for SI the QR of [ones, e_1, ..., e_{k-1}] (independent for any k <= m). */
static lapack_int TS(ied_start)(int64_t m, int64_t k, bool random, ddn_rng *rng, T *Q, T *tau,
                                T *work, int64_t lwork)
{
    if (random) {
        TS(ied_randn)(rng, m * k, Q);
    } else {
        memset(Q, 0, (size_t)(m * k) * sizeof(T));
        for (int64_t i = 0; i < m; i++) Q[i] = 1;
        for (int64_t j = 1; j < k; j++) Q[j * m + (j - 1)] = 1;
    }
    if (k == 1) {
        T nq = XB(nrm2)((int)m, Q, 1);
        for (int64_t i = 0; i < m; i++) Q[i] /= nq;
        return 0;
    }
    lapack_int info = TS(ied_qr)(m, k, Q, tau, work, lwork);
    if (info == 0) { /* keep the first column on the ones side (Householder may flip it) */
        T s = 0;
        for (int64_t i = 0; i < m; i++) s += Q[i];
        if (s < 0)
            for (int64_t i = 0; i < m; i++) Q[i] = -Q[i];
    }
    return info;
}

/* Z = (A + sigma I) Q for Q (m, k) column-major: row-major A is A^T column-major. */
static void TS(ied_apply)(int64_t m, int64_t k, const T *A, T sigma, const T *Q, T *Z)
{
    if (k == 1) {
        XB(gemv)(CblasRowMajor, CblasNoTrans, (int)m, (int)m, 1, A, (int)m, Q, 1, 0, Z, 1);
    } else {
        XB(gemm)(CblasColMajor, CblasTrans, CblasNoTrans, (int)m, (int)k, (int)m, 1, A, (int)m,
                 Q, (int)m, 0, Z, (int)m);
    }
    if (sigma != 0)
        for (int64_t i = 0; i < m * k; i++) Z[i] += sigma * Q[i];
}

/* One item. A (m, m); y (m), lam_out (1), V (m, k) row-major, lams (k) outputs (all but y may be
 * NULL). ws: this thread's buffers typed T. */
static void TS(ied_item)(int64_t item, int64_t m, const T *A, const ddn_ied_opts *o, T tol,
                         const T *ref, T *y, T *lam_out, T *V, T *lams, const ied_ws *ws,
                         ddn_ied_info *inf, ddn_solver_err *err)
{
    bool sym = false;
    int bad = TS(ied_check_input)(m, A, &sym);
    if (bad) {
        ddn_solver_fail(err, bad == 1 ? DDN_ERR_NUMERIC : DDN_ERR_SINGULAR,
                        bad == 1 ? "A contains NaN or Inf"
                                 : "A is zero: it has no principal eigenvector");
        return;
    }
    inf->symmetric = sym;
    const int64_t k = o->method == DDN_IED_SI ? o->k : 1;
    const double sigma_d = o->shift ? TS(ied_gershgorin)(m, A) : 0;
    const T sigma = (T)sigma_d;
    inf->shift = sigma_d;
    T *Q = ws->Q, *Z = ws->Z, *tau = ws->tau, *work = ws->work;
    ddn_rng rng;
    ddn_rng_seed(&rng, o->seed ^ (0x9E3779B97F4A7C15ULL * (uint64_t)(item + 1)));
    lapack_int info = TS(ied_start)(m, k, o->random_init, &rng, Q, tau, work, ws->lwork);
    bool restarted = o->random_init, conv = false;
    int64_t it = 0;
    T step = 0;
    while (info == 0 && it < o->max_iter) {
        TS(ied_apply)(m, k, A, sigma, Q, Z);
        T nz = XB(nrm2)((int)m, Z, 1);
        if (!isfinite((double)nz)) {
            ddn_solver_fail(err, DDN_ERR_NUMERIC, "iteration %lld overflowed (||A u|| = %g)",
                            (long long)it + 1, (double)nz);
            return;
        }
        if (nz == 0) {
            /* A u = 0: the start lies in the null space; one seeded random restart (PMAF-MATH
             * §2 allows a seeded random start). A second zero means A is nilpotent. */
            if (restarted) {
                ddn_solver_fail(err, DDN_ERR_SINGULAR,
                                "A u = 0 at iteration %lld: no dominant eigenvalue (nilpotent A?)",
                                (long long)it + 1);
                return;
            }
            restarted = true;
            info = TS(ied_start)(m, k, true, &rng, Q, tau, work, ws->lwork);
            continue;
        }
        if (k == 1) {
            /* PI (Eq. 13), and SI with k = 1: the QR of one column is exactly this
             * normalisation (R = ||z||), so geqrf/orgqr would only cost time. */
            for (int64_t i = 0; i < m; i++) Z[i] /= nz;
        } else if ((info = TS(ied_qr)(m, k, Z, tau, work, ws->lwork)) != 0) {
            break;
        }
        /* Sign alignment column by column (Eq. 16): Householder QR and a negative dominant
         * eigenvalue both flip columns; the step test always compares aligned vectors. */
        T s1 = 1;
        for (int64_t j = 0; j < k; j++) {
            T s = TS(ied_dot)(m, Z + j * m, Q + j * m) < 0 ? (T)-1 : (T)1;
            if (s < 0 && (o->sign & DDN_IED_SIGN_HISTORICAL)) {
                for (int64_t i = 0; i < m; i++) Z[j * m + i] = -Z[j * m + i];
                s = 1;
            }
            if (j == 0) s1 = s;
        }
        /* Convergence is judged on the first column, the returned y (for SI it is exactly the
         * power iterate). A test on span(Q) would be vacuous for the paper's k = m, and one on
         * every column would wait for all k eigenvalue magnitudes to separate (bulk eigenvalues
         * of |N| + |N|^T come in near-tied +- pairs); the others are reported as they are. */
        step = TS(ied_dist)(m, Z, s1, Q);
        T *tmp = Q;
        Q = Z, Z = tmp;
        it++;
        if (step <= tol) {
            conv = true;
            break;
        }
    }
    if (info != 0) {
        ddn_solver_fail(err, DDN_ERR_BACKEND, "LAPACK geqrf/orgqr (%lldx%lld) returned info %d",
                        (long long)m, (long long)k, (int)info);
        return;
    }
    inf->iterations = it;
    inf->converged = conv;
    inf->step = (double)step;
    /* Hard-coded reference sign (Eq. 17), column by column; a zero dot keeps the sign. */
    if (o->sign & DDN_IED_SIGN_REFERENCE) {
        for (int64_t j = 0; j < k; j++) {
            double d = 0;
            for (int64_t i = 0; i < m; i++) d += (double)Q[j * m + i] * (ref ? (double)ref[i] : 1);
            if (d < 0)
                for (int64_t i = 0; i < m; i++) Q[j * m + i] = -Q[j * m + i];
        }
    }
    memcpy(y, Q, (size_t)m * sizeof(T));

    /* Diagnostics in float64 (Eq. 42, 43), and the Rayleigh quotients of all columns. */
    double *ay = ws->ay;
    for (int64_t j = 0; j < k; j++) {
        const T *q = Q + j * m;
        double rq = 0;
        for (int64_t i = 0; i < m; i++) {
            double s = 0;
            for (int64_t l = 0; l < m; l++) s += (double)A[i * m + l] * (double)q[l];
            if (j == 0) ay[i] = s;
            rq += (double)q[i] * s;
        }
        if (lams) lams[j] = (T)rq;
        if (j == 0) inf->lambda = rq;
        if (V)
            for (int64_t i = 0; i < m; i++) V[i * k + j] = q[i];
    }
    double nay = 0, fpd = 0, ed = 0;
    for (int64_t i = 0; i < m; i++) nay += ay[i] * ay[i];
    nay = sqrt(nay);
    for (int64_t i = 0; i < m; i++) {
        double yi = (double)y[i], e = ay[i] - inf->lambda * yi;
        double f = nay > 0 ? yi - ay[i] / nay : yi;
        fpd += f * f;
        ed += e * e;
    }
    inf->fpd = sqrt(fpd);
    inf->eigen_dist = sqrt(ed);
    if (lam_out) *lam_out = (T)inf->lambda;

    /* Gap check: power iteration on P (A + sigma I) P, P = I - y y^T, from a fixed pseudo-random
     * start. For A y = lambda y the spectrum of that operator on y's complement is the rest of
     * A + sigma I (symmetric or not), so its growth rate estimates the competing eigenvalue.
     * Stops when the estimate changes by < 1e-5 relative (enough to judge tie_tol >= 1e-4). */
    if (o->check_gap && m > 1) {
        T *x = ws->x, *w = ws->w;
        ddn_rng g;
        ddn_rng_seed(&g, 0x5DEECE66DULL);
        TS(ied_randn)(&g, m, x);
        double mu = 0;
        for (int pass = 0; pass < 200; pass++) {
            T yx = TS(ied_dot)(m, y, x);
            for (int64_t i = 0; i < m; i++) x[i] -= yx * y[i];
            T nx = XB(nrm2)((int)m, x, 1);
            if (!(nx > 0)) break;
            for (int64_t i = 0; i < m; i++) x[i] /= nx;
            TS(ied_apply)(m, 1, A, sigma, x, w);
            T yw = TS(ied_dot)(m, y, w);
            for (int64_t i = 0; i < m; i++) w[i] -= yw * y[i];
            double mun = (double)XB(nrm2)((int)m, w, 1);
            bool done = fabs(mun - mu) <= 1e-5 * mun;
            mu = mun;
            T *t2 = x;
            x = w, w = t2;
            if (done) break;
        }
        double top = fabs(inf->lambda + sigma_d);
        inf->lambda2 = o->shift ? mu - sigma_d : mu;
        inf->gap_ratio = top > 0 ? mu / top : INFINITY;
        inf->tied = inf->gap_ratio >= 1 - o->tie_tol;
    }
}
