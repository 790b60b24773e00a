//! cflags: -g -O0 -fstack-protector-all
// Overflows a stack buffer past the canary: __stack_chk_fail aborts.
volatile int length = 40;

__attribute__((noinline)) void smash(void) {
    char buf[16];
    for (int i = 0; i < length; i++)
        buf[i] = 'A';
}

int main(void) {
    smash();
    return 0;
}
