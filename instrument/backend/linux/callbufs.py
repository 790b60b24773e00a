"""The memory a system call touches: the buffers behind its pointers, by the kernel's access, and what its result moved.

From the generated system call table (arch/x86_64/syscalls.py: buffer and
length pairs, C strings, and `ptr` arguments of unknown size), plus the sizes
and directions kept here that the table leaves out (struct stat, a futex word,
iovec arrays, a msghdr). Only plain values: addresses, lengths, the target's
memory read through a function. guardcalls.py uses it to open guarded pages
around a call and report its access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ...arch.x86_64 import PAGE_SIZE as PAGE
from ...arch.x86_64.syscalls import BY_NAME, TABLE, Syscall
from ...errors import DebuggerError
from ...events import Access

_UNSIZED = 256             # opened behind a pointer of unknown size
_PATH_MAX = 4096
_IOV_MAX = 1024
_MSGHDR = 56               # sizeof(struct msghdr) on x86-64
_FUTEX_WAITS = (0, 9)      # FUTEX_WAIT, FUTEX_WAIT_BITSET (the op without PRIVATE / CLOCK_REALTIME)

Read = Callable[[int, int], bytes]
# (lo, hi, access, how): memory a call may touch, and which part counts once it is done
# (Arg.result, or "iov", "cstr", "unsized").
Span = tuple[int, int, Access, str]

# Calls left alone: they manage memory rather than access it, or never come back.
_LEFT_ALONE = frozenset({
    "mmap", "mprotect", "munmap", "brk", "mremap", "msync", "madvise", "mincore", "mlock", "munlock",
    "pkey_mprotect", "remap_file_pages", "clone", "clone3", "fork", "vfork", "exit", "exit_group",
    "rt_sigreturn", "shmat", "shmdt",
})

R, W = Access.READ, Access.WRITE


@dataclass(frozen=True)
class Arg:
    """How one pointer argument is touched. `kind`: len (length in argument `n`),
    fixed (`n` bytes), iov (an iovec array, its count in argument `n`), msghdr (a
    struct msghdr: its iovecs as iov's, its name and control buffers opened only),
    cstr (a NUL-terminated string), unsized (size unknown: opened, never reported).
    `access`: what the kernel does to the memory (READ: it reads the user's buffer,
    as write() does). `result`: which part counts once the call is done: "bytes" as
    many as it returns, "success" all of it unless it failed, "futex" all of it for
    a wait operation, "any" all of it."""

    index: int
    kind: str
    n: int = 0
    access: Access = R
    result: str = "any"        # "bytes" | "success" | "any"


# Sizes and directions the generated table leaves out (its `ptr` arguments).
_STAT = 144                    # sizeof(struct stat) on x86-64
_KNOWN: dict[str, tuple[Arg, ...]] = {
    "stat": (Arg(0, "cstr"), Arg(1, "fixed", _STAT, W, "success")),
    "lstat": (Arg(0, "cstr"), Arg(1, "fixed", _STAT, W, "success")),
    "fstat": (Arg(1, "fixed", _STAT, W, "success"),),
    "newfstatat": (Arg(1, "cstr"), Arg(2, "fixed", _STAT, W, "success")),
    "statx": (Arg(1, "cstr"), Arg(4, "fixed", 256, W, "success")),
    "futex": (Arg(0, "fixed", 4, R, "futex"), Arg(3, "unsized"), Arg(4, "unsized")),
    "pipe": (Arg(0, "fixed", 8, W, "success"),),
    "pipe2": (Arg(0, "fixed", 8, W, "success"),),
    "nanosleep": (Arg(0, "fixed", 16, R), Arg(1, "unsized")),
    "clock_nanosleep": (Arg(2, "fixed", 16, R), Arg(3, "unsized")),
    "readv": (Arg(1, "iov", 2, W, "bytes"),),
    "writev": (Arg(1, "iov", 2, R, "bytes"),),
    "preadv": (Arg(1, "iov", 2, W, "bytes"),),
    "pwritev": (Arg(1, "iov", 2, R, "bytes"),),
    "getdents": (Arg(1, "len", 2, W, "bytes"),),
    "getdents64": (Arg(1, "len", 2, W, "bytes"),),
    "getcwd": (Arg(0, "len", 1, W, "bytes"),),
    "sendmsg": (Arg(1, "msghdr", 0, R, "bytes"),),
    "recvmsg": (Arg(1, "msghdr", 0, W, "bytes"),),
}


def _plan(call: Syscall) -> tuple[Arg, ...]:
    known = _KNOWN.get(call.name)
    if known is not None:
        return known
    plan: list[Arg] = []
    for i, a in enumerate(call.args):
        if a.kind in ("buf", "obuf") and isinstance(a.detail, int):
            plan.append(Arg(i, "len", a.detail, R if a.kind == "buf" else W, "bytes"))
        elif a.kind in ("path", "str"):
            plan.append(Arg(i, "cstr"))
        elif a.kind == "ptr":
            plan.append(Arg(i, "unsized"))
    return tuple(plan)


# number -> how its pointer arguments are touched: only calls that have any.
PLANS: dict[int, tuple[Arg, ...]] = {
    c.number: p for c in TABLE if c.known and c.name not in _LEFT_ALONE for p in [_plan(c)] if p}
assert all(name in BY_NAME for name in _KNOWN)


def guard_call_numbers() -> frozenset[int]:
    """The calls a seccomp filter stops for memory breakpoints (tracee.py's spawn): those
    whose pointers this module knows how to follow."""
    return frozenset(PLANS)


def spans_of(read: Read, plan: tuple[Arg, ...], args: tuple[int, ...]) -> list[Span]:
    """(lo, hi, access, kind) of the memory the call may touch, at its entry."""
    spans: list[Span] = []
    for a in plan:
        p = int(args[a.index])
        if not p:
            continue
        if a.kind == "len":
            spans.append((p, p + (int(args[a.n]) & 0x7FFFFFFFFFFF), a.access, a.result))
        elif a.kind == "fixed":
            spans.append((p, p + a.n, a.access, a.result))
        elif a.kind == "cstr":
            spans.append((p, p + _PATH_MAX, R, "cstr"))
        elif a.kind == "unsized":
            spans.append((p, p + _UNSIZED, R, "unsized"))
        elif a.kind == "iov":
            _iov_spans(read, spans, p, int(args[a.n]), a.access)
        elif a.kind == "msghdr":
            spans.append((p, p + _MSGHDR, R, "unsized"))
            try:
                head = read(p, _MSGHDR)
            except DebuggerError:
                continue
            name, namelen, iov, iovlen, control, controllen = (
                int.from_bytes(head[at:at + width], "little")
                for at, width in ((0, 8), (8, 4), (16, 8), (24, 8), (32, 8), (40, 8)))
            for base, length in ((name, namelen), (control, controllen)):
                if base and length:
                    spans.append((base, base + min(length, 1 << 20), R, "unsized"))
            if iov:
                _iov_spans(read, spans, iov, iovlen, a.access)
    return spans


def _iov_spans(read: Read, spans: list[Span], p: int, count: int, access: Access) -> None:
    """The iovec array at p (read by the kernel) and the buffers it names."""
    count = min(count & 0xFFFFFFFF, _IOV_MAX)
    spans.append((p, p + 16 * count, R, "any"))
    for base, length in _iovecs(read, p, count):
        spans.append((base, base + length, access, "iov"))


def _iovecs(read: Read, address: int, count: int) -> list[tuple[int, int]]:
    try:
        data = read(address, 16 * count)
    except DebuggerError:
        return []
    out = []
    for i in range(count):
        base = int.from_bytes(data[16 * i:16 * i + 8], "little")
        length = int.from_bytes(data[16 * i + 8:16 * i + 16], "little")
        if base and length:
            out.append((base, length))
    return out


def touched(read: Read, spans: list[Span], entered: tuple[int, tuple[int, ...]],
            result: int) -> list[tuple[int, int, Access]]:
    """[lo, hi) and access of what the finished call did touch, by its result."""
    number, args = entered
    out: list[tuple[int, int, Access]] = []
    moved = result                               # bytes left to spread over the iovecs
    for lo, hi, access, how in spans:
        if how == "unsized":
            continue
        if how == "bytes":
            if result > 0:
                out.append((lo, min(hi, lo + result), access))
        elif how == "iov":
            if moved > 0:
                out.append((lo, min(hi, lo + moved), access))
                moved -= hi - lo
        elif how == "success":
            if result >= 0:
                out.append((lo, hi, access))
        elif how == "cstr":
            out.append((lo, lo + _cstr_size(read, lo), access))
        elif how == "futex":
            # Only the wait operations read the word; a wake names it but leaves it be.
            if int(args[1]) & 0x7F in _FUTEX_WAITS:
                out.append((lo, hi, access))
        else:
            out.append((lo, hi, access))
    return out


def _cstr_size(read: Read, address: int) -> int:
    """The length of the string at `address` with its NUL, read a page at a time."""
    size, at = 0, address
    while size < _PATH_MAX:
        chunk = PAGE - (at & (PAGE - 1))
        try:
            data = read(at, chunk)
        except DebuggerError:
            return max(size, 1)
        nul = data.find(b"\0")
        if nul >= 0:
            return size + nul + 1
        size += chunk
        at += chunk
    return _PATH_MAX
