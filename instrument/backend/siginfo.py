"""Linux signals as debug events, for every backend that reads them: the signal -> exception table.

A pure function of the signal's number, si_code and address, with the Linux
x86-64 numbers written out rather than taken from the `signal` module, so that
a core file reads the same on any host (HOUSE rule 2). The live ptrace backend
(linux/decode.py) and the core-file backend (core/signals.py) both report
through it, as SPEC section 2 maps them: the fault signals become their
NTSTATUS codes, an int3 trap a BREAKPOINT at the int3, another CPU trap
SINGLE_STEP, a signal sent by kill()/tkill()/sigqueue() (si_code <= 0) a SIGNAL
from the user.
"""

from __future__ import annotations

import functools

from ..events import ExceptionCode, ExceptionInfo

SIGNAL_NAMES: dict[int, str] = {
    1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
    8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE",
    14: "SIGALRM", 15: "SIGTERM", 16: "SIGSTKFLT", 17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP",
    20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU", 23: "SIGURG", 24: "SIGXCPU", 25: "SIGXFSZ",
    26: "SIGVTALRM", 27: "SIGPROF", 28: "SIGWINCH", 29: "SIGIO", 30: "SIGPWR", 31: "SIGSYS",
    34: "SIGRTMIN", 64: "SIGRTMAX",
}
SIGRTMIN = 34                      # glibc's: the kernel's 32 and 33 are its own
SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV = 4, 5, 7, 8, 11
SI_KERNEL = 0x80
TRAP_BRKPT = 1
# One table: the exception code a CPU-raised signal becomes.
_EXCEPTION_BY_SIGNAL: dict[int, int] = {
    SIGSEGV: ExceptionCode.ACCESS_VIOLATION, SIGBUS: ExceptionCode.ACCESS_VIOLATION,
    SIGILL: ExceptionCode.ILLEGAL_INSTRUCTION, SIGFPE: ExceptionCode.INT_DIVIDE_BY_ZERO,
}
# SIGFPE's si_code (asm-generic/siginfo.h: FPE_INTDIV 1 .. FPE_FLTINV 7) says which
# arithmetic fault it was. Underflow and inexact results have no ExceptionCode
# member yet, so they report FLT_INVALID_OPERATION.
_FPE_CODES: dict[int, int] = {
    1: ExceptionCode.INT_DIVIDE_BY_ZERO, 2: ExceptionCode.INT_OVERFLOW,
    3: ExceptionCode.FLT_DIVIDE_BY_ZERO, 4: ExceptionCode.FLT_OVERFLOW,
    5: ExceptionCode.FLT_INVALID_OPERATION, 6: ExceptionCode.FLT_INVALID_OPERATION,
    7: ExceptionCode.FLT_INVALID_OPERATION,
}


@functools.lru_cache(maxsize=None)
def signal_name(signo: int) -> str:
    """"SIGSEGV" for 11; cached: every trap asks."""
    if signo in SIGNAL_NAMES:
        return SIGNAL_NAMES[signo]
    return f"SIGRTMIN+{signo - SIGRTMIN}" if signo > SIGRTMIN else f"SIG{signo}"


@functools.lru_cache(maxsize=1024)
def exception_for_signal(signo: int, si_code: int, si_addr: int, rip: int, first_chance: bool,
                         hw_slots: tuple[int, ...] = (), watched: int | None = None) -> ExceptionInfo:
    """The EXCEPTION_DEBUG_EVENT payload of one signal at `rip`; `watched` is the data
    address of a hardware watchpoint that fired. A pure function of immutable values,
    so memoised: a breakpoint hit asks the same question every time, and building the
    frozen value costs more than the rest of decoding the stop."""
    name = signal_name(signo)
    if si_code <= 0:
        # kill()/tkill()/sigqueue(): a message from a program (abort() sends itself
        # SIGABRT), not a fault.
        return ExceptionInfo(ExceptionCode.SIGNAL, rip, first_chance, signal=name, si_code=si_code,
                             from_user=True)
    if signo == SIGTRAP:
        if si_code in (SI_KERNEL, TRAP_BRKPT):
            # int3 traps after the instruction: the breakpoint is one byte back.
            return ExceptionInfo(ExceptionCode.BREAKPOINT, rip - 1, first_chance, signal=name, si_code=si_code)
        return ExceptionInfo(ExceptionCode.SINGLE_STEP, rip, first_chance, watched, signal=name, si_code=si_code,
                             hw_slots=hw_slots)
    code = _EXCEPTION_BY_SIGNAL.get(signo, ExceptionCode.SIGNAL)
    if signo == SIGFPE:
        code = _FPE_CODES.get(si_code, code)
    fault = si_addr if signo in (SIGSEGV, SIGBUS) else None
    return ExceptionInfo(code, rip, first_chance, fault, None, name, si_code)
