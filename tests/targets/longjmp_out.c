// f(i) longjmps out for odd i instead of returning; main calls f(0..3).
// Returns happen for f(0) and f(2) only. Prints "s=20".
#include <setjmp.h>
#include <stdio.h>

static jmp_buf back;

__attribute__((noinline)) int f(int i) {
    if (i % 2) longjmp(back, 1);
    return i * 10;
}

int main(void) {
    long s = 0;
    for (int i = 0; i < 4; i++)
        if (!setjmp(back)) s += f(i);
    printf("s=%ld\n", s);
    return 0;
}
