// Writes through a NULL pointer.
//! variant nopie: -g -O0 -fno-pie -no-pie
#include <stddef.h>

__attribute__((noinline)) void store(int *p, int v) { *p = v; }

int main(void) {
    int *volatile p = NULL;
    store(p, 42);
    return 0;
}
