/* ddn — IED's power iteration for one item, as block code (blk.h): the algorithm of
 * ied_solver_tmpl.h's ied_item for PI, written once for a CUDA block and for one CPU thread.
 *
 * The includer defines T (float | double) and TS(name), and has included blk.h, blk_tmpl.h (for
 * this T), ied_ritz.h, ied_power.h and ied_solver.h. No include guard: included once per T.
 * Every branch below depends only on values all threads hold (sums, broadcasts, counters). See
 * ied_solver_tmpl.h for why each step is as it is; comments here say only what differs.
 */

/* Input check: 1 = non-finite entry, 2 = all zero, 0 = fine; *sym = (A == A^T exactly, pairs
 * with a NaN not counted, as ied.c's first_nonsymmetric). */
DDN_BLK_FN int TS(ied_pw_check)(const ddn_blk *b, int64_t m, const T *A, bool *sym)
{
    double bad = 0, nonzero = 0, asym = 0;
    DDN_BLK_FOR(b, idx, m * m)
    {
        const int64_t i = idx / m, j = idx % m;
        const T a = A[idx];
        bad += !(a - a == 0);
        nonzero += a != 0;
        if (j > i) {
            const T z = A[j * m + i];
            asym += a != z && a == a && z == z;
        }
    }
    bad = ddn_blk_sum(b, bad);
    nonzero = ddn_blk_sum(b, nonzero);
    *sym = ddn_blk_sum(b, asym) == 0;
    return bad > 0 ? 1 : nonzero > 0 ? 0 : 2;
}

/* sigma = max(0, -min_i(a_ii - sum_{j != i} |a_ij|)): each thread takes whole rows. */
DDN_BLK_FN double TS(ied_pw_gershgorin)(const ddn_blk *b, int64_t m, const T *A)
{
    double hi = -INFINITY; /* max of -(a_ii - R_i) */
    DDN_BLK_FOR(b, i, m)
    {
        double r = 0;
        for (int64_t j = 0; j < m; j++)
            if (j != i) r += fabs((double)A[i * m + j]);
        hi = fmax(hi, -((double)A[i * m + i] - r));
    }
    hi = ddn_blk_max(b, hi);
    return hi > 0 ? hi : 0;
}

/* Q <- src / ||src|| (src NULL: ones / sqrt(m)). */
DDN_BLK_FN void TS(ied_pw_start)(const ddn_blk *b, int64_t m, const T *src, T *Q)
{
    DDN_BLK_FOR(b, i, m) Q[i] = src ? src[i] : (T)1;
    const T nq = (T)TS(blk_nrm2)(b, m, Q);
    DDN_BLK_FOR(b, i, m) Q[i] /= nq;
    DDN_BLK_SYNC(b);
}

/* Z = (A + sigma I) Q. */
DDN_BLK_FN void TS(ied_pw_apply)(const ddn_blk *b, int64_t m, const T *A, T sigma, const T *Q, T *Z)
{
    TS(blk_mv)(b, m, m, A, m, Q, NULL, 1, 0, Z, NULL);
    if (sigma != 0) {
        DDN_BLK_FOR(b, i, m) Z[i] += sigma * Q[i];
        DDN_BLK_SYNC(b);
    }
}

/* x -= (y . x) y for unit y. */
DDN_BLK_FN void TS(ied_pw_deflate)(const ddn_blk *b, int64_t m, const T *y, T *x)
{
    const T yx = (T)TS(blk_dot)(b, m, y, x);
    DDN_BLK_FOR(b, i, m) x[i] -= yx * y[i];
    DDN_BLK_SYNC(b);
}

/* The gap check for non-symmetric A: ied_solver_tmpl.h's ied_gap_power. V: 2 m scratch. */
DDN_BLK_FN double TS(ied_pw_gap_power)(const ddn_blk *b, int64_t m, const T *A, T sigma,
                                       const T *y, const T *start, T *V, int64_t *steps)
{
    T *x = V, *w = V + m;
    DDN_BLK_FOR(b, i, m) x[i] = start[i];
    DDN_BLK_SYNC(b);
    double mu = 0;
    for (int pass = 0; pass < 200; pass++) {
        TS(ied_pw_deflate)(b, m, y, x);
        const T nx = (T)TS(blk_nrm2)(b, m, x);
        if (!(nx > 0)) break;
        DDN_BLK_FOR(b, i, m) x[i] /= nx;
        DDN_BLK_SYNC(b);
        TS(ied_pw_apply)(b, m, A, sigma, x, w);
        *steps = pass + 1;
        TS(ied_pw_deflate)(b, m, y, w);
        const double mun = TS(blk_nrm2)(b, m, w);
        const bool done = fabs(mun - mu) <= 1e-5 * mun;
        mu = mun;
        T *t2 = x;
        x = w, w = t2;
        if (done) break;
    }
    return mu;
}

