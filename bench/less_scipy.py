"""SciPy SLSQP on the LESS problems that `ddn bench --table less-effect --dump DIR` wrote: the
reference column of the paper's Tables 1/4 (the paper compared against SLSQP; ddn measures
against its exact solver, and this puts SLSQP in the same table).

    /usr/bin/python3 bench/less_scipy.py DIR        # then: ddn bench ... --scipy DIR

For every DIR/less_MxN.safetensors (A (N,m,n), b (N,m), y_exact, fpd_exact, inner) it solves
min 1/2 ||A u - b||^2 s.t. ||u||^2 = 1 with scipy.optimize.minimize(method="SLSQP"), SciPy's
default options (maxiter 100, ftol 1e-6), analytic gradients, starting from the same point as
ddn's iterative solvers (pinv(A) b projected on the sphere), and writes
DIR/less_MxN_scipy.safetensors: y (N,n) float64, success (N) int64, metadata seed, samples,
time_s (total wall time), scipy version. Prints one summary line per size.
"""
import glob
import os
import re
import sys
import time

import numpy as np
import scipy
from scipy.optimize import minimize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stio  # noqa: E402


def solve_one(A, b):
    A = A.astype(np.float64)
    b = b.astype(np.float64)
    c = np.linalg.lstsq(A, b, rcond=None)[0]
    nc = np.linalg.norm(c)
    x0 = c / nc if nc > 0 else np.ones(A.shape[1]) / np.sqrt(A.shape[1])

    def f(u):
        r = A @ u - b
        return 0.5 * r @ r

    def g(u):
        return A.T @ (A @ u - b)

    cons = {"type": "eq", "fun": lambda u: u @ u - 1.0, "jac": lambda u: 2.0 * u}
    res = minimize(f, x0, jac=g, method="SLSQP", constraints=[cons])
    return res.x, bool(res.success)


def main():
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        sys.exit(0 if len(sys.argv) == 2 else 2)
    d = sys.argv[1]
    files = sorted(f for f in glob.glob(os.path.join(d, "less_*x*.safetensors"))
                   if re.search(r"less_\d+x\d+\.safetensors$", f))
    if not files:
        sys.exit(f"less_scipy.py: no less_MxN.safetensors in {d} (run ddn bench --dump {d})")
    for path in files:
        t, meta = stio.load(path)
        A, b, fpd_exact, inner = t["A"], t["b"], t["fpd_exact"], t["inner"]
        N, m, n = A.shape
        Y = np.empty((N, n))
        ok = np.empty(N, dtype=np.int64)
        t0 = time.perf_counter()
        for i in range(N):
            Y[i], ok[i] = solve_one(A[i], b[i])
        secs = time.perf_counter() - t0
        out = path[:-len(".safetensors")] + "_scipy.safetensors"
        stio.save(out, {"y": Y, "success": ok},
                  {"seed": meta.get("seed", "?"), "samples": N, "time_s": f"{secs:.6f}",
                   "scipy": scipy.__version__})
        fpd = np.linalg.norm(np.einsum("kij,kj->ki", A.astype(np.float64), Y) - b, axis=1)
        keep = fpd_exact > 1e-12
        mre = 100 * np.mean((fpd[keep] - fpd_exact[keep]) / fpd_exact[keep])
        fails = ok == 0
        print(f"{m}x{n}: {N} problems, SLSQP failures inner {int(np.sum(fails & (inner == 1)))} "
              f"outer {int(np.sum(fails & (inner == 0)))}, MRE vs exact {mre:.4f} %, "
              f"max | ||y|| - 1 | {np.max(np.abs(np.linalg.norm(Y, axis=1) - 1)):.1e}, "
              f"{secs:.2f} s -> {out}")


if __name__ == "__main__":
    main()
