#!/bin/sh
# bench/run.sh — one training epoch of the Fashion-MNIST MLP in ddn and in PyTorch 1.13, alternated
# (A B A B ...) so that a noisy shared machine hits both alike; reports the median epoch time of
# each, the median of the per-round ratios ddn/torch, and peak RSS (getrusage, each program
# measuring itself). Builds nothing: pass the build dir holding bench_mlp (default ./build).
#
#     bench/run.sh [BUILD_DIR] [ROUNDS]        # e.g. bench/run.sh build 3
#     DDN_ENV="OMP_WAIT_POLICY=passive" bench/run.sh build 3   # extra environment for ddn only
set -eu
build=${1:-build}
rounds=${2:-3}
threads=2
batch=64
here=$(cd "$(dirname "$0")" && pwd)
ddn_bin=$build/bench_mlp
[ -x "$ddn_bin" ] || { echo "run.sh: $ddn_bin not found; build first (cmake --build $build)" >&2; exit 1; }

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq "$rounds"); do
    env ${DDN_ENV:-} "$ddn_bin" --threads $threads --batch $batch | grep '^RESULT' | sed "s/^/$r /" >>"$out"
    # PyTorch's own threads; OpenBLAS inside it single-threaded (two BLAS threads swing 2x here)
    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 "$here/mlp_torch.py" --threads $threads --batch $batch \
        | grep '^RESULT' | sed "s/^/$r /" >>"$out"
    [ "$(grep -c "^$r RESULT" "$out")" = 2 ] || { echo "run.sh: round $r: a program failed" >&2; exit 1; }
done

# lines: ROUND RESULT NAME epoch_s=X rss_kb=Y loss=Z ...
awk -v rounds="$rounds" -v ddn_env="${DDN_ENV:-}" -v threads=$threads -v batch=$batch \
    -f "$here/stats.awk" -f /dev/stdin "$out" <<'AWK'
{
    r = $1; name = $3
    t[name, r] = val($4); rss[name, r] = val($5); loss[name, r] = val($6)
}
END {
    printf "## MLP epoch vs PyTorch 1.13\n\n"
    printf "784-256-10 MLP, Fashion-MNIST train (60000 images), batch %d, SGD momentum 0.9, %d threads, %d alternating rounds\n", batch, threads, rounds
    printf "ddn environment: %s; torch environment: OPENBLAS_NUM_THREADS=1\n\n", ddn_env == "" ? "(none)" : ddn_env
    printf "| round | ddn epoch (s) | torch epoch (s) | ratio ddn/torch | ddn loss | torch loss |\n"
    printf "|---:|---:|---:|---:|---:|---:|\n"
    for (r = 1; r <= rounds; r++) {
        td[r] = t["ddn", r]; tt[r] = t["torch", r]; ra[r] = td[r] / tt[r]
        rd[r] = rss["ddn", r]; rt[r] = rss["torch", r]
        printf "| %d | %.3f | %.3f | %.3f | %.4f | %.4f |\n", r, td[r], tt[r], ra[r], loss["ddn", r], loss["torch", r]
    }
    md = median(td, rounds); mt = median(tt, rounds); mr = median(ra, rounds)
    printf "\n| | ddn | PyTorch 1.13 |\n|---|---:|---:|\n"
    printf "| median epoch (s) | %.3f | %.3f |\n", md, mt
    printf "| images/s | %.0f | %.0f |\n", 60000 / md, 60000 / mt
    printf "| peak RSS (MB, max over rounds) | %.1f | %.1f |\n", max(rd, rounds) / 1024, max(rt, rounds) / 1024
    printf "\nmedian ratio ddn/torch: **%.3f** (below 1: ddn is faster)\n", mr
}
function max(a, n,   i, m) { m = a[1]; for (i = 2; i <= n; i++) if (a[i] > m) m = a[i]; return m }
AWK
