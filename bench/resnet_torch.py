"""The PyTorch 1.13 twin of bench/bench_resnet.c: torchvision ResNet-50 (random init, float32),
an eval-mode forward under no_grad or a training step (train-mode forward, cross-entropy on 1000
classes, backward, SGD momentum 0.9), one configuration per process so that the peak RSS
(getrusage, including the torch import) is that configuration's. One warm-up, then the median of
--runs iterations; FLOPs as in bench_resnet.c. Prints one RESULT line for bench/run_resnet.sh.

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/resnet_torch.py --mode fwd --batch 8 --size 224
"""
import argparse
import resource
import time

import torch
import torchvision


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["fwd", "train"], default="fwd")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet50()
    x = torch.randn(a.batch, 3, a.size, a.size)
    y = torch.tensor([(i * 137) % 1000 for i in range(a.batch)])
    train = a.mode == "train"
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if train else None
    model.train(train)
    times = []
    for _ in range(a.runs + 1):  # the first is the warm-up
        t0 = time.perf_counter()
        if train:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        else:
            with torch.no_grad():
                model(x)
        times.append(time.perf_counter() - t0)
    t = sorted(times[1:])
    med = t[len(t) // 2] if len(t) % 2 else (t[len(t) // 2 - 1] + t[len(t) // 2]) / 2
    gflop = 4.1 * a.batch * (a.size / 224) ** 2 * (3 if train else 1)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"torch {torch.__version__} ResNet-50 {a.mode} batch {a.batch} {a.size}x{a.size}: "
          f"median {med * 1e3:.1f} ms of {a.runs} ({gflop / med:.1f} GFLOP/s); peak RSS "
          f"{rss / 1024:.1f} MB")
    print(f"RESULT torch {a.mode} {a.batch} {a.size} ms={med * 1e3:.2f} gflop={gflop:.3f} "
          f"rss_kb={rss}")


if __name__ == "__main__":
    main()
