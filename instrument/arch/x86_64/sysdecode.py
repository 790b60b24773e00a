"""System call arguments and results shown as `strace -s 32` shows them.

Strings are quoted with C escapes and cut at 32 bytes (`"..."...`), paths are
quoted whole, flags are named in strace's order (`O_RDONLY|O_CLOEXEC`), bits
nobody names follow in hex, AT_FDCWD and signals by name, and a failed call is
`-1 ENOENT (No such file or directory)`. The flag tables list values in the
order strace 6 prints them (checked against it by tests/integration/test_syscalls.py).
"""

from __future__ import annotations

import errno as _errno
import os
import signal as _signal
from typing import TYPE_CHECKING, Callable

from .machine import MASK64

if TYPE_CHECKING:       # the table is imported by whoever has a call to decode
    from .syscalls import SysArg, Syscall

STRING_LIMIT = 32           # strace -s 32 (its default)
PATH_LIMIT = 4096           # PATH_MAX: strace never cuts a path
MAX_ERRNO = 4095            # -4095..-1 in rax is a failure (the kernel's IS_ERR_VALUE)
AT_FDCWD = -100
O_CREAT, O_TMPFILE = 0o100, 0o20200000

ReadMemory = Callable[[int, int], bytes]

# (name, value, mask): a flag is shown when value == bits & mask (mask defaults to value).
Flags = tuple[tuple[str, int, int], ...]


def _f(*pairs: tuple[str, int] | tuple[str, int, int]) -> Flags:
    return tuple((p[0], p[1], p[2] if len(p) == 3 else p[1]) for p in pairs)


FLAGS: dict[str, Flags] = {
    # After the access mode (O_RDONLY/O_WRONLY/O_RDWR), in strace's order.
    "open": _f(("O_CREAT", 0o100), ("O_EXCL", 0o200), ("O_NOCTTY", 0o400), ("O_TRUNC", 0o1000),
               ("O_APPEND", 0o2000), ("O_NONBLOCK", 0o4000), ("O_SYNC", 0o4010000), ("O_DSYNC", 0o10000),
               ("O_DIRECT", 0o40000), ("O_LARGEFILE", 0o100000), ("O_NOFOLLOW", 0o400000),
               ("O_NOATIME", 0o1000000), ("O_CLOEXEC", 0o2000000), ("O_PATH", 0o10000000),
               ("O_TMPFILE", 0o20200000), ("O_DIRECTORY", 0o200000), ("FASYNC", 0o20000)),
    "prot": _f(("PROT_READ", 1), ("PROT_WRITE", 2), ("PROT_EXEC", 4), ("PROT_SEM", 8),
               ("PROT_GROWSDOWN", 0x01000000), ("PROT_GROWSUP", 0x02000000)),
    # After the mapping type (MAP_SHARED/MAP_PRIVATE/MAP_SHARED_VALIDATE).
    "map": _f(("MAP_FIXED", 0x10), ("MAP_ANONYMOUS", 0x20), ("MAP_32BIT", 0x40), ("MAP_NORESERVE", 0x4000),
              ("MAP_POPULATE", 0x8000), ("MAP_NONBLOCK", 0x10000), ("MAP_GROWSDOWN", 0x100),
              ("MAP_DENYWRITE", 0x800), ("MAP_EXECUTABLE", 0x1000), ("MAP_LOCKED", 0x2000),
              ("MAP_STACK", 0x20000), ("MAP_HUGETLB", 0x40000), ("MAP_SYNC", 0x80000),
              ("MAP_FIXED_NOREPLACE", 0x100000), ("MAP_UNINITIALIZED", 0x4000000)),
    "at": _f(("AT_SYMLINK_NOFOLLOW", 0x100), ("AT_REMOVEDIR", 0x200), ("AT_SYMLINK_FOLLOW", 0x400),
             ("AT_NO_AUTOMOUNT", 0x800), ("AT_EMPTY_PATH", 0x1000), ("AT_RECURSIVE", 0x8000)),
    "access": _f(("R_OK", 4), ("W_OK", 2), ("X_OK", 1)),
    "mremap": _f(("MREMAP_MAYMOVE", 1), ("MREMAP_FIXED", 2), ("MREMAP_DONTUNMAP", 4)),
    "msync": _f(("MS_ASYNC", 1), ("MS_INVALIDATE", 2), ("MS_SYNC", 4)),
    "msg": _f(("MSG_OOB", 1), ("MSG_PEEK", 2), ("MSG_DONTROUTE", 4), ("MSG_CTRUNC", 8), ("MSG_TRUNC", 0x20),
              ("MSG_DONTWAIT", 0x40), ("MSG_EOR", 0x80), ("MSG_WAITALL", 0x100), ("MSG_NOSIGNAL", 0x4000),
              ("MSG_MORE", 0x8000), ("MSG_WAITFORONE", 0x10000), ("MSG_CMSG_CLOEXEC", 0x40000000)),
    "socktype": _f(("SOCK_NONBLOCK", 0o4000), ("SOCK_CLOEXEC", 0o2000000)),
    "clone": _f(("CLONE_VM", 0x100), ("CLONE_FS", 0x200), ("CLONE_FILES", 0x400), ("CLONE_SIGHAND", 0x800),
                ("CLONE_PIDFD", 0x1000), ("CLONE_PTRACE", 0x2000), ("CLONE_VFORK", 0x4000),
                ("CLONE_PARENT", 0x8000), ("CLONE_THREAD", 0x10000), ("CLONE_NEWNS", 0x20000),
                ("CLONE_SYSVSEM", 0x40000), ("CLONE_SETTLS", 0x80000), ("CLONE_PARENT_SETTID", 0x100000),
                ("CLONE_CHILD_CLEARTID", 0x200000), ("CLONE_DETACHED", 0x400000), ("CLONE_UNTRACED", 0x800000),
                ("CLONE_CHILD_SETTID", 0x1000000), ("CLONE_NEWCGROUP", 0x2000000), ("CLONE_NEWUTS", 0x4000000),
                ("CLONE_NEWIPC", 0x8000000), ("CLONE_NEWUSER", 0x10000000), ("CLONE_NEWPID", 0x20000000),
                ("CLONE_NEWNET", 0x40000000), ("CLONE_IO", 0x80000000)),
    "wait": _f(("WNOHANG", 1), ("WUNTRACED", 2), ("WEXITED", 4), ("WCONTINUED", 8), ("WNOWAIT", 0x1000000),
               ("__WNOTHREAD", 0x20000000), ("__WALL", 0x40000000), ("__WCLONE", 0x80000000)),
    "flock": _f(("LOCK_SH", 1), ("LOCK_EX", 2), ("LOCK_NB", 4), ("LOCK_UN", 8)),
    "grnd": _f(("GRND_NONBLOCK", 1), ("GRND_RANDOM", 2), ("GRND_INSECURE", 4)),
}

