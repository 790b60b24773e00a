// Calls work(i) M times, forks; the child calls work(100000 + i) M times and exits 0,
// the parent waits for it and calls work(200000 + i) M times. Usage: fork_calls [M]
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

__attribute__((noinline)) long work(long k) { return k * 3 + 1; }

int main(int argc, char **argv) {
    long m = argc > 1 ? atol(argv[1]) : 100, acc = 0;
    for (long i = 0; i < m; i++) acc += work(i);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        for (long i = 0; i < m; i++) acc += work(100000 + i);
        _exit(acc > 0 ? 0 : 1);
    }
    int st = 0;
    waitpid(child, &st, 0);
    for (long i = 0; i < m; i++) acc += work(200000 + i);
    printf("child exited %d, acc=%ld\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1, acc);
    return 0;
}
