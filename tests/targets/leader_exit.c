// The main thread starts a worker and calls pthread_exit: the process lives on with its
// leader a zombie (it can never stop again: no PTRACE_INTERRUPT stop ever comes from it)
// and the worker calling hit(i) as fast as it can, checking every result. The worker
// prints "ready" once the leader is a zombie, and ends when its stdin is closed (or
// after SECONDS, default 60), printing "leader_exit ok N" (or "leader_exit BAD").
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

long total;
__attribute__((noinline)) long hit(long i) { total += i; return i ^ 0x5a; }

static double seconds = 60.0;

static int leader_is_zombie(void) {
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)getpid());
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *end = strrchr(buf, ')');
    return end && end[1] == ' ' && (end[2] == 'Z' || end[2] == 'X');
}

static void *work(void *arg) {
    (void)arg;
    while (!leader_is_zombie()) usleep(1000);
    printf("ready\n");
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
        if (poll(&in, 1, 0) > 0) break;
    }
    if (bad || total != i * (i - 1) / 2) { printf("leader_exit BAD %ld\n", bad); exit(1); }
    printf("leader_exit ok %ld\n", i);
    exit(0);
}

int main(int argc, char **argv) {
    if (argc > 1) seconds = atof(argv[1]);
    printf("pid=%d\n", (int)getpid());
    fflush(stdout);
    pthread_t t;
    if (pthread_create(&t, NULL, work, NULL)) return 2;
    pthread_exit(NULL);
}
