"""The PyTorch 1.13 twin of bench/bench_mlp.c: one training epoch of the Fashion-MNIST MLP
784-256-10 (Linear, ReLU, Linear, cross-entropy), SGD with momentum 0.9, the same batch size,
the same per-batch work (gather uint8 images, scale and shift to float32) and nn.Linear's default
init. Prints one RESULT line (epoch seconds, peak RSS from getrusage, mean loss) for bench/run.sh.

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/mlp_torch.py [--batch 64] [--threads 2]

With --epochs N --eval it trains N epochs and prints test accuracy (a reference for the example).
"""
import argparse
import gzip
import os
import resource
import struct
import time

import numpy as np
import torch

MEAN, STD = 0.2860, 0.3530


def read_idx(path):
    """IDX (gzip) -> numpy array; big-endian header, uint8 data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    assert zero == 0 and dtype == 0x08, path
    dims = struct.unpack(">%dI" % ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(data, split):
    x = read_idx(os.path.join(data, "%s-images-idx3-ubyte.gz" % split))
    y = read_idx(os.path.join(data, "%s-labels-idx1-ubyte.gz" % split))
    return torch.from_numpy(x.copy()).reshape(len(x), -1), torch.from_numpy(y.astype(np.int64))


def batch(images, idx):
    # the same work as ddn_idx_batch: gather uint8 rows, v * scale + shift in float32
    return images[idx].float() * (1.0 / (255.0 * STD)) + (-MEAN / STD)


def run_epoch(model, opt, images, labels, bs, gen, max_steps=None):
    perm = torch.randperm(len(images), generator=gen)
    total, steps = 0.0, 0
    for s in range(0, len(images), bs):
        idx = perm[s:s + bs]
        loss = torch.nn.functional.cross_entropy(model(batch(images, idx)), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item()
        steps += 1
        if max_steps and steps == max_steps:
            break
    return total / steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--eval", action="store_true")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    images, labels = load(a.data, "train")
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)

    if not a.eval:
        run_epoch(model, opt, images, labels, a.batch, gen, max_steps=20)  # warm-up
    times = []
    for e in range(a.epochs):
        t0 = time.perf_counter()
        loss = run_epoch(model, opt, images, labels, a.batch, gen)
        times.append(time.perf_counter() - t0)
        msg = "epoch %d: loss %.4f, %.2f s" % (e + 1, loss, times[-1])
        if a.eval:
            timages, tlabels = load(a.data, "t10k")
            with torch.no_grad():
                pred = model(batch(timages, torch.arange(len(timages)))).argmax(1)
            msg += ", test accuracy %.2f%%" % (100.0 * (pred == tlabels).float().mean().item())
        print(msg, flush=True)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("RESULT torch epoch_s=%.4f rss_kb=%d loss=%.4f threads=%d batch=%d"
          % (times[-1], rss_kb, loss, a.threads, a.batch))


if __name__ == "__main__":
    main()
