# bench/stats.awk — helpers shared by the run_*.sh table scripts (awk -f bench/stats.awk -f ...).
# val("ms=12.5") -> 12.5: the number of a key=value field of a RESULT line.
function val(s) { sub(/^[a-z_]+=/, "", s); return s + 0 }
# The median of a[1..n] (sorts a in place; insertion sort, n is a handful of rounds).
function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
