"""Where reports go: output files the user named, and a stream flushed while records flow."""

from __future__ import annotations

import time
from typing import Literal, TextIO

from ..errors import UsageError


class Flushing:
    """Flushes its stream at most every FLUSH_INTERVAL seconds while records flow,
    so `tail -f` on an output file keeps up without a write per record."""

    FLUSH_INTERVAL = 0.2

    def __init__(self, stream: TextIO) -> None:
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


def open_output(path: str, mode: Literal["w", "a"] = "w", buffering: int = -1) -> TextIO:
    """Open an output file the user named with -o; a one-line UsageError when we cannot."""
    try:
        return open(path, mode, encoding="utf-8", buffering=buffering)
    except OSError as e:
        raise UsageError(f"cannot write -o {path}: {e.strerror or e}") from None


def check_output(path: str | None) -> None:
    """Fail now, before any work, when -o names a file we will not be able to write."""
    if path:
        open_output(path, "a").close()
