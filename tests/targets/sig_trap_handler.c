// A SIGTRAP handler that calls f(), where a test puts a breakpoint: the debugger's trap
// inside the handler (SIGTRAP blocked there) must not reset the handler, or the next
// SIGTRAP kills the program. SIGTRAP comes N times from raise() (tgkill, SI_TKILL) and
// N times from the program's own int3 (SI_KERNEL). Prints "handled=H f=F".
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile int handled, calls;

__attribute__((noinline)) void f(void) { calls++; }

static void on_trap(int sig, siginfo_t *si, void *ctx) {
    (void)sig; (void)si; (void)ctx;
    handled++;
    f();
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 3;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_trap;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGTRAP, &sa, NULL);
    for (int i = 0; i < n; i++) raise(SIGTRAP);
    for (int i = 0; i < n; i++) __asm__ volatile("int3");
    printf("handled=%d f=%d\n", handled, calls);
    return 0;
}
