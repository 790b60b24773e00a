// The program's own int3 (an assert or anti-debug trap) with no SIGTRAP handler: it
// dies of SIGTRAP, and under instrument that is a crash, not a clean exit.
__attribute__((noinline)) void trip(void) { __asm__ volatile("int3"); }

int main(void) {
    trip();
    return 0;
}
