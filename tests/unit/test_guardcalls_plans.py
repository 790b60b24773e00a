"""Which system call arguments the guard-page code opens, and which accesses it reports (callbufs.PLANS)."""

from __future__ import annotations

import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux backend's table")

from instrument.arch.x86_64.syscalls import BY_NAME  # noqa: E402
from instrument.events import Access  # noqa: E402


def plan(name: str) -> list[tuple[int, str, Access, str]]:
    from instrument.backend.linux.callbufs import PLANS
    return [(a.index, a.kind, a.access, a.result) for a in PLANS.get(BY_NAME[name].number, ())]


def test_buffers_are_written_by_reads_and_read_by_writes() -> None:
    assert plan("read") == [(1, "len", Access.WRITE, "bytes")]
    assert plan("write") == [(1, "len", Access.READ, "bytes")]
    assert plan("readv") == [(1, "iov", Access.WRITE, "bytes")]
    assert plan("writev") == [(1, "iov", Access.READ, "bytes")]
    assert plan("recvfrom")[0] == (1, "len", Access.WRITE, "bytes")
    assert plan("recvmsg") == [(1, "msghdr", Access.WRITE, "bytes")]
    assert plan("sendmsg") == [(1, "msghdr", Access.READ, "bytes")]


def test_sizes_the_table_lacks_are_kept_by_hand() -> None:
    assert (1, "fixed", Access.WRITE, "success") in plan("stat")
    assert (0, "cstr", Access.READ, "any") in plan("stat")
    assert plan("futex")[0] == (0, "fixed", Access.READ, "futex")


def test_pointers_of_unknown_size_are_opened_but_never_reported() -> None:
    assert (1, "unsized", Access.READ, "any") in plan("rt_sigaction")


@pytest.mark.parametrize("name", ["mmap", "mprotect", "munmap", "brk", "mremap", "msync", "madvise",
                                  "clone", "clone3", "exit", "exit_group", "getppid"])
def test_memory_management_and_pointerless_calls_are_left_alone(name: str) -> None:
    assert plan(name) == []
