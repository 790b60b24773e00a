// A NULL write inside a signal handler: the backtrace must cross the signal frame.
#include <signal.h>
#include <stddef.h>

__attribute__((noinline)) void handler_work(int *p) { *p = 1; }

void on_signal(int sig) {
    int *volatile p = NULL;
    handler_work(p);
    (void)sig;
}

__attribute__((noinline)) void trigger(void) { raise(SIGUSR1); }

int main(void) {
    signal(SIGUSR1, on_signal);
    trigger();
    return 0;
}
