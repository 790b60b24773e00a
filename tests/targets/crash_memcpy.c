// memcpy from a NULL source: the fault is inside libc.
#include <string.h>

volatile unsigned long size = 4096;

__attribute__((noinline)) void copy_block(char *dst, const char *src) { memcpy(dst, src, size); }

int main(void) {
    static char dst[8192];
    const char *volatile src = NULL;
    copy_block(dst, src);
    return 0;
}
