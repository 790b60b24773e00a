// System calls whose buffers lie on a page a memory breakpoint guards: each must
// behave as untraced (no EFAULT). The watched window is 8 bytes at watched.b[2052],
// its address in `watch_ptr` when `ready()` runs; each mode prints what its call
// returned and what it moved, so a traced run can be compared with an untraced one.
// `done()` runs right after the call, before the program itself touches the page.
// Usage: guard_syscall MODE [N]
//   read:  read() 11 bytes from a pipe INTO watched.b[2048..] (the kernel writes the window)
//   write: write() 11 bytes FROM watched.b[2048..] into a pipe (the kernel reads it)
//   stat:  stat("/") into a struct stat at watched.b[2048] (written by the kernel)
//   futex: FUTEX_WAIT on the word at watched.b[2052] with a value it does not hold (EAGAIN)
//   loop:  N getppid() and N read()s of /dev/zero into a buffer off the page, the window armed
//   attach: prints its pid, then the loop, each 1000th read INTO the window instead
//   threads: two threads block in read()s into the page at once (thread 0 over the window,
//          thread 1 beside it); thread 1's read is fed first, so its call ends while
//          thread 0's still has the page open
//! cflags: -g -O0 -no-pie
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct page { unsigned char b[4096]; };
struct page watched __attribute__((aligned(4096)));
unsigned char *volatile watch_ptr;

__attribute__((noinline)) void ready(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) void done(void) { __asm__ volatile("" ::: "memory"); }

static int tpipes[2][2];
static long tret[2];

static void *reader(void *arg) {
    long i = (long)arg;
    tret[i] = read(tpipes[i][0], watched.b + 2048 + 16 * i, 8);
    return NULL;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "read";
    long n = argc > 2 ? atol(argv[2]) : 1000;
    unsigned char *buf = watched.b + 2048;
    int fds[2];
    long ret;
    int err = 0;
    memset(watched.b, 'x', sizeof watched.b);
    memcpy(buf, "from a page", 11);
    if (strcmp(mode, "futex") == 0) *(unsigned *)(buf + 4) = 7;
    if (pipe(fds) != 0) return 2;
    if (strcmp(mode, "read") == 0 && write(fds[1], "hello world", 11) != 11) return 2;
    watch_ptr = buf + 4;
    ready();
    if (strcmp(mode, "read") == 0) {
        ret = read(fds[0], buf, 11);
        err = ret < 0 ? errno : 0;
        done();
        printf("read ret=%ld errno=%d data=%.11s\n", ret, err, (char *)buf);
    } else if (strcmp(mode, "write") == 0) {
        ret = write(fds[1], buf, 11);
        err = ret < 0 ? errno : 0;
        done();
        char got[12] = {0};
        if (ret > 0 && read(fds[0], got, (size_t)ret) != ret) return 2;
        printf("write ret=%ld errno=%d piped=%s\n", ret, err, got);
    } else if (strcmp(mode, "stat") == 0) {
        struct stat *st = (struct stat *)buf, plain;
        ret = stat("/", st);
        err = ret < 0 ? errno : 0;
        done();
        stat("/", &plain);
        printf("stat ret=%ld errno=%d same=%d\n", ret, err,
               ret == 0 && st->st_ino == plain.st_ino && st->st_mode == plain.st_mode);
    } else if (strcmp(mode, "futex") == 0) {
        unsigned *word = (unsigned *)(buf + 4);
        ret = syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, 8, NULL, NULL, 0);
        err = ret < 0 ? errno : 0;
        done();
        printf("futex ret=%ld errno=%d word=%u\n", ret, err, *word);
    } else if (strcmp(mode, "threads") == 0) {
        pthread_t th[2];
        if (pipe(tpipes[0]) != 0 || pipe(tpipes[1]) != 0) return 2;
        for (long i = 0; i < 2; i++) pthread_create(&th[i], NULL, reader, (void *)i);
        usleep(100000);
        if (write(tpipes[1][1], "thread-1", 8) != 8) return 2;
        pthread_join(th[1], NULL);
        usleep(50000);
        if (write(tpipes[0][1], "thread-0", 8) != 8) return 2;
        pthread_join(th[0], NULL);
        done();
        printf("threads ret=%ld,%ld data=%.8s,%.8s\n", tret[0], tret[1], (char *)buf, (char *)buf + 16);
    } else if (strcmp(mode, "loop") == 0 || strcmp(mode, "attach") == 0) {
        int zero = open("/dev/zero", O_RDONLY);
        int attach = strcmp(mode, "attach") == 0;
        char small[8];
        long sum = 0;
        if (attach) {
            printf("pid=%d\n", (int)getpid());
            fflush(stdout);
        }
        for (long i = 0; i < n; i++) {
            sum += syscall(SYS_getppid) > 0;
            sum += read(zero, attach && i % 1000 == 0 ? (char *)buf : small, sizeof small) == 8;
        }
        done();
        printf("loop n=%ld ok=%d\n", n, sum == 2 * n);
    } else {
        return 2;
    }
    return 0;
}
