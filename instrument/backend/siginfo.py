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
                             from_user=True, signo=signo)
    if signo == SIGTRAP:
        if si_code in (SI_KERNEL, TRAP_BRKPT):
            # int3 traps after the instruction: the breakpoint is one byte back.
            return ExceptionInfo(ExceptionCode.BREAKPOINT, rip - 1, first_chance, signal=name, si_code=si_code,
                                 signo=signo)
        return ExceptionInfo(ExceptionCode.SINGLE_STEP, rip, first_chance, watched, signal=name, si_code=si_code,
                             hw_slots=hw_slots, signo=signo)
    code = _EXCEPTION_BY_SIGNAL.get(signo, ExceptionCode.SIGNAL)
    if signo == SIGFPE:
        code = _FPE_CODES.get(si_code, code)
    fault = si_addr if signo in (SIGSEGV, SIGBUS) else None
    return ExceptionInfo(code, rip, first_chance, fault, None, name, si_code, signo=signo)


SIGRTMAX = 64
SIGCHLD = 17
# si_code values a sender sets (include/uapi/asm-generic/siginfo.h), named as strace names them.
_SENDER_CODES: dict[int, str] = {
    0: "SI_USER", 0x80: "SI_KERNEL", -1: "SI_QUEUE", -2: "SI_TIMER", -3: "SI_MESGQ",
    -4: "SI_ASYNCIO", -5: "SI_SIGIO", -6: "SI_TKILL", -7: "SI_DETHREAD", -60: "SI_ASYNCNL",
}
# The codes the kernel gives each signal it raises itself (same header), by signal number.
_SIGNAL_CODES: dict[int, tuple[str, ...]] = {
    SIGILL: ("ILL_ILLOPC", "ILL_ILLOPN", "ILL_ILLADR", "ILL_ILLTRP", "ILL_PRVOPC", "ILL_PRVREG",
             "ILL_COPROC", "ILL_BADSTK", "ILL_BADIADDR"),
    SIGFPE: ("FPE_INTDIV", "FPE_INTOVF", "FPE_FLTDIV", "FPE_FLTOVF", "FPE_FLTUND", "FPE_FLTRES",
             "FPE_FLTINV", "FPE_FLTSUB", "", "", "", "", "", "FPE_FLTUNK", "FPE_CONDTRAP"),
    SIGSEGV: ("SEGV_MAPERR", "SEGV_ACCERR", "SEGV_BNDERR", "SEGV_PKUERR", "SEGV_ACCADI",
              "SEGV_ADIDERR", "SEGV_ADIPERR", "SEGV_MTEAERR", "SEGV_MTESERR", "SEGV_CPERR"),
    SIGBUS: ("BUS_ADRALN", "BUS_ADRERR", "BUS_OBJERR", "BUS_MCEERR_AR", "BUS_MCEERR_AO"),
    SIGTRAP: ("TRAP_BRKPT", "TRAP_TRACE", "TRAP_BRANCH", "TRAP_HWBKPT", "TRAP_UNK", "TRAP_PERF"),
    SIGCHLD: ("CLD_EXITED", "CLD_KILLED", "CLD_DUMPED", "CLD_TRAPPED", "CLD_STOPPED", "CLD_CONTINUED"),
    29: ("POLL_IN", "POLL_OUT", "POLL_MSG", "POLL_ERR", "POLL_PRI", "POLL_HUP"),      # SIGIO
    31: ("SYS_SECCOMP", "SYS_USER_DISPATCH"),                                          # SIGSYS
}
# Codes whose siginfo names the sending process (si_pid, si_uid): kill(), tgkill(),
# sigqueue(), a message queue; SI_KERNEL and the CPU's own codes name nobody.
SENDER_CODES = frozenset({0, -1, -3, -6})
# Codes that carry a sigval (si_value): sigqueue(), POSIX timers, message queues.
VALUE_CODES = frozenset({-1, -2, -3})


def si_code_name(signo: int, si_code: int) -> str:
    """si_code as strace shows it: "SI_TKILL", "SEGV_MAPERR"; a code with no name as its number."""
    if si_code <= 0 or si_code == SI_KERNEL:
        return _SENDER_CODES.get(si_code, str(si_code))
    names = _SIGNAL_CODES.get(signo, ())
    return names[si_code - 1] if si_code <= len(names) and names[si_code - 1] else str(si_code)


_NUMBERS: dict[str, int] = {name: number for number, name in SIGNAL_NAMES.items()}
_NUMBERS.update(SIGIOT=6, SIGCLD=17, SIGPOLL=29)      # the other names glibc accepts


def signal_number(text: str | int) -> int | None:
    """The Linux x86-64 number of a signal written as a recipe may write it: `SIGUSR1`,
    `usr1`, `10`, `SIGRTMIN+3`, `SIGRTMAX-1`; None when it names no signal. The kernel's
    own real-time signals 32 and 33 (glibc's threads and timers) count as no signal."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int):
        number = text
    else:
        s = text.strip().upper()
        if s.isdigit():
            number = int(s)
        else:
            s = s if s.startswith("SIG") else "SIG" + s
            for base, value in (("SIGRTMIN", SIGRTMIN), ("SIGRTMAX", SIGRTMAX)):
                if s.startswith(base) and s != base:
                    offset = s[len(base):].replace(" ", "")
                    sign = 1 if offset[0] == "+" else -1 if offset[0] == "-" else 0
                    if not sign or not offset[1:].isdigit():
                        return None
                    number = value + sign * int(offset[1:])
                    break
            else:
                found = _NUMBERS.get(s)
                if found is None:
                    return None
                number = found
    return number if 1 <= number <= 31 or SIGRTMIN <= number <= SIGRTMAX else None
