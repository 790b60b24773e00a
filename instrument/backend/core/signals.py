"""The signal that ended a dumped process, as the EXCEPTION_DEBUG_EVENT the live backend reports for it.

Linux x86-64 numbers, written out rather than taken from the `signal`
module, so that a core reads the same on any host (HOUSE rule 2). The
mapping is the live backend's (SPEC section 2): the fault signals become
their NTSTATUS codes, an int3 trap a BREAKPOINT at the int3, a signal sent
by kill()/tkill() (si_code <= 0) a SIGNAL from the user; every one of them
last-chance, since it killed the process.
"""

from __future__ import annotations

from ...events import ExceptionCode, ExceptionInfo
from .elfcore import SigInfo

SIGNAL_NAMES: dict[int, str] = {
    1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
    8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE",
    14: "SIGALRM", 15: "SIGTERM", 16: "SIGSTKFLT", 17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP",
    20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU", 23: "SIGURG", 24: "SIGXCPU", 25: "SIGXFSZ",
    26: "SIGVTALRM", 27: "SIGPROF", 28: "SIGWINCH", 29: "SIGIO", 30: "SIGPWR", 31: "SIGSYS",
}
SIGRTMIN = 34
# Signals whose default action stops, continues or ignores: a core taken at one (gdb's
# generate-core-file of a process it attached to, stopped by SIGSTOP) holds no crash.
NOT_FATAL = frozenset({17, 18, 19, 20, 21, 22, 23, 28})   # CHLD CONT STOP TSTP TTIN TTOU URG WINCH
SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV = 4, 5, 7, 8, 11
SI_KERNEL = 0x80
TRAP_BRKPT = 1
# SIGFPE's si_code (asm-generic/siginfo.h): FPE_INTDIV 1 .. FPE_FLTINV 7.
_FPE_CODES: dict[int, int] = {
    1: ExceptionCode.INT_DIVIDE_BY_ZERO, 2: ExceptionCode.INT_OVERFLOW,
    3: ExceptionCode.FLT_DIVIDE_BY_ZERO, 4: ExceptionCode.FLT_OVERFLOW,
    5: ExceptionCode.FLT_INVALID_OPERATION, 6: ExceptionCode.FLT_INVALID_OPERATION,
    7: ExceptionCode.FLT_INVALID_OPERATION,
}
_BY_SIGNAL: dict[int, int] = {
    SIGSEGV: ExceptionCode.ACCESS_VIOLATION, SIGBUS: ExceptionCode.ACCESS_VIOLATION,
    SIGILL: ExceptionCode.ILLEGAL_INSTRUCTION, SIGFPE: ExceptionCode.INT_DIVIDE_BY_ZERO,
}


def signal_name(signo: int) -> str:
    if signo in SIGNAL_NAMES:
        return SIGNAL_NAMES[signo]
    return f"SIGRTMIN+{signo - SIGRTMIN}" if signo >= SIGRTMIN else f"SIG{signo}"


def ended_by(info: SigInfo | None) -> bool:
    """Whether the signal of a core is one that ends a process (every signal the kernel dumps
    a core for does), rather than none or a stop."""
    return info is not None and info.signo > 0 and info.signo not in NOT_FATAL


def exception_for(info: SigInfo, rip: int) -> ExceptionInfo:
    """The last-chance exception of the signal `info` in a thread stopped at `rip`."""
    name = signal_name(info.signo)
    if info.code <= 0:
        # kill()/tkill()/raise(): a message from a program (abort() sends itself SIGABRT), not a fault.
        return ExceptionInfo(ExceptionCode.SIGNAL, rip, False, signal=name, si_code=info.code, from_user=True)
    if info.signo == SIGTRAP:
        if info.code in (SI_KERNEL, TRAP_BRKPT):
            # int3 traps after itself: the program's own breakpoint is one byte back.
            return ExceptionInfo(ExceptionCode.BREAKPOINT, rip - 1, False, signal=name, si_code=info.code)
        return ExceptionInfo(ExceptionCode.SINGLE_STEP, rip, False, signal=name, si_code=info.code)
    code = _BY_SIGNAL.get(info.signo, ExceptionCode.SIGNAL)
    if info.signo == SIGFPE:
        code = _FPE_CODES.get(info.code, code)
    fault = info.addr if info.signo in (SIGSEGV, SIGBUS) else None
    return ExceptionInfo(code, rip, False, fault, None, name, info.code)
