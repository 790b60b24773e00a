"""Unwinding and crash analysis of real crashing programs, stopped at their fatal signal under ptrace.

The tiny ptrace harness below keeps these tests independent of the real
backend (being written at the same time); the lead can swap it for
`backend.linux` later. Symbols come from pyelftools directly (.symtab, then
.dynsym: Debian's libc has no .symtab).
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pytest
from elftools.elf.elffile import ELFFile

from instrument.analysis import analyze, around
from instrument.events import ExceptionCode, ExceptionInfo
from instrument.symbols import cfi as cfi_mod
from instrument.symbols.unwind import Frame, unwind

# -- a minimal ptrace harness ----------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
# long ptrace(enum __ptrace_request request, pid_t pid, void *addr, void *data);
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long
PTRACE_TRACEME, PTRACE_CONT, PTRACE_GETREGS, PTRACE_GETSIGINFO = 0, 7, 12, 0x4202
USER_REGS = ("r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags "
             "rsp ss fs_base gs_base ds es fs gs").split()
FATAL = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT, signal.SIGTRAP}
CODES = {signal.SIGSEGV: ExceptionCode.ACCESS_VIOLATION, signal.SIGBUS: ExceptionCode.ACCESS_VIOLATION,
         signal.SIGILL: ExceptionCode.ILLEGAL_INSTRUCTION, signal.SIGFPE: ExceptionCode.INT_DIVIDE_BY_ZERO,
         signal.SIGTRAP: ExceptionCode.BREAKPOINT, signal.SIGABRT: ExceptionCode.SIGNAL}


def _ptrace(request: int, pid: int, addr: int = 0, data: Any = None) -> int:
    result = _libc.ptrace(request, pid, addr, data)
    if result == -1 and ctypes.get_errno():
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result


@dataclass
class Mapping_:
    start: int
    end: int
    perms: str
    offset: int
    path: str


@dataclass
class Crash:
    signo: int
    regs: dict[str, int]
    info: ExceptionInfo
    maps: list[Mapping_]
    mem_fd: int

    def read_memory(self, address: int, size: int) -> bytes:
        return os.pread(self.mem_fd, size, address)

    def find_module(self, pc: int) -> tuple[str, int] | None:
        for m in self.maps:
            if m.start <= pc < m.end and "x" in m.perms and m.path.startswith("/"):
                first = min(x.start for x in self.maps if x.path == m.path and x.offset == 0)
                return m.path, first - _first_load_vaddr(m.path)
        return None

    def stack_bounds(self) -> tuple[int, int] | None:
        return next(((m.start, m.end) for m in self.maps if m.path == "[stack]"), None)

    def symbol(self, pc: int) -> str:
        module = self.find_module(pc)
        if module is None:
            return "?"
        return _symbolize(module[0], pc - module[1]) or f"{os.path.basename(module[0])}+?"

    def unwind(self, depth: int = 32) -> list[Frame]:
        return unwind(self.regs, self.read_memory, self.find_module, depth)

    def analyze(self, frames: list[Frame]) -> dict[str, Any]:
        return analyze(self.info, self.regs, self.read_memory, [self.symbol(f.lookup_pc) for f in frames],
                       self.stack_bounds())


@lru_cache(maxsize=None)
def _first_load_vaddr(path: str) -> int:
    with open(path, "rb") as f:
        return min(s["p_vaddr"] for s in ELFFile(f).iter_segments() if s["p_type"] == "PT_LOAD") & ~0xFFF


@lru_cache(maxsize=None)
def _symbol_table(path: str) -> tuple[list[int], list[tuple[int, str]]]:
    entries: list[tuple[int, int, str]] = []
    with open(path, "rb") as f:
        elf = ELFFile(f)
        for name in (".symtab", ".dynsym"):
            section = elf.get_section_by_name(name)
            if section is None:
                continue
            entries += [(s["st_value"], s["st_size"], s.name) for s in section.iter_symbols()
                        if s["st_info"]["type"] in ("STT_FUNC", "STT_GNU_IFUNC") and s["st_value"]]
            break
    entries.sort()
    return [e[0] for e in entries], [(e[1], e[2]) for e in entries]


def _symbolize(path: str, link_addr: int) -> str | None:
    starts, rest = _symbol_table(path)
    i = bisect_right(starts, link_addr) - 1
    if i < 0:
        return None
    size, name = rest[i]
    return name if link_addr < starts[i] + max(size, 1) else None


def _parse_maps(pid: int) -> list[Mapping_]:
    maps = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in parts[0].split("-"))
            maps.append(Mapping_(start, end, parts[1], int(parts[2], 16), parts[5].strip() if len(parts) > 5 else ""))
    return maps


def _crash_info(pid: int, signo: int, regs: dict[str, int]) -> ExceptionInfo:
    siginfo = (ctypes.c_uint8 * 128)()
    _ptrace(PTRACE_GETSIGINFO, pid, 0, ctypes.addressof(siginfo))
    raw = bytes(siginfo)
    si_code = int.from_bytes(raw[8:12], "little", signed=True)
    from_user = si_code <= 0   # SI_USER (0), SI_TKILL (-6), SI_QUEUE...: sent, not raised by the CPU
    fault = None if from_user else int.from_bytes(raw[16:24], "little")
    return ExceptionInfo(code=CODES[signal.Signals(signo)], address=regs["rip"], first_chance=False,
                         fault_address=fault, signal=signal.Signals(signo).name, si_code=si_code,
                         from_user=from_user)


@pytest.fixture
def crash_of(targets):
    """Run targets[name] under ptrace up to its fatal signal; yield a Crash (the process is still there)."""
    pids: list[int] = []
    fds: list[int] = []

    def run(name: str) -> Crash:
        path = targets[name]
        pid = os.fork()
        if pid == 0:  # child: become traced, silence, exec
            try:
                devnull = os.open(os.devnull, os.O_RDWR)
                os.dup2(devnull, 1)
                os.dup2(devnull, 2)
                _libc.ptrace(PTRACE_TRACEME, 0, None, None)
                os.execv(path, [path])
            finally:
                os._exit(127)
        pids.append(pid)
        os.waitpid(pid, 0)                                  # the exec SIGTRAP
        deliver = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            _ptrace(PTRACE_CONT, pid, 0, deliver)
            _, status = os.waitpid(pid, 0)
            assert os.WIFSTOPPED(status), f"{name} ended without a fatal signal (status {status:#x})"
            signo = os.WSTOPSIG(status)
            if signo not in FATAL:
                deliver = signo                             # SIGUSR1 for the handler test
                continue
            buf = (ctypes.c_uint64 * len(USER_REGS))()
            _ptrace(PTRACE_GETREGS, pid, 0, ctypes.addressof(buf))
            regs = dict(zip(USER_REGS, buf))
            fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
            fds.append(fd)
            return Crash(signo, regs, _crash_info(pid, signo, regs), _parse_maps(pid), fd)
        raise AssertionError(f"{name} did not crash in time")

    yield run
    for fd in fds:
        os.close(fd)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def names(crash: Crash, frames: list[Frame]) -> list[str]:
    return [crash.symbol(f.lookup_pc) for f in frames]


def in_order(found: list[str], expected: list[str]) -> bool:
    """Do the expected names appear in `found` in this order (others may sit between)?"""
    it = iter(found)
    return all(any(name == e for name in it) for e in expected)


# -- backtraces -----------------------------------------------------------------

def test_optimised_frames_without_frame_pointers_unwind_by_cfi(crash_of):
    crash = crash_of("crash_deep")
    frames = crash.unwind()
    assert names(crash, frames)[:4] == ["level3", "level2", "level1", "main"]
    assert [f.method for f in frames[:4]] == ["context", "cfi", "cfi", "cfi"]
    # Each CFA sits above the last: the frames are real, not scanned garbage.
    cfas = [f.cfa for f in frames[:4]]
    assert all(a is not None for a in cfas) and cfas == sorted(cfas) and len(set(cfas)) == 4


def test_crash_inside_libc_memcpy_unwinds_to_the_caller(crash_of):
    crash = crash_of("crash_memcpy")
    frames = crash.unwind()
    module = crash.find_module(frames[0].pc)
    assert module is not None and "libc.so" in module[0]
    assert names(crash, frames)[1:3] == ["copy_block", "main"]


def test_abort_unwinds_through_raise_and_abort(crash_of):
    crash = crash_of("crash_abort")
    found = names(crash, crash.unwind())
    assert in_order(found, ["raise", "abort", "give_up", "main", "__libc_start_main", "_start"])
    assert found.index("give_up") == found.index("abort") + 1


def test_noreturn_call_as_last_instruction_symbolizes_the_caller(crash_of):
    # __stack_chk_fail's call to __fortify_fail is its last instruction: the
    # return address is already __fortify_fail's first byte.
    crash = crash_of("crash_stack_protector")
    found = names(crash, crash.unwind())
    assert in_order(found, ["abort", "__fortify_fail", "__stack_chk_fail", "smash", "main"])


def test_backtrace_crosses_a_signal_frame(crash_of):
    crash = crash_of("crash_sighandler")
    frames = crash.unwind()
    found = names(crash, frames)
    assert in_order(found, ["handler_work", "on_signal", "raise", "trigger", "main"])
    # The frame after __restore_rt comes from the ucontext the kernel saved.
    restored = [i for i, f in enumerate(frames) if i > 0 and f.method == "context"]
    assert len(restored) == 1 and found.index("on_signal") < restored[0] < found.index("raise")


def test_call_through_a_bad_pointer_finds_the_caller_at_rsp(crash_of):
    crash = crash_of("crash_bad_call")
    frames = crash.unwind()
    assert frames[0].pc == 0xDEADBEEF and frames[0].method == "context"
    assert frames[1].method == "scan"
    assert names(crash, frames)[1:3] == ["dispatch", "main"]


def test_unbounded_recursion_stops_at_depth(crash_of):
    crash = crash_of("crash_recursion")
    frames = crash.unwind(depth=32)
    assert len(frames) == 32
    assert set(names(crash, frames)) == {"recurse"}


def test_unwinding_the_same_binaries_again_is_cached(crash_of):
    crash = crash_of("crash_double_free")
    first = crash.unwind()
    cached = cfi_mod._cfi_cache.entries()
    assert crash.unwind() == first
    assert cfi_mod._cfi_cache.entries() == cached       # nothing re-parsed
    assert any("libc.so" in path for path, _, _ in cached)


# -- crash analysis -------------------------------------------------------------

ANALYSES = {
    # name: (exception, access, fault address or None for "don't care")
    "crash_null_read": ("ACCESS_VIOLATION", "read", 0x10),
    "crash_null_write": ("ACCESS_VIOLATION", "write", 0),
    "crash_wild_write": ("ACCESS_VIOLATION", "write", 0xDEADBEEF000),
    "crash_wild_read": ("ACCESS_VIOLATION", "read", 0x4141414141414141),
    "crash_bad_call": ("ACCESS_VIOLATION", "execute", 0xDEADBEEF),
    "crash_ret_smash": ("ACCESS_VIOLATION", "execute", 0x4141414141414141),
    "crash_stack_protector": ("STACK_BUFFER_OVERRUN", None, None),
    "crash_fortify": ("STACK_BUFFER_OVERRUN", None, None),
    "crash_double_free": ("HEAP_CORRUPTION", None, None),
    "crash_abort": ("SIGNAL", None, None),
    "crash_div_zero": ("INT_DIVIDE_BY_ZERO", None, None),
    "crash_trap": ("ILLEGAL_INSTRUCTION", None, None),
    "crash_recursion": ("STACK_OVERFLOW", "write", None),
}


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_crash_analysis(crash_of, name):
    exception, access, fault_address = ANALYSES[name]
    crash = crash_of(name)
    result = crash.analyze(crash.unwind())
    assert result["exception"] == exception
    assert result["exception_code"] == ExceptionCode[exception]
    assert result["address"] == crash.regs["rip"]
    assert result["access"] == access
    if fault_address is not None:
        assert result["fault_address"] == fault_address


def test_non_canonical_read_is_reported_with_the_computed_address(crash_of):
    crash = crash_of("crash_wild_read")
    assert crash.info.si_code == 0x80 and crash.info.fault_address == 0   # what the kernel says
    result = crash.analyze(crash.unwind())
    assert result["fault_address"] == 0x4141414141414141
    assert result["instruction"].startswith("mov") and "ptr [" in result["instruction"]


def test_smashed_return_reports_the_ret_and_its_target(crash_of):
    result = crash_of("crash_ret_smash").analyze([])
    assert result["instruction"] == "ret"
    assert (result["access"], result["fault_address"]) == ("execute", 0x4141414141414141)


def test_checks_that_caught_the_overrun_are_named(crash_of):
    for name, check in (("crash_stack_protector", "stack_protector"), ("crash_fortify", "fortify")):
        crash = crash_of(name)
        assert crash.analyze(crash.unwind())["check"] == check


def test_stack_overflow_fault_lies_just_below_rsp(crash_of):
    crash = crash_of("crash_recursion")
    result = crash.analyze(crash.unwind())
    bounds = crash.stack_bounds()
    assert bounds is not None
    assert crash.regs["rsp"] - 0x10000 <= result["fault_address"] < crash.regs["rsp"] + 0x1000


def test_disassembly_around_the_faulting_pc(crash_of):
    crash = crash_of("crash_trap")
    rows = around(crash.read_memory, crash.regs["rip"], before=3, after=2)
    current = [r for r in rows if r["current"]]
    assert len(current) == 1 and current[0]["text"] == "ud2" and current[0]["address"] == crash.regs["rip"]
    index = rows.index(current[0])
    assert index == 3 and len(rows) == 6
    # The rows tile memory: each instruction starts where the previous ended.
    assert all(a["address"] + a["size"] == b["address"] for a, b in zip(rows, rows[1:]))
