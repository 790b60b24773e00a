"""DWARF read straight from its bytes where pyelftools is slow: line programs, aranges, abbreviations, the DIEs on the way to a pc.

pyelftools' decoder (LineProgram.get_entries) parses each opcode through
construct and copies its whole state object per row: libc's malloc.c CU, the
first frame of a heap crash, took about 0.3 s to decode that way, more than a
triage run spends on a dozen crashes. This reads the same state machine (DWARF 5
section 6.2) from the raw bytes with a precomputed table of special opcodes. It
takes pyelftools' parsed header (the file and directory tables stay its job) and
gives up, returning None, on what it does not handle: VLIW op_index
(maximum_operations_per_instruction > 1), big-endian files, DW_LNE_define_file;
the caller then uses pyelftools. .debug_aranges (address -> CU, some 2000 sets in
libc's debug file, 30-40 ms through construct) is read with struct likewise, and
so are abbreviation tables (.debug_abbrev), handed to pyelftools in its own shape.
DieReader walks .debug_info reading only what finding the inlined calls at a pc
needs (symbols/inlines.py), skipping every other attribute by its form.
"""

from __future__ import annotations

import functools
import struct
from bisect import bisect_right
from typing import Any, Iterator, NamedTuple

# (address, file index, line, is_stmt, end_sequence): one row of the line table.
Row = tuple[int, int, int, bool, bool]

_COPY, _ADVANCE_PC, _ADVANCE_LINE, _SET_FILE, _SET_COLUMN, _NEGATE_STMT = 1, 2, 3, 4, 5, 6
_SET_BASIC_BLOCK, _CONST_ADD_PC, _FIXED_ADVANCE_PC, _PROLOGUE_END, _EPILOGUE_BEGIN, _SET_ISA = 7, 8, 9, 10, 11, 12
_END_SEQUENCE, _SET_ADDRESS, _DEFINE_FILE = 1, 2, 3


def program_bytes(program: Any) -> bytes | None:
    """The opcodes of a pyelftools LineProgram (after its header), without copying the section."""
    stream = program.stream
    start, end = program.program_start_offset, program.program_end_offset
    getbuffer = getattr(stream, "getbuffer", None)
    if getbuffer is None:
        return None
    with getbuffer() as view:
        return bytes(view[start:end])


