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

/* Input check: 1 = non-finite entry, 2 = all zero, 0 = fine; *sym = (A == A^T exactly). Written
 * to vectorise (OR-reductions of flags; a - a is 0 exactly for finite a) and the symmetry test
 * runs over 32 x 32 tiles so that the transposed reads stay in L1: the plain double loop with
 * its stride-m reads was ~10% of the forward + backward at m = 256 (perf). */
static int TS(ied_check_input)(int64_t m, const T *A, bool *sym)
{
    int bad = 0, nonzero = 0;
    for (int64_t i = 0; i < m * m; i++) {
        T a = A[i];
        bad |= !(a - a == 0);
        nonzero |= a != 0;
    }
    if (bad) return 1;
    int diff = 0;
    for (int64_t ib = 0; ib < m && !diff; ib += 32)
        for (int64_t jb = ib; jb < m && !diff; jb += 32) {
            const int64_t ie = ib + 32 < m ? ib + 32 : m, je = jb + 32 < m ? jb + 32 : m;
            for (int64_t i = ib; i < ie; i++)
                for (int64_t j = jb > i + 1 ? jb : i + 1; j < je; j++)
                    diff |= A[i * m + j] != A[j * m + i];
        }
    *sym = !diff;
    return nonzero ? 0 : 2;
}

/* out = A q accumulated in float64 (the diagnostics' precision); q64 = q in double. Eight
 * lane accumulators per row make the inner loop vectorisable (one running sum is not, without
 * reassociation) and give eight independent add chains: the scalar loop was ~9% of the forward
 * + backward at m = 256 (perf). The summation order is fixed, so results are reproducible. */
