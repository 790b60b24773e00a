// Reference: the cheapest possible soft-breakpoint loop in C, for the same target.
// Usage: ptrace_ref ADDRESS PROGRAM ARGS...   (ADDRESS: absolute hex address of the breakpoint; non-PIE target)
// Per hit: wait, GETREGS (read rdi, as the recipe's log action does), restore byte,
// rewind rip, SINGLESTEP, wait, re-insert int3, CONT — the same work instrument does.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: ptrace_ref ADDR PROG ARGS...\n"); return 2; }
    unsigned long addr = strtoul(argv[1], NULL, 16);
    pid_t pid = fork();
    if (pid == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        execv(argv[2], argv + 2);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    long orig = ptrace(PTRACE_PEEKTEXT, pid, (void *)addr, 0);
    long patched = (orig & ~0xffL) | 0xcc;
    ptrace(PTRACE_POKETEXT, pid, (void *)addr, (void *)patched);
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
        regs.rip = addr;
        ptrace(PTRACE_POKETEXT, pid, (void *)addr, (void *)orig);
        ptrace(PTRACE_SETREGS, pid, 0, &regs);
        ptrace(PTRACE_SINGLESTEP, pid, 0, 0);
        waitpid(pid, &status, 0);
        ptrace(PTRACE_POKETEXT, pid, (void *)addr, (void *)patched);
        ptrace(PTRACE_CONT, pid, 0, 0);
    }
    fprintf(stderr, "hits=%ld sink=%ld\n", hits, sink);
    return 0;
}
