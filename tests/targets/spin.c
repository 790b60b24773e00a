// Calls hit(i) as fast as it can for SECONDS seconds (default 3), checking every
// result; prints its pid first and "spin ok N" (or "spin BAD") at the end.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

long total;
__attribute__((noinline)) long hit(long i) { total += i; return i ^ 0x5a; }

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 3.0;
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
    }
    if (bad || total != i * (i - 1) / 2) { printf("spin BAD %ld\n", bad); return 1; }
    printf("spin ok %ld\n", i);
    return 0;
}