static void TS(ied_mv64)(int64_t m, const T *A, const double *q64, double *out)
{
    for (int64_t i = 0; i < m; i++) {
        const T *a = A + i * m;
        double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s = 0;
        int64_t j = 0;
        for (; j + 8 <= m; j += 8)
            for (int l = 0; l < 8; l++) acc[l] += (double)a[j + l] * q64[j + l];
        for (; j < m; j++) s += (double)a[j] * q64[j];
        out[i] = s + (((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) +
                                                                 (acc[3] + acc[7])));
    }
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

/* The gap check for non-symmetric A (and what it was for all A before ied_gap_lanczos): power
 * iteration on P (A + sigma I) P, P = I - y y^T, from the fixed pseudo-random start. For
 * A y = lambda y that operator's spectrum on y's complement is the rest of A + sigma I (A is block
 * triangular in the basis [y, complement], symmetric or not), so its growth rate estimates the
 * competing eigenvalue. Stops when the estimate changes by < 1e-5 relative, or after 200 steps.
 * Kept for non-symmetric A because Arnoldi, its Krylov counterpart, pays for Hessenberg Ritz
 * values (dhseqr: measured 9, 40-90, 110-130, 500-600 us at k = 8, 16, 32, 64), more than these
 * 200 cheap matvecs cost at m <= 128 (prototype: Arnoldi needs k ~ 16-24 to match this estimate's
 * 1-3% median error on |G|, whose bulk is a disk, slow for both). */
static double TS(ied_gap_power)(int64_t m, const T *A, T sigma, const T *y, const ied_ws *ws,
                                int64_t *steps)
{
    T *x = ws->V, *w = (T *)ws->V + m;
    memcpy(x, ws->start, (size_t)m * sizeof(T));
    double mu = 0;
    for (int pass = 0; pass < 200; pass++) {
        T yx = TS(ied_dot)(m, y, x);
        for (int64_t i = 0; i < m; i++) x[i] -= yx * y[i];
        T nx = XB(nrm2)((int)m, x, 1);
        if (!(nx > 0)) break;
        for (int64_t i = 0; i < m; i++) x[i] /= nx;
        TS(ied_apply)(m, 1, A, sigma, x, w);
        *steps = pass + 1;
        T yw = TS(ied_dot)(m, y, w);
        for (int64_t i = 0; i < m; i++) w[i] -= yw * y[i];
        double mun = (double)XB(nrm2)((int)m, w, 1);
        bool done = fabs(mun - mu) <= 1e-5 * mun;
        mu = mun;
        T *t2 = x;
        x = w, w = t2;
        if (done) break;
    }
    return mu;
}

/* The gap check for symmetric A (PMAF-MATH.md §2: H = I - P A / lambda is singular exactly when
 * the competing eigenvalue ties with lambda): max |Ritz value| of k steps of Lanczos on the same
 * deflated operator P (A + sigma I) P from the same start. The operator is symmetric, so the
 * Ritz values of the tridiagonal are lower bounds converging to the extreme eigenvalues at both
 * ends of the bulk at once (ied_ritz_max: ied_tridiag_top). Full reorthogonalisation (classical
 * Gram-Schmidt, repeated when the norm drops by more than 1/sqrt(2): the DGKS rule) keeps the
 * basis orthonormal, so no spurious copies appear.
 *
 * Why not the power iteration (ied_gap_power, what this replaced for symmetric A): on the paper's
 * semicircle bulk it converges like 1/k and ran 25-200 matvecs per item (200: its cap; 830 for
 * the 5 items of the m = 256 benchmark, 75% of the forward), estimates off by up to 4e-3. Lanczos
 * meets a stricter rule in 19-43 steps at m = 32-256 and 23-57 at m = 512-1024 (164 for those
 * 5 items), estimates within 4e-5 of syevd (tests: test_gap_check, and 1% in test_vs_syevd).
 * PI's own step ratio would be free but is no estimate of |lambda_2| before the iteration's
 * asymptotic regime (PI stops after 4-15 steps here), and is undefined when PI converges in one
 * step ([[0, 1], [1, 0]]). A certified upper bound (sqrt(||A||_F^2 - lambda^2) by Schur's
 * inequality) is cheap but far too loose to serve as the estimate (0.5 for a true 0.07), which
 * gap_ratio promises. Stops when the estimate changes by < 1e-5 relative at two consecutive
 * checks (enough to judge tie_tol >= 1e-4), on an invariant subspace (the Ritz values are then
 * exact), or after DDN_IED_GAP_KMAX steps. */
static double TS(ied_gap_lanczos)(int64_t m, const T *A, T sigma, const T *y, double top,
                                  const ied_ws *ws, int64_t *steps)
{
    const int64_t ld = ws->kgap + 1, kmax = ws->kgap;
    const double eps = sizeof(T) == sizeof(float) ? FLT_EPSILON : DBL_EPSILON;
    /* U = [y, q_0, q_1, ...] (m, kmax + 2): y heads the basis, so that projecting it out is part
     * of each reorthogonalisation's two gemv calls (call overheads dominate at m = 32) */
    T *U = ws->V, *Q = U + m, *h = ws->h;
    double *H = ws->H;
    memcpy(U, y, (size_t)m * sizeof(T));
    memcpy(Q, ws->start, (size_t)m * sizeof(T));
    for (int pass = 0; pass < 2; pass++) { /* the start in y's complement, to working accuracy */
        T yx = XB(dot)((int)m, y, 1, Q, 1);
        XB(axpy)((int)m, -yx, y, 1, Q, 1);
    }
    T nv = XB(nrm2)((int)m, Q, 1);
    if (!(nv > 0)) return 0;
    XB(scal)((int)m, 1 / nv, Q, 1);
    memset(H, 0, (size_t)(ld * kmax) * sizeof *H);
    double est = 0, prev = NAN, since = 0;
    int calm = 0;
    ied_ritz_track tr = {.have = false};
    for (int64_t j = 0; j < kmax; j++) {
        T *w = Q + (j + 1) * m;
        const int n = (int)(j + 1);
        *steps = n;
        TS(ied_apply)(m, 1, A, sigma, Q + j * m, w);
        double before = (double)XB(nrm2)((int)m, w, 1), beta = before;
        for (int pass = 0; pass < 3; pass++) { /* against [y, q_0..q_j]; DGKS repeat */
            XB(gemv)(CblasColMajor, CblasTrans, (int)m, n + 1, 1, U, (int)m, w, 1, 0, h, 1);
            XB(gemv)(CblasColMajor, CblasNoTrans, (int)m, n + 1, -1, U, (int)m, h, 1, 1, w, 1);
            for (int64_t i = 0; i <= j; i++) H[i + j * ld] += (double)h[i + 1];
            beta = (double)XB(nrm2)((int)m, w, 1);
            if (beta > 0.7071067811865476 * before) break; /* 1/sqrt(2) */
            before = beta;
        }
        H[j + 1 + j * ld] = beta;
        const bool last = j + 1 == kmax || !(beta > 4 * eps * top);
        /* Ritz values only once the steps since the last evaluation cost at least twice as much
         * as evaluating them (estimated ns, from measured times: a step is the matvec and the
         * reorthogonalisation at ~16 flop/ns plus ~0.3 us of calls; ied_tridiag_top ~70 n ns for
         * both ends): the checks then add at most half to the gap check's cost; at m = 256 they
         * still run every step, at m = 32 every few. */
        since += (2.0 * (double)m * (double)m + 4.0 * (double)m * n) / 16 + 300;
        if (last || since >= 2 * 70.0 * n) {
            since = 0;
            est = ied_ritz_max(n, H, ld, ws->rw, &tr);
            calm = fabs(est - prev) <= 1e-5 * est ? calm + 1 : 0;
            prev = est;
            if (last || calm >= 2) break;
        }
        XB(scal)((int)m, (T)(1 / beta), w, 1);
    }
    return est;
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
    double *ay = ws->ay, *q64 = ws->ay + m, *aq = ws->ay + 2 * m;
    for (int64_t j = 0; j < k; j++) {
        const T *q = Q + j * m;
        double rq = 0, *s = j == 0 ? ay : aq;
        for (int64_t i = 0; i < m; i++) q64[i] = (double)q[i];
        TS(ied_mv64)(m, A, q64, s);
        for (int64_t i = 0; i < m; i++) rq += q64[i] * s[i];
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

    /* Gap check: the competing eigenvalue's magnitude mu in A + sigma I, by Lanczos (symmetric
     * A) or power iteration (not) on the deflated operator: ied_gap_lanczos, ied_gap_power. */
    if (o->check_gap && m > 1) {
        double top = fabs(inf->lambda + sigma_d);
        double mu = sym ? TS(ied_gap_lanczos)(m, A, sigma, y, top, ws, &inf->gap_steps)
                        : TS(ied_gap_power)(m, A, sigma, y, ws, &inf->gap_steps);
        inf->lambda2 = o->shift ? mu - sigma_d : mu;
        inf->gap_ratio = top > 0 ? mu / top : INFINITY;
        inf->tied = inf->gap_ratio >= 1 - o->tie_tol;
    }
}
