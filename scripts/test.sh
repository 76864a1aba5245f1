#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what it needs, then
#   1. Release build (warnings are errors), every CTest test;
#   2. ASan+UBSan build, every CTest test again;
#   3. the core tests under valgrind (no leaks, no invalid accesses);
#   4. `cmake --install`, then an out-of-tree project that finds the installed library with
#      find_package(ddn) and one built with pkg-config;
#   5. a build without OpenMP;
#   6. the examples end to end: the Fashion-MNIST MLP must reach its accuracy target; the PMaF
#      example (ResNet-50 + IED) runs a tiny configuration (a few seconds).
# Usage: scripts/test.sh [--quick]   (--quick: step 1 only)
set -euo pipefail
source "$(dirname "$0")/common.sh"
root=$(ddn_root)
quick=0
[ "${1:-}" = "--quick" ] && quick=1

bash "$root/scripts/deps.sh" "${DDN_BUILD_PACKAGES[@]}" "${DDN_DATA_PACKAGES[@]}" valgrind

echo "== 1. release build and tests"
ddn_build "$root/build/release" -DDDN_WARNINGS_AS_ERRORS=ON
(cd "$root/build/release" && ctest --output-on-failure -j2)
[ $quick -eq 1 ] && exit 0

echo "== 2. sanitizer build (ASan+UBSan) and tests"
ddn_build "$root/build/asan" -DDDN_WARNINGS_AS_ERRORS=ON -DDDN_SANITIZE=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDDN_BUILD_EXAMPLES=OFF
(cd "$root/build/asan" && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j2)

echo "== 3. core tests under valgrind"
for t in test_tensor test_autograd test_safetensors test_elementwise test_reduce test_matmul \
         test_loss test_idx test_dataset test_loader test_optim test_declarative; do
  exe="$root/build/release/tests/$t"
  [ -x "$exe" ] || continue
  log="$root/build/valgrind-$t.log"
  if ! OMP_NUM_THREADS=1 valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
      --suppressions="$root/scripts/valgrind.supp" --error-exitcode=1 "$exe" >"$log" 2>&1; then
    cat "$log"
    echo "valgrind found errors in $t" >&2
    exit 1
  fi
  echo "valgrind $t: clean"
done

echo "== 4. install, then build programs outside the tree against it"
prefix="$root/build/prefix"
rm -rf "$prefix"
cmake --install "$root/build/release" --prefix "$prefix" >/dev/null
cmake -S "$root/examples/external" -B "$root/build/external" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$root/build/external" >/dev/null
"$root/build/external/external_example"
cc -std=c11 -Wall -Wextra -Werror -o "$root/build/external/external_pkgconfig" \
  "$root/examples/external/main.c" \
  $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs ddn) \
  -Wl,-rpath,"$prefix/lib"
"$root/build/external/external_pkgconfig"
echo "== 5. the library also builds without OpenMP (warnings are errors)"
ddn_build "$root/build/noomp" -DDDN_OPENMP=OFF -DDDN_WARNINGS_AS_ERRORS=ON -DDDN_BUILD_TESTS=OFF \
  -DDDN_BUILD_EXAMPLES=OFF >/dev/null

echo "== 6. examples end to end"
"$root/build/release/declarative_projection"
"$root/build/release/mlp_fashion_mnist"
"$root/build/release/pmaf_train" --width 0.0625 --steps 20 --batch 16 --subset 500 \
  --out "$root/build/release/pmaf_example"
echo "all test stages passed"
