//! cflags: -g -O2 -fomit-frame-pointer
// A NULL write three noinline calls deep in optimised code without frame
// pointers; each level keeps values in callee-saved registers across its call
// (and uses the result, so no call becomes a tail call).
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) int level3(int *p, int v) {
    *p = v * 7;
    return *p + v;
}

__attribute__((noinline)) int level2(int *p, int v) {
    int keep = v * 3 + 1;
    int r = level3(p, keep);
    return r * keep + v;
}

__attribute__((noinline)) int level1(int *p, int v) {
    int keep = v ^ 0x55;
    int r = level2(p, keep + 2);
    return r - keep;
}

int main(int argc, char **argv) {
    int *p = argc > 5 ? malloc(4) : NULL;
    int r = level1(p, argc + (argv[0] != NULL));
    printf("%d\n", r);
    return 0;
}
