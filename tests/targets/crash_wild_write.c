// Writes to a canonical but unmapped address.
#include <stdint.h>

__attribute__((noinline)) void poke(uintptr_t where) { *(volatile long *)where = 0x1234; }

int main(void) {
    poke((uintptr_t)0xdeadbeef000ULL);
    return 0;
}
