#!/bin/sh
# bench/run_conv.sh — ResNet-50 convolution layers (forward and backward, batch 8) in ddn
# (bench_conv) and PyTorch 1.13 (conv_torch.py), alternated (A B A B ...) so that a noisy shared
# machine hits both alike; reports per layer the median time of each over the rounds, GFLOP/s,
# and the median of the per-round ratios ddn/torch. Builds nothing: pass the build dir holding
# bench_conv (default ./build).
#
#     bench/run_conv.sh [BUILD_DIR] [ROUNDS]        # e.g. bench/run_conv.sh build 3
set -eu
build=${1:-build}
rounds=${2:-3}
threads=2
here=$(cd "$(dirname "$0")" && pwd)
ddn_bin=$build/bench_conv
[ -x "$ddn_bin" ] || { echo "run_conv.sh: $ddn_bin not found; build first" >&2; exit 1; }

out=$(mktemp)
trap 'rm -f "$out"' EXIT
core=""
for r in $(seq "$rounds"); do
    "$ddn_bin" --threads $threads >"$out.ddn"
    [ -n "$core" ] || core=$(sed -n 's/^OpenBLAS core: \([^,]*\),.*/\1/p' "$out.ddn")
    grep '^RESULT' "$out.ddn" | sed "s/^/$r /" >>"$out"
    # PyTorch's own threads; OpenBLAS inside it single-threaded, as DESIGN.md prescribes
    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 "$here/conv_torch.py" --threads $threads \
        | grep '^RESULT' | sed "s/^/$r /" >>"$out"
done
rm -f "$out.ddn"

# lines: ROUND RESULT PROG LAYER fwd_ms=F bwd_ms=B gflop=G bgflop=H  |  ROUND RESULT PROG rss_kb=K
awk -v rounds="$rounds" -v threads=$threads -v core="$core"  \
    -f "$here/stats.awk" -f /dev/stdin "$out" <<'AWK'
$4 ~ /^rss_kb=/ { rss[$3] = val($4) > rss[$3] ? val($4) : rss[$3]; next }
{
    r = $1; p = $3; l = $4 + 0; if (l + 1 > nl) nl = l + 1
    f[p, l, r] = val($5); b[p, l, r] = val($6); gf[l] = val($7); gb[l] = val($8)
}
END {
    split("stem 7x7/2 3->64 @224|3x3 64->64 @56|1x1 256->64 @56|1x1/2 256->512 @56|3x3 512->512 @7", name, "|")
    printf "ResNet-50 layers, batch 8, float32, %d threads, %d alternating rounds (each the median of 5 iterations after a warm-up); OpenBLAS core %s\n\n", threads, rounds, core
    printf "| layer | pass | ddn ms | torch ms | ddn GFLOP/s | torch GFLOP/s | ratio ddn/torch |\n"
    printf "|---|---|---:|---:|---:|---:|---:|\n"
    for (l = 0; l < nl; l++) for (k = 0; k < 2; k++) {
        for (r = 1; r <= rounds; r++) {
            d[r] = k ? b["ddn", l, r] : f["ddn", l, r]
            t[r] = k ? b["torch", l, r] : f["torch", l, r]
            q[r] = d[r] / t[r]
        }
        md = median(d, rounds); mt = median(t, rounds); mq = median(q, rounds)
        g = k ? gb[l] : gf[l]
        printf "| %s | %s | %.1f | %.1f | %.1f | %.1f | %.2f |\n", name[l + 1], k ? "bwd" : "fwd", md, mt, g / md * 1e3, g / mt * 1e3, mq
        sd += md; st += mt
    }
    printf "\nsum over the table: ddn %.1f ms, torch %.1f ms (ratio %.2f); peak RSS ddn %.0f MB, torch %.0f MB\n", sd, st, sd / st, rss["ddn"] / 1024, rss["torch"] / 1024
}
AWK
