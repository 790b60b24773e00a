// Calls hit(i) as fast as it can for SECONDS seconds (default 3), checking every
// result; prints its pid first and "spin ok N" (or "spin BAD") at the end. With "eof"
// after SECONDS it ends as soon as its stdin is closed (SECONDS is then only a bound),
// so a test on a loaded machine says when it is done instead of racing a clock.
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

long total;
__attribute__((noinline)) long hit(long i) { total += i; return i ^ 0x5a; }

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 3.0;
    int until_eof = argc > 2 && !strcmp(argv[2], "eof");
    printf("pid=%d\n", (int)getpid());
    fflush(stdout);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long i = 0, bad = 0;
    for (;;) {
        for (int k = 0; k < 1000; k++, i++)
            if (hit(i) != (i ^ 0x5a)) bad++;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 > seconds) break;
        struct pollfd in = {0, POLLIN, 0};
        if (until_eof && poll(&in, 1, 0) > 0) break;
    }
    if (bad || total != i * (i - 1) / 2) { printf("spin BAD %ld\n", bad); return 1; }
    printf("spin ok %ld\n", i);
    return 0;
}
