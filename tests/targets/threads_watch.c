// 8 threads each add 1 to `shared` 3000 times, while threads are still being created:
// a memory breakpoint with a limit is cleared while the main thread is inside clone3.
// Prints "shared=24000".
#include <pthread.h>
#include <stdio.h>

volatile long shared;

static void *worker(void *arg) {
    (void)arg;
    for (int i = 0; i < 3000; i++) __atomic_fetch_add(&shared, 1, __ATOMIC_RELAXED);
    return NULL;
}

int main(void) {
    pthread_t t[8];
    for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    printf("shared=%ld\n", shared);
    return 0;
}
