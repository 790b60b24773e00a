//! cflags: -g -O0 -fno-stack-protector
// One crash per triage rule the crash_*.c programs do not cover, chosen by argv[1].
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef void (*fn)(void);
static const uintptr_t wild = 0xdeadbeef000UL;
volatile unsigned long smash_length = 64;

__attribute__((noinline)) void stack_exec(void) {
    unsigned char code[16];
    memset(code, 0xc3, sizeof code);          /* ret; the stack is not executable */
    ((fn)(void *)code)();
}
__attribute__((noinline)) void call_mem(uintptr_t table) {
    __asm__ volatile("call *0x10(%0)" : : "r"(table) : "memory");
}
__attribute__((noinline)) void jmp_mem(uintptr_t table) {
    __asm__ volatile("jmp *0x10(%0)" : : "r"(table) : "memory");
}
__attribute__((noinline)) void call_pc(uintptr_t target) { ((fn)target)(); }
__attribute__((noinline)) long corrupt_then_read(long *volatile p) {
    char buf[8];
    memset(buf, 'B', smash_length);                     /* over saved rbp and the return address */
    return *p;                                 /* crash before returning: NULL read */
}
__attribute__((noinline)) void pivot_ret(void) {   /* rsp moved to attacker data, then ret */
    __asm__ volatile("mov $0x414141410000, %rsp\n\tret");
}
__attribute__((noinline)) void bad_insn(void) { __asm__ volatile(".byte 0x06"); }  /* push es: invalid in 64-bit */
__attribute__((noinline)) void breakpoint(void) { __asm__ volatile("int3"); }
__attribute__((noinline)) void block_move(void) {
    static char dst[256];
    __asm__ volatile("rep movsb" : : "D"(dst), "S"((void *)0x40), "c"(128UL) : "memory");
}

__attribute__((noinline)) void trap_from_another_process(void) {
    /* SIGTRAP blocked until sigsuspend: it lands there whenever the child sends it, so
       the stack (and its hash) is the same every run, live or in a core. */
    sigset_t trap, none;
    sigemptyset(&trap);
    sigaddset(&trap, SIGTRAP);
    sigemptyset(&none);
    sigprocmask(SIG_BLOCK, &trap, NULL);
    pid_t parent = getpid();
    if (fork() == 0) {                          /* SI_USER: kill() from another process */
        kill(parent, SIGTRAP);
        _exit(0);
    }
    for (;;) sigsuspend(&none);
}
__attribute__((noinline)) void gp_write(void) {     /* #GP: SIGSEGV with SI_KERNEL, si_addr 0 */
    *(volatile long *)0x8000000000001000UL = 1;
}
__attribute__((noinline)) void gp_call(void) {      /* a call to a non-canonical target: #GP at the call */
    __asm__ volatile("call *%0" : : "r"(0x4141414141414141UL) : "memory");
}
__attribute__((noinline)) void call_at_stack_end(void) {
    /* rsp at the top of a page whose lower neighbour is inaccessible: the call's push
       faults at rsp - 8, before the (wild) target is ever fetched. */
    char *area = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mprotect(area, 4096, PROT_NONE);
    __asm__ volatile("mov %0, %%rsp\n\tcall *%1" : : "r"(area + 4096), "r"(wild) : "memory");
}

int main(int argc, char **argv) {
    const char *m = argc > 1 ? argv[1] : "";
    if (!strcmp(m, "stack-exec")) stack_exec();
    else if (!strcmp(m, "call-wild")) call_mem(wild);
    else if (!strcmp(m, "jmp-wild")) jmp_mem(wild);
    else if (!strcmp(m, "pc-null")) call_pc(0x10);
    else if (!strcmp(m, "call-null")) call_mem(0);
    else if (!strcmp(m, "jmp-null")) jmp_mem(0);
    else if (!strcmp(m, "stack-corrupt")) corrupt_then_read(0);
    else if (!strcmp(m, "bad-insn")) bad_insn();
    else if (!strcmp(m, "pivot")) pivot_ret();
    else if (!strcmp(m, "int3")) breakpoint();
    else if (!strcmp(m, "rep-movs")) block_move();
    else if (!strcmp(m, "sigterm")) raise(SIGTERM);
    else if (!strcmp(m, "segv-raise")) raise(SIGSEGV);
    else if (!strcmp(m, "sigsys")) raise(SIGSYS);
    else if (!strcmp(m, "trap-kill")) trap_from_another_process();
    else if (!strcmp(m, "trap-raise")) raise(SIGTRAP);     /* SI_TKILL */
    else if (!strcmp(m, "gp-write")) gp_write();
    else if (!strcmp(m, "gp-call")) gp_call();
    else if (!strcmp(m, "call-stack-end")) call_at_stack_end();
    return 0;
}
