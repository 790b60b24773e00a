// dlopen()s libm and calls its floorf N times: in glibc's libm floorf is a GNU indirect
// function, and a dlopen()ed library is relocated only after the loader reports it.
// Usage: ifunc_dlopen N — prints "sum=S".
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 3;
    void *m = dlopen("libm.so.6", RTLD_NOW);
    if (!m) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
    float (*floor_f)(float) = (float (*)(float))dlsym(m, "floorf");
    double sum = 0;
    for (int i = 0; i < n; i++) sum += floor_f(i + 0.5f);
    printf("sum=%.0f\n", sum);
    return 0;
}
