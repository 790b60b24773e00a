// Three threads call work() without end; a fourth execs PROGRAM ARGS... after 200 ms,
// which ends the other threads. Usage: thread_exec PROGRAM ARGS...
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static char **exec_argv;
__attribute__((noinline)) long work(long k) { return k * 7 + 3; }
static void *worker(void *arg) { for (long i = 0;; i++) work(i); return arg; }
static void *execer(void *arg) {
    usleep(200000);
    execv(exec_argv[0], exec_argv);
    perror("execv");
    return arg;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: thread_exec PROGRAM ARGS...\n"); return 2; }
    exec_argv = argv + 1;
    pthread_t t;
    for (int i = 0; i < 3; i++) pthread_create(&t, NULL, worker, NULL);
    pthread_create(&t, NULL, execer, NULL);
    pause();
    return 0;
}
