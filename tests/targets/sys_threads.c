// System call tests: 4 threads each open /etc/hostname (kept open until all are
// joined, so the fds the run hands out are the same whatever the interleaving) and
// a path that does not exist. With "opener N": prints its pid, then opens and closes
// /etc/hostname every 20 ms, N times (an attach target), then prints "opened N".
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_barrier_t opened;

static void *worker(void *arg) {
    int fd = open("/etc/hostname", O_RDONLY);
    int bad = open("/nonexistent/sys_threads", O_RDONLY | O_CLOEXEC);
    pthread_barrier_wait(&opened);
    if (fd >= 0) close(fd);
    (void)bad;
    return arg;
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "opener") == 0) {
        long n = atol(argv[2]), ok = 0;
        struct timespec ts = {0, 20 * 1000 * 1000};
        printf("pid=%d\n", (int)getpid());
        fflush(stdout);
        for (long i = 0; i < n; i++) {
            int fd = open("/etc/hostname", O_RDONLY);
            if (fd >= 0) { ok++; close(fd); }
            nanosleep(&ts, NULL);
        }
        printf("opened %ld\n", ok);
        return 0;
    }
    pthread_t t[4];
    pthread_barrier_init(&opened, NULL, 4);
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    puts("threads done");
    return 0;
}
