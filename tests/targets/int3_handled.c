// The program's own int3 with a SIGTRAP handler (as anti-debug code does): each trap
// reaches the handler, and the program runs on. Prints "handled=3".
#include <signal.h>
#include <stdio.h>

static volatile int handled;
static void on_trap(int sig) { (void)sig; handled++; }

int main(void) {
    signal(SIGTRAP, on_trap);
    for (int i = 0; i < 3; i++) __asm__ volatile("int3");
    printf("handled=%d\n", handled);
    return 0;
}
