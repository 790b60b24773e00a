// Integer division by zero (SIGFPE, FPE_INTDIV).
volatile int zero = 0;

__attribute__((noinline)) int divide(int a, int b) { return a / b; }

int main(void) {
    return divide(7, zero);
}
