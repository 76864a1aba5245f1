#!/bin/sh
# bench/run_ied.sh — ddn's IED layer (PI forward, IFT-E backward) against torch.linalg.eigh
# forward + backward (PyTorch 1.13), batch 5, on the same matrices (ddn writes them once into a
# temporary directory; bench/ied_torch.py reads them). The two programs alternate, A B A B ...,
# each reporting the median of its runs; this script reports per size the median over rounds of
# each program's time and the median of the per-round ratios torch/ddn (above 1: ddn is faster).
#
#     bench/run_ied.sh [BUILD_DIR] [ROUNDS] [SIZES] [DTYPE]     # e.g. bench/run_ied.sh build 5 32,256
#     DDN_ENV="OMP_WAIT_POLICY=passive" bench/run_ied.sh build   # extra environment for ddn only
#     THREADS=1 bench/run_ied.sh build                           # both programs on one thread
#     DDN_ARGS="--no-gap-check" bench/run_ied.sh build           # extra ddn bench options
set -eu
build=${1:-build}
rounds=${2:-5}
sizes=${3:-32,256}
dtype=${4:-f32}
threads=${THREADS:-2}
runs=20
here=$(cd "$(dirname "$0")" && pwd)
ddn=$build/ddn
[ -x "$ddn" ] || { echo "run_ied.sh: $ddn not found; build first (cmake --build $build)" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
out=$dir/results
corename=""
for r in $(seq "$rounds"); do
    env ${DDN_ENV:-} "$ddn" bench --table ied-vs-torch --data "$dir" --sizes "$sizes" \
        --dtype "$dtype" --runs $runs --warmup 3 --threads $threads ${DDN_ARGS:-} >"$dir/ddn.md"
    grep '^RESULT' "$dir/ddn.md" | sed "s/^/$r /" >>"$out"
    [ -n "$corename" ] || corename=$(grep -o 'OpenBLAS core: [A-Za-z0-9_]*' "$dir/ddn.md" | head -1)
    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 "$here/ied_torch.py" "$dir" --sizes "$sizes" \
        --dtype "$dtype" --runs $runs --warmup 3 --threads $threads | sed "s/^/$r /" >>"$out"
done

awk -v rounds="$rounds" -v ddn_env="${DDN_ENV:-(none)}${DDN_ARGS:+; ddn options: $DDN_ARGS}" -v threads=$threads -v runs=$runs \
    -v dtype="$dtype" -v core="$corename" '
function val(s) { sub(/^[a-z_A-Z]+=/, "", s); return s }
function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
$2 == "RESULT" {
    r = $1; name = $3; m = val($4) + 0
    if (!(m in seen)) { seen[m] = 1; ms[++nm] = m }
    f[name, m, r] = val($5); b[name, m, r] = val($6); t[name, m, r] = val($7); rss[name, m] = val($8)
    if (name == "torch" && NF >= 10) { agree[m] = val($9) " / " val($10) }
}
END {
    printf "## IED: ddn PI-IFT-E vs torch.linalg.eigh (forward + backward)\n\n"
    printf "batch 5, %s, symmetric A = |G| + |G|^T; %d threads each; %d alternating rounds of %d timed runs (median per round, 3 warm-up)\n", dtype, threads, rounds, runs
    printf "%s; ddn environment: %s; torch environment: OPENBLAS_NUM_THREADS=1, torch.set_num_threads(%d)\n\n", core, ddn_env, threads
    printf "| m | ddn fwd (ms) | ddn bwd (ms) | ddn total (ms) | torch fwd (ms) | torch bwd (ms) | torch total (ms) | speedup torch/ddn (median of rounds) | max dy / sym dA rel. diff |\n"
    printf "|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
    for (k = 1; k <= nm; k++) {
        m = ms[k]
        for (r = 1; r <= rounds; r++) {
            df[r] = f["ddn", m, r]; db[r] = b["ddn", m, r]; dt[r] = t["ddn", m, r]
            tf[r] = f["torch", m, r]; tb[r] = b["torch", m, r]; tt[r] = t["torch", m, r]
            ra[r] = tt[r] / dt[r]
        }
        printf "| %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | **%.2f** | %s |\n", m, median(df, rounds), median(db, rounds), median(dt, rounds), median(tf, rounds), median(tb, rounds), median(tt, rounds), median(ra, rounds), agree[m]
    }
    printf "\npeak RSS (MB): ddn %.1f, torch %.1f\n", rss["ddn", ms[nm]] / 1024, rss["torch", ms[nm]] / 1024
}
' "$out"
