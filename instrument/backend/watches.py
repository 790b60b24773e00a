"""Memory-breakpoint bookkeeping both backends share: watched ranges, the pages under them, which access hits.

How a page is guarded differs (PAGE_GUARD on Windows, mprotect injected into
the target on Linux), and stays in each backend; which ranges are watched,
which pages they cover, what protection a page had before us, and whether an
access of some kind at some address is a reportable hit are the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..arch.x86_64 import PAGE_SIZE, page_of, pages_of
from ..events import Access

WATCH_ACCESSES = ("write", "any")


@dataclass(frozen=True)
class WatchedRange:
    """[address, address + size) watched for writes, or for any access."""

    address: int
    size: int
    access: str                      # "write" | "any"

    @property
    def end(self) -> int:
        return self.address + self.size

    def watches(self, access: Access | None) -> bool:
        """Whether an access of this kind is a hit of this range."""
        return self.access == "any" or access == Access.WRITE


@dataclass
class WatchBook:
    """One process's watched ranges, and the protection each page under them had before us."""

    ranges: dict[int, WatchedRange] = field(default_factory=dict)   # start -> range
    original: dict[int, int] = field(default_factory=dict)          # page -> protection before us

    def pages(self) -> set[int]:
        """Every page some watched range touches."""
        return {p for r in self.ranges.values() for p in pages_of(r.address, r.size)}

    def kinds_on(self, page: int) -> set[str]:
        """The accesses ("write", "any") the ranges on `page` watch."""
        return {r.access for r in self.ranges.values() if r.address < page + PAGE_SIZE and page < r.end}

    def owns(self, address: int) -> bool:
        """Whether the page of `address` is one we guard."""
        return page_of(address) in self.original

    def match(self, lo: int, hi: int, access: Access | None) -> int | None:
        """The first byte of [lo, hi) inside a range that watches `access`; None: no hit."""
        best: int | None = None
        for r in self.ranges.values():
            if not r.watches(access):
                continue
            first = max(lo, r.address)
            if first < min(hi, r.end) and (best is None or first < best):
                best = first
        return best

    def hit(self, address: int, access: Access | None) -> bool:
        """Whether an access of one byte at `address` is a reportable hit."""
        return self.match(address, address + 1, access) is not None
