/* bench_util.h — the timing helpers every benchmark program shares (header-only: each benchmark .c file
 * is its own executable). */
#ifndef DDN_BENCH_UTIL_H
#define DDN_BENCH_UTIL_H

#include <time.h>

/* Monotonic seconds. */
static inline double bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* qsort comparator for doubles (ascending; medians of run times). */
static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif
