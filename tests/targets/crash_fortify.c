//! cflags: -g -O2 -D_FORTIFY_SOURCE=2
// A fortified memcpy past the end of a stack buffer: __chk_fail aborts.
#include <stdio.h>
#include <string.h>

volatile size_t length = 32;
const char source[64] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

__attribute__((noinline)) void fill(void) {
    char buf[8];
    memcpy(buf, source, length);
    puts(buf);
}

int main(void) {
    fill();
    return 0;
}
