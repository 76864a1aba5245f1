"""The PyTorch 1.13 twin of bench/bench_pmaf.c: one training step of ResNet-50 + the IED head.

What matches ddn (`ddn train`'s defaults, models/pmaf.c, PMAF-MATH.md section 5):
  - backbone: torchvision resnet50 (v1.5, random init) without avgpool and fc, so the features
    are (B, 2048, h, w) with h = w = 1 at 32x32 and 2 at 64x64, flattened to 2048 * h * w;
  - head: nn.Linear(2048 * h * w, m * m) (m = 16), reshape (B, m, m), abs, A + A^T, the
    eigenvector of the largest eigenvalue from torch.linalg.eigh (ddn: power iteration, whose
    limit on a non-negative symmetric A is the same Perron vector), sign fixed so that its sum
    is >= 0 (ddn's reference sign, all ones, 0 -> +1), nn.Linear(m, 10);
  - loss and step: cross-entropy (mean), backward, SGD lr 0.05 momentum 0.9; float32; the same
    parameter count (both programs print it); a fixed random batch, labels (i * 7) % 10;
  - timing: one warm-up step, then the median of --runs steps; one configuration per process,
    peak RSS from getrusage (including the ~350 MB of `import torch`).
What differs by design: the eigenvector's solver and backward (eigh and its analytic gradient
here, PI and DDN-E in ddn) and the random initial values (each framework's own RNG).

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/pmaf_torch.py --batch 32 --size 32
    /usr/bin/python3 bench/pmaf_torch.py --check 5      # the loss falls on a fixed batch
    python3 bench/pmaf_torch.py --device cuda --batch 32 --size 32 --runs 5 --warmup 2

--device cuda (bench/run_cuda.sh, against `ddn bench --table resnet-ied --device cuda`): the model
and batch on the GPU, cuDNN without TF32 (ddn's convolutions use FMA math, cuBLAS default math),
each step timed with torch.cuda.Event after the warm-up and a torch.cuda.synchronize(); memory is
torch.cuda.max_memory_allocated() over the timed steps (parameters, gradients and momentum
included), printed as gpu_peak_mib after the CPU fields.
"""
import argparse
import resource
import time

import torch
import torchvision

HEAD_M = 16
CLASSES = 10


def feature_side(s):
    for _ in range(5):  # conv1, the max pool and three stride-2 stages
        s = (s - 1) // 2 + 1
    return s


class IEDHead(torch.nn.Module):
    def __init__(self, in_features, m=HEAD_M, classes=CLASSES):
        super().__init__()
        self.m = m
        self.proj = torch.nn.Linear(in_features, m * m)
        self.fc = torch.nn.Linear(m, classes)

    def forward(self, features):
        a = self.proj(features.flatten(1)).view(-1, self.m, self.m).abs()
        a = a + a.transpose(1, 2)
        _, vectors = torch.linalg.eigh(a)  # eigenvalues ascending
        y = vectors[..., -1]
        y = y * torch.where(y.sum(-1, keepdim=True) >= 0, 1.0, -1.0)
        return self.fc(y)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--check", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = ap.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"pmaf_torch.py: no CUDA device for PyTorch {torch.__version__} "
                         f"(torch.version.cuda = {torch.version.cuda})")
    if a.device == "cuda":
        torch.backends.cudnn.allow_tf32 = False  # as ddn: float32 convolutions without TF32
        torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device(a.device)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    resnet = torchvision.models.resnet50()
    trunk = torch.nn.Sequential(*list(resnet.children())[:-2])  # drop avgpool and fc
    side = feature_side(a.size)
    model = torch.nn.Sequential(trunk, IEDHead(2048 * side * side))
    model.to(dev).train()
    n_params = sum(p.numel() for p in model.parameters())
    x = torch.randn(a.batch, 3, a.size, a.size).to(dev)
    y = torch.tensor([(i * 7) % CLASSES for i in range(a.batch)]).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    if a.check:
        losses = [step() for _ in range(a.check)]
        for i, l in enumerate(losses):
            print(f"torch step {i + 1} loss {l:.6f}")
        verdict = "decreasing" if losses[-1] < losses[0] else "NOT-DECREASING"
        print(f"CHECK torch batch {a.batch} size {a.size} params={n_params} "
              f"first_loss={losses[0]:.6f} last_loss={losses[-1]:.6f} {verdict}")
        raise SystemExit(0 if losses[-1] < losses[0] else 1)
    for _ in range(a.warmup):
        step()
    times = []
    if a.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for _ in range(a.runs):
            start.record()
            step()  # loss.item() inside waits for the device, as ddn's step reads its loss
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
    else:
        for _ in range(a.runs):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    t = sorted(times)
    med = t[len(t) // 2] if len(t) % 2 else (t[len(t) // 2 - 1] + t[len(t) // 2]) / 2
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gpu = ""
    if a.device == "cuda":
        gpu = f" device=cuda gpu_peak_mib={torch.cuda.max_memory_allocated() / 2**20:.1f}"
    print(f"torch {torch.__version__} ResNet-50 + IED head train step batch {a.batch} "
          f"{a.size}x{a.size} on {a.device}: median {med * 1e3:.1f} ms of {a.runs} after "
          f"{a.warmup} warm-up; peak RSS {rss / 1024:.1f} MB; {n_params} parameters")
    print(f"RESULT torch {a.batch} {a.size} ms={med * 1e3:.2f} rss_kb={rss} params={n_params}{gpu}")


if __name__ == "__main__":
    main()
