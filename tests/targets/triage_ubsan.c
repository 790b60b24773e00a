//! cflags: -g -O0 -fsanitize=undefined
// UndefinedBehaviorSanitizer reports a signed overflow (the runner makes it halt and abort).
#include <limits.h>

volatile int big = INT_MAX;

__attribute__((noinline)) int add_one(int v) { return v + 1; }

int main(void) {
    return add_one(big) == 0;
}