VALUES: dict[str, dict[int, str]] = {
    "whence": {0: "SEEK_SET", 1: "SEEK_CUR", 2: "SEEK_END", 3: "SEEK_DATA", 4: "SEEK_HOLE"},
    "sigprocmask": {0: "SIG_BLOCK", 1: "SIG_UNBLOCK", 2: "SIG_SETMASK"},
    "madvise": {0: "MADV_NORMAL", 1: "MADV_RANDOM", 2: "MADV_SEQUENTIAL", 3: "MADV_WILLNEED",
                4: "MADV_DONTNEED", 8: "MADV_FREE", 9: "MADV_REMOVE", 10: "MADV_DONTFORK",
                11: "MADV_DOFORK", 14: "MADV_HUGEPAGE", 15: "MADV_NOHUGEPAGE"},
    "af": {0: "AF_UNSPEC", 1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK", 17: "AF_PACKET"},
    "fcntl": {0: "F_DUPFD", 1: "F_GETFD", 2: "F_SETFD", 3: "F_GETFL", 4: "F_SETFL", 5: "F_GETLK",
              6: "F_SETLK", 7: "F_SETLKW", 1030: "F_DUPFD_CLOEXEC"},
    "rlimit": {0: "RLIMIT_CPU", 1: "RLIMIT_FSIZE", 2: "RLIMIT_DATA", 3: "RLIMIT_STACK", 4: "RLIMIT_CORE",
               5: "RLIMIT_RSS", 6: "RLIMIT_NPROC", 7: "RLIMIT_NOFILE", 8: "RLIMIT_MEMLOCK", 9: "RLIMIT_AS"},
    "arch_prctl": {0x1001: "ARCH_SET_GS", 0x1002: "ARCH_SET_FS", 0x1003: "ARCH_GET_FS",
                   0x1004: "ARCH_GET_GS", 0x3001: "ARCH_CET_STATUS"},
    "clock": {0: "CLOCK_REALTIME", 1: "CLOCK_MONOTONIC", 2: "CLOCK_PROCESS_CPUTIME_ID",
              3: "CLOCK_THREAD_CPUTIME_ID", 4: "CLOCK_MONOTONIC_RAW", 5: "CLOCK_REALTIME_COARSE",
              6: "CLOCK_MONOTONIC_COARSE", 7: "CLOCK_BOOTTIME"},
}
# The value-table comment strace adds to an unknown value (`0x7 /* SEEK_??? */`).
_VALUE_PREFIX = {"whence": "SEEK_", "sigprocmask": "SIG_", "madvise": "MADV_", "af": "AF_",
                 "fcntl": "F_", "rlimit": "RLIMIT_", "arch_prctl": "ARCH_", "clock": "CLOCK_"}

_ACCESS_MODES = ("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")
_MAP_TYPES = {0: "", 1: "MAP_SHARED", 2: "MAP_PRIVATE", 3: "MAP_SHARED_VALIDATE"}
_SIGNALS = {int(s): s.name for s in _signal.Signals if s.name.startswith("SIG") and not s.name.startswith("SIG_")}
_SIGNALS.update({n: f"SIGRT_{n - 32}" for n in range(33, 65)} | {_signal.SIGRTMIN.value: "SIGRTMIN"})


def signed(value: int) -> int:
    value &= MASK64
    return value - (1 << 64) if value >> 63 else value


def int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >> 31 else value


def quote(data: bytes, limit: int | None, more: bool = False) -> str:
    """`data` as a C string literal, strace's way; `...` after it when cut (or `more`)."""
    cut = limit is not None and len(data) > limit
    if cut:
        data = data[:limit]
    out = ['"']
    for i, b in enumerate(data):
        c = chr(b)
        if c in '"\\':
            out.append("\\" + c)
        elif c in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[c])
        elif 0x20 <= b < 0x7F:
            out.append(c)
        else:
            nxt = data[i + 1] if i + 1 < len(data) else None
            # Fewest octal digits, but three when an octal digit follows (it would join in).
            out.append(f"\\{b:03o}" if nxt is not None and 0x30 <= nxt <= 0x37 else f"\\{b:o}")
    out.append('"')
    if cut or more:
        out.append("...")
    return "".join(out)


