//! cflags: -g -O0 -fno-stack-protector
// Overflows a stack buffer with 'A' so `ret` pops 0x4141414141414141 (non-canonical: #GP at ret).
#include <string.h>

volatile unsigned long length = 64;

__attribute__((noinline)) void smash(void) {
    char buf[16];
    memset(buf, 'A', length);
}

int main(void) {
    smash();
    return 0;
}
