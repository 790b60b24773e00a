//! cflags: -g -O0
//! variant nopie: -g -O0 -fno-pie -no-pie
// Reads its input (the file named by argv[1], or stdin) and crashes in the way
// the first word says; "hang" never ends; anything else exits cleanly.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct record { long a, b, value; };
volatile int zero = 0;

__attribute__((noinline)) long read_field(struct record *r) { return r->value; }
__attribute__((noinline)) void store(int *p, int v) { *p = v; }
__attribute__((noinline)) int divide(int a, int b) { return a / b; }
__attribute__((noinline)) void give_up(void) { abort(); }
__attribute__((noinline)) void release(void *p) { free(p); }
__attribute__((noinline)) void spin(void) { for (;;) zero = zero; }
__attribute__((noinline)) void child_work(void) { store((int *)NULL, 7); }
__attribute__((noinline)) void *thread_work(void *arg) { return (void *)read_field((struct record *)arg); }

static void run(const char *word) {
    if (!strcmp(word, "null-read")) {
        read_field(NULL);
    } else if (!strcmp(word, "null-write")) {
        store(NULL, 42);
    } else if (!strcmp(word, "wild-write")) {
        store((int *)0xdeadbeef000UL, 42);
    } else if (!strcmp(word, "div")) {
        divide(7, zero);
    } else if (!strcmp(word, "abort")) {
        give_up();
    } else if (!strcmp(word, "double-free")) {
        void *volatile p = malloc(32);
        release(p);
        release(p);
    } else if (!strcmp(word, "hang")) {
        spin();
    } else if (!strcmp(word, "fork")) {
        pid_t pid = fork();
        if (pid == 0)
            child_work();
        waitpid(pid, NULL, 0);
    } else if (!strcmp(word, "thread")) {
        pthread_t t;
        pthread_create(&t, NULL, thread_work, NULL);
        pthread_join(t, NULL);
    }
}

int main(int argc, char **argv) {
    FILE *f = argc > 1 ? fopen(argv[1], "r") : stdin;
    char word[64] = "";
    if (f == NULL || fscanf(f, "%63s", word) != 1)
        return 0;
    run(word);
    return 0;
}
