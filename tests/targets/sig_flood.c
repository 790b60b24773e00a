// A child process sends this program N signals, one at a time: each is sent only once the
// one before has left the program's pending set, so the kernel never merges two (a
// standard signal is pending at most once), and exactly N deliveries happen. Meanwhile
// the program calls tick() in a loop (in THREADS worker threads, or in the main thread
// with THREADS 0): a breakpoint there makes signals arrive while the debugger steps over
// it. tick()'s first instruction is an `add` to memory, which the debugger cannot emulate
// and so single-steps. Each thread counts its own ticks, in its own element of `ticks`
// (the main thread's with THREADS 0 and the first worker's are ticks[0], which the
// memory breakpoint tests watch): one counter `ticks++` by threads that run at once
// would lose increments (the `add` is not atomic), most where breakpoints never stop
// them (sampled ones), and the program would count fewer ticks than it made.
//
// Usage: sig_flood MODE N [THREADS]
//   kill      SIGUSR1 by kill()        (si_code SI_USER)
//   tgkill    SIGUSR1 by tgkill()      (SI_TKILL), to each worker in turn
//   sigqueue  SIGUSR1 by sigqueue()    (SI_QUEUE), values 1..N
//   trap      SIGTRAP, by tgkill() and kill() in turn (SI_TKILL, SI_USER)
//   ktrap     SIGTRAP by kill() only (SI_USER)
//   ttrap     SIGTRAP by tgkill() only (SI_TKILL)
// Prints "handled usr1=U trap=T bad=B sum=S sender=PID ticks=K threads=C0,C1,..": K all ticks,
// B counts deliveries whose si_code or si_pid is not the sender's; Ci the deliveries
// each worker took (the main thread's with THREADS 0).
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 8

long ticks[MAX_THREADS];
static volatile int usr1, trap, bad, stop;
static volatile long sum;
static volatile pid_t sender;
static volatile pid_t tids[MAX_THREADS];
static volatile int per_thread[MAX_THREADS];
static int nthreads, mode;
enum { KILL, TGKILL, SIGQUEUE, TRAP, KTRAP, TTRAP };

__attribute__((noinline, optimize("O2"))) void tick(long *count) { ++*count; }

static void on_signal(int sig, siginfo_t *si, void *ctx) {
    (void)ctx;
    if (sig == SIGUSR1) usr1++; else trap++;
    int want = mode == KILL ? SI_USER : mode == TGKILL ? SI_TKILL : mode == SIGQUEUE ? SI_QUEUE : -100;
    if (mode == KTRAP) want = SI_USER;
    if (mode == TTRAP) want = SI_TKILL;
    if (mode == TRAP ? (si->si_code != SI_TKILL && si->si_code != SI_USER) : si->si_code != want) bad++;
    if (si->si_pid != sender) bad++;
    if (mode == SIGQUEUE) sum += si->si_value.sival_int;
    pid_t me = (pid_t)syscall(SYS_gettid);
    for (int i = 0; i < (nthreads ? nthreads : 1); i++)
        if (tids[i] == me) per_thread[i]++;
}

static void *work(void *arg) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGTRAP);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    tids[(long)arg] = (pid_t)syscall(SYS_gettid);
    while (!stop) tick(&ticks[(long)arg]);
    return NULL;
}

// Whether signal `sig` is pending in thread `tid` of process `pid` or in the process.
static int pending(pid_t pid, pid_t tid, int sig) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/task/%d/status", pid, tid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "SigPnd:", 7) || !strncmp(line, "ShdPnd:", 7))
            if (strtoull(line + 7, NULL, 16) & (1ULL << (sig - 1))) found = 1;
    }
    fclose(f);
    return found;
}

static void send_all(pid_t pid, int n) {
    int targets = nthreads ? nthreads : 1;
    for (int i = 1; i <= n; i++) {
        pid_t tid = tids[i % targets];
        int sig = mode >= TRAP ? SIGTRAP : SIGUSR1;
        if (mode == KILL || mode == KTRAP || (mode == TRAP && i % 2 == 0)) kill(pid, sig);
        else if (mode == SIGQUEUE) sigqueue(pid, sig, (union sigval){.sival_int = i});
        else syscall(SYS_tgkill, pid, tid, sig);
        struct timespec pause = {0, 20000};
        for (int spins = 0; pending(pid, tid, sig); spins++) {
            if (spins > 500000) _exit(2);     // never taken: the program is stuck
            nanosleep(&pause, NULL);
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: sig_flood kill|tgkill|sigqueue|trap|ktrap|ttrap N [THREADS]\n"); return 2; }
    mode = !strcmp(argv[1], "kill") ? KILL : !strcmp(argv[1], "tgkill") ? TGKILL
         : !strcmp(argv[1], "sigqueue") ? SIGQUEUE : !strcmp(argv[1], "ktrap") ? KTRAP
         : !strcmp(argv[1], "ttrap") ? TTRAP : TRAP;
    int n = atoi(argv[2]);
    nthreads = argc > 3 ? atoi(argv[3]) : 0;
    if (nthreads > MAX_THREADS) nthreads = MAX_THREADS;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTRAP, &sa, NULL);
    pthread_t threads[MAX_THREADS];
    if (nthreads) {
        // Process-directed signals go to the workers only: the main thread blocks them.
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGUSR1);
        sigaddset(&set, SIGTRAP);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        for (long i = 0; i < nthreads; i++) {
            pthread_create(&threads[i], NULL, work, (void *)i);
            while (!tids[i]) usleep(1000);
        }
    } else {
        tids[0] = getpid();
    }
    int go[2];
    if (pipe(go)) return 2;
    pid_t child = fork();
    if (child == 0) {
        char c;
        if (read(go[0], &c, 1) != 1) _exit(2);
        send_all(getppid(), n);
        _exit(0);
    }
    sender = child;
    if (write(go[1], "g", 1) != 1) return 2;
    int status = 0;
    if (nthreads) {
        while (waitpid(child, &status, 0) < 0) {}
        stop = 1;
        for (int i = 0; i < nthreads; i++) pthread_join(threads[i], NULL);
    } else {
        while (waitpid(child, &status, WNOHANG) == 0) tick(&ticks[0]);
    }
    long all = 0;
    for (int i = 0; i < MAX_THREADS; i++) all += ticks[i];
    printf("handled usr1=%d trap=%d bad=%d sum=%ld sender=%d ticks=%ld threads=", usr1, trap, bad, sum,
           (int)sender, all);
    for (int i = 0; i < (nthreads ? nthreads : 1); i++) printf(i ? ",%d" : "%d", per_thread[i]);
    printf(" child=%d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}
