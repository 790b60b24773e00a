//! cflags: -g -O0 -fsanitize=address
// AddressSanitizer finds the bug chosen by argv[1] and aborts (the runner sets abort_on_error).
#include <stdlib.h>
#include <string.h>

volatile size_t huge = (size_t)1 << 46;

__attribute__((noinline)) void overflow_write(char *p) { p[16] = 'x'; }
__attribute__((noinline)) int overflow_read(char *p) { return p[16]; }
__attribute__((noinline)) int use_after_free(char *p) { free(p); return p[0]; }
__attribute__((noinline)) void release(char *p) { free(p); }
__attribute__((noinline)) int recurse(int n) {
    volatile char frame[4096];
    memset((char *)frame, n, sizeof frame);     // through ASan's memset interceptor
    return recurse(n + 1) + frame[7];
}

int main(int argc, char **argv) {
    const char *m = argc > 1 ? argv[1] : "";
    char *p = malloc(16);
    memset(p, 0, 16);
    if (!strcmp(m, "heap-write")) overflow_write(p);
    else if (!strcmp(m, "heap-read")) return overflow_read(p);
    else if (!strcmp(m, "uaf")) return use_after_free(p);
    else if (!strcmp(m, "double-free")) { release(p); release(p); }
    else if (!strcmp(m, "huge")) return malloc(huge) != NULL;
    else if (!strcmp(m, "stack-overflow")) return recurse(0);
    free(p);
    return 0;
}
