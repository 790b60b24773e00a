// A system-call-heavy program for bench/syscalls.py: N getppid calls (default 200000),
// then one write.
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 200000, s = 0;
    for (long i = 0; i < n; i++) s += syscall(SYS_getppid);
    write(1, s ? "done\n" : "none\n", 5);
    return 0;
}
