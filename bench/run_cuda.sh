#!/bin/sh
# bench/run_cuda.sh — ddn against PyTorch on the same GPU, in one run: builds ddn with the CUDA
# backend, then alternates the two programs A B A B over ROUNDS on
#   1. the IED layer (PI forward, IFT-E backward; torch: linalg.eigh forward + backward), batch 5,
#      float32, on the same matrices (ddn bench --table ied-vs-torch --device cuda writes them,
#      bench/ied_torch.py --device cuda reads them);
#   2. one training step of ResNet-50 + the IED head (ddn bench --table resnet-ied --device cuda;
#      bench/pmaf_torch.py --device cuda), float32, at each batch:size in CONFIGS.
# Both time with CUDA events after a warm-up and a synchronise, without TF32. Prints per size the
# median over rounds of each program's time and memory, and the median per-round ratio ddn/torch
# (below 1: ddn is faster). FULL=1 also prints ddn's whole IED table on the device (paper Tables
# 3, 6, 7: every method, m up to 1024; ddn only). Exits 1 with one line when there is no GPU, or
# when the PyTorch found has no CUDA support.
#
#     bench/run_cuda.sh [BUILD_DIR] [ROUNDS] [SIZES] [CONFIGS]
#     defaults: build/cuda-bench 3 32,256,1024 "32:32 8:64"; ARCH=90 (H100/H200) picks the
#     kernels' architecture; PYTHON=python3 the interpreter with a CUDA build of PyTorch
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${1:-$root/build/cuda-bench}
rounds=${2:-3}
sizes=${3:-32,256,1024}
configs=${4:-"32:32 8:64"}
arch=${ARCH:-90}
python=${PYTHON:-python3}
fail() { echo "run_cuda.sh: $*" >&2; exit 1; }

# A GPU first: the build takes minutes and is pointless without one.
if ! nvidia-smi -L >/dev/null 2>&1 && [ ! -e /dev/nvidia0 ]; then
    fail "no GPU on this machine (nvidia-smi lists none and /dev/nvidia0 does not exist)"
fi
"$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null ||
    fail "$python's PyTorch cannot use the GPU (no CUDA build, or no device visible to it)"

mkdir -p "$build"
log=$build/run_cuda.log
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DDDN_CUDA=ON \
    -DDDN_CUDA_ARCHITECTURES="$arch" -DDDN_BUILD_TESTS=OFF >"$log" 2>&1 ||
    { tail -20 "$log" >&2; fail "cmake configure failed (log: $log)"; }
cmake --build "$build" -j"$(nproc)" --target ddn_cli >>"$log" 2>&1 ||
    { tail -20 "$log" >&2; fail "build failed (log: $log)"; }
ddn=$build/ddn
export OMP_WAIT_POLICY=passive
# ddn's own verdict on the device (the same one line as `ddn bench --device cuda` gives)
probe=$("$ddn" bench --table resnet-ied --device cuda --sizes 32 --batch 2 --runs 1 --warmup 0 2>&1 >/dev/null) ||
    fail "ddn cannot use the GPU: $probe"

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
out=$dir/results
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null |
    head -1 >"$dir/gpu" || true

