"""PyTorch 1.13 side of the IED comparison: torch.linalg.eigh forward + backward on the matrices
that `ddn bench --table ied-vs-torch --data DIR` wrote (A (B,m,m) symmetric, v (B,m)), timed the
way ddn times its PI-IFT-E layer: forward = the principal eigenvector y (sign aligned with the
all-ones vector, as ddn's default), backward = d(sum(v * y))/dA. Run with Debian's python3 and
OPENBLAS_NUM_THREADS=1 (bench/run_ied.sh does); prints one RESULT line per size.

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/ied_torch.py DIR [--sizes 32,256] [--batch 5]
        [--dtype f32|f64] [--runs 20] [--warmup 3] [--threads 2]

When ddn's result file (..._ddn.safetensors) is there, also reports the agreement: max |y - y_ddn|
and the relative difference of the symmetric parts of dA (eigh's gradient and ddn's IFT gradient
agree on symmetric perturbations, the only ones a symmetric input has).
"""
import argparse
import os
import resource
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stio  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--sizes", default="32,256")
    p.add_argument("--batch", type=int, default=5)
    p.add_argument("--dtype", default="f32", choices=["f32", "f64"])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for m in [int(s) for s in a.sizes.split(",")]:
        base = os.path.join(a.dir, f"ied_m{m}_b{a.batch}_{a.dtype}")
        t, _ = stio.load(base + ".safetensors")
        A = torch.from_numpy(t["A"]).requires_grad_(True)
        v = torch.from_numpy(t["v"])
        tf, tb, tt = [], [], []
        y = None
        for r in range(a.warmup + a.runs):
            A.grad = None
            t0 = time.perf_counter()
            _, V = torch.linalg.eigh(A)
            y = V[..., -1]
            s = torch.where(y.sum(-1) >= 0, 1.0, -1.0).to(y.dtype)
            y = y * s[..., None]
            t1 = time.perf_counter()
            (y * v).sum().backward()
            t2 = time.perf_counter()
            if r >= a.warmup:
                tf.append(1e3 * (t1 - t0)), tb.append(1e3 * (t2 - t1)), tt.append(1e3 * (t2 - t0))
        agree = ""
        if os.path.exists(base + "_ddn.safetensors"):
            d, _ = stio.load(base + "_ddn.safetensors")
            g = A.grad.double().numpy()
            gs, ds = g + np.swapaxes(g, 1, 2), d["dA"] + np.swapaxes(d["dA"], 1, 2)
            dy = np.max(np.abs(y.detach().double().numpy() - d["y"]))
            dg = np.max(np.abs(gs - ds)) / np.max(np.abs(ds))
            agree = f" y_maxdiff={dy:.2e} symdA_reldiff={dg:.2e}"
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"RESULT torch m={m} fwd_ms={np.median(tf):.5f} bwd_ms={np.median(tb):.5f} "
              f"total_ms={np.median(tt):.5f} rss_kb={rss}{agree}", flush=True)


if __name__ == "__main__":
    main()
