// Writes through a bad pointer: an access violation at a known address.
//! cflags: -O0 -g
int main(void) {
    volatile int *bad = (volatile int *)0x10;
    *bad = 42;
    return 0;
}
