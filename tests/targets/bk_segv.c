// Writes through a bad pointer (0x1234). With argument "handled", a SIGSEGV
// handler is installed first, which exits with status 7.
#include <signal.h>
#include <string.h>
#include <unistd.h>

static void on_segv(int sig) { (void)sig; _exit(7); }

__attribute__((noinline)) void poke(volatile int *p) { *p = 42; }

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "handled") == 0) signal(SIGSEGV, on_segv);
    poke((volatile int *)0x1234);
    return 0;
}
