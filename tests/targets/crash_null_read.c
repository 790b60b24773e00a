// Reads a field at offset 0x10 through a NULL struct pointer.
#include <stddef.h>

struct record { long a, b, value; };

__attribute__((noinline)) long read_value(struct record *r) { return r->value; }

int main(void) {
    struct record *volatile r = NULL;
    return (int)read_value(r);
}
