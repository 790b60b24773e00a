// Loads and unloads a library again and again: CYCLES times dlopen(LIB), CALLS calls
// of its plugin_work(i), dlclose. Then calls done() and prints "sum=S".
// Usage: plugin_cycles LIB CYCLES CALLS
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) void done(void) { __asm__ volatile(""); }

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: plugin_cycles LIB CYCLES CALLS\n"); return 2; }
    int cycles = atoi(argv[2]), calls = atoi(argv[3]);
    long sum = 0;
    for (int c = 0; c < cycles; c++) {
        void *h = dlopen(argv[1], RTLD_NOW);
        if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
        int (*work)(int) = (int (*)(int))dlsym(h, "plugin_work");
        for (int i = 0; i < calls; i++) sum += work(i);
        dlclose(h);
    }
    done();
    printf("sum=%ld\n", sum);
    return 0;
}
