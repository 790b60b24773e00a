// Calls hit(i) for i in 0..N-1 (N from argv[1], default 10), then prints the sum of what it returned.
// Usage: counter [N]
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) long hit(long i) { return i * 2; }

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 10;
    long sum = 0;
    for (long i = 0; i < n; i++) sum += hit(i);
    printf("sum=%ld\n", sum);
    return 0;
}
