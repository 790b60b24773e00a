"""One int3 byte in one process, as a state machine, and the returns that wait on one.

A `SoftSite` is shared by every user of its address: recipe breakpoints,
pending `on_return`s (RETURN_USER), an indirect function's resolver we wait
to see run (IFUNC_USER). It is in the target exactly while it has users.
Nothing here talks to a backend on construction or deletion: each transition
is an explicit call with the reader/writer it needs (HOUSE.md rule 5).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import DebuggerError

INT3 = b"\xcc"
MAX_INSTRUCTION = 15
RETURN_USER = "\0return"      # the SoftSite user that stands for pending on_returns
IFUNC_USER = "\0resolver"     # ... for an indirect function's resolver we wait to see run

NOT_DECODED: Any = object()   # SoftSite.emulation before the site's first hit

Read = Callable[[int, int], bytes]
Write = Callable[[int, bytes], None]


class SiteState(enum.Enum):
    """Where an int3 is; WinAppDbg's code breakpoint states, as the byte lives them."""

    OUT = "out"            # the original byte is in memory: not inserted yet, or removed
    IN = "in"              # our int3 is in memory
    RUNNING = "running"    # out while one thread steps over the original instruction; back after


@dataclass
class SoftSite:
    """One int3 in one process, shared by every user of that address."""

    address: int
    original: bytes = b""
    state: SiteState = SiteState.OUT
    users: set[str] = field(default_factory=set)     # breakpoint ids, RETURN_USER, IFUNC_USER
    code: bytes = b""      # the original instruction bytes from `address` on (for emulation)
    # `code` decoded once (arch compile_emulation): NOT_DECODED until the first hit, then
    # the emulation, or None when the instruction is single-stepped.
    emulation: Any = NOT_DECODED

    def insert(self, read: Read, write: Write) -> None:
        """OUT -> IN."""
        if self.state is SiteState.IN:
            return
        if not self.original:
            self.code = _read_code(read, self.address)
            self.original = self.code[:1]
        write(self.address, INT3)
        self.state = SiteState.IN

    def remove(self, write: Write) -> None:
        """IN -> OUT."""
        if self.state is SiteState.IN:
            write(self.address, self.original)
            self.state = SiteState.OUT

    def step_out(self, write: Write) -> None:
        """IN -> RUNNING: the original byte goes back for one single-step."""
        write(self.address, self.original)
        self.state = SiteState.RUNNING

    def step_back(self, write: Write, *, keep: bool) -> None:
        """RUNNING -> IN once the step is done, or OUT when `keep` is False (its users
        went meanwhile, or its process did); OUT too when the write fails."""
        self.state = SiteState.OUT
        if keep:
            write(self.address, INT3)
            self.state = SiteState.IN


def _read_code(read: Read, address: int) -> bytes:
    """Up to one whole instruction's bytes, stopping at the page end (the next page may be unmapped)."""
    size = min(MAX_INSTRUCTION, 4096 - (address & 4095))
    try:
        return read(address, size)
    except DebuggerError:
        return read(address, 1)     # no emulation for this one; single-stepping needs only the byte


@dataclass(frozen=True)
class PendingReturn:
    """An `on_return` waiting for the call that hit `breakpoint_id` to return.

    Matched by thread and stack pointer: the return lands with rsp one slot
    above the rsp at entry, so recursive calls pair with their own frame."""

    breakpoint_id: str
    tid: int
    expected_rsp: int
    entry_args: tuple[int, ...]
    entry_hits: int
