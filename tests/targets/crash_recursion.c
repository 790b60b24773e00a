// Unbounded recursion until the stack runs out.
__attribute__((noinline)) int recurse(volatile int depth) {
    volatile char pad[512];
    pad[0] = (char)depth;
    return recurse(depth + 1) + pad[0];
}

int main(void) {
    return recurse(0);
}