/* The gap check for symmetric A: ied_solver_tmpl.h's ied_gap_lanczos, with the same stopping
 * and Ritz-evaluation rules; the Ritz values are computed by thread 0 and broadcast. U: the
 * basis [y, q_0, ...] (m, kmax + 2) column-major; h (kmax + 2); H (kmax + 1, kmax). */
DDN_BLK_FN double TS(ied_pw_gap_lanczos)(const ddn_blk *b, int64_t m, const T *A, T sigma,
                                         const T *y, const T *start, double top, int64_t kmax,
                                         T *U, T *h, double *H, int64_t *steps)
{
    const int64_t ld = kmax + 1;
    const double eps = sizeof(T) == sizeof(float) ? FLT_EPSILON : DBL_EPSILON;
    T *Q = U + m;
    DDN_BLK_FOR(b, i, m) U[i] = y[i], Q[i] = start[i];
    DDN_BLK_FOR(b, i, ld * kmax) H[i] = 0;
    DDN_BLK_SYNC(b);
    for (int pass = 0; pass < 2; pass++) TS(ied_pw_deflate)(b, m, y, Q);
    const double nv = TS(blk_nrm2)(b, m, Q);
    if (!(nv > 0)) return 0;
    DDN_BLK_FOR(b, i, m) Q[i] *= (T)(1 / nv);
    DDN_BLK_SYNC(b);
    double est = 0, prev = NAN, since = 0;
    int calm = 0;
    ied_ritz_track tr = {{0, 0}, {0, 0}, false};
    for (int64_t j = 0; j < kmax; j++) {
        T *w = Q + (j + 1) * m;
        const int64_t n = j + 1;
        *steps = n;
        TS(ied_pw_apply)(b, m, A, sigma, Q + j * m, w);
        double before = TS(blk_nrm2)(b, m, w), beta = before;
        for (int pass = 0; pass < 3; pass++) { /* against [y, q_0..q_j]; DGKS repeat */
            TS(blk_mv)(b, n + 1, m, U, m, w, NULL, 1, 0, h, NULL);   /* h = U^T w */
            TS(blk_mvt)(b, n + 1, m, U, m, h, NULL, -1, 1, w, NULL); /* w -= U h */
            if (ddn_blk_leader(b))
                for (int64_t i = 0; i <= j; i++) H[i + j * ld] += (double)h[i + 1];
            beta = TS(blk_nrm2)(b, m, w);
            if (beta > 0.7071067811865476 * before) break; /* 1/sqrt(2) */
            before = beta;
        }
        if (ddn_blk_leader(b)) H[j + 1 + j * ld] = beta;
        const bool last = j + 1 == kmax || !(beta > 4 * eps * top);
        since += (2.0 * (double)m * (double)m + 4.0 * (double)m * (double)n) / 16 + 300;
        if (last || since >= 2 * 70.0 * (double)n) {
            since = 0;
            double e = 0;
            if (ddn_blk_leader(b) && !ied_ritz_ends(n, H, ld, &tr, &e))
                e = ied_ritz_gershgorin(n, H, ld);
            est = ddn_blk_bcast(b, e);
            calm = fabs(est - prev) <= 1e-5 * est ? calm + 1 : 0;
            prev = est;
            if (last || calm >= 2) break;
        }
        DDN_BLK_FOR(b, i, m) w[i] *= (T)(1 / beta);
        DDN_BLK_SYNC(b);
    }
    return est;
}