_NAMED_ESCAPES = {"\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r"}


def flags_text(value: int, table: Flags, first: str | None = None) -> str:
    """`O_RDONLY|O_CLOEXEC`: `first` (an access mode or mapping type) then each flag,
    then what no name covers in hex; `0` for no bits."""
    names = [first] if first else []
    rest = value
    for name, bits, mask in table:
        if value & mask == bits and rest & bits:
            names.append(name)
            rest &= ~bits
    if rest:
        names.append(hex(rest))
    return "|".join(names) if names else "0"


def read_cstring(read: ReadMemory, address: int, limit: int) -> tuple[bytes, bool]:
    """The NUL-terminated bytes at `address`, at most `limit` of them; True: it goes on."""
    out = b""
    while len(out) <= limit:
        chunk_at = address + len(out)
        size = min(256, 4096 - (chunk_at & 4095))      # never across a page we may not have
        chunk = read(chunk_at, size)
        nul = chunk.find(b"\0")
        if nul >= 0:
            out += chunk[:nul]
            return (out[:limit], len(out) > limit)
        out += chunk
    return (out[:limit], True)


class Decoder:
    """Arguments of one call as strace shows them, reading the target through `read`."""

    def __init__(self, read: ReadMemory, string_limit: int = STRING_LIMIT) -> None:
        self.read = read
        self.limit = string_limit

    def args(self, call: Syscall, values: tuple[int, ...], *, exiting: bool,
             retval: int | None = None) -> dict[str, str]:
        """name -> text of each argument. Output buffers are shown at exit (their bytes
        then, as many as the call returned); at entry, and when it failed, as pointers."""
        shown: dict[str, str] = {}
        for i, arg in enumerate(call.args):
            value = values[i] if i < len(values) else 0
            if arg.kind == "cmode" and not _creates(call, values):
                continue
            shown[arg.name] = self.arg(arg, value, values, exiting=exiting, retval=retval)
        return shown

    def arg(self, arg: SysArg, value: int, values: tuple[int, ...], *, exiting: bool,
            retval: int | None) -> str:
        kind = arg.kind
        if kind in ("fd", "int", "pid"):
            return str(int32(value))
        if kind == "dirfd":
            return "AT_FDCWD" if int32(value) == AT_FDCWD else str(int32(value))
        if kind == "uint":
            return str(value & MASK64)
        if kind == "off":
            return str(signed(value))
        if kind == "hex":
            return hex(value & MASK64) if value & MASK64 else "0"
        if kind == "ptr":
            return pointer(value)
        if kind in ("mode", "cmode"):
            value &= 0o7777       # strace's %#03o: 0644, 000
            return ("0" + format(value, "o") if value else "0").rjust(3, "0")
        if kind == "sig":
            return _SIGNALS.get(int32(value), str(int32(value)))
        if kind in ("path", "str"):
            return self._string(value, PATH_LIMIT if kind == "path" else self.limit)
        if kind == "buf":
            length = values[int(arg.detail or 0)] & MASK64
            return self._buffer(value, length)
        if kind == "obuf":
            if not exiting or retval is None or retval < 0:
                return pointer(value)
            return self._buffer(value, retval)
        if kind == "flags":
            return self._flags(str(arg.detail), value)
        if kind == "val":
            return self._value(str(arg.detail), value)
        return hex(value & MASK64)

    def _string(self, address: int, limit: int) -> str:
        if not address:
            return "NULL"
        try:
            data, more = read_cstring(self.read, address, limit)
        except Exception:       # noqa: BLE001 - any unreadable address reads as strace shows it
            return hex(address)
        return quote(data, None, more)

    def _buffer(self, address: int, length: int) -> str:
        if not address:
            return "NULL"
        try:
            data = self.read(address, min(length, self.limit + 1))
        except Exception:       # noqa: BLE001 - as strace: the pointer of an unreadable buffer
            return hex(address)
        return quote(data[:self.limit], None, length > self.limit)

    @staticmethod
    def _flags(table: str, value: int) -> str:
        value &= 0xFFFFFFFF if table != "clone" else MASK64
        if table == "open":
            mode = value & 3
            return flags_text(value & ~3, FLAGS["open"], _ACCESS_MODES[mode])
        if table == "map":
            kind = _MAP_TYPES.get(value & 0xF)
            text = flags_text(value & ~0xF & ~(0x3F << 26), FLAGS["map"], kind or None)
            huge = (value >> 26) & 0x3F
            if huge:
                text += f"|{huge}<<MAP_HUGE_SHIFT"
            return text
        if table == "prot" and not value:
            return "PROT_NONE"
        if table == "access" and not value:
            return "F_OK"
        if table == "wait" and not value:
            return "0"
        return flags_text(value, FLAGS[table])

    @staticmethod
    def _value(table: str, value: int) -> str:
        value &= 0xFFFFFFFF
        name = VALUES[table].get(value)
        return name if name is not None else f"{value:#x} /* {_VALUE_PREFIX[table]}??? */"


