// The classic anti-debug check: PTRACE_TRACEME fails when a debugger already traces us.
// Usage: lib_antidebug — prints "debugger detected" (exit 1) or "no debugger" (exit 0).
//! cflags: -g -O0
#include <stdio.h>
#include <sys/ptrace.h>

int main(void) {
    if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) == -1) {
        puts("debugger detected");
        return 1;
    }
    puts("no debugger");
    return 0;
}
