#!/usr/bin/env python3
"""Generate instrument/arch/x86_64/syscalls.py: the x86-64 system call table.

Numbers and names come from the kernel's list as the distribution installs it
(<asm/unistd_64.h>, `#define __NR_name number`); argument names and kinds come
from the hand-kept SIGNATURES below (the kernel headers do not say them).
A call without a signature gets six hex arguments, as strace shows a call it
does not know. Run it again after a kernel-headers upgrade and commit the result:

    python3 tools/gen_syscalls.py [/usr/include/x86_64-linux-gnu/asm/unistd_64.h]

Argument kinds (instrument/arch/x86_64/sysdecode.py shows each as strace does):
  fd           a file descriptor (decimal)
  dirfd        a directory fd: AT_FDCWD by name
  int / uint   a decimal number; hex: 0x...; ptr: NULL or 0x...; off: a file offset
  path         a NUL-terminated path, quoted in full
  str          a NUL-terminated string, quoted and cut at -s 32
  buf:N        an input buffer whose length is argument N, quoted and cut at 32
  obuf:N       an output buffer (length: the return value), shown at exit
  flags=SET    flags by name from sysdecode's table SET
  val=SET      one value by name from SET (a whence, a resource)
  mode         an octal mode (0644)
  cmode        openat's mode: shown only when the flags create a file
  sig          a signal number, by name
  pid          a process id
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HEADER = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"
OUT = Path(__file__).resolve().parent.parent / "instrument" / "arch" / "x86_64" / "syscalls.py"

# name: "argname:kind ..." (kinds above). Kept to the calls programs make most.
SIGNATURES = {
    "read": "fd:fd buf:obuf:2 count:uint",
    "write": "fd:fd buf:buf:2 count:uint",
    "open": "pathname:path flags:flags=open mode:cmode",
    "close": "fd:fd",
    "stat": "pathname:path statbuf:ptr",
    "fstat": "fd:fd statbuf:ptr",
    "lstat": "pathname:path statbuf:ptr",
    "poll": "fds:ptr nfds:uint timeout:int",
    "lseek": "fd:fd offset:off whence:val=whence",
    "mmap": "addr:ptr length:uint prot:flags=prot flags:flags=map fd:fd offset:hex",
    "mprotect": "addr:ptr len:uint prot:flags=prot",
    "munmap": "addr:ptr length:uint",
    "brk": "addr:ptr",
    "rt_sigaction": "signum:sig act:ptr oldact:ptr sigsetsize:uint",
    "rt_sigprocmask": "how:val=sigprocmask set:ptr oldset:ptr sigsetsize:uint",
    "rt_sigreturn": "",
    "ioctl": "fd:fd request:hex arg:hex",
    "pread64": "fd:fd buf:obuf:2 count:uint offset:off",
    "pwrite64": "fd:fd buf:buf:2 count:uint offset:off",
    "readv": "fd:fd iov:ptr iovcnt:int",
    "writev": "fd:fd iov:ptr iovcnt:int",
    "access": "pathname:path mode:flags=access",
    "pipe": "pipefd:ptr",
    "select": "nfds:int readfds:ptr writefds:ptr exceptfds:ptr timeout:ptr",
    "sched_yield": "",
    "mremap": "old_address:ptr old_size:uint new_size:uint flags:flags=mremap new_address:ptr",
    "msync": "addr:ptr length:uint flags:flags=msync",
    "mincore": "addr:ptr length:uint vec:ptr",
    "madvise": "addr:ptr length:uint advice:val=madvise",
    "dup": "oldfd:fd",
    "dup2": "oldfd:fd newfd:fd",
    "pause": "",
    "nanosleep": "req:ptr rem:ptr",
    "getitimer": "which:int curr_value:ptr",
    "alarm": "seconds:uint",
    "setitimer": "which:int new_value:ptr old_value:ptr",
    "getpid": "",
    "sendfile": "out_fd:fd in_fd:fd offset:ptr count:uint",
    "socket": "domain:val=af type:flags=socktype protocol:int",
    "connect": "sockfd:fd addr:ptr addrlen:uint",
    "accept": "sockfd:fd addr:ptr addrlen:ptr",
    "sendto": "sockfd:fd buf:buf:2 len:uint flags:flags=msg dest_addr:ptr addrlen:uint",
    "recvfrom": "sockfd:fd buf:obuf:2 len:uint flags:flags=msg src_addr:ptr addrlen:ptr",
    "sendmsg": "sockfd:fd msg:ptr flags:flags=msg",
    "recvmsg": "sockfd:fd msg:ptr flags:flags=msg",
    "shutdown": "sockfd:fd how:int",
    "bind": "sockfd:fd addr:ptr addrlen:uint",
    "listen": "sockfd:fd backlog:int",
    "getsockname": "sockfd:fd addr:ptr addrlen:ptr",
    "getpeername": "sockfd:fd addr:ptr addrlen:ptr",
    "socketpair": "domain:val=af type:flags=socktype protocol:int sv:ptr",
    "setsockopt": "sockfd:fd level:int optname:int optval:ptr optlen:uint",
    "getsockopt": "sockfd:fd level:int optname:int optval:ptr optlen:ptr",
    "clone": "flags:flags=clone stack:ptr parent_tid:ptr child_tid:ptr tls:hex",
    "fork": "",
    "vfork": "",
    "execve": "pathname:path argv:ptr envp:ptr",
    "exit": "status:int",
    "wait4": "pid:pid wstatus:ptr options:flags=wait rusage:ptr",
    "kill": "pid:pid sig:sig",
    "uname": "buf:ptr",
    "fcntl": "fd:fd cmd:val=fcntl arg:hex",
    "flock": "fd:fd operation:flags=flock",
    "fsync": "fd:fd",
    "fdatasync": "fd:fd",
    "truncate": "path:path length:off",
    "ftruncate": "fd:fd length:off",
    "getdents": "fd:fd dirp:ptr count:uint",
    "getcwd": "buf:ptr size:uint",
    "chdir": "path:path",
    "fchdir": "fd:fd",
    "rename": "oldpath:path newpath:path",
    "mkdir": "pathname:path mode:mode",
    "rmdir": "pathname:path",
    "creat": "pathname:path mode:mode",
    "link": "oldpath:path newpath:path",
    "unlink": "pathname:path",
    "symlink": "target:path linkpath:path",
    "readlink": "pathname:path buf:obuf:2 bufsiz:uint",
    "chmod": "pathname:path mode:mode",
    "fchmod": "fd:fd mode:mode",
    "chown": "pathname:path owner:int group:int",
    "fchown": "fd:fd owner:int group:int",
    "lchown": "pathname:path owner:int group:int",
    "umask": "mask:mode",
    "gettimeofday": "tv:ptr tz:ptr",
    "getrlimit": "resource:val=rlimit rlim:ptr",
    "getrusage": "who:int usage:ptr",
    "sysinfo": "info:ptr",
    "times": "buf:ptr",
    "ptrace": "request:int pid:pid addr:ptr data:ptr",
    "getuid": "",
    "syslog": "type:int bufp:ptr len:int",
    "getgid": "",
    "setuid": "uid:int",
    "setgid": "gid:int",
    "geteuid": "",
    "getegid": "",
    "setpgid": "pid:pid pgid:pid",
    "getppid": "",
    "getpgrp": "",
    "setsid": "",
    "getgroups": "size:int list:ptr",
    "setgroups": "size:int list:ptr",
    "getpgid": "pid:pid",
    "getsid": "pid:pid",
    "rt_sigpending": "set:ptr sigsetsize:uint",
    "rt_sigsuspend": "mask:ptr sigsetsize:uint",
    "sigaltstack": "ss:ptr old_ss:ptr",
    "mknod": "pathname:path mode:mode dev:hex",
    "statfs": "path:path buf:ptr",
    "fstatfs": "fd:fd buf:ptr",
    "getpriority": "which:int who:int",
    "setpriority": "which:int who:int prio:int",
    "mlock": "addr:ptr len:uint",
    "munlock": "addr:ptr len:uint",
    "prctl": "option:int arg2:hex arg3:hex arg4:hex arg5:hex",
    "arch_prctl": "code:val=arch_prctl addr:hex",
    "chroot": "path:path",
    "sync": "",
    "mount": "source:path target:path filesystemtype:str mountflags:hex data:ptr",
    "umount2": "target:path flags:int",
    "gettid": "",
    "setxattr": "path:path name:str value:ptr size:uint flags:int",
    "getxattr": "path:path name:str value:ptr size:uint",
    "lgetxattr": "path:path name:str value:ptr size:uint",
    "fgetxattr": "fd:fd name:str value:ptr size:uint",
    "tkill": "tid:pid sig:sig",
    "time": "tloc:ptr",
    "futex": "uaddr:ptr futex_op:int val:int timeout:ptr uaddr2:ptr val3:int",
    "sched_setaffinity": "pid:pid cpusetsize:uint mask:ptr",
    "sched_getaffinity": "pid:pid cpusetsize:uint mask:ptr",
    "getdents64": "fd:fd dirp:ptr count:uint",
    "set_tid_address": "tidptr:ptr",
    "restart_syscall": "",
    "fadvise64": "fd:fd offset:off len:off advice:int",
    "timer_create": "clockid:int sevp:ptr timerid:ptr",
    "clock_gettime": "clockid:val=clock tp:ptr",
    "clock_getres": "clockid:val=clock res:ptr",
    "clock_nanosleep": "clockid:val=clock flags:int request:ptr remain:ptr",
    "exit_group": "status:int",
    "epoll_wait": "epfd:fd events:ptr maxevents:int timeout:int",
    "epoll_ctl": "epfd:fd op:int fd:fd event:ptr",
    "tgkill": "tgid:pid tid:pid sig:sig",
    "utimes": "filename:path times:ptr",
    "waitid": "idtype:int id:int infop:ptr options:flags=wait rusage:ptr",
    "inotify_init": "",
    "inotify_add_watch": "fd:fd pathname:path mask:hex",
    "inotify_rm_watch": "fd:fd wd:int",
    "openat": "dirfd:dirfd pathname:path flags:flags=open mode:cmode",
    "mkdirat": "dirfd:dirfd pathname:path mode:mode",
    "mknodat": "dirfd:dirfd pathname:path mode:mode dev:hex",
    "fchownat": "dirfd:dirfd pathname:path owner:int group:int flags:flags=at",
    "futimesat": "dirfd:dirfd pathname:path times:ptr",
    "newfstatat": "dirfd:dirfd pathname:path statbuf:ptr flags:flags=at",
    "unlinkat": "dirfd:dirfd pathname:path flags:flags=at",
    "renameat": "olddirfd:dirfd oldpath:path newdirfd:dirfd newpath:path",
    "linkat": "olddirfd:dirfd oldpath:path newdirfd:dirfd newpath:path flags:flags=at",
    "symlinkat": "target:path newdirfd:dirfd linkpath:path",
    "readlinkat": "dirfd:dirfd pathname:path buf:obuf:3 bufsiz:uint",
    "fchmodat": "dirfd:dirfd pathname:path mode:mode",
    "faccessat": "dirfd:dirfd pathname:path mode:flags=access",
    "pselect6": "nfds:int readfds:ptr writefds:ptr exceptfds:ptr timeout:ptr sigmask:ptr",
    "ppoll": "fds:ptr nfds:uint tmo_p:ptr sigmask:ptr sigsetsize:uint",
    "unshare": "flags:flags=clone",
    "set_robust_list": "head:ptr len:uint",
    "get_robust_list": "pid:pid head_ptr:ptr len_ptr:ptr",
    "splice": "fd_in:fd off_in:ptr fd_out:fd off_out:ptr len:uint flags:hex",
    "tee": "fd_in:fd fd_out:fd len:uint flags:hex",
    "utimensat": "dirfd:dirfd pathname:path times:ptr flags:flags=at",
    "epoll_pwait": "epfd:fd events:ptr maxevents:int timeout:int sigmask:ptr sigsetsize:uint",
    "timerfd_create": "clockid:val=clock flags:hex",
    "eventfd": "initval:uint",
    "fallocate": "fd:fd mode:int offset:off len:off",
    "accept4": "sockfd:fd addr:ptr addrlen:ptr flags:flags=socktype",
    "eventfd2": "initval:uint flags:hex",
    "epoll_create1": "flags:flags=open",
    "epoll_create": "size:int",
    "dup3": "oldfd:fd newfd:fd flags:flags=open",
    "pipe2": "pipefd:ptr flags:flags=open",
    "inotify_init1": "flags:flags=open",
    "preadv": "fd:fd iov:ptr iovcnt:int offset:off",
    "pwritev": "fd:fd iov:ptr iovcnt:int offset:off",
    "rt_tgsigqueueinfo": "tgid:pid tid:pid sig:sig info:ptr",
    "perf_event_open": "attr:ptr pid:pid cpu:int group_fd:fd flags:hex",
    "recvmmsg": "sockfd:fd msgvec:ptr vlen:uint flags:flags=msg timeout:ptr",
    "prlimit64": "pid:pid resource:val=rlimit new_limit:ptr old_limit:ptr",
    "syncfs": "fd:fd",
    "sendmmsg": "sockfd:fd msgvec:ptr vlen:uint flags:flags=msg",
    "setns": "fd:fd nstype:flags=clone",
    "getcpu": "cpu:ptr node:ptr tcache:ptr",
    "process_vm_readv": "pid:pid local_iov:ptr liovcnt:uint remote_iov:ptr riovcnt:uint flags:hex",
    "process_vm_writev": "pid:pid local_iov:ptr liovcnt:uint remote_iov:ptr riovcnt:uint flags:hex",
    "renameat2": "olddirfd:dirfd oldpath:path newdirfd:dirfd newpath:path flags:hex",
    "seccomp": "operation:int flags:hex args:ptr",
    "getrandom": "buf:ptr buflen:uint flags:flags=grnd",
    "memfd_create": "name:str flags:hex",
    "execveat": "dirfd:dirfd pathname:path argv:ptr envp:ptr flags:flags=at",
    "copy_file_range": "fd_in:fd off_in:ptr fd_out:fd off_out:ptr len:uint flags:hex",
    "pkey_mprotect": "addr:ptr len:uint prot:flags=prot pkey:int",
    "statx": "dirfd:dirfd pathname:path flags:flags=at mask:hex statxbuf:ptr",
    "rseq": "rseq:ptr rseq_len:uint flags:int sig:hex",
    "pidfd_open": "pid:pid flags:hex",
    "clone3": "cl_args:ptr size:uint",
    "close_range": "first:fd last:fd flags:hex",
    "openat2": "dirfd:dirfd pathname:path how:ptr size:uint",
    "pidfd_getfd": "pidfd:fd targetfd:fd flags:hex",
    "faccessat2": "dirfd:dirfd pathname:path mode:flags=access flags:flags=at",
    "epoll_pwait2": "epfd:fd events:ptr maxevents:int timeout:ptr sigmask:ptr sigsetsize:uint",
}

_KINDS = re.compile(r"^(fd|dirfd|int|uint|hex|ptr|off|path|str|mode|cmode|sig|pid|(?:buf|obuf):[0-5]|(?:flags|val)=\w+)$")


def parse_header(text: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^#define __NR_(\w+)\s+(\d+)\s*$", text, re.M)}


def parse_signature(name: str, text: str) -> list[tuple[str, str, str | int | None]]:
    args: list[tuple[str, str, str | int | None]] = []
    for word in text.split():
        arg, _, kind = word.partition(":")
        if not _KINDS.match(kind):
            raise SystemExit(f"{name}: bad kind {kind!r} of {arg!r}")
        detail: str | int | None = None
        if kind.startswith(("buf:", "obuf:")):
            kind, n = kind.split(":")
            detail = int(n)
        elif "=" in kind:
            kind, detail = kind.split("=")
        args.append((arg, kind, detail))
    if len(args) > 6:
        raise SystemExit(f"{name}: more than six arguments")
    return args


def generate(header_path: str) -> str:
    numbers = parse_header(Path(header_path).read_text())
    missing = sorted(set(SIGNATURES) - set(numbers))
    if missing:
        raise SystemExit(f"signatures for calls the header does not have: {', '.join(missing)}")
    lines = [
        '"""The x86-64 system calls: number, name and argument signature of each.',
        "",
        "GENERATED by tools/gen_syscalls.py from <asm/unistd_64.h> and its hand-kept",
        "signatures; do not edit (run the tool again). A call without a signature has",
        "known=False and six hex arguments, as strace shows a call it does not know.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from dataclasses import dataclass",
        "",
        "",
        "@dataclass(frozen=True)",
        "class SysArg:",
        '    """One argument: its name, its kind (see tools/gen_syscalls.py) and the kind\'s detail:',
        '    a buffer\'s length argument index, or a flag or value table\'s name."""',
        "",
        "    name: str",
        "    kind: str",
        "    detail: str | int | None = None",
        "",
        "",
        "@dataclass(frozen=True)",
        "class Syscall:",
        "    number: int",
        "    name: str",
        "    args: tuple[SysArg, ...]",
        "    known: bool = True",
        "",
        "    @property",
        "    def arg_names(self) -> frozenset[str]:",
        "        return frozenset(a.name for a in self.args)",
        "",
        "",
        "_UNKNOWN = tuple(SysArg(f\"arg{i}\", \"hex\") for i in range(6))",
        "",
        "TABLE: tuple[Syscall, ...] = (",
    ]
    for name, number in sorted(numbers.items(), key=lambda kv: kv[1]):
        if name in SIGNATURES:
            args = parse_signature(name, SIGNATURES[name])
            inner = ", ".join(f"SysArg({a!r}, {k!r}" + (f", {d!r})" if d is not None else ")") for a, k, d in args)
            lines.append(f"    Syscall({number}, {name!r}, ({inner}{',' if len(args) == 1 else ''})),")
        else:
            lines.append(f"    Syscall({number}, {name!r}, _UNKNOWN, known=False),")
    lines += [
        ")",
        "",
        "BY_NAME: dict[str, Syscall] = {s.name: s for s in TABLE}",
        "BY_NUMBER: dict[int, Syscall] = {s.number: s for s in TABLE}",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    OUT.write_text(generate(argv[1] if len(argv) > 1 else HEADER))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main(sys.argv)
