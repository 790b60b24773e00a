// For hardware breakpoints: main calls step(i) M times, each storing i+1 into `counter`,
// and other() 3 times; then T threads start, each adding 1 to `late` once.
// Usage: hw_watch M T — prints "counter=M late=T ok".
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

volatile long counter;
volatile long late;

__attribute__((noinline)) void step(long i) { counter = i + 1; }
__attribute__((noinline)) long other(long x) { return x * 3; }

static void *worker(void *arg) {
    (void)arg;
    __atomic_fetch_add(&late, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

int main(int argc, char **argv) {
    long m = argc > 1 ? atol(argv[1]) : 100;
    long t = argc > 2 ? atol(argv[2]) : 4;
    if (t > 64) t = 64;
    long acc = 0;
    for (long i = 0; i < m; i++) step(i);
    for (long i = 0; i < 3; i++) acc += other(i);
    pthread_t th[64];
    for (long i = 0; i < t; i++) pthread_create(&th[i], NULL, worker, NULL);
    for (long i = 0; i < t; i++) pthread_join(th[i], NULL);
    int good = counter == m && late == t && acc == 9;
    printf("counter=%ld late=%ld %s\n", counter, late, good ? "ok" : "BAD");
    return good ? 0 : 1;
}
