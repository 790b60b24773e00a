// Calls tick(i) every 10 ms for N ticks (default 300), then prints "done N".
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
__attribute__((noinline)) long tick(long i) { return i + 1; }
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 300, s = 0;
    struct timespec ts = {0, 10 * 1000 * 1000};
    printf("pid=%d\n", (int)getpid());
    fflush(stdout);
    for (long i = 0; i < n; i++) { s += tick(i); nanosleep(&ts, NULL); }
    printf("done %ld sum=%ld\n", n, s);
    return 0;
}
