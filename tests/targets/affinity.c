// Prints how many CPUs it may run on: single-threaded, then from a second thread and
// from main once that thread exists, then from a fork child. Usage: affinity
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static int cpus(void) {
    cpu_set_t set;
    sched_getaffinity(0, sizeof set, &set);
    return CPU_COUNT(&set);
}

static void *worker(void *arg) {
    (void)arg;
    printf("thread=%d\n", cpus());
    return NULL;
}

int main(void) {
    printf("alone=%d\n", cpus());
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        printf("child=%d\n", cpus());
        return 0;
    }
    waitpid(child, NULL, 0);
    pthread_t th;
    pthread_create(&th, NULL, worker, NULL);
    pthread_join(th, NULL);
    printf("main=%d\n", cpus());
    return 0;
}
