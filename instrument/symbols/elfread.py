"""ELF headers, program and section headers, notes and dynamic entries, read with `struct`.

pyelftools builds each header through construct and, for every PT_DYNAMIC segment,
walks the section table again: opening the loader and libc that way took ~110 ms of a
one-hit run (cProfile: ElfImage.__init__ -> iter_segments -> DynamicSegment). These
tables are fixed-layout arrays; unpacked in bulk they cost well under a millisecond,
and the start-up path no longer imports pyelftools at all (DWARF and CFI still use it,
where first needed).
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Iterator, NamedTuple

PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE = 1, 2, 3, 4
PF_X = 1
ET_DYN = 3
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_DYNAMIC, SHT_NOBITS, SHT_DYNSYM = 1, 2, 3, 4, 6, 8, 11
SHT_GNU_VERSYM = 0x6FFFFFFF
NT_GNU_BUILD_ID = 3
DT_NEEDED = 1
SHN_UNDEF = 0

# e_machine numbers as pyelftools names them (ElfImage.machine keeps its spelling).
_MACHINES = {3: "EM_386", 62: "EM_X86_64", 183: "EM_AARCH64", 40: "EM_ARM"}


class NotElf(ValueError):
    """The bytes are not an ELF file this reader understands (or are cut short)."""


# NamedTuples, not dataclasses: these exist to make start-up cheap, and a frozen
# dataclass costs a handful of exec() calls to create at import.
class Segment(NamedTuple):
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    align: int


class Section(NamedTuple):
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


class ElfHeaders(NamedTuple):
    elfclass: int                   # 32 or 64
    little_endian: bool
    e_type: int
    machine: str                    # "EM_X86_64"
    entry: int
    segments: tuple[Segment, ...]
    sections: tuple[Section, ...]

    @property
    def endian(self) -> str:
        return "<" if self.little_endian else ">"


def read_headers(f: BinaryIO) -> ElfHeaders:
    """The headers of the ELF file open in `f`; raises NotElf."""
    f.seek(0)
    ident = f.read(64)
    if len(ident) < 52 or ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) or ident[5] not in (1, 2):
        raise NotElf("bad ELF magic" if ident[:4] != b"\x7fELF" else "unknown ELF class or data encoding")
    is64 = ident[4] == 2
    e = "<" if ident[5] == 1 else ">"
    try:
        if is64:
            (e_type, e_machine, _v, entry, phoff, shoff, _fl, _eh, phentsize, phnum, shentsize, shnum,
             shstrndx) = struct.unpack_from(e + "HHIQQQIHHHHHH", ident, 16)
        else:
            (e_type, e_machine, _v, entry, phoff, shoff, _fl, _eh, phentsize, phnum, shentsize, shnum,
             shstrndx) = struct.unpack_from(e + "HHIIIIIHHHHHH", ident, 16)
        segments = tuple(_segments(f, e, is64, phoff, phentsize, phnum))
        sections = _sections(f, e, is64, shoff, shentsize, shnum, shstrndx)
    except struct.error as err:
        raise NotElf(f"truncated headers ({err})") from None
    return ElfHeaders(64 if is64 else 32, e == "<", e_type, _MACHINES.get(e_machine, f"EM_{e_machine}"),
                      entry, segments, sections)


def _segments(f: BinaryIO, e: str, is64: bool, off: int, entsize: int, count: int) -> Iterator[Segment]:
    if not count:
        return
    f.seek(off)
    table = f.read(entsize * count)
    for i in range(count):
        if is64:
            p_type, flags, offset, vaddr, _pa, filesz, memsz, align = struct.unpack_from(e + "IIQQQQQQ", table, i * entsize)
        else:
            p_type, offset, vaddr, _pa, filesz, memsz, flags, align = struct.unpack_from(e + "IIIIIIII", table, i * entsize)
        yield Segment(p_type, flags, offset, vaddr, filesz, memsz, align)


def _sections(f: BinaryIO, e: str, is64: bool, off: int, entsize: int, count: int,
              strndx: int) -> tuple[Section, ...]:
    if not off or not entsize:
        return ()
    f.seek(off)
    if count == 0:          # more than SHN_LORESERVE sections: the count is in section 0's sh_size
        first = f.read(entsize)
        count = struct.unpack_from(e + ("Q" if is64 else "I"), first, 32 if is64 else 20)[0]
        f.seek(off)
    table = f.read(entsize * count)
    raw = []
    for i in range(count):
        if is64:
            name, typ, flags, addr, offset, size, link, _info, _al, ent = struct.unpack_from(
                e + "IIQQQQIIQQ", table, i * entsize)
        else:
            name, typ, flags, addr, offset, size, link, _info, _al, ent = struct.unpack_from(
                e + "IIIIIIIIII", table, i * entsize)
        raw.append((name, typ, flags, addr, offset, size, link, ent))
    names = b""
    if 0 < strndx < len(raw) and raw[strndx][1] != SHT_NOBITS:
        f.seek(raw[strndx][4])
        names = f.read(raw[strndx][5])
    out = []
    for name, typ, flags, addr, offset, size, link, ent in raw:
        end = names.find(b"\0", name)
        text = names[name:end if end >= 0 else len(names)].decode("utf-8", "replace")
        out.append(Section(text, typ, flags, addr, offset, size, link, ent))
    return tuple(out)


def section_data(f: BinaryIO, sec: Section) -> bytes:
    """The bytes of a section (none for SHT_NOBITS, as pyelftools has it)."""
    if sec.type == SHT_NOBITS or not sec.size:
        return b""
    f.seek(sec.offset)
    return f.read(sec.size)


def build_id(f: BinaryIO, h: ElfHeaders) -> str | None:
    """The GNU build id, hex; from the PT_NOTE segments (a stripped, section-less file has them)."""
    for seg in h.segments:
        if seg.type != PT_NOTE or seg.filesz < 12:
            continue
        f.seek(seg.offset)
        data = f.read(seg.filesz)
        align = 8 if seg.align == 8 else 4      # notes of an 8-aligned PT_NOTE are padded to 8
        pos = 0
        while pos + 12 <= len(data):
            namesz, descsz, ntype = struct.unpack_from(h.endian + "III", data, pos)
            name_at = pos + 12
            desc_at = name_at + _round(namesz, align)
            if ntype == NT_GNU_BUILD_ID and data[name_at:name_at + namesz].rstrip(b"\0") == b"GNU":
                return data[desc_at:desc_at + descsz].hex()
            pos = desc_at + _round(descsz, align)
    return None


def _round(n: int, align: int) -> int:
    return (n + align - 1) & ~(align - 1)


def symbols(f: BinaryIO, h: ElfHeaders, sec: Section) -> Iterator[tuple[str, int, int, int, int]]:
    """(name, st_value, st_size, st_info, st_shndx) of each entry of a symbol table, in order."""
    strtab = section_data(f, h.sections[sec.link]) if sec.link < len(h.sections) else b""
    data = section_data(f, sec)
    if h.elfclass == 64:
        rows = ((n, v, s, i, x) for n, i, _o, x, v, s in struct.iter_unpack(h.endian + "IBBHQQ", data[:len(data) // 24 * 24]))
    else:
        rows = ((n, v, s, i, x) for n, v, s, i, _o, x in struct.iter_unpack(h.endian + "IIIBBH", data[:len(data) // 16 * 16]))
    for st_name, value, size, info, shndx in rows:
        end = strtab.find(b"\0", st_name)
        yield strtab[st_name:end if end >= 0 else len(strtab)].decode("utf-8", "replace"), value, size, info, shndx


def needed(f: BinaryIO, h: ElfHeaders) -> tuple[str, ...]:
    """DT_NEEDED entries of the dynamic section, in order."""
    for sec in h.sections:
        if sec.type != SHT_DYNAMIC:
            continue
        strtab = section_data(f, h.sections[sec.link]) if sec.link < len(h.sections) else b""
        fmt = h.endian + ("qQ" if h.elfclass == 64 else "iI")
        data = section_data(f, sec)
        width = struct.calcsize(fmt)
        out = []
        for tag, value in struct.iter_unpack(fmt, data[:len(data) // width * width]):
            if tag == 0:
                break
            if tag == DT_NEEDED:
                end = strtab.find(b"\0", value)
                out.append(strtab[value:end if end >= 0 else len(strtab)].decode("utf-8", "replace"))
        return tuple(out)
    return ()
