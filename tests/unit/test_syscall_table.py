"""The generated x86-64 system call table, the seccomp filter program, and the strace-style decoder."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import pytest

from instrument.arch.x86_64 import sysdecode as d
from instrument.arch.x86_64.syscalls import BY_NAME, BY_NUMBER, TABLE
from instrument.compiler.sections.syscalls import resolve_key

REPO = Path(__file__).resolve().parents[2]
HEADER = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
MASK = (1 << 64) - 1


def test_numbers_and_signatures_of_common_calls() -> None:
    assert BY_NAME["read"].number == 0 and BY_NAME["write"].number == 1
    assert BY_NAME["openat"].number == 257 and BY_NAME["getppid"].number == 110
    assert BY_NUMBER[231].name == "exit_group"
    openat = BY_NAME["openat"]
    assert [(a.name, a.kind, a.detail) for a in openat.args] == [
        ("dirfd", "dirfd", None), ("pathname", "path", None), ("flags", "flags", "open"), ("mode", "cmode", None)]
    write = BY_NAME["write"]
    assert write.args[1].kind == "buf" and write.args[1].detail == 2      # its length is `count`
    assert BY_NAME["read"].args[1].kind == "obuf"                          # shown at exit
    assert sum(c.known for c in TABLE) >= 170
    unknown = next(c for c in TABLE if not c.known)
    assert [a.name for a in unknown.args] == [f"arg{i}" for i in range(6)]


@pytest.mark.skipif(not HEADER.exists(), reason="needs the kernel headers the table is generated from")
def test_the_committed_table_is_what_the_generator_writes() -> None:
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import gen_syscalls
    finally:
        sys.path.pop(0)
    committed = (REPO / "instrument" / "arch" / "x86_64" / "syscalls.py").read_text()
    assert gen_syscalls.generate(str(HEADER)) == committed
    assert len(TABLE) == len(gen_syscalls.parse_header(HEADER.read_text()))


def test_keys_resolve_by_name_number_and_glob() -> None:
    assert [c.name for c in resolve_key("openat")] == ["openat"]
    assert [c.name for c in resolve_key("257")] == ["openat"]
    assert {"open", "openat", "openat2"} <= {c.name for c in resolve_key("open*")}
    assert resolve_key("opnat") == [] and resolve_key("9999") == [] and resolve_key("zz*") == []


def test_quoting_as_strace() -> None:
    assert d.quote(b"hello\tworld\n", 32) == '"hello\\tworld\\n"'
    # octal with the fewest digits, three when an octal digit follows; cut at 32 with `...`
    assert d.quote(b"\n\x01\"q", None) == '"\\n\\1\\"q"'
    assert d.quote(b"\x001", None) == '"\\0001"'
    assert d.quote(b"\x7f\xff", None) == '"\\177\\377"'
    assert d.quote(b"0123456789" * 4, 32) == '"' + ("0123456789" * 4)[:32] + '"...'
    assert d.quote(b"x" * 32, 32) == '"' + "x" * 32 + '"'


def test_flags_as_strace() -> None:
    dec = d.Decoder(lambda a, n: b"")
    assert dec._flags("open", 0o2000000) == "O_RDONLY|O_CLOEXEC"
    assert dec._flags("open", 0o1 | 0o100 | 0o1000 | 0o2000 | 0o2000000) == "O_WRONLY|O_CREAT|O_TRUNC|O_APPEND|O_CLOEXEC"
    assert dec._flags("open", 0o4000 | 0o2000000 | 0o200000) == "O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY"
    assert dec._flags("open", 0o2 | 0o20200000) == "O_RDWR|O_TMPFILE"
    assert dec._flags("open", 0o4010000) == "O_RDONLY|O_SYNC"
    assert dec._flags("open", 0x80000000) == "O_RDONLY|0x80000000"
    assert dec._flags("prot", 0) == "PROT_NONE" and dec._flags("prot", 3) == "PROT_READ|PROT_WRITE"
    assert dec._flags("map", 0x22 | 0x4000 | 0x20000) == "MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE|MAP_STACK"
    assert dec._flags("access", 0) == "F_OK" and dec._flags("access", 6) == "R_OK|W_OK"
    assert dec._value("whence", 2) == "SEEK_END" and dec._value("whence", 7) == "0x7 /* SEEK_??? */"


def test_arguments_and_results_as_strace() -> None:
    memory = {0x1000: b"/etc/hostname\0", 0x2000: b"vm\n"}

    def read(address: int, size: int) -> bytes:
        for base, data in memory.items():
            if base <= address < base + len(data):
                return data[address - base:address - base + size]
        raise OSError("unmapped")

    dec = d.Decoder(read)
    openat = BY_NAME["openat"]
    assert d.call_text("openat", dec.args(openat, (-100 & MASK, 0x1000, 0, 0, 0, 0), exiting=True, retval=3),
                       d.result_text(openat, 3)) == 'openat(AT_FDCWD, "/etc/hostname", O_RDONLY) = 3'
    made = dec.args(openat, (-100 & MASK, 0x1000, 0o101, 0o644, 0, 0), exiting=False)
    assert made["mode"] == "0644" and made["flags"] == "O_WRONLY|O_CREAT"
    assert dec.args(openat, (5, 0, 0, 0, 0, 0), exiting=False) == {"dirfd": "5", "pathname": "NULL", "flags": "O_RDONLY"}
    assert d.result_text(openat, -errno.ENOENT & MASK) == "-1 ENOENT (No such file or directory)"
    read_call = BY_NAME["read"]
    assert dec.args(read_call, (0, 0x2000, 10, 0, 0, 0), exiting=False)["buf"] == "0x2000"   # not filled yet
    assert dec.args(read_call, (0, 0x2000, 10, 0, 0, 0), exiting=True, retval=3)["buf"] == '"vm\\n"'
    assert dec.args(BY_NAME["write"], (1, 0x9000, 5, 0, 0, 0), exiting=False)["buf"] == "0x9000"   # unreadable
    assert dec.args(BY_NAME["kill"], (123, 10, 0, 0, 0, 0), exiting=False) == {"pid": "123", "sig": "SIGUSR1"}
    assert d.result_text(BY_NAME["mmap"], 0x7F0000001000) == "0x7f0000001000"
    assert d.result_text(BY_NAME["exit_group"], None) == "?"
    assert d.failed(-4095 & MASK) == 4095 and d.failed(-4096 & MASK) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux backend's module loads libc")
def test_the_filter_traces_only_the_named_calls() -> None:
    from instrument.backend.linux import seccomp

    prog = seccomp.program([1, 257, 1])
    assert prog[:4] == [(0x20, 0, 0, 4), (0x15, 1, 0, seccomp.AUDIT_ARCH_X86_64), (0x06, 0, 0, seccomp.RET_ALLOW),
                        (0x20, 0, 0, 0)]
    assert prog[4:] == [(0x15, 0, 1, 1), (0x06, 0, 0, seccomp.RET_TRACE), (0x15, 0, 1, 257),
                        (0x06, 0, 0, seccomp.RET_TRACE), (0x06, 0, 0, seccomp.RET_ALLOW)]
    assert len(seccomp.program(range(400))) == 4 + 800 + 1      # no jump longer than one instruction