def _creates(call: Syscall, values: tuple[int, ...]) -> bool:
    """openat's mode is read only when its flags create a file: strace shows it then only."""
    index = next((i for i, a in enumerate(call.args) if a.kind == "flags" and a.detail == "open"), None)
    return index is not None and index < len(values) and bool(values[index] & O_CREAT
                                                               or values[index] & O_TMPFILE == O_TMPFILE)


def pointer(value: int) -> str:
    value &= MASK64
    return "NULL" if not value else hex(value)


def failed(rax: int) -> int | None:
    """The errno of a call that returned `rax`, or None when it succeeded."""
    value = signed(rax)
    return -value if -MAX_ERRNO <= value < 0 else None


def errno_name(number: int) -> str:
    return _errno.errorcode.get(number, f"E{number}")


def result_text(call: Syscall, rax: int | None) -> str:
    """What follows `) = ` in strace: `3`, `0x7f12...`, `-1 ENOENT (No such file or directory)`, `?`."""
    if rax is None:
        return "?"
    err = failed(rax)
    if err is not None:
        return f"-1 {errno_name(err)} ({os.strerror(err)})"
    if call.name in _POINTER_RESULTS:
        return pointer(rax) if rax else "0"
    return str(signed(rax))


_POINTER_RESULTS = frozenset({"mmap", "mremap", "brk", "shmat"})


def call_text(name: str, args: dict[str, str], result: str | None) -> str:
    """`openat(AT_FDCWD, "/etc/hostname", O_RDONLY) = 3` (None: still inside the call)."""
    head = f"{name}({', '.join(args.values())})"
    return head if result is None else f"{head} = {result}"


# Where a system call's arguments are (the kernel's x86-64 ABI: r10, not rcx, for the fourth).
ARG_REGISTERS = ("rdi", "rsi", "rdx", "r10", "r8", "r9")
