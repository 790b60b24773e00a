"""The call frame information of one ELF file (.eh_frame via .eh_frame_hdr, .debug_frame), indexed by address."""

from __future__ import annotations

import io
import struct
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

from elftools.dwarf.callframe import FDE, CallFrameInfo
from elftools.dwarf.structs import DWARFStructs
from elftools.elf.elffile import ELFFile

from ..errors import TargetError
from .filecache import FileCache


@dataclass
class _FdeSource:
    """The FDEs of one CFI section, sorted by start; FDEs parsed only when looked up."""

    cfi: CallFrameInfo
    starts: list[int]
    offsets: list[int]                       # section offsets of the FDEs
    ends: list[int] | None = None            # known when the whole section was parsed
    parsed: dict[int, FDE] = field(default_factory=dict)

    def find(self, pc: int) -> FDE | None:
        i = bisect_right(self.starts, pc) - 1
        if i < 0:
            return None
        if self.ends is not None and pc >= self.ends[i]:
            return None
        fde = self.parsed.get(self.offsets[i])
        if fde is None:
            # pyelftools has no public "parse the entry at this offset"; the
            # whole-section parse costs ~0.5 s for libc, so use its internal one.
            entry = self.cfi._parse_entry_at(self.offsets[i])
            if not isinstance(entry, FDE):
                return None
            fde = self.parsed[self.offsets[i]] = entry
        start = fde["initial_location"]
        return fde if start <= pc < start + fde["address_range"] else None


class ModuleCFI:
    """The call frame information of one ELF file, indexed by link-time address."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sources: list[_FdeSource] = []
        self._debug_sources: list[_FdeSource] | None = None
        self._rows: dict[int, tuple[list[int], list[dict[Any, Any]]]] = {}
        with open(path, "rb") as f:
            elf = ELFFile(f)
            structs = DWARFStructs(little_endian=elf.little_endian, dwarf_format=32,
                                   address_size=elf.elfclass // 8)
            self.sources.extend(_eh_sources(elf, structs))
            self.sources.extend(_debug_frame_sources(elf, structs))

    def _from_debug_file(self) -> list[_FdeSource]:
        """The separate debug file's .debug_frame, read on the first pc .eh_frame lacks
        (code built with -fno-asynchronous-unwind-tables keeps its CFI only there)."""
        if self._debug_sources is None:
            self._debug_sources = []
            from .debugfiles import find_debug_file
            debug = find_debug_file(self.path)
            if debug is not None:
                try:
                    with open(debug, "rb") as f:
                        elf = ELFFile(f)
                        structs = DWARFStructs(little_endian=elf.little_endian, dwarf_format=32,
                                               address_size=elf.elfclass // 8)
                        self._debug_sources = _debug_frame_sources(elf, structs)
                except Exception:  # noqa: BLE001 - as in _parse_cfi: an odd file has no CFI
                    self._debug_sources = []
        return self._debug_sources

    def find_fde(self, pc: int) -> FDE | None:
        """The FDE covering link-time address pc: .eh_frame, then .debug_frame, then the
        debug file's .debug_frame."""
        for source in (*self.sources, *self._from_debug_file()):
            fde = source.find(pc)
            if fde is not None:
                return fde
        return None

    def row(self, pc: int) -> tuple[dict[Any, Any], int] | None:
        """The decoded CFI row for pc and the return-address column, or None."""
        fde = self.find_fde(pc)
        if fde is None:
            return None
        cached = self._rows.get(id(fde))
        if cached is None:
            table = fde.get_decoded().table
            cached = self._rows[id(fde)] = ([r["pc"] for r in table], table)
        pcs, rows = cached
        i = bisect_right(pcs, pc) - 1
        if i < 0:
            return None
        cie = fde.cie            # an FDE always has one; None only in a CIE's type
        if cie is None:
            return None
        return rows[i], cie["return_address_register"]


def _eh_sources(elf: ELFFile, structs: DWARFStructs) -> list[_FdeSource]:
    """.eh_frame, indexed through .eh_frame_hdr where it has one."""
    eh = elf.get_section_by_name(".eh_frame")
    if eh is None or eh["sh_type"] == "SHT_NOBITS" or not eh["sh_size"]:
        return []
    cfi = CallFrameInfo(io.BytesIO(eh.data()), eh["sh_size"], eh["sh_addr"], structs, for_eh_frame=True)
    hdr = elf.get_section_by_name(".eh_frame_hdr")
    source = _hdr_source(cfi, hdr.data(), hdr["sh_addr"], eh["sh_addr"]) if hdr else None
    return [source or _parsed_source(cfi)]


def _debug_frame_sources(elf: ELFFile, structs: DWARFStructs) -> list[_FdeSource]:
    dbg = elf.get_section_by_name(".debug_frame")
    if dbg is None or dbg["sh_type"] == "SHT_NOBITS" or not dbg["sh_size"]:
        return []
    data = dbg.data()
    cfi = CallFrameInfo(io.BytesIO(data), len(data), 0, structs, for_eh_frame=False)
    return [_parsed_source(cfi)]


def _hdr_source(cfi: CallFrameInfo, hdr: bytes, hdr_addr: int, eh_addr: int) -> _FdeSource | None:
    """Read .eh_frame_hdr's binary search table (the one the runtime unwinder uses)."""
    if len(hdr) < 12:
        return None
    version, ptr_enc, count_enc, table_enc = hdr[0], hdr[1], hdr[2], hdr[3]
    # Every toolchain we know emits pcrel|sdata4, udata4, datarel|sdata4; for
    # anything else parse the whole section instead.
    if (version, ptr_enc, count_enc, table_enc) != (1, 0x1B, 0x03, 0x3B):
        return None
    (count,) = struct.unpack_from("<I", hdr, 8)
    if len(hdr) < 12 + 8 * count:
        return None
    pairs = struct.unpack_from(f"<{2 * count}i", hdr, 12)
    starts = [hdr_addr + pairs[2 * i] for i in range(count)]
    offsets = [hdr_addr + pairs[2 * i + 1] - eh_addr for i in range(count)]
    return _FdeSource(cfi, starts, offsets)


def _parsed_source(cfi: CallFrameInfo) -> _FdeSource:
    """Parse a whole CFI section (no search table) and sort its FDEs."""
    fdes = sorted((e for e in cfi.get_entries() if isinstance(e, FDE)), key=lambda e: e["initial_location"])
    source = _FdeSource(cfi, [e["initial_location"] for e in fdes], [e.offset for e in fdes],
                        [e["initial_location"] + e["address_range"] for e in fdes])
    source.parsed = {e.offset: e for e in fdes}
    return source


def _parse_cfi(real: str) -> ModuleCFI | None:
    try:
        return ModuleCFI(real)
    except Exception:  # noqa: BLE001
        # pyelftools raises a zoo (ELFError, DWARFError, construct errors,
        # asserts) on odd files; an unparsable module just has no CFI.
        return None


_cfi_cache: FileCache[ModuleCFI | None] = FileCache(_parse_cfi)


def module_cfi(path: str) -> ModuleCFI | None:
    """The CFI of an ELF file, parsed once per file version; None if unreadable."""
    try:
        return _cfi_cache.get(path)
    except TargetError:
        return None
