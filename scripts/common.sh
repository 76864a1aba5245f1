# Sourced by the scripts in this folder: the package lists and a Release build of the tree.
DDN_BUILD_PACKAGES=(build-essential cmake pkg-config libopenblas-dev liblapacke-dev zlib1g-dev
                    libstb-dev libcmocka-dev)
DDN_DATA_PACKAGES=(dataset-fashion-mnist)

# OpenMP threads that spin after a parallel region take the cores OpenBLAS's own threads need (an
# MLP epoch measured 3x slower, and far worse on a loaded machine): let them sleep instead.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

ddn_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

# ddn_build DIR [cmake args...]: configure (once) and build the tree into DIR.
ddn_build() {
  local dir=$1; shift
  cmake -S "$(ddn_root)" -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
  cmake --build "$dir" -j"$(nproc)"
}
