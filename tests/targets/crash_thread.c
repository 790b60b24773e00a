// Three threads: two idle, one worker that writes through a NULL pointer.
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

volatile int go;
__attribute__((noinline)) void worker_fault(int *p) { *p = 7; }
static void *idle(void *arg) { while (!go) usleep(1000); return arg; }
static void *worker(void *arg) { usleep(20000); worker_fault(NULL); return arg; }

int main(void) {
    pthread_t a, b, c;
    pthread_create(&a, NULL, idle, NULL);
    pthread_create(&b, NULL, idle, NULL);
    pthread_create(&c, NULL, worker, NULL);
    pthread_join(c, NULL);
    go = 1;
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    puts("not reached");
    return 0;
}
