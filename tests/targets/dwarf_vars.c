//! cflags: -g -O0
//! variant O2: -g -O2
// DWARF variables by name: each call prints the values a recipe logs by name
// (a parameter, a local, a global, struct members through a pointer, array
// elements), so a test can compare them hit by hit at -O0 and -O2.
#include <stdio.h>
#include <stdlib.h>

enum color { RED, GREEN = 5, BLUE };

struct req {
    const char *path;
    unsigned short len;
    int flags;
    enum color color;
    struct req *next;
    int vals[4];
};

long counter = 0;                 /* a global */
int table[8] = {3, -1, 4, -1, 5, -9, 2, -6};
static int s_calls;               /* a file static */
const char *names[3] = {"zero", "one", "two"};

__attribute__((noipa)) void report(struct req *req, int scale, long total, unsigned char tag) {
    s_calls++;
    printf("report scale=%d total=%ld counter=%ld len=%u vals2=%d table3=%d path=%s color=%d tag=%d\n",
           scale, total, counter, req->len, req->vals[2], table[3], req->path, (int)req->color, tag);
    fflush(stdout);
}

__attribute__((noipa)) long process(struct req *req, int scale) {
    long total = (long)req->len * scale - 5;
    counter += total;
    table[3] += scale;
    report(req, scale, total, (unsigned char)('a' + scale)); /* LINE:call */
    printf("process total=%ld\n", total); /* LINE:after */
    fflush(stdout);
    return total + req->vals[2];
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 4;
    struct req r = {"/etc/passwd", 4, 1, GREEN, NULL, {1, 2, 3, 4}};
    long sum = 0;
    for (int i = 0; i < n; i++) {
        r.len = (unsigned short)(i * 3 + 1);
        r.vals[2] = i * 10 - 7;
        r.color = i % 3 == 0 ? RED : i % 3 == 1 ? GREEN : BLUE;
        r.path = names[i % 3];
        sum += process(&r, i + 2);
    }
    printf("sum=%ld\n", sum);
    return 0;
}
