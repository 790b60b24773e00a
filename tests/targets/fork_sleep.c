// A parent that starts a long-lived child and waits for it: prints "child=PID".
// The child is a plain fork (not followed by default) that sleeps for minutes.
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    pid_t child = fork();
    if (child == 0) {
        sleep(300);
        return 0;
    }
    printf("child=%d\n", (int)child);
    fflush(stdout);
    waitpid(child, NULL, 0);
    return 0;
}
