//! cflags: -g -O2 -D_FORTIFY_SOURCE=2
// A fortified printf refuses %n in a writable format string: __printf_chk ends in
// __libc_fatal and abort(), not in __chk_fail (the `__*_chk` frame says fortify).
#include <stdio.h>
#include <string.h>
volatile int which = 0;
int main(void) {
    char format[16];
    int n = 0;
    strcpy(format, which ? "%d\n" : "ab%n\n");
    printf(format, &n);
    return n;
}
