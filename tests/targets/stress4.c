// Four threads call checked(i, k) until stdin is closed: it loads callee-saved and vector
// registers with values made from i, calls soft_hit(i) and hw_hit(i) (breakpoint sites),
// writes i into watched[k] (a memory-breakpoint site), and checks that every register and
// the written word came back as they went. Each thread also keeps a signal mask of its own
// and checks it; it sleeps a little every 16 calls. The main thread answers each "check" line on stdin with the checksum of
// its own text, the count of bad calls and the calls so far; at EOF it prints "stress ok".
//! cflags: -g -O1 -msse4.1
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define THREADS 4
long checked(long i, long k);
long soft_hit(long i);
long hw_hit(long i);
__attribute__((aligned(4096))) long watched[512];   // a page of its own

__asm__(
    ".text\n"
    ".globl soft_hit\n.type soft_hit,@function\n"
    "soft_hit: mov %rdi, %rax\n xor $0x5a, %rax\n ret\n.size soft_hit,.-soft_hit\n"
    ".globl hw_hit\n.type hw_hit,@function\n"
    "hw_hit: nop\n mov %rdi, %rax\n xor $0x5a, %rax\n ret\n.size hw_hit,.-hw_hit\n"
    ".globl checked\n.type checked,@function\n"
    "checked:\n"
    " push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"
    " sub $8, %rsp\n"                    // 16-byte aligned for the calls; the slot keeps k
    " mov %rsi, (%rsp)\n"
    " mov %rdi, %rbp\n"
    " movabs $0x0123456789abcdef, %rbx\n"
    " mov %rbp, %r12\n xor %rbx, %r12\n"
    " lea 1(%rbp), %r13\n"
    " mov %rbp, %r14\n not %r14\n"
    " mov %rbp, %r15\n shl $3, %r15\n"
    " movq %rbx, %xmm8\n movq %r12, %xmm9\n punpcklqdq %xmm9, %xmm8\n"   // xmm8 = [rbx, r12]
    " movq %r13, %xmm9\n movq %r14, %xmm10\n punpcklqdq %xmm10, %xmm9\n" // xmm9 = [r13, r14]
    " mov %rbp, %rdi\n call soft_hit\n xor $0x5a, %rax\n cmp %rbp, %rax\n jne 1f\n"
    " mov %rbp, %rdi\n call hw_hit\n xor $0x5a, %rax\n cmp %rbp, %rax\n jne 1f\n"
    " mov (%rsp), %rcx\n lea watched(%rip), %rax\n mov %rbp, (%rax,%rcx,8)\n"
    " mov (%rax,%rcx,8), %rdx\n cmp %rbp, %rdx\n jne 1f\n"
    " movabs $0x0123456789abcdef, %rax\n cmp %rax, %rbx\n jne 1f\n"
    " mov %rbp, %rax\n xor %rbx, %rax\n cmp %rax, %r12\n jne 1f\n"
    " lea 1(%rbp), %rax\n cmp %rax, %r13\n jne 1f\n"
    " mov %rbp, %rax\n not %rax\n cmp %rax, %r14\n jne 1f\n"
    " mov %rbp, %rax\n shl $3, %rax\n cmp %rax, %r15\n jne 1f\n"
    " movq %xmm8, %rax\n cmp %rax, %rbx\n jne 1f\n"
    " pextrq $1, %xmm8, %rax\n cmp %rax, %r12\n jne 1f\n"
    " movq %xmm9, %rax\n cmp %rax, %r13\n jne 1f\n"
    " pextrq $1, %xmm9, %rax\n cmp %rax, %r14\n jne 1f\n"
    " xor %eax, %eax\n jmp 2f\n"
    "1: mov $1, %eax\n"
    "2: add $8, %rsp\n"
    " pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n ret\n"
    ".size checked,.-checked\n");

static volatile int stop;
static int masked;          // threads that have set their mask (ready is printed after all)
static volatile long calls[THREADS], bad[THREADS];

static void mask_for(int k, sigset_t *set) {
    sigemptyset(set);
    sigaddset(set, SIGUSR2);
    sigaddset(set, SIGRTMIN + k);
}

static void *worker(void *arg) {
    long k = (long)arg;
    sigset_t want, now;
    mask_for((int)k, &want);
    pthread_sigmask(SIG_SETMASK, &want, NULL);
    __atomic_add_fetch(&masked, 1, __ATOMIC_SEQ_CST);
    for (long i = 0; !stop; i++) {
        if (checked(i, k * 64)) bad[k]++;     // a word of the watched page each
        calls[k]++;
        if ((i & 15) == 15) usleep(100);     // sleeps too (restarted after our interrupts), and leaves the CPUs to the tool
        if ((i & 1023) == 0) {
            pthread_sigmask(SIG_SETMASK, NULL, &now);
            for (int s = 1; s < SIGRTMAX; s++)
                if (sigismember(&now, s) != sigismember(&want, s)) { bad[k]++; break; }
        }
    }
    return NULL;
}

extern char __executable_start, etext;

static unsigned long text_sum(void) {
    unsigned long h = 1469598103934665603ul;
    for (const unsigned char *p = (const unsigned char *)&__executable_start; p < (const unsigned char *)&etext; p++)
        h = (h ^ *p) * 1099511628211ul;
    return h;
}

static void report(const char *what) {
    long b = 0, c = 0;
    for (int k = 0; k < THREADS; k++) { b += bad[k]; c += calls[k]; }
    printf("%s text=%016lx bad=%ld calls=%ld\n", what, text_sum(), b, c);
    fflush(stdout);
}

int main(void) {
    sigset_t mine;
    sigemptyset(&mine);
    sigaddset(&mine, SIGUSR1);
    pthread_sigmask(SIG_SETMASK, &mine, NULL);
    pthread_t th[THREADS];
    for (long k = 0; k < THREADS; k++) pthread_create(&th[k], NULL, worker, (void *)k);
    while (__atomic_load_n(&masked, __ATOMIC_SEQ_CST) < THREADS) usleep(1000);
    printf("pid=%d\n", (int)getpid());
    report("ready");
    char line[64];
    while (fgets(line, sizeof line, stdin))
        if (!strncmp(line, "check", 5)) report("check");
    stop = 1;
    for (int k = 0; k < THREADS; k++) pthread_join(th[k], NULL);
    report("end");
    long b = 0;
    for (int k = 0; k < THREADS; k++) b += bad[k];
    printf(b ? "stress BAD\n" : "stress ok\n");
    return b != 0;
}
