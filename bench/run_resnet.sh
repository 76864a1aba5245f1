#!/bin/sh
# bench/run_resnet.sh — ResNet-50 (full width, random init, float32) in ddn (bench_resnet) and
# PyTorch 1.13 (resnet_torch.py): eval forward and training step (forward + backward + SGD
# momentum) at each batch and input size, one process per configuration (so peak RSS is its own),
# alternated A B A B over ROUNDS; reports the median time of each over the rounds, GFLOP/s, the
# median per-round ratio ddn/torch and the peak RSS, next to the machine's sgemm rate. Builds
# nothing: pass the build dir holding bench_resnet (default ./build).
#
#     OMP_WAIT_POLICY=passive bench/run_resnet.sh [BUILD_DIR] [ROUNDS] [CONFIGS]
#     CONFIGS: "batch:size ..." (default "1:224 8:224 1:64 8:64")
set -eu
build=${1:-build}
rounds=${2:-3}
configs=${3:-"1:224 8:224 1:64 8:64"}
threads=2
here=$(cd "$(dirname "$0")" && pwd)
ddn_bin=$build/bench_resnet
[ -x "$ddn_bin" ] || { echo "run_resnet.sh: $ddn_bin not found; build first" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1 # inside PyTorch; bench_resnet sets its own threads

out=$(mktemp)
trap 'rm -f "$out"' EXIT
sgemm=$("$ddn_bin" --sgemm --threads $threads)
for r in $(seq "$rounds"); do
    for c in $configs; do
        b=${c%%:*}; s=${c##*:}
        for m in fwd train; do
            "$ddn_bin" --mode $m --batch "$b" --size "$s" --threads $threads | grep '^RESULT' \
                | sed "s/^/$r /" >>"$out"
            /usr/bin/python3 "$here/resnet_torch.py" --mode $m --batch "$b" --size "$s" \
                --threads $threads | grep '^RESULT' | sed "s/^/$r /" >>"$out"
        done
    done
done

# lines: ROUND RESULT PROG MODE BATCH SIZE ms=T gflop=G rss_kb=K
awk -v rounds="$rounds" -v threads=$threads -v sgemm="$sgemm" -v load="$(cut -d' ' -f1-3 /proc/loadavg)" \
    -f "$here/stats.awk" -f /dev/stdin "$out" <<'AWK'
{
    k = $4 " " $5 " " $6; if (!(k in seen)) { seen[k] = 1; keys[++nk] = k }
    t[$3, k, $1] = val($7); g[k] = val($8)
    if (val($9) > rss[$3, k]) rss[$3, k] = val($9)
}
END {
    split(sgemm, sg, " "); sub(/gflops=/, "", sg[3]); sub(/core=/, "", sg[4])
    printf "ResNet-50, float32, %d threads, %d alternating rounds (each the median of 3 iterations after a warm-up); sgemm (n = 1024) %s GFLOP/s, OpenBLAS core %s; load average at the end %s\n\n", threads, rounds, sg[3], sg[4], load
    printf "| pass | batch | input | ddn ms | torch ms | ddn GFLOP/s | torch GFLOP/s | ratio ddn/torch | ddn peak RSS MB | torch peak RSS MB |\n"
    printf "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    for (i = 1; i <= nk; i++) {
        k = keys[i]; split(k, f, " ")
        for (r = 1; r <= rounds; r++) { d[r] = t["ddn", k, r]; p[r] = t["torch", k, r]; q[r] = d[r] / p[r] }
        md = median(d, rounds); mt = median(p, rounds); mq = median(q, rounds)
        printf "| %s | %d | %dx%d | %.1f | %.1f | %.1f | %.1f | %.2f | %.0f | %.0f |\n", f[1] == "fwd" ? "eval forward" : "train step", f[2], f[3], f[3], md, mt, g[k] / md * 1e3, g[k] / mt * 1e3, mq, rss["ddn", k] / 1024, rss["torch", k] / 1024
    }
}
AWK
