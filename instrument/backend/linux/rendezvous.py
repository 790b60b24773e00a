"""Shared-object tracking through the dynamic linker's r_debug/link_map rendezvous.

The dynamic loader calls the empty function `_dl_debug_state` after every
change to its list of loaded objects (RT_ADD / RT_DELETE, then
RT_CONSISTENT). The backend puts its own int3 there; on each hit it walks
the link_map list from `_r_debug.r_map` and diffs it against what it has
reported. Nothing is polled.

Layouts (glibc <link.h>, x86-64):
    struct r_debug   { int r_version; struct link_map *r_map; ElfW(Addr) r_brk;
                       enum r_state; ElfW(Addr) r_ldbase; }   -> 0, 8, 16, 24, 32
    struct link_map  { ElfW(Addr) l_addr; char *l_name; ElfW(Dyn) *l_ld;
                       struct link_map *l_next, *l_prev; }  -> 0, 8, 16, 24, 32
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass, field
from typing import Callable

from ...symbols import elfread
from . import procfs

RT_CONSISTENT = 0
VDSO_NAME = "linux-vdso.so.1"
_MAX_OBJECTS = 4096       # a corrupt or cyclic list must not hang the debugger

Reader = Callable[[int, int], bytes]
Writer = Callable[[int, bytes], None]


@dataclass(frozen=True)
class ElfFacts:
    """What the backend needs from one ELF file on disk."""

    entry: int
    dynamic: bool                   # has a PT_INTERP (needs the dynamic loader)
    symbols: dict[str, int]         # the few .dynsym symbols asked for


@functools.lru_cache(maxsize=64)
def elf_facts(path: str, mtime_ns: int = 0) -> ElfFacts | None:
    """Entry point, PT_INTERP and the rendezvous symbols of `path` (cached per file version)."""
    wanted = ("_dl_debug_state", "_r_debug")
    try:
        with open(path, "rb") as f:
            h = elfread.read_headers(f)
            dynamic = any(seg.type == elfread.PT_INTERP for seg in h.segments)
            symbols: dict[str, int] = {}
            for sec in h.sections:
                if sec.type == elfread.SHT_DYNSYM and sec.name == ".dynsym":
                    for name, value, _size, _info, _shndx in elfread.symbols(f, h, sec):
                        if name in wanted:
                            symbols.setdefault(name, value)     # the first, as pyelftools' lookup gave
                    break
            return ElfFacts(h.entry, dynamic, symbols)
    except (OSError, elfread.NotElf, struct.error, IndexError):
        return None


def facts_of(path: str) -> ElfFacts | None:
    try:
        return elf_facts(path, os.stat(path).st_mtime_ns)
    except OSError:
        return None


def main_image_base(pid: int, image_path: str, aux: dict[int, int]) -> int | None:
    """Load bias of the main program: AT_ENTRY minus its link-time e_entry (0 for non-PIE)."""
    facts = facts_of(image_path)
    if facts is None or procfs.AT_ENTRY not in aux:
        return None
    return aux[procfs.AT_ENTRY] - facts.entry


def loader_path(pid: int, base: int) -> str | None:
    for m in procfs.maps(pid):
        if m.start == base and m.path.startswith("/"):
            return m.path
    return None


def _vdso_base(pid: int) -> int | None:
    for m in procfs.maps(pid):
        if m.path == "[vdso]":
            return m.start
    return None


@dataclass
class Rendezvous:
    """Module tracking for one process: the loader, its breakpoint, what was reported."""

    pid: int
    loader_path: str | None = None
    loader_base: int = 0
    brk: int | None = None            # runtime address of _dl_debug_state (our int3)
    r_debug: int | None = None        # runtime address of _r_debug
    saved: bytes | None = None        # the byte under our int3 while armed
    known: dict[int, str] = field(default_factory=dict)   # base -> path, as reported

    @classmethod
    def locate(cls, pid: int, aux: dict[int, int]) -> Rendezvous:
        """Find the dynamic loader from AT_BASE (0 for a static program: nothing to track)."""
        rv = cls(pid)
        base = aux.get(procfs.AT_BASE, 0)
        path = loader_path(pid, base) if base else None
        facts = facts_of(path) if path else None
        if path is None or facts is None:
            return rv
        rv.loader_path, rv.loader_base = path, base
        if "_dl_debug_state" in facts.symbols and "_r_debug" in facts.symbols:
            rv.brk = base + facts.symbols["_dl_debug_state"]
            rv.r_debug = base + facts.symbols["_r_debug"]
        return rv

    def arm(self, read: Reader, write: Writer) -> None:
        if self.brk is None or self.saved is not None:
            return
        self.saved = read(self.brk, 1)
        write(self.brk, b"\xcc")

    def disarm(self, write: Writer) -> None:
        if self.brk is not None and self.saved is not None:
            write(self.brk, self.saved)
        self.saved = None

    def mask(self, address: int, data: bytes) -> bytes:
        """`data` read at `address` with our int3 replaced by the original byte."""
        if self.saved is None or self.brk is None or not address <= self.brk < address + len(data):
            return data
        i = self.brk - address
        return data[:i] + self.saved + data[i + 1:]

    def objects(self, read: Reader) -> list[tuple[str, int]] | None:
        """(path, base) of each shared object in the link_map now, or None while the
        loader is mid-change (r_state != RT_CONSISTENT) or not initialised yet."""
        if self.r_debug is None:
            return None
        version, r_map, _brk, state = struct.unpack("<i4xQQi", read(self.r_debug, 28))
        if version == 0 or r_map == 0 or state != RT_CONSISTENT:
            return None
        result: list[tuple[str, int]] = []
        node = r_map
        for _ in range(_MAX_OBJECTS):
            if not node:
                break
            l_addr, l_name, l_ld, l_next = struct.unpack("<QQQQ", read(node, 32))
            name = _read_cstring(read, l_name) if l_name else ""
            if name:   # the main program has an empty l_name: it is not a DLL
                result.append((name, self._base_of(name, l_addr, l_ld)))
            node = l_next
        return result

    def _base_of(self, name: str, l_addr: int, l_ld: int) -> int:
        # The vDSO is linked at 0, so its l_addr is already its mapping address on
        # current kernels; older ones prelinked it elsewhere and left l_addr 0,
        # where the [vdso] mapping's start is the base a user expects.
        if l_addr == 0 and name == VDSO_NAME:
            return _vdso_base(self.pid) or l_addr
        return l_addr

    def sync(self, read: Reader) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """(loaded, unloaded) since the last sync, both as (path, base)."""
        now = self.objects(read)
        if now is None:
            return [], []
        current = {base: path for path, base in now}
        loaded = [(path, base) for base, path in current.items() if base not in self.known]
        unloaded = [(path, base) for base, path in self.known.items() if base not in current]
        self.known = current
        return loaded, unloaded


def _read_cstring(read: Reader, address: int, limit: int = 4096) -> str:
    out = b""
    while len(out) < limit:
        # Read up to the end of the page only: the next page may be unmapped.
        chunk = read(address + len(out), 256 - (address + len(out)) % 256)
        nul = chunk.find(b"\0")
        if nul >= 0:
            return (out + chunk[:nul]).decode("utf-8", "replace")
        out += chunk
    return out.decode("utf-8", "replace")
