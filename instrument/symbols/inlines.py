"""Inlined calls at a pc, from DWARF (DW_TAG_inlined_subroutine), for frames as gdb shows them.

At -O2 a pc often lies in code inlined from another function (libc's
__pthread_kill_internal in pthread_kill, Rust's ptr::write_volatile): gdb shows
one frame per inlined call, each at the line of its call (DW_AT_call_file,
DW_AT_call_line). Only the compilation unit of the pc is read (.debug_aranges),
and of it only the DIEs on the way to the pc: siblings are skipped by
DW_AT_sibling, the children of a function that does not hold the pc never read.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Iterator

from .demangle import demangle_many, is_mangled
from .lineprog import DieReader, Unsupported
from .lines import ModuleLines, cu_file_table

# DIEs whose children may hold code, with their own ranges; and scopes without ranges
# whose children may still be functions (C++ classes, Rust's and C++'s namespaces).
_CODE_SCOPES = {"DW_TAG_subprogram", "DW_TAG_lexical_block", "DW_TAG_inlined_subroutine"}
_NAME_SCOPES = {"DW_TAG_namespace", "DW_TAG_module", "DW_TAG_structure_type", "DW_TAG_class_type",
                "DW_TAG_union_type", "DW_TAG_enumeration_type"}
# The same by number, for lineprog.DieReader (DW_TAG_* values of DWARF 5 section 7.5.3).
_INLINED = 0x1D
_CODE_TAGS = frozenset({0x2E, 0x0B, _INLINED})
_NAME_TAGS = frozenset({0x39, 0x1E, 0x13, 0x02, 0x17, 0x04})
_LOW_PC, _HIGH_PC, _RANGES = 0x11, 0x12, 0x55
_FORM_ADDR, _FORM_RNGLISTX = 0x01, 0x23
_MAX_DEPTH = 64
_CACHE_LIMIT = 4096


@dataclass(frozen=True)
class InlinedCall:
    """One inlined call around a pc: the function inlined, and where it was called from."""

    function: str
    call_file: str | None
    call_line: int | None


class InlineIndex:
    """The inlined calls around link-time addresses of one module, innermost first."""

    def __init__(self, lines: ModuleLines) -> None:
        self._lines = lines
        self._dwarf = lines.dwarf
        self._lock = threading.RLock()
        self._cache: dict[int, tuple[InlinedCall, ...]] = {}
        self._files: dict[int, dict[int, str]] = {}
        self._reader: DieReader | None | bool = False     # False: not made yet; None: cannot be

    def at(self, address: int) -> tuple[InlinedCall, ...]:
        with self._lock:
            found = self._cache.get(address)
            if found is None:
                try:
                    found = self._find(address)
                except Exception:  # noqa: BLE001 - malformed DWARF costs the inline frames only
                    found = ()
                if len(self._cache) >= _CACHE_LIMIT:
                    self._cache.clear()
                self._cache[address] = found
            return found

    def _find(self, address: int) -> tuple[InlinedCall, ...]:
        cu = self._lines.cu_at(address)
        if cu is None:
            return ()
        top = cu.get_top_DIE()
        base = _attr(top, "DW_AT_low_pc") or 0
        chain: list[Any] = []
        offsets = self._fast_chain(cu, top, address, base)
        if offsets is not None:
            chain = [cu.get_DIE_from_refaddr(offset) for offset in offsets]
        else:
            self._walk(top, address, cu, base, chain, 0)
        if not chain:
            return ()
        files = self._files.get(cu.cu_offset)
        if files is None:
            files = self._files[cu.cu_offset] = cu_file_table(self._dwarf, cu)
        names = _names([self._origin_name(d) for d in chain])
        out = []
        for die, name in zip(reversed(chain), reversed(names)):
            file_index = _attr(die, "DW_AT_call_file")
            out.append(InlinedCall(name or "??", files.get(file_index) if file_index is not None else None,
                                   _attr(die, "DW_AT_call_line")))
        return tuple(out)

    def _fast_chain(self, cu: Any, top: Any, address: int, base: int) -> list[int] | None:
        """The offsets of the inlined-call DIEs around `address`, outermost first, walked
        with lineprog.DieReader; None where it cannot (then pyelftools walks, _walk)."""
        if self._reader is False:
            try:
                self._reader = DieReader(self._dwarf)
            except Unsupported:
                self._reader = None
        reader = self._reader
        if not isinstance(reader, DieReader) or not top.has_children:
            return None
        chain: list[int] = []
        try:
            self._fast_walk(reader, cu, top.offset + top.size, address, base, chain, 0)
        except (Unsupported, IndexError, ValueError):
            return None
        return chain

    def _fast_walk(self, reader: DieReader, cu: Any, first: int, address: int, base: int, chain: list[int],
                   depth: int) -> bool:
        if depth > _MAX_DEPTH:
            return False
        for offset, tag, has_children, attrs, child in reader.children(cu, first):
            if tag in _CODE_TAGS:
                if not self._fast_contains(attrs, address, cu, base):
                    continue
                if tag == _INLINED:
                    chain.append(offset)
                if has_children:
                    self._fast_walk(reader, cu, child, address, base, chain, depth + 1)
                return True
            if tag in _NAME_TAGS and has_children:
                if self._fast_walk(reader, cu, child, address, base, chain, depth + 1):
                    return True
        return False

    def _fast_contains(self, attrs: dict[int, tuple[int, int]], address: int, cu: Any, base: int) -> bool:
        low, high = attrs.get(_LOW_PC), attrs.get(_HIGH_PC)
        if low is not None and high is not None:
            if low[0] != _FORM_ADDR:
                raise Unsupported("an indexed low_pc (DW_FORM_addrx)")
            # DWARF 4+: a high_pc of a constant class is a length, not an address.
            end = high[1] if high[0] == _FORM_ADDR else low[1] + high[1]
            return low[1] <= address < end
        ranges = attrs.get(_RANGES)
        if ranges is None or ranges[0] == _FORM_RNGLISTX:
            return False       # an index into the CU's rnglists table (split DWARF): not read, as _ranges
        lists = self._dwarf.range_lists()
        if lists is None:
            return False
        for entry in lists.get_range_list_at_offset(ranges[1], cu=cu):
            if hasattr(entry, "base_address"):
                base = entry.base_address
            elif getattr(entry, "is_absolute", False):
                if entry.begin_offset <= address < entry.end_offset:
                    return True
            elif base + entry.begin_offset <= address < base + entry.end_offset:
                return True
        return False

    def _walk(self, die: Any, address: int, cu: Any, base: int, chain: list[Any], depth: int) -> bool:
        if depth > _MAX_DEPTH:
            return False
        for child in die.iter_children():
            tag = child.tag
            if tag in _CODE_SCOPES:
                if not self._contains(child, address, cu, base):
                    continue
                if tag == "DW_TAG_inlined_subroutine":
                    chain.append(child)
                self._walk(child, address, cu, base, chain, depth + 1)
                return True
            if tag in _NAME_SCOPES and child.has_children:
                if self._walk(child, address, cu, base, chain, depth + 1):
                    return True
        return False

    def _contains(self, die: Any, address: int, cu: Any, base: int) -> bool:
        return any(lo <= address < hi for lo, hi in self._ranges(die, cu, base))

    def _ranges(self, die: Any, cu: Any, base: int) -> Iterator[tuple[int, int]]:
        attrs = die.attributes
        low = attrs.get("DW_AT_low_pc")
        high = attrs.get("DW_AT_high_pc")
        if low is not None and high is not None:
            # DWARF 4+: a high_pc of a constant class is a length, not an address.
            end = high.value if high.form == "DW_FORM_addr" else low.value + high.value
            yield low.value, end
            return
        ranges = attrs.get("DW_AT_ranges")
        if ranges is None:
            return
        lists = self._dwarf.range_lists()
        if lists is None:
            return
        if ranges.form == "DW_FORM_rnglistx":
            return              # an index into the CU's rnglists table (split DWARF): not read
        entries = lists.get_range_list_at_offset(ranges.value, cu=cu)
        for entry in entries:
            if hasattr(entry, "base_address"):
                base = entry.base_address
            elif getattr(entry, "is_absolute", False):
                yield entry.begin_offset, entry.end_offset
            else:
                yield base + entry.begin_offset, base + entry.end_offset

    def _origin_name(self, die: Any) -> str | None:
        """The linkage name (to demangle) or plain name of an inlined call's function."""
        seen = 0
        while die is not None and seen < 8:
            seen += 1
            attrs = die.attributes
            for key in ("DW_AT_linkage_name", "DW_AT_MIPS_linkage_name", "DW_AT_name"):
                if key in attrs:
                    value = attrs[key].value
                    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            ref = next((k for k in ("DW_AT_abstract_origin", "DW_AT_specification") if k in attrs), None)
            die = die.get_DIE_from_attribute(ref) if ref is not None else None
        return None


def _attr(die: Any, name: str) -> Any:
    attr = die.attributes.get(name)
    return attr.value if attr is not None else None


def _names(raw: list[str | None]) -> list[str | None]:
    """Demangled, without C++ parameter lists (gdb prints `ns::f`, not `ns::f(int)`)."""
    from .demangle import without_parameters

    mangled = [n for n in raw if n is not None and is_mangled(n)]
    plain = dict(zip(mangled, demangle_many(mangled)))
    return [without_parameters(plain.get(n, n)) if n is not None else None for n in raw]
