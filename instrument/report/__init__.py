"""Reporters: the only place that formats output for people (and for machines)."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Iterator


class Flushing:
    """Flushes its stream at most every FLUSH_INTERVAL seconds while records flow,
    so `tail -f` on an output file keeps up without a write per record."""

    FLUSH_INTERVAL = 0.2

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._last_flush = time.monotonic()

    def write(self, text: str) -> None:
        self.stream.write(text)
        now = time.monotonic()
        if now - self._last_flush >= self.FLUSH_INTERVAL:
            self.stream.flush()
            self._last_flush = now

    def close(self) -> None:
        self.stream.flush()


def open_output(path: str, mode: str = "w", buffering: int = -1) -> Any:
    """Open an output file the user named with -o; a one-line UsageError when we cannot."""
    from ..errors import UsageError

    try:
        return open(path, mode, encoding="utf-8", buffering=buffering)
    except OSError as e:
        raise UsageError(f"cannot write -o {path}: {e.strerror or e}") from None


def check_output(path: str | None) -> None:
    """Fail now, before any work, when -o names a file we will not be able to write."""
    if path:
        open_output(path, "a").close()


@contextlib.contextmanager
def open_reporter(fmt: str, output: str | None) -> Iterator[Any]:
    """A reporter writing `fmt` records to `output` (a path) or stdout; flushed on every exit."""
    from .jsonl import JsonlReporter
    from .text import TextReporter

    stream = open_output(output, "w", buffering=1 << 16) if output else sys.stdout
    reporter = JsonlReporter(stream) if fmt == "jsonl" else TextReporter(stream)
    try:
        yield reporter
    finally:
        reporter.close()
        if output:
            stream.close()
