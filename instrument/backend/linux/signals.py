"""Signals in the Linux backend: job-control stops; the signal -> exception table is backend/siginfo.py."""

from __future__ import annotations

import signal

from ..siginfo import exception_for_signal, signal_name

__all__ = ["STOP_SIGNALS", "exception_for_signal", "signal_name"]

# Signals whose delivery stops a process (job control): resumed with PTRACE_LISTEN.
STOP_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
