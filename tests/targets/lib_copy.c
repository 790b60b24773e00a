// String copies of several lengths, for the copy-overflow recipe.
// -fno-builtin keeps every strcpy/memcpy a real call through the PLT.
// Usage: lib_copy — strcpy of 5 and 40 bytes, memcpy of 8 and 100 bytes.
//! cflags: -g -O0 -fno-builtin
#include <stdio.h>
#include <string.h>

static char big[256];

int main(void) {
    char small[16];
    const char *longer = "AAAAAAAAAABBBBBBBBBBCCCCCCCCCCDDDDDDDDDD";
    char payload[100];
    memset(payload, 'Z', sizeof payload);
    strcpy(small, "short");
    strcpy(big, longer);
    memcpy(small, "12345678", 8);
    memcpy(big, payload, sizeof payload);
    printf("copied %c %zu\n", small[0], strlen(big));
    return 0;
}
