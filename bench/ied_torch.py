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

--device cuda (bench/run_cuda.sh, against `ddn bench --table ied-vs-torch --device cuda`): A and v
on the GPU, each run timed with torch.cuda.Event after the warm-up and a torch.cuda.synchronize();
the RESULT line then ends with device=cuda peak_mib=P, P = torch.cuda.max_memory_allocated() over
the runs less what A and v hold (ddn's peak_mib likewise leaves out its persistent inputs).
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
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = p.parse_args()
    cuda = a.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit(f"ied_torch.py: no CUDA device for PyTorch {torch.__version__} "
                         f"(torch.version.cuda = {torch.version.cuda})")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False  # as ddn's cuBLAS calls
    torch.set_num_threads(a.threads)
    for m in [int(s) for s in a.sizes.split(",")]:
        base = os.path.join(a.dir, f"ied_m{m}_b{a.batch}_{a.dtype}")
        t, _ = stio.load(base + ".safetensors")
        A = torch.from_numpy(t["A"]).to(a.device).requires_grad_(True)
        v = torch.from_numpy(t["v"]).to(a.device)
        tf, tb, tt = [], [], []
        y = None
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(3)] if cuda else None
        mem_base = 0
        for r in range(a.warmup + a.runs):
            if cuda and r == a.warmup:  # timed runs start on an idle device, peak counted anew
                torch.cuda.synchronize()
                A.grad = None
                torch.cuda.reset_peak_memory_stats()
                mem_base = torch.cuda.memory_allocated()
            A.grad = None
            t0 = time.perf_counter()
            if cuda:
                ev[0].record()
            _, V = torch.linalg.eigh(A)
            y = V[..., -1]
            s = torch.where(y.sum(-1) >= 0, 1.0, -1.0).to(y.dtype)
            y = y * s[..., None]
            t1 = time.perf_counter()
            if cuda:
                ev[1].record()
            (y * v).sum().backward()
            t2 = time.perf_counter()
            if cuda:
                ev[2].record()
                ev[2].synchronize()
                t1 = t0 + ev[0].elapsed_time(ev[1]) / 1e3
                t2 = t0 + ev[0].elapsed_time(ev[2]) / 1e3
            if r >= a.warmup:
                tf.append(1e3 * (t1 - t0)), tb.append(1e3 * (t2 - t1)), tt.append(1e3 * (t2 - t0))
        agree = ""
        if os.path.exists(base + "_ddn.safetensors"):
            d, _ = stio.load(base + "_ddn.safetensors")
            g = A.grad.double().cpu().numpy()
            gs, ds = g + np.swapaxes(g, 1, 2), d["dA"] + np.swapaxes(d["dA"], 1, 2)
            dy = np.max(np.abs(y.detach().double().cpu().numpy() - d["y"]))
            dg = np.max(np.abs(gs - ds)) / np.max(np.abs(ds))
            agree = f" y_maxdiff={dy:.2e} symdA_reldiff={dg:.2e}"
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        gpu = ""
        if cuda:
            gpu = f" device=cuda peak_mib={(torch.cuda.max_memory_allocated() - mem_base) / 2**20:.3f}"
        print(f"RESULT torch m={m} fwd_ms={np.median(tf):.5f} bwd_ms={np.median(tb):.5f} "
              f"total_ms={np.median(tt):.5f} rss_kb={rss}{agree}{gpu}", flush=True)


if __name__ == "__main__":
    main()
