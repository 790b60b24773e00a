"""The target's stderr pipe read without a thread: O_ASYNC makes the kernel send us SIGIO when it has data.

launch.StderrPump reads the pipe in a thread of its own. Starting that thread
costs 1.5-3 ms per target on a loaded machine (Thread.start waits until the new
thread has run once), about a tenth of a whole triage of one crash, and every
chunk it reads wakes the main thread with a signal anyway. Here the pipe is
non-blocking and F_SETOWN/O_ASYNC: each write by the target raises SIGIO, whose
handler (launch.WaitAlarm) counts it and interrupts a blocked wait as the
thread's wake-up did; the lines are read in the main thread, when the backend
looks for them before its next wait. Signal handlers are a main-thread affair,
so a backend used from another thread keeps the threaded pump.

When the target has exited, `take(final=True)` reads what is in the pipe: all
the target wrote before it went (the kernel closes a process's files before its
exit status is reported). Then the pipe is at end of file and closed, unless a
child of the target still holds it: a thread then passes its later writes
through to our stderr until it closes its end, as launch.StderrPump would, so
it never blocks on a full pipe or dies of SIGPIPE for want of a reader.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections import deque
from typing import Callable

from ...events import DebugStringInfo


class SignalPump:
    """Same interface as launch.StderrPump: pending(), take(final), join(timeout), close()."""

    def __init__(self, fd: int, news: Callable[[], int]) -> None:
        self._fd: int | None = fd
        self._news = news          # SIGIOs seen so far (WaitAlarm's count)
        self._seen = -1            # so the first look reads
        self._lines: deque[DebugStringInfo] = deque()
        self._partial = b""
        fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK | os.O_ASYNC)

    def _read(self) -> None:
        fd = self._fd
        while fd is not None:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:          # end of file: every writer is gone
                self.close()
                return
            write_all(2, chunk)
            *lines, self._partial = (self._partial + chunk).split(b"\n")
            self._lines.extend(DebugStringInfo(line.decode("utf-8", "replace")) for line in lines)

    def pending(self) -> bool:
        """Lines are waiting (asked before every wait: no system call unless SIGIO came)."""
        if self._fd is not None:
            count = self._news()
            if count != self._seen:
                self._seen = count
                self._read()
        return bool(self._lines)

    def take(self, final: bool) -> list[DebugStringInfo]:
        """The lines read so far; with `final` (the target has exited) every line it wrote."""
        if final and self._fd is not None:
            self._read()
            if self._fd is not None:          # not at end of file: a child holds the pipe
                self._hand_over()
            self.close()
        out: list[DebugStringInfo] = []
        while self._lines:
            out.append(self._lines.popleft())
        return out

    def _hand_over(self) -> None:
        fd, self._fd = self._fd, None
        assert fd is not None
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~(os.O_NONBLOCK | os.O_ASYNC))
        threading.Thread(target=_pass_through, args=(fd,), name=f"instrument-stderr-{fd}", daemon=True).start()

    def join(self, timeout: float) -> None:
        self.take(final=True)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._partial:          # the target is gone: its last line has no newline to wait for
            self._lines.append(DebugStringInfo(self._partial.decode("utf-8", "replace")))
            self._partial = b""


def _pass_through(fd: int) -> None:
    try:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            write_all(2, chunk)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except OSError:
            return   # our own stderr is gone; the debug strings still go to the engine
