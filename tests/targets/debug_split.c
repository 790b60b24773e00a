//! cflags: -g -O0
//! variant o2: -g -O2
// Static functions, a function inlined into two callers, and a NULL write three
// static calls deep: debug-file tests strip it and check that its separate debug
// file gives back the same names, lines and frames (tests/integration/test_debug_files.py).
#include <stdio.h>
#include <stdlib.h>

static inline __attribute__((always_inline)) int twice(int v) {
    // a comment: no code on this line
    int r = v * 2;                                      /* LINE_TWICE */
    return r;
}

static __attribute__((noinline)) int left(int v) { return twice(v) + 1; }
static __attribute__((noinline)) int right(int v) { return twice(v + 3) - 1; }

static __attribute__((noinline)) void smash(volatile int *p, int v) {
    *p = v;                                             /* LINE_SMASH */
}

static __attribute__((noinline)) void middle(volatile int *p, int v) {
    smash(p, left(v) + right(v));
    __asm__ volatile("" ::: "memory");                 /* keeps the call from being a tail call */
}

int main(int argc, char **argv) {
    (void)argv;
    volatile int *p = argc > 1 ? NULL : malloc(sizeof(int));
    for (int i = 0; i < 3; i++)
        middle(p, argc + i);
    printf("%d\n", *p);
    return 0;
}
