// Reads from the non-canonical address 0x4141414141414141 (#GP: the kernel reports si_addr 0).
#include <stdint.h>

__attribute__((noinline)) long peek(uintptr_t where) { return *(volatile long *)where; }

int main(void) {
    return (int)peek((uintptr_t)0x4141414141414141ULL);
}
