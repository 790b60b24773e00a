// Frees the same block twice: glibc's tcache check aborts (malloc_printerr).
#include <stdlib.h>

__attribute__((noinline)) void release(void *p) { free(p); }

int main(void) {
    void *volatile p = malloc(32);
    release(p);
    release(p);
    return 0;
}
