// T threads each call work(k) M times; prints a checksum of all results.
// Usage: threads [T [M]]
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static long results[64];
static long M = 1000;
volatile long shared_counter;

__attribute__((noinline)) long work(long k) { return k * 7 + 3; }
// Starts with an instruction the engine does not emulate (lea): a breakpoint here is
// stepped over for real, with the other threads held meanwhile.
__attribute__((naked)) long twice(long k) { __asm__("lea (%rdi,%rdi), %rax\n\tret"); }

static void *worker(void *arg) {
    long id = (long)arg, acc = 0;
    for (long i = 0; i < M; i++) acc += work(id * 100000 + i) + twice(i);
    results[id] = acc;
    return NULL;
}

int main(int argc, char **argv) {
    long t = argc > 1 ? atol(argv[1]) : 4;
    M = argc > 2 ? atol(argv[2]) : 1000;
    if (t > 64) t = 64;
    pthread_t th[64];
    for (long i = 0; i < t; i++) pthread_create(&th[i], NULL, worker, (void *)i);
    long sum = 0;
    for (long i = 0; i < t; i++) { pthread_join(th[i], NULL); sum += results[i]; }
    long expect = 0;
    for (long id = 0; id < t; id++) for (long i = 0; i < M; i++) expect += (id * 100000 + i) * 7 + 3 + 2 * i;
    printf("checksum=%ld %s\n", sum, sum == expect ? "ok" : "BAD");
    return sum == expect ? 0 : 1;
}
