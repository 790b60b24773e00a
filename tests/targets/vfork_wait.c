// A worker thread calls hit(i) until told to stop while the main thread waits in
// vfork(): the child blocks reading stdin and exits when it is closed. Prints "pid=N",
// then "vforked" from the child; at the end "vfork ok N" (or "vfork BAD").
// A thread in vfork is deaf to PTRACE_INTERRUPT until its child lets go.
#include <pthread.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int stop;
static long total;
__attribute__((noinline)) long hit(long i) { total += i; return i ^ 0x5a; }

static void *worker(void *arg) {
    long i = 0, bad = 0;
    for (; !stop; i++)
        if (hit(i) != (i ^ 0x5a)) bad++;
    if (total != i * (i - 1) / 2) bad++;
    *(long *)arg = bad ? -1 : i;
    return NULL;
}

int main(void) {
    long result = 0;
    pthread_t th;
    printf("pid=%d\n", (int)getpid());
    fflush(stdout);
    pthread_create(&th, NULL, worker, &result);
    pid_t child = vfork();
    if (child == 0) {
        char c;
        write(1, "vforked\n", 8);
        while (read(0, &c, 1) > 0) {}
        _exit(0);
    }
    waitpid(child, NULL, 0);
    stop = 1;
    pthread_join(th, NULL);
    if (result < 0) { printf("vfork BAD\n"); return 1; }
    printf("vfork ok %ld\n", result);
    return 0;
}
