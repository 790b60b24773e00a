"""Memory breakpoints on Windows: PAGE_GUARD on the pages of watched ranges.

PAGE_GUARD is one-shot: the first access to a guarded page raises
STATUS_GUARD_PAGE_VIOLATION and the system removes the guard from that page.
So after every hit, reported or not, the faulting thread must execute the
access (one single step) and the guard be put back. The step and the re-arm
are the backend's job; this module keeps the book: which pages, which
ranges, which original protections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ...errors import DebuggerError
from ...events import Access
from . import _ffi

PAGE = 0x1000

# protect(address, size, new_protection) -> old protection (VirtualProtectEx)
Protect = Callable[[int, int, int], int]
# query(address) -> current protection of that page (VirtualQueryEx)
Query = Callable[[int], int]


@dataclass(frozen=True)
class WatchedRange:
    address: int
    size: int
    access: str                      # "write" | "any"

    def matches(self, fault_address: int, access: Access | None) -> bool:
        inside = self.address <= fault_address < self.address + self.size
        return inside and (self.access == "any" or access == Access.WRITE)


@dataclass
class GuardBook:
    """Watched ranges of one process and the protections of their pages."""

    ranges: dict[int, WatchedRange] = field(default_factory=dict)
    original: dict[int, int] = field(default_factory=dict)   # page -> protection without guard

    def pages_of(self, address: int, size: int) -> list[int]:
        first = address - address % PAGE
        return list(range(first, address + max(size, 1), PAGE))

    def guarded_pages(self) -> set[int]:
        return {p for r in self.ranges.values() for p in self.pages_of(r.address, r.size)}

    def owns(self, address: int) -> bool:
        return (address - address % PAGE) in self.original

    def hit(self, fault_address: int, access: Access | None) -> bool:
        """True when the access falls inside a watched range (a reportable hit)."""
        return any(r.matches(fault_address, access) for r in self.ranges.values())

    def add(self, watched: WatchedRange, protect: Protect, query: Query) -> None:
        if watched.address in self.ranges:
            raise DebuggerError(f"a memory breakpoint already starts at {watched.address:#x}")
        self.ranges[watched.address] = watched
        for page in self.pages_of(watched.address, watched.size):
            if page not in self.original:
                current = query(page)
                if current & _ffi.PAGE_GUARD:
                    # The target's own guard page (a stack's): it would fire for
                    # the target's purposes and we would misreport it.
                    del self.ranges[watched.address]
                    raise DebuggerError(f"page {page:#x} is already a guard page")
                self.original[page] = current
            self.arm(page, protect)

    def remove(self, address: int, protect: Protect) -> None:
        watched = self.ranges.pop(address, None)
        if watched is None:
            raise DebuggerError(f"no memory breakpoint starts at {address:#x}")
        still = self.guarded_pages()
        for page in self.pages_of(watched.address, watched.size):
            if page not in still:
                self.disarm(page, protect)
                del self.original[page]

    def arm(self, page: int, protect: Protect) -> None:
        if page in self.original:
            protect(page, PAGE, self.original[page] | _ffi.PAGE_GUARD)

    def disarm(self, page: int, protect: Protect) -> None:
        if page in self.original:
            protect(page, PAGE, self.original[page])

    def clear(self, protect: Protect) -> None:
        """Restore every page's protection (detach, kill)."""
        for page in list(self.original):
            self.disarm(page, protect)
        self.ranges.clear()
        self.original.clear()
