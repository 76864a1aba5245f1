#!/bin/sh
# bench/run_less.sh — the LESS effectiveness table (paper Tables 1/4) with SciPy SLSQP's row:
# ddn writes the problems (--dump), SciPy solves them (bench/less_scipy.py with Debian's python3),
# ddn prints the table with SciPy's solutions read back (--scipy). Extra arguments go to ddn.
#
#     bench/run_less.sh [BUILD_DIR] [ddn bench options]
#     bench/run_less.sh build --samples 1000 --sizes 2x2,64x32
set -eu
build=${1:-build}
[ $# -gt 0 ] && shift
here=$(cd "$(dirname "$0")" && pwd)
ddn=$build/ddn
[ -x "$ddn" ] || { echo "run_less.sh: $ddn not found; build first (cmake --build $build)" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$ddn" bench --table less-effect --dump "$dir" "$@" >/dev/null
OPENBLAS_NUM_THREADS=1 /usr/bin/python3 "$here/less_scipy.py" "$dir" >&2
"$ddn" bench --table less-effect --scipy "$dir" "$@"
