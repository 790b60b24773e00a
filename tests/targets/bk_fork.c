// Forks a child that dlopen()s argv[1] and exits 5; the parent waits for it and
// prints how it ended ("child exited 5", or "child killed SIG" if a signal killed it).
#include <dlfcn.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    pid_t child = fork();
    if (child == 0) _exit(dlopen(argv[1], RTLD_NOW) ? 5 : 6);
    int st = 0;
    waitpid(child, &st, 0);
    if (WIFEXITED(st)) printf("child exited %d\n", WEXITSTATUS(st));
    else printf("child killed %d\n", WTERMSIG(st));
    return 0;
}
