"""Memory breakpoints on Windows: PAGE_GUARD on the pages of watched ranges.

PAGE_GUARD is one-shot: the first access to a guarded page raises
STATUS_GUARD_PAGE_VIOLATION and the system removes the guard from that page.
So after every hit, reported or not, the faulting thread must execute the
access (one single step) and the guard be put back. The step and the re-arm
are the backend's job; this module keeps the book (the shared `WatchBook`:
which ranges, which pages, which original protections) and sets the guard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ...arch.x86_64 import PAGE_SIZE, pages_of
from ...errors import DebuggerError
from ..watches import WatchBook, WatchedRange
from . import _ffi

__all__ = ["PAGE", "GuardBook", "Protect", "Query", "WatchedRange"]

PAGE = PAGE_SIZE

# protect(address, size, new_protection) -> old protection (VirtualProtectEx)
Protect = Callable[[int, int, int], int]
# query(address) -> current protection of that page (VirtualQueryEx)
Query = Callable[[int], int]


@dataclass
class GuardBook(WatchBook):
    """Watched ranges of one process, guarded with PAGE_GUARD."""

    def add(self, watched: WatchedRange, protect: Protect, query: Query) -> None:
        if watched.address in self.ranges:
            raise DebuggerError(f"a memory breakpoint already starts at {watched.address:#x}")
        self.ranges[watched.address] = watched
        for page in pages_of(watched.address, watched.size):
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
        still = self.pages()
        for page in pages_of(watched.address, watched.size):
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
