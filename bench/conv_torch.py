"""The PyTorch 1.13 twin of bench/bench_conv.c: forward and backward of ResNet-50's convolution
shapes (batch 8, 224x224 input; float32, no bias), timed the same way (one warm-up, the median of
--runs iterations; backward computes x and w gradients, only w for the stem). Prints one RESULT
line per layer for bench/run_conv.sh.

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/conv_torch.py [--threads 2] [--runs 5]
"""
import argparse
import resource
import time

import torch

# name, C, H, OC, K, stride, pad, input needs grad (as bench_conv.c)
LAYERS = [
    ("stem 7x7/2 3->64 @224", 3, 224, 64, 7, 2, 3, False),
    ("3x3 64->64 @56", 64, 56, 64, 3, 1, 1, True),
    ("1x1 256->64 @56", 256, 56, 64, 1, 1, 0, True),
    ("1x1/2 256->512 @56", 256, 56, 512, 1, 2, 0, True),
    ("3x3 512->512 @7", 512, 7, 512, 3, 1, 1, True),
]


def bench_layer(layer, batch, runs):
    _, C, H, OC, K, stride, pad, dx = layer
    x = (torch.rand(batch, C, H, H) * 2 - 1).requires_grad_(dx)
    bound = 1.0 / (C * K * K) ** 0.5
    w = ((torch.rand(OC, C, K, K) * 2 - 1) * bound).requires_grad_()
    tf, tb = [], []
    for _ in range(runs + 1):  # the first is the warm-up
        x.grad = None  # as ddn zeroes its gradients; torch then writes them without an add
        w.grad = None
        t0 = time.perf_counter()
        y = torch.nn.functional.conv2d(x, w, None, stride=stride, padding=pad)
        t1 = time.perf_counter()
        dy = torch.rand_like(y) * 2 - 1
        t2 = time.perf_counter()
        y.backward(dy)
        t3 = time.perf_counter()
        tf.append(t1 - t0)
        tb.append(t3 - t2)
    med = lambda v: sorted(v[1:])[len(v[1:]) // 2]  # noqa: E731
    return med(tf), med(tb)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"## PyTorch {torch.__version__} conv2d, batch {a.batch}, threads {a.threads}")
    for i, layer in enumerate(LAYERS):
        name, C, H, OC, K, stride, pad, dx = layer
        oh = (H + 2 * pad - K) // stride + 1
        flops = 2.0 * a.batch * OC * oh * oh * C * K * K
        f, b = bench_layer(layer, a.batch, a.runs)
        bflops = flops * (2 if dx else 1)
        print(f"| {name} | {1e3 * f:.2f} | {flops / f / 1e9:.1f} | {1e3 * b:.2f} | "
              f"{bflops / b / 1e9:.1f} |")
        print(f"RESULT torch {i} fwd_ms={1e3 * f:.3f} bwd_ms={1e3 * b:.3f} gflop={flops / 1e9:.4f} "
              f"bgflop={bflops / 1e9:.4f}", flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"RESULT torch rss_kb={rss}")


if __name__ == "__main__":
    main()
