// T threads call work() N times each while main vforks V children that call work(-1)
// and exit. Usage: vfork_threads T N V; prints calls=T*N+V.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static long calls;
__attribute__((noinline)) long work(long k) { __asm__ volatile(""); return k * 7 + 3; }
static void *worker(void *arg) { for (long i = 0; i < calls; i++) work(i); return arg; }

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: vfork_threads T N V\n"); return 2; }
    int t = atoi(argv[1]), v = atoi(argv[3]);
    calls = atol(argv[2]);
    if (t > 16) t = 16;
    pthread_t th[16];
    for (int i = 0; i < t; i++) pthread_create(&th[i], NULL, worker, NULL);
    for (int i = 0; i < v; i++) {
        pid_t child = vfork();
        if (child == 0) { work(-1); _exit(0); }
        waitpid(child, NULL, 0);
    }
    for (int i = 0; i < t; i++) pthread_join(th[i], NULL);
    printf("calls=%ld\n", t * calls + v);
    return 0;
}
