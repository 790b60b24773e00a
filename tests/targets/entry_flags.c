// Functions whose first instruction sets flags (or is a 32-bit mov, a rip-relative lea),
// each read right after: the forms a breakpoint's step-over emulates instead of
// single-stepping (arch/x86_64/prologue.py). Prints what each returned, and the flags
// `sub rdi, 1` left, for many inputs: the same lines with and without breakpoints.
// Usage: entry_flags [N]
#include <stdio.h>
#include <stdlib.h>

int limit = 5;

// test rdi, rdi; sete al
__attribute__((naked, noinline)) long is_zero(long x) {
    __asm__("test %rdi, %rdi\n\tsete %al\n\tmovzbl %al, %eax\n\tret");
}
// cmp rdi, rsi; setb al
__attribute__((naked, noinline)) long below(long a, long b) {
    __asm__("cmp %rsi, %rdi\n\tsetb %al\n\tmovzbl %al, %eax\n\tret");
}
// sub rsp, 0x28: a frame, used
__attribute__((naked, noinline)) long framed(long x) {
    __asm__("sub $0x28, %rsp\n\tmov %rdi, 8(%rsp)\n\tmov 8(%rsp), %rax\n\tadd $0x28, %rsp\n\tret");
}
// cmp dword [rip+limit], x via an immediate: cmpl $5, limit(%rip); setl al
__attribute__((naked, noinline)) long limit_is_small(void) {
    __asm__("cmpl $5, limit(%rip)\n\tsetle %al\n\tmovzbl %al, %eax\n\tret");
}
// xor eax, eax
__attribute__((naked, noinline)) long nothing(void) {
    __asm__("xor %eax, %eax\n\tret");
}
// mov eax, edi (zero-extends)
__attribute__((naked, noinline)) long low_half(long x) {
    __asm__("mov %edi, %eax\n\tret");
}
// lea rax, [rip+limit]
__attribute__((naked, noinline)) int *limit_address(void) {
    __asm__("lea limit(%rip), %rax\n\tret");
}
// sub rdi, 1, then the status flags it set (CF PF AF ZF SF OF)
__attribute__((naked, noinline)) long flags_of_decrement(long x) {
    __asm__("sub $1, %rdi\n\tpushfq\n\tpop %rax\n\tand $0x8d5, %eax\n\tret");
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 20;
    long values[] = {0, 1, 2, 15, 16, 127, 128, 255, 0x7fffffffL, 0x80000000L, -1, -2, 0x7fffffffffffffffL};
    unsigned long sum = 0;
    for (long i = 0; i < n; i++) {
        long v = values[i % 13] + (i / 13);
        long f = flags_of_decrement(v);
        printf("%ld: zero=%ld below=%ld framed=%ld small=%ld nothing=%ld low=%lx flags=%lx\n", v, is_zero(v),
               below(v, 16), framed(v), limit_is_small(), nothing(), low_half(v), f);
        sum += (unsigned long)f + (limit_address() == &limit);
    }
    printf("sum=%lu\n", sum);
    return 0;
}
