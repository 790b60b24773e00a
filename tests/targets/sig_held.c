// Signals that arrive while the tracer works in a thread reach the program as they were
// sent. A worker thread writes a watched page in a loop (a memory breakpoint: each write
// makes the tracer inject mprotect calls into the worker, and signals for the worker wait
// meanwhile); the main thread, running while the worker stands in the tracer's hands, sends
// N of each: sigqueue() of SIGRTMIN+1 to the process
// (values 1..N), rt_tgsigqueueinfo of SIGRTMIN+2 to the worker (values 1..N), tgkill of
// SIGRTMIN+3 to the worker. Every signal must come with the sender's pid, its si_code and
// value, the directed ones on the worker. Usage: sig_held N — prints "signals OK ..." or
// "signals FAIL ...".
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

__attribute__((aligned(4096))) volatile long watched_page[512];
static volatile int stop, sender;
static volatile pid_t worker_tid;
static volatile int count[3], bad[3], wrong_thread[3];
static volatile long sum[3];
static volatile int first_bad_code[3], first_bad_pid[3];

static void on_signal(int sig, siginfo_t *si, void *ctx) {
    (void)ctx;
    int k = sig - SIGRTMIN - 1;
    int want_code = k == 2 ? SI_TKILL : SI_QUEUE;
    count[k]++;
    if (si->si_code != want_code || si->si_pid != sender) {
        if (!bad[k]++) { first_bad_code[k] = si->si_code; first_bad_pid[k] = si->si_pid; }
    }
    if (k < 2) sum[k] += si->si_value.sival_int;
    if (k > 0 && syscall(SYS_gettid) != worker_tid) wrong_thread[k]++;
}

static void *work(void *arg) {
    (void)arg;
    worker_tid = (pid_t)syscall(SYS_gettid);
    sigset_t set;
    sigemptyset(&set);
    for (int k = 1; k <= 3; k++) sigaddset(&set, SIGRTMIN + k);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    while (!stop) watched_page[0]++;
    return NULL;
}

static void send_all(pid_t pid, pid_t tid, int n) {
    for (int i = 1; i <= n; i++) {
        sigqueue(pid, SIGRTMIN + 1, (union sigval){.sival_int = i});
        siginfo_t si;
        memset(&si, 0, sizeof si);
        si.si_signo = SIGRTMIN + 2;
        si.si_code = SI_QUEUE;
        si.si_pid = getpid();
        si.si_uid = getuid();
        si.si_value.sival_int = i;
        syscall(SYS_rt_tgsigqueueinfo, pid, tid, SIGRTMIN + 2, &si);
        syscall(SYS_tgkill, pid, tid, SIGRTMIN + 3);
        for (volatile int spin = 0; spin < 20000; spin++) {}    // running, not asleep: sending
    }
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigset_t set;
    sigemptyset(&set);
    for (int k = 1; k <= 3; k++) { sigaction(SIGRTMIN + k, &sa, NULL); sigaddset(&set, SIGRTMIN + k); }
    // Only the worker takes the process-directed ones too while it runs: they wait in it.
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_t t;
    pthread_create(&t, NULL, work, NULL);
    while (!worker_tid) usleep(1000);
    sender = getpid();
    send_all(sender, worker_tid, n);
    for (int i = 0; i < 10000 && (count[0] < n || count[1] < n || count[2] < n); i++) usleep(1000);
    stop = 1;
    pthread_join(t, NULL);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);   // any process-directed one left comes now
    long want = (long)n * (n + 1) / 2;
    int ok = 1;
    for (int k = 0; k < 3; k++)
        if (count[k] != n || bad[k] || wrong_thread[k] || (k < 2 && sum[k] != want)) ok = 0;
    printf("signals %s writes=%ld", ok ? "OK" : "FAIL", watched_page[0]);
    for (int k = 0; k < 3; k++)
        printf(" [RTMIN+%d count=%d bad=%d (code %d pid %d, sender %d) wrong_thread=%d sum=%ld]", k + 1,
               count[k], bad[k], first_bad_code[k], first_bad_pid[k], sender, wrong_thread[k], sum[k]);
    printf("\n");
    return ok ? 0 : 1;
}
