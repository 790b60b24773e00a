// Forks without exec: the child writes through NULL; the parent waits and prints how it ended.
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
__attribute__((noinline)) void child_fault(int *p) { *p = 7; }
int main(void) {
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) { child_fault(NULL); _exit(0); }
    int st = 0;
    waitpid(child, &st, 0);
    printf("child killed by signal %d\n", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return 0;
}
