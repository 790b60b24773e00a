//! cc: clang
//! cflags: -g -O0 -fsanitize=memory
// MemorySanitizer (clang only) sees a branch on a heap value never written.
#include <stdlib.h>

__attribute__((noinline)) int decide(const int *p) {
    if (p[1])
        return 1;
    return 0;
}

int main(void) {
    int *p = malloc(4 * sizeof *p);
    p[0] = 0;
    int r = decide(p);
    free(p);
    return r;
}
