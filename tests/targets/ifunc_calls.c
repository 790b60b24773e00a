//! variant static: -g -O0 -static
// glibc's strcpy and strlen are GNU indirect functions: the symbol is a resolver
// that picks an implementation for this CPU. Usage: ifunc_calls N [TEXT] — N strcpy
// calls of TEXT (default "copied"; from argv, so that gcc cannot inline the copy),
// then prints "len=L".
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 3;
    const char *text = argc > 2 ? argv[2] : "copied";
    char buf[64];
    for (int i = 0; i < n; i++) strcpy(buf, text);
    printf("len=%zu\n", strlen(buf));
    return 0;
}
