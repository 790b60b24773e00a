"""Running one function of the target in a stopped thread (an injected call).

For answers only the target can give: which implementation a GNU indirect
function (glibc's strcpy, memcpy, strlen) picks on this CPU is what its
resolver returns. The call gets a fresh 16-byte aligned frame below the red
zone and returns to address 0; the fault there is how we know it is done.
The general-purpose registers and the thread's stop siginfo are restored
afterwards (not the SSE/AVX state: fine for the resolvers it runs, which start
from a function's entry), and a signal that arrives meanwhile is held back and
sent again.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from typing import Callable, Iterator

from ...arch.x86_64 import MASK64 as _MASK
from ...errors import DebuggerError, TargetLost
from . import _ffi
from .state import signal_name

_ESRCH = 3
_ARGUMENT_REGISTERS = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")
_RED_ZONE = 128
_MAX_STOPS = 16            # stray interrupt stops and signals held back, before we give up
_FAULTS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGTRAP}


def call_function(tid: int, current: _ffi.UserRegs, write: Callable[[int, bytes], None],
                  wait: Callable[[int], int], address: int, args: tuple[int, ...] = ()) -> int:
    """Call `address(*args)` in stopped thread `tid` whose registers are `current`
    (the backend's view, with any change not yet written back); return rax.
    `write` writes target memory, `wait(tid)` returns the thread's next waitpid status.
    Other threads must be stopped. Raises DebuggerError when the call faults."""
    if len(args) > len(_ARGUMENT_REGISTERS):
        raise DebuggerError(f"an injected call takes at most {len(_ARGUMENT_REGISTERS)} arguments")
    saved = _ffi.UserRegs.from_buffer_copy(current)
    call = _ffi.UserRegs.from_buffer_copy(saved)
    sp = ((saved.rsp - _RED_ZONE - 64) & ~0xF) - 8     # as after a `call`: rsp % 16 == 8
    write(sp, bytes(8))                                 # the return address: 0
    # orig_rax -1: a thread stopped inside a system call would otherwise have it
    # restarted by the kernel on resume, rewinding our rip by two bytes.
    call.rsp, call.rip, call.orig_rax, call.rax = sp, address, _MASK, 0
    for name, value in zip(_ARGUMENT_REGISTERS, args):
        setattr(call, name, value & _MASK)
    with stop_preserved(tid, saved) as late:
        _ffi.ptrace(_ffi.PTRACE_SETREGS, tid, None, call)
        return _run_to_return(tid, wait, address, sp + 8, late)


@contextmanager
def stop_preserved(tid: int, regs: _ffi.UserRegs) -> Iterator[list[int]]:
    """Around code injected into stopped thread `tid`: afterwards its registers are
    `regs` again and its stop siginfo what it was; the signals put in the yielded
    list (held back while the injected code ran) are sent again."""
    info = _ffi.SigInfo()
    try:
        _ffi.get_siginfo(tid, info)
        have_info = True
    except _ffi.SyscallError:
        have_info = False       # a group-stop has no siginfo
    late: list[int] = []
    try:
        yield late
    finally:
        try:
            _ffi.ptrace(_ffi.PTRACE_SETREGS, tid, None, regs)
            if have_info:
                _ffi.ptrace(_ffi.PTRACE_SETSIGINFO, tid, None, info)
        except _ffi.SyscallError as e:
            if e.errno != _ESRCH:
                raise           # else: killed meanwhile; its exit status tells
        for sig in late:
            os.kill(tid, sig)    # process-directed, as Python has no tgkill


def _run_to_return(tid: int, wait: Callable[[int], int], address: int, popped_sp: int, late: list[int]) -> int:
    regs = _ffi.UserRegs()
    for _ in range(_MAX_STOPS):
        try:
            _ffi.cont(tid, 0)
        except _ffi.SyscallError as e:
            raise TargetLost(f"thread {tid} vanished in a call at {address:#x}: {e}") from None
        status = wait(tid)
        if not os.WIFSTOPPED(status):
            raise TargetLost(f"thread {tid} ended in a call at {address:#x}")
        sig = os.WSTOPSIG(status)
        if status >> 16:
            continue                     # a stray PTRACE_INTERRUPT stop: run on
        _ffi.get_regs(tid, regs)
        if sig == signal.SIGSEGV and regs.rip == 0 and regs.rsp == popped_sp:
            return int(regs.rax)     # our return address taken (a jump through a NULL slot is not)
        if sig in _FAULTS:
            raise DebuggerError(f"the call at {address:#x} stopped with {signal_name(sig)} at {regs.rip:#x}")
        late.append(sig)                 # asynchronous: not now, but not lost either
    raise DebuggerError(f"the call at {address:#x} did not return")
