// Unbounded recursion with a big frame: the stack runs out on the store into the
// frame or on the call's push, whichever ASLR makes come first. Either way it is
// one bug: STACK_OVERFLOW, never CallAv or DestAv.
static volatile int depth;

__attribute__((noinline)) int rec(void) {
    volatile char buf[8000];
    buf[7999] = 1;
    depth++;
    return rec() + buf[7998];
}

int main(void) { return rec(); }
