"""DWARF line programs (.debug_line) and .debug_aranges decoded straight from their bytes.

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
"""

from __future__ import annotations

import functools
import struct
from bisect import bisect_right
from typing import Any, NamedTuple

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
    i = offset
    while True:
        code, i = _uleb(data, i)
        if code == 0:
            break
        tag, i = _uleb(data, i)
        children = data[i]
        i += 1
        specs: list[AttrSpec] = []
        while True:
            name, i = _uleb(data, i)
            form, i = _uleb(data, i)
            if name == 0 and form == 0:
                break
            value = None
            if form == _IMPLICIT_CONST:
                value, i = _sleb(data, i)
            specs.append(AttrSpec(ats.get(name, name), forms.get(form, form), value))
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
