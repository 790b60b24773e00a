// Forks a child that execs PROGRAM ARGS...; the parent waits and prints "child exited N".
// Usage: fork_exec PROGRAM ARGS...
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: fork_exec PROGRAM ARGS...\n"); return 2; }
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        execv(argv[1], argv + 1);
        _exit(127);
    }
    int st = 0;
    waitpid(child, &st, 0);
    printf("child exited %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}
