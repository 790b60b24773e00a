"""The signal -> exception table of the Linux backend: what a signal-delivery-stop reports."""

from __future__ import annotations

import functools
import signal

from ...events import ExceptionCode, ExceptionInfo
from . import _ffi

# Signals whose delivery stops a process (job control): resumed with PTRACE_LISTEN.
STOP_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
# One table: the exception code a CPU-raised signal becomes (SPEC section 2).
_EXCEPTION_BY_SIGNAL: dict[int, int] = {
    signal.SIGSEGV: ExceptionCode.ACCESS_VIOLATION,
    signal.SIGBUS: ExceptionCode.ACCESS_VIOLATION,
    signal.SIGILL: ExceptionCode.ILLEGAL_INSTRUCTION,
    signal.SIGFPE: ExceptionCode.INT_DIVIDE_BY_ZERO,
}
# SIGFPE's si_code says which arithmetic fault it was. Underflow and inexact
# results have no ExceptionCode member yet, so they report FLT_INVALID_OPERATION.
_FPE_CODES: dict[int, int] = {
    _ffi.FPE_INTDIV: ExceptionCode.INT_DIVIDE_BY_ZERO,
    _ffi.FPE_INTOVF: ExceptionCode.INT_OVERFLOW,
    _ffi.FPE_FLTDIV: ExceptionCode.FLT_DIVIDE_BY_ZERO,
    _ffi.FPE_FLTOVF: ExceptionCode.FLT_OVERFLOW,
    _ffi.FPE_FLTUND: ExceptionCode.FLT_INVALID_OPERATION,
    _ffi.FPE_FLTRES: ExceptionCode.FLT_INVALID_OPERATION,
    _ffi.FPE_FLTINV: ExceptionCode.FLT_INVALID_OPERATION,
}


@functools.lru_cache(maxsize=None)
def signal_name(signo: int) -> str:
    """"SIGSEGV" for 11; cached: every trap asks (enum lookups are slow on the hot path)."""
    try:
        return signal.Signals(signo).name
    except ValueError:
        rtmin = int(signal.SIGRTMIN)
        return f"SIGRTMIN+{signo - rtmin}" if signo > rtmin else f"SIG{signo}"


@functools.lru_cache(maxsize=1024)
def exception_for_signal(signo: int, si_code: int, si_addr: int, rip: int, first_chance: bool,
                         hw_slots: tuple[int, ...] = (), watched: int | None = None) -> ExceptionInfo:
    """The EXCEPTION_DEBUG_EVENT payload of one signal-delivery-stop; `watched` is the
    data address of a hardware watchpoint that fired. A pure function of immutable
    values, so memoised: a breakpoint hit asks the same question every time, and
    building the frozen value costs more than the rest of decoding the stop."""
    name = signal_name(signo)
    if si_code <= 0:
        # kill()/tkill()/sigqueue(): a message from another program, not a fault.
        return ExceptionInfo(ExceptionCode.SIGNAL, rip, first_chance, signal=name, si_code=si_code,
                             from_user=True)
    if signo == signal.SIGTRAP:
        if si_code in (_ffi.SI_KERNEL, _ffi.TRAP_BRKPT):
            # int3 traps after the instruction: the breakpoint is one byte back.
            return ExceptionInfo(ExceptionCode.BREAKPOINT, rip - 1, True, signal=name, si_code=si_code)
        return ExceptionInfo(ExceptionCode.SINGLE_STEP, rip, True, watched, signal=name, si_code=si_code,
                             hw_slots=hw_slots)
    code = _EXCEPTION_BY_SIGNAL.get(signo, ExceptionCode.SIGNAL)
    if signo == signal.SIGFPE:
        code = _FPE_CODES.get(si_code, code)
    fault = si_addr if signo in (signal.SIGSEGV, signal.SIGBUS) else None
    return ExceptionInfo(code, rip, first_chance, fault, None, name, si_code)
