// Reference: the cheapest possible hardware execute-breakpoint loop in C, for the same target.
// Usage: hw_ref ADDRESS PROGRAM ARGS...   (ADDRESS: absolute hex address; non-PIE target)
// DR0 = ADDRESS and DR7 = L0 (execute, length 1) through PTRACE_POKEUSER, then per hit:
// wait, GETREGS (read rdi, as the recipe's log action does), CONT. No step is needed:
// the kernel sets RF in the saved flags, so the instruction runs once on resume.
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: hw_ref ADDR PROG ARGS...\n"); return 2; }
    unsigned long addr = strtoul(argv[1], NULL, 16);
    pid_t pid = fork();
    if (pid == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        execv(argv[2], argv + 2);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    size_t dr = offsetof(struct user, u_debugreg);
    if (ptrace(PTRACE_POKEUSER, pid, (void *)dr, (void *)addr) != 0 ||
        ptrace(PTRACE_POKEUSER, pid, (void *)(dr + 7 * sizeof(long)), (void *)1L) != 0) {
        perror("PTRACE_POKEUSER");
        return 1;
    }
    ptrace(PTRACE_CONT, pid, 0, 0);
    long hits = 0, sink = 0;
    struct user_regs_struct regs;
    for (;;) {
        waitpid(pid, &status, 0);
        if (WIFEXITED(status) || WIFSIGNALED(status)) break;
        if (WSTOPSIG(status) != SIGTRAP) { ptrace(PTRACE_CONT, pid, 0, WSTOPSIG(status)); continue; }
        ptrace(PTRACE_GETREGS, pid, 0, &regs);
        hits++;
        sink += regs.rdi;
        ptrace(PTRACE_CONT, pid, 0, 0);
    }
    fprintf(stderr, "hits=%ld sink=%ld\n", hits, sink);
    return 0;
}
