// Touches an 8-byte window in the middle of a page a known number of times, and
// bytes before and after it on the same page, for memory (guard-page) breakpoints.
// Usage: mem_page MODE N [FORK]
//   MODE global: the window is watched_page.b[2048..2055] (a page-aligned global)
//        heap:   the window is in the middle of a page of a malloc'd buffer
//        stack:  the window is in a small local array, on the page under rsp
//        attach: prints its pid, then touches the global window N times, 1 ms apart
//        threads: 4 threads touch the global window N times each, all at once
// Each round: writes w[0] and w[7], reads w[3] (inside); writes w[-1], reads w[-8]
// (before); writes w[8], reads w[100] (after). `ready()` runs once the window's
// address is in `watch_ptr`, before the first round. Prints "MODE n=N sum=S w7=V ok".
// With FORK=1 the process forks after the rounds and the child touches the window once more.
//! cflags: -g -O0 -no-pie
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct page { unsigned char b[4096]; };
struct page watched_page __attribute__((aligned(4096)));
unsigned char *volatile watch_ptr;

__attribute__((noinline)) void ready(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) void done(void) { __asm__ volatile("" ::: "memory"); }

__attribute__((noinline)) long touch(volatile unsigned char *w, long n, int pause) {
    long sum = 0;
    for (long i = 0; i < n; i++) {
        w[0] = (unsigned char)i;         // inside: write
        w[7] = (unsigned char)(i + 1);   // inside: write
        sum += w[3];                     // inside: read
        w[-1] = 1;                       // before: write
        sum += w[-8];                    // before: read
        w[8] = 2;                        // after: write
        sum += w[100];                   // after: read
        if (pause) usleep(1000);
    }
    return sum;
}

#define THREADS 4
static long rounds;
static long thread_sums[THREADS];

static void *worker(void *arg) {
    long id = (long)arg;
    thread_sums[id] = touch(watch_ptr, rounds, 0);
    return NULL;
}

static long in_threads(long n) {
    pthread_t th[THREADS];
    rounds = n;
    for (long i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, worker, (void *)i);
    long sum = 0;
    for (long i = 0; i < THREADS; i++) { pthread_join(th[i], NULL); sum += thread_sums[i]; }
    return sum;
}

static long on_stack(long n) {
    unsigned char local[256];
    memset(local, 1, sizeof local);
    watch_ptr = local + 128;
    ready();
    long sum = touch(local + 128, n, 0);
    return sum + local[128 + 7];
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "global";
    long n = argc > 2 ? atol(argv[2]) : 10;
    int do_fork = argc > 3 && atoi(argv[3]);
    long sum;
    unsigned char *w;
    if (strcmp(mode, "stack") == 0) {
        sum = on_stack(n);
        w = NULL;
    } else {
        if (strcmp(mode, "heap") == 0) {
            unsigned char *buf = malloc(3 * 4096);
            w = (unsigned char *)(((uintptr_t)buf + 4096) & ~(uintptr_t)4095) + 2048;
        } else {
            w = watched_page.b + 2048;
        }
        memset(w - 2048, 1, 4096);
        if (strcmp(mode, "attach") == 0) {
            printf("pid=%d\n", (int)getpid());
            fflush(stdout);
        }
        watch_ptr = w;
        ready();
        if (strcmp(mode, "threads") == 0) {
            sum = in_threads(n);
            n *= THREADS;        // the same totals as one thread doing all the rounds
        } else {
            sum = touch(w, n, strcmp(mode, "attach") == 0);
        }
        sum += w[7];
    }
    done();
    if (do_fork) {
        pid_t child = fork();
        if (child == 0) {
            watch_ptr[0] = 42;           // one more write inside the window, in the child
            _exit(watch_ptr[0] == 42 ? 0 : 1);
        }
        int status = 0;
        waitpid(child, &status, 0);
        printf("child %s\n", WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "ok" : "BAD");
    }
    long expect = 3 * n + (unsigned char)(strcmp(mode, "threads") == 0 ? n / THREADS : n);
    printf("%s n=%ld sum=%ld %s\n", mode, n, sum, sum == expect ? "ok" : "BAD");
    return sum == expect ? 0 : 1;
}
