// A thread calls work() until main has called swap() N times, every 20 ms; work2()
// is never called. Usage: slot_swap [N]
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((noinline)) long work(long k) { return k * 7 + 3; }
__attribute__((noinline)) long work2(long k) { return k * 5 + 1; }
__attribute__((noinline)) void swap(long i) { __asm__ volatile("" : : "r"(i)); }
static volatile int stop;
static void *worker(void *arg) { long i = 0; while (!stop) work(i++); return arg; }

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 10;
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    for (int i = 0; i < n; i++) { usleep(20000); swap(i); }
    stop = 1;
    pthread_join(t, NULL);
    puts("slot_swap done");
    return 0;
}
