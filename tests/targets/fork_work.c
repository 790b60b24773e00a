// Forks: the child calls work(100) and exits 0; the parent waits, calls work(1),
// and prints how the child ended.
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
__attribute__((noinline)) int work(int x) { return x * 2; }
int main(void) {
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) _exit(work(100) == 200 ? 0 : 1);
    int st = 0;
    waitpid(child, &st, 0);
    int r = work(1);
    if (WIFEXITED(st)) printf("child exited %d, work=%d\n", WEXITSTATUS(st), r);
    else printf("child killed by signal %d\n", WTERMSIG(st));
    return 0;
}
