#!/bin/sh
# bench/run_pmaf.sh — one training step of ResNet-50 + the IED head (`ddn train`'s default model:
# full width, m = 16, 10 classes, SGD lr 0.05 momentum 0.9, float32) in ddn (bench_pmaf: power
# iteration + DDN-E backward) and PyTorch 1.13 (pmaf_torch.py: torch.linalg.eigh), at each batch
# and input size, one process per configuration (so peak RSS is its own), alternated A B A B over
# ROUNDS; reports the median time of each over the rounds, the median per-round ratio ddn/torch,
# the peak RSS and the parameter count of each (which must be equal). Each program first runs
# CHECK steps (default 10; 0 skips) on its fixed batch and fails unless the loss falls. Builds
# nothing: pass the build dir holding bench_pmaf (default ./build).
#
#     OMP_WAIT_POLICY=passive bench/run_pmaf.sh [BUILD_DIR] [ROUNDS] [CONFIGS]
#     CONFIGS: "batch:size ..." (default "32:32 8:64", the issue's two configurations)
set -eu
build=${1:-build}
rounds=${2:-3}
configs=${3:-"32:32 8:64"}
check=${CHECK:-10}
threads=2
here=$(cd "$(dirname "$0")" && pwd)
ddn_bin=$build/bench_pmaf
[ -x "$ddn_bin" ] || { echo "run_pmaf.sh: $ddn_bin not found; build first" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1 # inside PyTorch; bench_pmaf sets its own threads

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
log=$dir/log
out=$dir/results
# run ddn|torch ARGS...: one process of bench_pmaf or pmaf_torch.py, its output in $log; a failure
# (a failed check included) stops the script showing that output.
run() {
    prog=$1; shift
    if [ "$prog" = ddn ]; then set -- "$ddn_bin" "$@"
    else set -- /usr/bin/python3 "$here/pmaf_torch.py" "$@"; fi
    if ! "$@" --threads $threads >"$log" 2>&1; then
        cat "$log" >&2
        echo "run_pmaf.sh: failed: $*" >&2
        exit 1
    fi
}

if [ "$check" -gt 0 ]; then
    for c in $configs; do
        for prog in ddn torch; do
            run $prog --check "$check" --batch "${c%%:*}" --size "${c##*:}"
            grep '^CHECK' "$log"
        done
    done
    echo
fi

for r in $(seq "$rounds"); do
    for c in $configs; do
        for prog in ddn torch; do
            run $prog --batch "${c%%:*}" --size "${c##*:}"
            grep '^RESULT' "$log" | sed "s/^/$r /" >>"$out"
        done
    done
done

# lines: ROUND RESULT PROG BATCH SIZE ms=T rss_kb=K params=P
awk -v rounds="$rounds" -v threads=$threads -v load="$(cut -d' ' -f1-3 /proc/loadavg)" \
    -f "$here/stats.awk" -f /dev/stdin "$out" <<'AWK'
{
    k = $4 " " $5; if (!(k in seen)) { seen[k] = 1; keys[++nk] = k }
    t[$3, k, $1] = val($6); params[$3, k] = val($8)
    if (val($7) > rss[$3, k]) rss[$3, k] = val($7)
}
END {
    printf "ResNet-50 + IED head (m = 16) training step, float32, %d threads, %d alternating rounds (each the median of 3 steps after a warm-up); load average at the end %s\n\n", threads, rounds, load
    printf "| batch | input | ddn ms | torch ms | ratio ddn/torch | ddn peak RSS MB | torch peak RSS MB | parameters |\n"
    printf "|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    for (i = 1; i <= nk; i++) {
        k = keys[i]; split(k, f, " ")
        for (r = 1; r <= rounds; r++) { d[r] = t["ddn", k, r]; p[r] = t["torch", k, r]; q[r] = d[r] / p[r] }
        np = params["ddn", k] == params["torch", k] ? params["ddn", k] : params["ddn", k] " (torch " params["torch", k] ": MISMATCH)"
        printf "| %d | %dx%d | %.1f | %.1f | %.2f | %.0f | %.0f | %s |\n", f[1], f[2], f[2], median(d, rounds), median(p, rounds), median(q, rounds), rss["ddn", k] / 1024, rss["torch", k] / 1024, np
    }
}
AWK
