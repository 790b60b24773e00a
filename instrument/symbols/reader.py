"""Reading a target's memory through a plain callable: what a reader may raise, the readable prefix of a window."""

from __future__ import annotations

import struct
from typing import Callable

from ..errors import InstrumentError

ReadMemory = Callable[[int, int], bytes]

# What a memory reader may raise for an unreadable address: the backends raise
# DebuggerError, /proc/PID/mem raises OSError, a fake reader may raise ValueError.
MEMORY_ERRORS: tuple[type[BaseException], ...] = (OSError, InstrumentError, ValueError, struct.error)


def try_read(read_memory: ReadMemory, address: int, size: int) -> bytes | None:
    """`size` bytes at address, or None when the reader cannot read them."""
    try:
        return read_memory(address, size)
    except MEMORY_ERRORS:
        return None


def read_available(read_memory: ReadMemory, address: int, size: int) -> bytes:
    """Read up to `size` bytes at address, stopping early where memory stops being readable."""
    whole = try_read(read_memory, address, size)
    if whole is not None:
        return whole
    # The window crosses into unreadable memory (the end of a mapping, or the
    # end of a fake reader's buffer): bisect for the readable prefix.
    readable, unreadable = 0, size
    while unreadable - readable > 1:
        middle = (readable + unreadable) // 2
        if try_read(read_memory, address, middle) is not None:
            readable = middle
        else:
            unreadable = middle
    return (try_read(read_memory, address, readable) or b"") if readable else b""
