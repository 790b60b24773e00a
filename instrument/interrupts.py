"""SIGINT and SIGTERM, delivered only where the debugger can stop safely.

A Python signal handler runs between any two bytecodes. Raising from it in
the middle of a breakpoint hit would leave a thread with a rewound pc that
was never written back, or an int3 half restored. So the handler raises only
while the debugger is blocked waiting for the next debug event (`waiting`,
set by the backend around its blocking wait, which must lose nothing when
interrupted); anywhere else it records the signal, and the engine's loop
raises it at its next safe point (`check`).
"""

from __future__ import annotations

import contextlib
import signal
from typing import Any, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGINT or SIGTERM asked the session to end (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _State:
    waiting = False            # the backend is blocked in a wait that loses nothing if interrupted
    pending: int | None = None


state = _State()


def _handler(signum: int, frame: Any) -> None:
    if state.waiting:
        raise Interrupted(signum)
    state.pending = signum


def check() -> None:
    """Raise a SIGINT/SIGTERM that arrived while we were busy."""
    if state.pending is not None:
        signum, state.pending = state.pending, None
        raise Interrupted(signum)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Route SIGINT and SIGTERM through the safe-point handler while the block runs."""
    previous = {}
    try:
        for signum in SIGNALS:
            previous[signum] = signal.signal(signum, _handler)
    except ValueError:          # not the main thread: signals stay as they are
        for signum, old in previous.items():
            signal.signal(signum, old)
        yield
        return
    state.pending = None
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        state.waiting = False


@contextlib.contextmanager
def ignored() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM (while putting the target back together)."""
    previous = {}
    try:
        for signum in SIGNALS:
            previous[signum] = signal.signal(signum, signal.SIG_IGN)
    except ValueError:
        pass
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
