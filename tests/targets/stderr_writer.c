// Writes two lines to stderr and one to stdout.
#include <stdio.h>
int main(void) {
    fprintf(stderr, "first warning\n");
    fflush(stderr);
    printf("normal output\n");
    fflush(stdout);
    fprintf(stderr, "second warning\n");
    return 3;
}
