"""The signal that ended a dumped process, as the EXCEPTION_DEBUG_EVENT the live backend reports for it.

The mapping is the live backend's (backend/siginfo.py, host-independent),
every exception last-chance, since it killed the process.
"""

from __future__ import annotations

from ...events import ExceptionInfo
from ..siginfo import exception_for_signal, signal_name
from .elfcore import SigInfo

__all__ = ["ended_by", "exception_for", "signal_name"]

# Signals whose default action stops, continues or ignores: a core taken at one (gdb's
# generate-core-file of a process it attached to, stopped by SIGSTOP) holds no crash.
NOT_FATAL = frozenset({17, 18, 19, 20, 21, 22, 23, 28})   # CHLD CONT STOP TSTP TTIN TTOU URG WINCH


def ended_by(info: SigInfo | None) -> bool:
    """Whether the signal of a core is one that ends a process (every signal the kernel dumps
    a core for does), rather than none or a stop."""
    return info is not None and info.signo > 0 and info.signo not in NOT_FATAL


def exception_for(info: SigInfo, rip: int) -> ExceptionInfo:
    """The last-chance exception of the signal `info` in a thread stopped at `rip`."""
    return exception_for_signal(info.signo, info.code, info.addr, rip, False)
