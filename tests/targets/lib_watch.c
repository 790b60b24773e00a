// A global written five times and read once, for the watch-global and guard-watch recipes.
// Built without PIE so the variables' addresses are the same in every run.
// Usage: lib_watch — score = 0, 1, 3, 6, 10; reads it; writes a neighbour of `secret`.
//! cflags: -g -O0 -no-pie
#include <stdio.h>

volatile int score;
volatile char secret[32] = "the buffer under watch";
volatile char neighbour[4096];

__attribute__((noinline)) void add(int i) { score += i; }

int main(void) {
    for (int i = 0; i < 5; i++) add(i);
    neighbour[0] = 'x';          // same page as secret or the next one: must not report
    secret[3] = '_';             // one write inside the watched buffer
    int total = score + secret[0];
    printf("score=%d total=%d secret=%s\n", score, total, (const char *)secret);
    return 0;
}
