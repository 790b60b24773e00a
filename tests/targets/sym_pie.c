//! cflags: -g -O0 -fPIE -pie
//! variant nopie: -g -O0 -fno-pie -no-pie
// Symbols of every kind the symbolizer must handle, built as PIE and as non-PIE.
// Usage: sym_pie [N] — calls sym_work N times (default 3) and prints the total.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

long sym_total;                               // .bss object
int sym_table[32] = {1, 2, 3};                // .data object, size 128
static int sym_hidden_counter;                // a LOCAL object: only in .symtab

// A zero-size NOTYPE label: symbolize() must stretch it to the next symbol of .text.
__asm__(".text\n"
        ".globl sym_label\n"
        "sym_label:\n"
        "  nop\n  nop\n  nop\n  nop\n"
        "  ret\n");

static __attribute__((noinline)) int sym_local(int x) { return x ^ 0x5a; }   // LOCAL FUNC

__attribute__((noinline)) long sym_work(long i) {
    sym_hidden_counter++;
    sym_total += sym_local((int)i) + sym_table[i & 31];
    return sym_total;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 3;
    char buf[32];
    for (long i = 0; i < n; i++) sym_work(i);
    memset(buf, 0, sizeof buf);
    snprintf(buf, sizeof buf, "%ld", sym_total);
    puts(buf);
    return sym_hidden_counter == n ? 0 : 1;
}
