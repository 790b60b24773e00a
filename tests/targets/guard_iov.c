// readv() and writev() whose iovecs point into a page a memory breakpoint guards
// (the 8-byte window at watched.b[2052], its address in `watch_ptr` when `ready()`
// runs): they must move the same bytes as untraced. Each iovec list is two pieces:
// 5 bytes in a plain buffer, then 6 bytes at watched.b[2050], across the window.
// `done()` runs right after the call, before the program itself touches the page.
// sendmsg/recvmsg do the same through a struct msghdr over a socketpair.
// Usage: guard_iov readv|writev|sendmsg|recvmsg
//! cflags: -g -O0 -no-pie
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

struct page { unsigned char b[4096]; };
struct page watched __attribute__((aligned(4096)));
unsigned char *volatile watch_ptr;

__attribute__((noinline)) void ready(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) void done(void) { __asm__ volatile("" ::: "memory"); }

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "readv";
    char plain[8] = {0};
    int fds[2];
    memset(watched.b, 'x', sizeof watched.b);
    int sock = strcmp(mode, "sendmsg") == 0 || strcmp(mode, "recvmsg") == 0;
    if ((sock ? socketpair(AF_UNIX, SOCK_STREAM, 0, fds) : pipe(fds)) != 0) return 2;
    int reading = strcmp(mode, "readv") == 0 || strcmp(mode, "recvmsg") == 0;
    if (reading && write(fds[1], "hello world", 11) != 11) return 2;
    if (!reading) {
        memcpy(plain, "hello", 5);
        memcpy(watched.b + 2050, " world", 6);
    }
    struct iovec iov[2] = {{plain, 5}, {watched.b + 2050, 6}};
    watch_ptr = watched.b + 2052;
    ready();
    long ret;
    int err;
    struct msghdr msg = {0};
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    if (reading) {
        ret = sock ? recvmsg(fds[0], &msg, MSG_WAITALL) : readv(fds[0], iov, 2);
        err = ret < 0 ? errno : 0;
        done();
        printf("%s ret=%ld errno=%d data=%.5s|%.6s\n", mode, ret, err, plain, (char *)watched.b + 2050);
    } else {
        ret = sock ? sendmsg(fds[1], &msg, 0) : writev(fds[1], iov, 2);
        err = ret < 0 ? errno : 0;
        done();
        char got[12] = {0};
        if (ret > 0 && read(fds[0], got, (size_t)ret) != ret) return 2;
        printf("%s ret=%ld errno=%d piped=%s\n", mode, ret, err, got);
    }
    return 0;
}
