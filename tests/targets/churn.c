// ROUNDS times: start PER threads that each call work() CALLS times, and join them.
// Usage: churn ROUNDS PER CALLS
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static long calls;
__attribute__((noinline)) long work(long k) { return k * 7 + 3; }
static void *worker(void *arg) {
    long id = (long)arg, acc = 0;
    for (long i = 0; i < calls; i++) acc += work(id * 100000 + i);
    return (void *)acc;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: churn ROUNDS PER CALLS\n"); return 2; }
    long rounds = atol(argv[1]), per = atol(argv[2]), n = 0;
    calls = atol(argv[3]);
    if (per > 64) per = 64;
    for (long r = 0; r < rounds; r++) {
        pthread_t th[64];
        for (long i = 0; i < per; i++) pthread_create(&th[i], NULL, worker, (void *)(r * per + i));
        for (long i = 0; i < per; i++) pthread_join(th[i], NULL);
        n += per * calls;
    }
    printf("calls=%ld\n", n);
    return 0;
}