def decode_rows(program: Any, little_endian: bool = True) -> list[Row] | None:
    """Every row the line program emits, in program order; None where pyelftools must do it."""
    header = program.header
    if not little_endian or int(header.get("maximum_operations_per_instruction", 1) or 1) != 1:
        return None
    data = program_bytes(program)
    if data is None:
        return None
    opcode_base = int(header["opcode_base"])
    line_base = int(header["line_base"])
    line_range = int(header["line_range"])
    min_len = int(header["minimum_instruction_length"])
    lengths = list(header["standard_opcode_lengths"])
    default_is_stmt = bool(header["default_is_stmt"])
    if line_range == 0:
        return None
    # Special opcodes: (address advance, line advance), one lookup per row.
    special = [((op - opcode_base) // line_range * min_len, line_base + (op - opcode_base) % line_range)
               for op in range(opcode_base, 256)]
    const_add_pc = (255 - opcode_base) // line_range * min_len
    rows: list[Row] = []
    append = rows.append
    address, file, line, is_stmt = 0, 1, 1, default_is_stmt
    i, n = 0, len(data)
    try:
        while i < n:
            op = data[i]
            i += 1
            if op >= opcode_base:
                da, dl = special[op - opcode_base]
                address += da
                line += dl
                append((address, file, line, is_stmt, False))
            elif op == 0:
                size, i = _uleb(data, i)
                end = i + size
                if size == 0:
                    continue
                ex = data[i]
                if ex == _END_SEQUENCE:
                    append((address, file, line, False, True))
                    address, file, line, is_stmt = 0, 1, 1, default_is_stmt
                elif ex == _SET_ADDRESS:
                    address = int.from_bytes(data[i + 1:end], "little")
                elif ex == _DEFINE_FILE:
                    return None          # a file table that grows as it goes: pyelftools' job
                i = end                  # set_discriminator and unknown ones: skipped whole
            elif op == _COPY:
                append((address, file, line, is_stmt, False))
            elif op == _ADVANCE_PC:
                value, i = _uleb(data, i)
                address += value * min_len
            elif op == _ADVANCE_LINE:
                value, i = _sleb(data, i)
                line += value
            elif op == _SET_FILE:
                file, i = _uleb(data, i)
            elif op == _NEGATE_STMT:
                is_stmt = not is_stmt
            elif op == _CONST_ADD_PC:
                address += const_add_pc
            elif op == _FIXED_ADVANCE_PC:
                address += data[i] | data[i + 1] << 8
                i += 2
            elif op in (_SET_BASIC_BLOCK, _PROLOGUE_END, _EPILOGUE_BEGIN):
                pass
            else:        # set_column, set_isa, and opcodes of later versions: their ULEB operands
                for _ in range(lengths[op - 1] if op - 1 < len(lengths) else 0):
                    _, i = _uleb(data, i)
    except IndexError:
        pass             # a program cut short: the rows up to there, as pyelftools would stop
    return rows


def _uleb(data: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, i
        shift += 7


def _sleb(data: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            if byte & 0x40:
                result -= 1 << shift
            return result, i


class Aranges:
    """.debug_aranges as sorted (start, length, CU offset) spans: the CU holding an address."""

    def __init__(self, spans: list[tuple[int, int, int]]) -> None:
        spans.sort()
        self.spans = spans
        self._starts = [s[0] for s in spans]
        self.cu_offsets = {s[2] for s in spans}

    def cu_offset_at(self, address: int) -> int | None:
        i = bisect_right(self._starts, address) - 1
        if i < 0:
            return None
        start, length, offset = self.spans[i]
        return offset if start <= address < start + length else None


def read_aranges(dwarf: Any) -> Aranges | None:
    """The aranges of a pyelftools DWARFInfo; None without the section, or where it is not
    plain little-endian sets without segments (pyelftools' ARanges then)."""
    sec = dwarf.debug_aranges_sec
    if sec is None or not dwarf.config.little_endian:
        return None
    getbuffer = getattr(sec.stream, "getbuffer", None)
    if getbuffer is None:
        return None
    with getbuffer() as view:
        data = bytes(view[:sec.size])
    spans: list[tuple[int, int, int]] = []
    offset, n = 0, len(data)
    while offset + 4 <= n:
        length = int.from_bytes(data[offset:offset + 4], "little")
        if length == 0xFFFFFFFF:                          # 64-bit DWARF
            length = int.from_bytes(data[offset + 4:offset + 12], "little")
            end = offset + 12 + length
            info = int.from_bytes(data[offset + 14:offset + 22], "little")
            i = offset + 22
        else:
            end = offset + 4 + length
            info = int.from_bytes(data[offset + 6:offset + 10], "little")
            i = offset + 10
        address_size, segment_size = data[i], data[i + 1]
        i += 2
        if segment_size != 0 or address_size not in (4, 8):
            return None
        pair = address_size * 2
        i = -(-i // pair) * pair        # tuples are aligned to their size (as pyelftools reads them)
        fmt = "<QQ" if address_size == 8 else "<II"
        while i + pair <= min(end, n):
            start, size = struct.unpack_from(fmt, data, i)
            i += pair
            if start == 0 and size == 0:
                break
            spans.append((start, size, info))
        offset = end
    return Aranges(spans)


# -- .debug_abbrev ------------------------------------------------------------------
class AttrSpec(NamedTuple):
    name: Any            # DW_AT_* name, or the number where pyelftools has none
    form: Any
    value: int | None    # DW_FORM_implicit_const's value


def _names(enum: dict[str, Any]) -> dict[int, str]:
    return {v: k for k, v in enum.items() if isinstance(v, int)}


@functools.lru_cache(maxsize=1)
def _enums() -> tuple[dict[int, str], dict[int, str], dict[int, str]]:
    from elftools.dwarf.enums import ENUM_DW_AT, ENUM_DW_FORM, ENUM_DW_TAG

    return _names(ENUM_DW_TAG), _names(ENUM_DW_AT), _names(ENUM_DW_FORM)


class AbbrevTable:
    """One abbreviation table, as pyelftools' AbbrevTable answers it (get_abbrev(code))."""

    def __init__(self, decls: dict[int, Any]) -> None:
        self._abbrev_map = decls

    def get_abbrev(self, code: int) -> Any:
        return self._abbrev_map[code]


_IMPLICIT_CONST = 0x21


def read_abbrev_table(data: bytes, offset: int) -> AbbrevTable:
    """The table at `offset` of .debug_abbrev's bytes, decoded straight: pyelftools parses
    each declaration through construct, some 5 ms for one of libc's CUs, read for the
    first frame in each CU (its top DIE names the CU's directory)."""
    from elftools.dwarf.abbrevtable import AbbrevDecl

    tags, ats, forms = _enums()
    decls: dict[int, Any] = {}
    for code, (tag, children, raw) in _raw_abbrevs(data, offset).items():
        specs = [AttrSpec(ats.get(at, at), forms.get(form, form), implicit) for at, form, implicit in raw]
        decl: Any = {"tag": tags.get(tag, tag), "attr_spec": specs,     # read as pyelftools' Container is
                     "children_flag": "DW_CHILDREN_yes" if children else "DW_CHILDREN_no"}
        decls[code] = AbbrevDecl(code, decl)
    return AbbrevTable(decls)


def fast_abbrevs(dwarf: Any) -> None:
    """Have a pyelftools DWARFInfo read its abbreviation tables with read_abbrev_table
    (an instance attribute in front of its method; its own parser where this one fails)."""
    sec = dwarf.debug_abbrev_sec
    getbuffer = getattr(getattr(sec, "stream", None), "getbuffer", None)
    if getbuffer is None:
        return
    with getbuffer() as view:
        data = bytes(view[:sec.size])
    cache: dict[int, Any] = {}
    slow = dwarf.get_abbrev_table

    def get_abbrev_table(offset: int) -> Any:
        table = cache.get(offset)
        if table is None:
            try:
                table = read_abbrev_table(data, offset)
            except IndexError:
                table = slow(offset)
            cache[offset] = table
        return table

    dwarf.get_abbrev_table = get_abbrev_table


# -- .debug_info: the DIEs on the way to a pc ------------------------------------------
class Unsupported(Exception):
    """A form or layout this reader leaves to pyelftools (the caller falls back)."""


_DW_AT_SIBLING, _DW_AT_LOW_PC, _DW_AT_HIGH_PC, _DW_AT_RANGES = 0x01, 0x11, 0x12, 0x55
_WANTED = frozenset({_DW_AT_SIBLING, _DW_AT_LOW_PC, _DW_AT_HIGH_PC, _DW_AT_RANGES})
_FORM_ADDR, _FORM_INDIRECT, _FORM_FLAG_PRESENT = 0x01, 0x16, 0x19
_REF_FORMS = frozenset({0x11, 0x12, 0x13, 0x14, 0x15})            # CU-relative references
# Fixed-size forms: form -> bytes ("offset" and "address" sized ones are filled per CU).
_FIXED = {0x05: 2, 0x06: 4, 0x07: 8, 0x0B: 1, 0x0C: 1, 0x11: 1, 0x12: 2, 0x13: 4, 0x14: 8, 0x1C: 4, 0x1E: 16,
          0x20: 8, 0x24: 8, 0x25: 1, 0x26: 2, 0x27: 3, 0x28: 4, 0x29: 1, 0x2A: 2, 0x2B: 3, 0x2C: 4}
_OFFSET_SIZED = frozenset({0x0E, 0x10, 0x17, 0x1D, 0x1F, 0x1F20, 0x1F21})
_ULEB_FORMS = frozenset({0x0F, 0x15, 0x1A, 0x1B, 0x22, 0x23, 0x1F01, 0x1F02})
_BLOCKS = {0x0A: 1, 0x03: 2, 0x04: 4}                              # length-prefixed blocks
_ULEB_BLOCKS = frozenset({0x09, 0x18})                             # block, exprloc


class DieReader:
    """Reads DIEs of one pyelftools DWARFInfo from .debug_info's bytes, keeping only the
    attributes a walk to a pc needs (sibling, low_pc, high_pc, ranges) and skipping the
    rest by form: pyelftools builds every attribute of every DIE through construct,
    some 70 us a DIE, and a walk to a pc in libc's malloc.c passes 2000 of them."""

    def __init__(self, dwarf: Any) -> None:
        sec = dwarf.debug_info_sec
        getbuffer = getattr(getattr(sec, "stream", None), "getbuffer", None)
        abbrev_sec = dwarf.debug_abbrev_sec
        abbrev_getbuffer = getattr(getattr(abbrev_sec, "stream", None), "getbuffer", None)
        if getbuffer is None or abbrev_getbuffer is None or not dwarf.config.little_endian:
            raise Unsupported("no in-memory little-endian .debug_info")
        with getbuffer() as view:
            self._info = bytes(view[:sec.size])
        with abbrev_getbuffer() as view:
            self._abbrev = bytes(view[:abbrev_sec.size])
        self._tables: dict[int, dict[int, tuple[int, bool, list[tuple[int, int, int | None]]]]] = {}

    def _table(self, offset: int) -> dict[int, tuple[int, bool, list[tuple[int, int, int | None]]]]:
        table = self._tables.get(offset)
        if table is None:
            table = self._tables[offset] = _raw_abbrevs(self._abbrev, offset)
        return table

    def children(self, cu: Any, first: int) -> Iterator[tuple[int, int, bool, dict[int, tuple[int, int]], int]]:
        """(offset, tag, has_children, {attribute: (form, value)}, offset of its first child)
        of each DIE of the sibling list starting at `first`, siblings skipped past
        without reading their children where DW_AT_sibling says where the next one is."""
        data = self._info
        table = self._table(cu["debug_abbrev_offset"])
        address_size = int(cu["address_size"])
        offset_size = 8 if cu.dwarf_format() == 64 else 4
        if int(cu["version"]) < 3:
            raise Unsupported("DWARF 2 ref_addr")
        base = cu.cu_offset
        i = first
        while True:
            start = i
            code, i = _uleb(data, i)
            if code == 0:
                return
            try:
                tag, has_children, specs = table[code]
            except KeyError:
                raise Unsupported(f"abbreviation code {code}") from None
            attrs: dict[int, tuple[int, int]] = {}
            for at, form, implicit in specs:
                value, i = _form(data, i, form, implicit, address_size, offset_size)
                if at in _WANTED:
                    attrs[at] = (form, value)
            yield start, tag, has_children, attrs, i
            if not has_children:
                continue
            sibling = attrs.get(_DW_AT_SIBLING)
            if sibling is not None and sibling[0] in _REF_FORMS:
                i = base + sibling[1]
            else:
                i = self._skip_children(cu, i, table, address_size, offset_size)

    def _skip_children(self, cu: Any, i: int, table: dict[int, tuple[int, bool, list[tuple[int, int, int | None]]]],
                       address_size: int, offset_size: int) -> int:
        data = self._info
        depth = 1
        while depth:
            code, i = _uleb(data, i)
            if code == 0:
                depth -= 1
                continue
            try:
                _tag, has_children, specs = table[code]
            except KeyError:
                raise Unsupported(f"abbreviation code {code}") from None
            for _at, form, implicit in specs:
                _, i = _form(data, i, form, implicit, address_size, offset_size)
            if has_children:
                depth += 1
        return i


def _raw_abbrevs(data: bytes, offset: int) -> dict[int, tuple[int, bool, list[tuple[int, int, int | None]]]]:
    """One abbreviation table as numbers: code -> (tag, has children, [(attribute, form,
    implicit constant)]); read_abbrev_table names them for pyelftools, DieReader walks them."""
    out: dict[int, tuple[int, bool, list[tuple[int, int, int | None]]]] = {}
    i = offset
    while True:
        code, i = _uleb(data, i)
        if code == 0:
            return out
        tag, i = _uleb(data, i)
        children = bool(data[i])
        i += 1
        specs: list[tuple[int, int, int | None]] = []
        while True:
            at, i = _uleb(data, i)
            form, i = _uleb(data, i)
            if at == 0 and form == 0:
                break
            implicit = None
            if form == _IMPLICIT_CONST:
                implicit, i = _sleb(data, i)
            specs.append((at, form, implicit))
        out[code] = (tag, children, specs)


def _form(data: bytes, i: int, form: int, implicit: int | None, address_size: int,
          offset_size: int) -> tuple[int, int]:
    """(value, next offset) of one attribute value: integers as read, 0 for strings and blocks."""
    size = _FIXED.get(form)
    if size is not None:
        return int.from_bytes(data[i:i + size], "little"), i + size
    if form == _FORM_ADDR:
        return int.from_bytes(data[i:i + address_size], "little"), i + address_size
    if form in _OFFSET_SIZED:
        return int.from_bytes(data[i:i + offset_size], "little"), i + offset_size
    if form in _ULEB_FORMS:
        return _uleb(data, i)
    if form == 0x0D:                                                   # sdata
        return _sleb(data, i)
    if form == 0x08:                                                   # string
        end = data.index(b"\0", i)
        return 0, end + 1
    if form in _BLOCKS:
        size = _BLOCKS[form]
        length = int.from_bytes(data[i:i + size], "little")
        return 0, i + size + length
    if form in _ULEB_BLOCKS:
        length, i = _uleb(data, i)
        return 0, i + length
    if form == _FORM_FLAG_PRESENT:
        return 1, i
    if form == _IMPLICIT_CONST:
        return implicit or 0, i
    if form == _FORM_INDIRECT:
        real, i = _uleb(data, i)
        return _form(data, i, real, implicit, address_size, offset_size)
    raise Unsupported(f"form {form:#x}")