/* The item's body: fills *out, or *e on a failure (then returns early). */
DDN_BLK_FN void TS(ied_power_body)(const ddn_blk *b, const ddn_ied_power_params *p, const T *A,
                                   const T *rnd, const T *ref, const T *gstart, T *y,
                                   ddn_ied_info *out, ddn_ied_power_err *e, void *scratch)
{
    const int64_t m = p->m, kg = p->kgap;
    double *ay = (double *)scratch, *H = ay + m;
    T *Q = (T *)(H + (kg + 1) * kg), *Z = Q + m, *U = Z + m, *h = U + (kg + 2) * m;

    bool sym = false;
    const int bad = TS(ied_pw_check)(b, m, A, &sym);
    out->symmetric = sym; /* also for a failing item: the DDN modes' refusal comes first */
    if (bad) {
        e->code = bad == 1 ? DDN_IED_POWER_NONFINITE : DDN_IED_POWER_ZERO;
        return;
    }
    const double sigma_d = p->shift ? TS(ied_pw_gershgorin)(b, m, A) : 0;
    const T sigma = (T)sigma_d, tol = (T)p->tol;
    out->shift = sigma_d;
    TS(ied_pw_start)(b, m, p->random_init ? rnd : NULL, Q);
    bool restarted = p->random_init, conv = false;
    int64_t it = 0;
    double step = 0;
    while (it < p->max_iter) {
        TS(ied_pw_apply)(b, m, A, sigma, Q, Z);
        const double nz = TS(blk_nrm2)(b, m, Z);
        if (!isfinite(nz)) {
            e->code = DDN_IED_POWER_OVERFLOW, e->it = it + 1, e->value = nz;
            return;
        }
        if (nz == 0) { /* the start lies in the null space: one seeded random restart */
            if (restarted) {
                e->code = DDN_IED_POWER_NILPOTENT, e->it = it + 1;
                return;
            }
            restarted = true;
            TS(ied_pw_start)(b, m, rnd, Q);
            continue;
        }
        const T tnz = (T)nz;
        DDN_BLK_FOR(b, i, m) Z[i] /= tnz;
        double s1 = TS(blk_dot)(b, m, Z, Q) < 0 ? -1 : 1;
        if (s1 < 0 && (p->sign & DDN_IED_SIGN_HISTORICAL)) {
            DDN_BLK_FOR(b, i, m) Z[i] = -Z[i];
            s1 = 1;
        }
        step = sqrt(TS(blk_dist2)(b, m, Z, s1, Q));
        T *tmp = Q;
        Q = Z, Z = tmp;
        it++;
        if ((T)step <= tol) {
            conv = true;
            break;
        }
    }
    out->iterations = it;
    out->converged = conv;
    out->step = step;
    if (p->sign & DDN_IED_SIGN_REFERENCE) {
        double d = 0;
        DDN_BLK_FOR(b, i, m) d += (double)Q[i] * (ref ? (double)ref[i] : 1);
        if (ddn_blk_sum(b, d) < 0) DDN_BLK_FOR(b, i, m) Q[i] = -Q[i];
    }
    DDN_BLK_FOR(b, i, m) y[i] = Q[i];

    /* Diagnostics in float64 (Eq. 42, 43) */
    TS(blk_mv)(b, m, m, A, m, y, NULL, 1, 0, NULL, ay);
    double rq = 0, nay2 = 0;
    DDN_BLK_FOR(b, i, m) rq += (double)y[i] * ay[i], nay2 += ay[i] * ay[i];
    rq = ddn_blk_sum(b, rq);
    const double nay = sqrt(ddn_blk_sum(b, nay2));
    double fpd = 0, ed = 0;
    DDN_BLK_FOR(b, i, m)
    {
        const double yi = (double)y[i], er = ay[i] - rq * yi, f = nay > 0 ? yi - ay[i] / nay : yi;
        fpd += f * f;
        ed += er * er;
    }
    out->lambda = rq;
    out->fpd = sqrt(ddn_blk_sum(b, fpd));
    out->eigen_dist = sqrt(ddn_blk_sum(b, ed));

    if (kg > 0 && m > 1) {
        const double top = fabs(rq + sigma_d);
        const double mu = sym ? TS(ied_pw_gap_lanczos)(b, m, A, sigma, y, gstart, top, kg, U, h,
                                                       H, &out->gap_steps)
                              : TS(ied_pw_gap_power)(b, m, A, sigma, y, gstart, U,
                                                     &out->gap_steps);
        out->lambda2 = p->shift ? mu - sigma_d : mu;
        out->gap_ratio = top > 0 ? mu / top : INFINITY;
        out->tied = out->gap_ratio >= 1 - p->tie_tol;
    }
}

/* One item: A (m, m) row-major; rnd (m) its seeded N(0,1) vector (the random start, or the
 * restart); ref (m) or NULL; gstart (m) the gap check's fixed start; y (m) out; inf and err out
 * (written by thread 0). scratch: ddn_ied_power_scratch(m, kgap, sizeof(T)) bytes. */
DDN_BLK_FN void TS(ied_power_item)(const ddn_blk *b, const ddn_ied_power_params *p, const T *A,
                                   const T *rnd, const T *ref, const T *gstart, T *y,
                                   ddn_ied_info *inf, ddn_ied_power_err *err, void *scratch)
{
    ddn_ied_info out;
    ddn_ied_power_err e;
    memset(&out, 0, sizeof out);
    memset(&e, 0, sizeof e);
    TS(ied_power_body)(b, p, A, rnd, ref, gstart, y, &out, &e, scratch);
    DDN_BLK_SYNC(b);
    if (ddn_blk_leader(b)) {
        *inf = out;
        *err = e;
    }
}
