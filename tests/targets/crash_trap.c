// __builtin_trap: ud2, SIGILL.
__attribute__((noinline)) void unreachable_state(void) { __builtin_trap(); }

int main(void) {
    unreachable_state();
    return 0;
}
