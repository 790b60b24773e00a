"""Guard-page bookkeeping of the Linux backend: page arithmetic, protections, each process's watched ranges."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...arch.x86_64 import page_of
from ...events import Access
from . import _ffi
from ..watches import WatchBook

PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0, 1, 2, 4


def prot_of(perms: str) -> int:
    """`rw-p` (a /proc/PID/maps permission field) -> PROT_READ|PROT_WRITE."""
    return ((PROT_READ if perms[0] == "r" else 0) | (PROT_WRITE if perms[1] == "w" else 0)
            | (PROT_EXEC if perms[2] == "x" else 0))


@dataclass
class GuardBook(WatchBook):
    """One process's watched ranges (backend/watches.py, shared with Windows) and what
    we did to the protection of their pages from outside (mprotect injected)."""

    applied: dict[int, int] = field(default_factory=dict)              # page -> protection we set
    syscall: int | None = None                                         # a `syscall` instruction
    released: dict[int, int] = field(default_factory=dict)             # page -> protection given back
    # page -> the threads whose system call has it open now (guardcalls.py): kept open
    # until the last of those calls ends, whatever else wants it closed meanwhile.
    lent: dict[int, set[int]] = field(default_factory=dict)

    def copy(self) -> GuardBook:
        """The same book for a fork child: its memory, protections included, is a copy."""
        return GuardBook(dict(self.ranges), dict(self.original), dict(self.applied), self.syscall,
                         dict(self.released))

    def owns(self, address: int) -> bool:
        return page_of(address) in self.applied

    def wanted(self, page: int) -> int | None:
        """The protection `page` needs now; None: no range left on it (give it back)."""
        kinds = self.kinds_on(page)
        if not kinds:
            return None
        if "any" in kinds:
            return PROT_NONE          # the strictest range on the page wins
        return self.original[page] & ~PROT_WRITE


@dataclass
class GuardFault:
    """A thread stopped on a guarded page: the pages its instruction needs open to complete."""

    pages: frozenset[int]


@dataclass
class GuardCall:
    """A thread's call that has (or is getting) guarded pages opened for it."""

    saved: _ffi.UserRegs                  # the registers at its entry, as the thread had them
    pages: list[int]                      # the pages lent to it (book.lent)
    runs: list[tuple[int, int, int]]      # mprotects still to make before it re-enters
    opening: bool = False                 # the swapped mprotect has not come back yet
    entered: tuple[int, tuple[int, ...]] | None = None   # (number, args) of the re-entered call
    spans: list[tuple[int, int, Access, str]] = field(default_factory=list)
