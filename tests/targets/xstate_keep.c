// Live vector and x87 state across a stop where the tracer injects a call: main loads
// ymm0-15, two x87 values and a non-default MXCSR, stops on an int3 (the tracer calls
// clobber() there through an injected call, then resumes), and checks them all after.
// With the argument "page" a write to watched_page (a memory breakpoint: mprotect is
// injected around it) stands where the int3 is.
// Prints "xstate OK" or "xstate FAIL <what>"; "xstate SKIP" on a CPU without AVX.
#include <stdio.h>
#include <string.h>

static unsigned char in[16][32], out[16][32];
static double x87_in[2] = {3.25, -1.5e300}, x87_out[2];
static unsigned mxcsr_in = 0x7f80, mxcsr_out;      // round toward zero, all masked
__attribute__((aligned(4096))) volatile long watched_page[512];

// Called by the tracer, never by the program: it trashes what an ordinary function may.
__attribute__((noinline, used)) long clobber(void) {
    __asm__ volatile(
        "vpcmpeqd %%ymm0, %%ymm0, %%ymm0\n\t" "vpcmpeqd %%ymm1, %%ymm1, %%ymm1\n\t"
        "vpcmpeqd %%ymm2, %%ymm2, %%ymm2\n\t" "vpcmpeqd %%ymm3, %%ymm3, %%ymm3\n\t"
        "vpcmpeqd %%ymm4, %%ymm4, %%ymm4\n\t" "vpcmpeqd %%ymm5, %%ymm5, %%ymm5\n\t"
        "vpcmpeqd %%ymm6, %%ymm6, %%ymm6\n\t" "vpcmpeqd %%ymm7, %%ymm7, %%ymm7\n\t"
        "vpcmpeqd %%ymm8, %%ymm8, %%ymm8\n\t" "vpcmpeqd %%ymm9, %%ymm9, %%ymm9\n\t"
        "vpcmpeqd %%ymm10, %%ymm10, %%ymm10\n\t" "vpcmpeqd %%ymm11, %%ymm11, %%ymm11\n\t"
        "vpcmpeqd %%ymm12, %%ymm12, %%ymm12\n\t" "vpcmpeqd %%ymm13, %%ymm13, %%ymm13\n\t"
        "vpcmpeqd %%ymm14, %%ymm14, %%ymm14\n\t" "vpcmpeqd %%ymm15, %%ymm15, %%ymm15\n\t"
        "fninit\n\t" "fldz\n\t" "fldz\n\t"
        "movl $0x1f80, -4(%%rsp)\n\t" "ldmxcsr -4(%%rsp)\n\t"
        ::: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
            "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "memory");
    return 7;
}

int main(int argc, char **argv) {
    int page = argc > 1 && !strcmp(argv[1], "page");
    if (!__builtin_cpu_supports("avx")) { puts("xstate SKIP"); return 0; }
    for (int r = 0; r < 16; r++)
        for (int b = 0; b < 32; b++) in[r][b] = (unsigned char)(r * 37 + b * 11 + 1);
    __asm__ volatile(
        "vmovdqu 0(%0), %%ymm0\n\t" "vmovdqu 32(%0), %%ymm1\n\t" "vmovdqu 64(%0), %%ymm2\n\t"
        "vmovdqu 96(%0), %%ymm3\n\t" "vmovdqu 128(%0), %%ymm4\n\t" "vmovdqu 160(%0), %%ymm5\n\t"
        "vmovdqu 192(%0), %%ymm6\n\t" "vmovdqu 224(%0), %%ymm7\n\t" "vmovdqu 256(%0), %%ymm8\n\t"
        "vmovdqu 288(%0), %%ymm9\n\t" "vmovdqu 320(%0), %%ymm10\n\t" "vmovdqu 352(%0), %%ymm11\n\t"
        "vmovdqu 384(%0), %%ymm12\n\t" "vmovdqu 416(%0), %%ymm13\n\t" "vmovdqu 448(%0), %%ymm14\n\t"
        "vmovdqu 480(%0), %%ymm15\n\t"
        "fldl 8(%2)\n\t" "fldl 0(%2)\n\t"          // st0 = x87_in[0], st1 = x87_in[1]
        "ldmxcsr (%4)\n\t"
        "testl %7, %7\n\t" "jnz 1f\n\t"
        "int3\n\t"                                  // the tracer's injected call happens here
        "jmp 2f\n"
        "1:\tmovq $1, (%6)\n"                       // or here its injected mprotect calls
        "2:\t"
        "stmxcsr (%5)\n\t"
        "movl $0x1f80, -4(%%rsp)\n\t" "ldmxcsr -4(%%rsp)\n\t"
        "fstpl 0(%3)\n\t" "fstpl 8(%3)\n\t"
        "vmovdqu %%ymm0, 0(%1)\n\t" "vmovdqu %%ymm1, 32(%1)\n\t" "vmovdqu %%ymm2, 64(%1)\n\t"
        "vmovdqu %%ymm3, 96(%1)\n\t" "vmovdqu %%ymm4, 128(%1)\n\t" "vmovdqu %%ymm5, 160(%1)\n\t"
        "vmovdqu %%ymm6, 192(%1)\n\t" "vmovdqu %%ymm7, 224(%1)\n\t" "vmovdqu %%ymm8, 256(%1)\n\t"
        "vmovdqu %%ymm9, 288(%1)\n\t" "vmovdqu %%ymm10, 320(%1)\n\t" "vmovdqu %%ymm11, 352(%1)\n\t"
        "vmovdqu %%ymm12, 384(%1)\n\t" "vmovdqu %%ymm13, 416(%1)\n\t" "vmovdqu %%ymm14, 448(%1)\n\t"
        "vmovdqu %%ymm15, 480(%1)\n\t"
        "vzeroupper\n\t"
        :: "r"(in), "r"(out), "r"(x87_in), "r"(x87_out), "r"(&mxcsr_in), "r"(&mxcsr_out),
          "r"(watched_page), "r"(page)
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
          "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "st", "st(1)", "memory");
    for (int r = 0; r < 16; r++)
        if (memcmp(in[r], out[r], 32)) { printf("xstate FAIL ymm%d\n", r); return 1; }
    if (x87_out[0] != x87_in[0] || x87_out[1] != x87_in[1]) { printf("xstate FAIL x87\n"); return 1; }
    if (mxcsr_out != mxcsr_in) { printf("xstate FAIL mxcsr %#x\n", mxcsr_out); return 1; }
    puts("xstate OK");
    return 0;
}
