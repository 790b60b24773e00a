// Heap calls from one function, for the heap-trace recipe.
// Usage: lib_heap — malloc(24), calloc(4, 8), realloc(.., 100), malloc(7777), then frees them all.
//! cflags: -g -O0 -fno-builtin
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) void work(void) {
    char *a = malloc(24);
    long *b = calloc(4, 8);
    a = realloc(a, 100);
    char *c = malloc(7777);
    printf("a=%p b=%p c=%p\n", (void *)a, (void *)b, (void *)c);
    free(b);
    free(a);
    free(c);
}

int main(void) {
    work();
    puts("heap done");
    return 0;
}
