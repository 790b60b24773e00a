"""Guard-page bookkeeping of the Linux backend: page arithmetic, protections, each process's watched ranges."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...arch.x86_64 import PAGE_SIZE, page_of
from ...events import Access

PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0, 1, 2, 4


def prot_of(perms: str) -> int:
    """`rw-p` (a /proc/PID/maps permission field) -> PROT_READ|PROT_WRITE."""
    return ((PROT_READ if perms[0] == "r" else 0) | (PROT_WRITE if perms[1] == "w" else 0)
            | (PROT_EXEC if perms[2] == "x" else 0))


@dataclass
class GuardBook:
    """One process's watched ranges and what we did to the protection of their pages."""

    ranges: dict[int, tuple[int, str]] = field(default_factory=dict)   # start -> (size, "write"|"any")
    original: dict[int, int] = field(default_factory=dict)             # page -> protection before us
    applied: dict[int, int] = field(default_factory=dict)              # page -> protection we set
    syscall: int | None = None                                         # a `syscall` instruction
    released: dict[int, int] = field(default_factory=dict)             # page -> protection given back

    def copy(self) -> GuardBook:
        """The same book for a fork child: its memory, protections included, is a copy."""
        return GuardBook(dict(self.ranges), dict(self.original), dict(self.applied), self.syscall,
                         dict(self.released))

    def owns(self, address: int) -> bool:
        return page_of(address) in self.applied

    def wanted(self, page: int) -> int | None:
        """The protection `page` needs now; None: no range left on it (give it back)."""
        kinds = {access for start, (size, access) in self.ranges.items()
                 if start < page + PAGE_SIZE and page < start + size}
        if not kinds:
            return None
        if "any" in kinds:
            return PROT_NONE          # the strictest range on the page wins
        return self.original[page] & ~PROT_WRITE

    def match(self, lo: int, hi: int, access: Access) -> int | None:
        """The first byte of [lo, hi) inside a range that watches `access`; None: a silent fault."""
        best: int | None = None
        for start, (size, kind) in self.ranges.items():
            if kind == "write" and access != Access.WRITE:
                continue
            first = max(lo, start)
            if first < min(hi, start + size) and (best is None or first < best):
                best = first
        return best


@dataclass
class GuardFault:
    """A thread stopped on a guarded page: the pages its instruction needs open to complete."""

    pages: frozenset[int]