for r in $(seq "$rounds"); do
    "$ddn" bench --table ied-vs-torch --device cuda --data "$dir" --sizes "$sizes" --batch 5 \
        --dtype f32 --runs 20 --warmup 3 >"$dir/ddn.md" || fail "ddn ied-vs-torch failed"
    grep '^RESULT' "$dir/ddn.md" | sed "s/^/$r ied /" >>"$out"
    "$python" "$here/ied_torch.py" "$dir" --device cuda --sizes "$sizes" --batch 5 --dtype f32 \
        --runs 20 --warmup 3 >"$dir/torch.txt" || fail "ied_torch.py failed"
    grep '^RESULT' "$dir/torch.txt" | sed "s/^/$r ied /" >>"$out"
    for c in $configs; do
        b=${c%%:*} s=${c##*:}
        "$ddn" bench --table resnet-ied --device cuda --batch "$b" --sizes "$s" --runs 5 \
            --warmup 2 >"$dir/ddn.md" || fail "ddn resnet-ied $c failed"
        grep '^RESULT' "$dir/ddn.md" | sed "s/^/$r resnet /" >>"$out"
        "$python" "$here/pmaf_torch.py" --device cuda --batch "$b" --size "$s" --runs 5 \
            --warmup 2 >"$dir/torch.txt" || fail "pmaf_torch.py $c failed"
        grep '^RESULT' "$dir/torch.txt" | sed "s/^/$r resnet /" >>"$out"
    done
done

# lines: ROUND TABLE RESULT PROG fields...; ddn's fields are key=value, torch's resnet line starts
# with batch and size by position (as bench/run_pmaf.sh reads it).
awk -v rounds="$rounds" -v gpu="$(cat "$dir/gpu")" -f "$here/stats.awk" -f /dev/stdin "$out" <<'AWK'
# the value of key=... in this line: kv as text, kn as a number
function kv(key,   i, s) {
    for (i = 5; i <= NF; i++) if (index($i, key "=") == 1) { s = $i; sub(/^[^=]*=/, "", s); return s }
    return ""
}
function kn(key) { return kv(key) + 0 }
{
    prog = $4
    if ($2 == "ied") {
        k = kv("m"); if (!(k in iseen)) { iseen[k] = 1; ikeys[++ni] = k }
        it[prog, k, $1] = kn("total_ms"); imem[prog, k] = kn("peak_mib")
        if (prog == "torch" && kv("y_maxdiff") != "") agree[k] = kv("y_maxdiff") " / " kv("symdA_reldiff")
    } else {
        k = prog == "ddn" ? kv("batch") " " kv("size") : $5 " " $6
        if (!(k in rseen)) { rseen[k] = 1; rkeys[++nr] = k }
        rt[prog, k, $1] = kn("ms")
        rmem[prog, k] = prog == "ddn" ? kn("arena_mib") + kn("persistent_mib") : kn("gpu_peak_mib")
    }
}
END {
    printf "## ddn vs PyTorch on one GPU (%s)\n\n", gpu
    printf "%d alternating rounds; CUDA events after warm-up and a synchronise; float32, no TF32.\n\n", rounds
    printf "### IED layer: ddn PI-IFT-E vs torch.linalg.eigh, forward + backward, batch 5\n\n"
    printf "Memory: ddn's step-arena peak above its persistent inputs; torch's max_memory_allocated above A and v.\n\n"
    printf "| m | ddn total (ms) | torch total (ms) | ratio ddn/torch | ddn peak (MiB) | torch peak (MiB) | max dy / sym dA rel. diff |\n"
    printf "|---:|---:|---:|---:|---:|---:|---|\n"
    for (i = 1; i <= ni; i++) {
        k = ikeys[i]
        for (r = 1; r <= rounds; r++) { d[r] = it["ddn", k, r]; p[r] = it["torch", k, r]; q[r] = d[r] / p[r] }
        printf "| %d | %.3f | %.3f | **%.2f** | %.2f | %.2f | %s |\n", k, median(d, rounds), median(p, rounds), median(q, rounds), imem["ddn", k], imem["torch", k], agree[k]
    }
    printf "\n### ResNet-50 + IED head: one training step (forward, backward, SGD)\n\n"
    printf "Memory: ddn's step-arena high-water plus its persistent bytes (parameters, gradients, momentum, batch); torch's max_memory_allocated.\n\n"
    printf "| batch | input | ddn (ms) | torch (ms) | ratio ddn/torch | ddn memory (MiB) | torch memory (MiB) |\n"
    printf "|---:|---:|---:|---:|---:|---:|---:|\n"
    for (i = 1; i <= nr; i++) {
        k = rkeys[i]; split(k, f, " ")
        for (r = 1; r <= rounds; r++) { d[r] = rt["ddn", k, r]; p[r] = rt["torch", k, r]; q[r] = d[r] / p[r] }
        printf "| %d | %dx%d | %.1f | %.1f | **%.2f** | %.0f | %.0f |\n", f[1], f[2], f[2], median(d, rounds), median(p, rounds), median(q, rounds), rmem["ddn", k], rmem["torch", k]
    }
}
AWK

if [ "${FULL:-0}" = 1 ]; then
    echo
    "$ddn" bench --table ied --device cuda --batch 5 --sizes 32,64,128,256,512,1024 \
        --dtype f32 --symmetry sym
fi
