// Functions for symbol-pattern tests: cb_one runs once, cb_two twice, cb_three three times;
// cb_alias is another name for cb_one (one address: a pattern arms it once); other_fn is
// called 4 times and matches no `cb_*` pattern. Then it calls strlen and strchr on a string.
#include <stdio.h>
#include <string.h>

volatile int sink;

__attribute__((noinline)) void cb_one(int x) { sink += x; }
void cb_alias(int x) __attribute__((alias("cb_one")));
__attribute__((noinline)) void cb_two(int x) { sink += 2 * x; }
__attribute__((noinline)) void cb_three(int x) { sink += 3 * x; }
__attribute__((noinline)) int other_fn(int x) { return x + 1; }

int main(int argc, char **argv) {
    cb_one(1);
    for (int i = 0; i < 2; i++) cb_two(i);
    for (int i = 0; i < 3; i++) cb_three(i);
    for (int i = 0; i < 4; i++) sink += other_fn(i);
    const char *s = argc > 1 ? argv[1] : "hello, patterns";
    printf("len=%zu comma=%s sink=%d\n", strlen(s), strchr(s, ',') ? "yes" : "no", sink);
    return 0;
}
