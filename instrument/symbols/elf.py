"""Static facts about one ELF file: extent, build id, symbols, PLT stubs and DWARF line tables.

All addresses here are link-time addresses; `modules.py` adds the load bias.
The headers and the symbol and relocation tables are unpacked with `struct`
(symbols/elfread.py), because pyelftools' construct parsing costs far more
(120 ms against 22 ms for libc's 3000 dynamic symbols; ~110 ms to open the
loader and libc, measured); pyelftools reads only the DWARF line tables.
"""

from __future__ import annotations

import functools
import os
import struct
import threading
from bisect import bisect_right
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, BinaryIO

from ..errors import TargetError
from . import elfread, symcache
from .demangle import demangle_many, is_mangled, lookup_aliases
from .elfread import ElfHeaders, NotElf, Section
from .filecache import FileCache
from .lines import LineTable, ModuleLines, NoLines

__all__ = ["ElfImage", "ImageError", "LineTable", "SymbolTable", "needed_libraries", "open_image"]

if TYPE_CHECKING:       # pyelftools is imported where first used: DWARF lines only
    from elftools.elf.elffile import ELFFile


class ImageError(TargetError):
    """A file that should be an ELF image cannot be read or is not ELF."""


# Symbol kinds (st_info & 0xf) that name code or data at an address. STT_TLS is left
# out on purpose: its value is an offset into the TLS block, not an address.
_STT_NOTYPE, _STT_OBJECT, _STT_FUNC, _STT_GNU_IFUNC = 0, 1, 2, 10
_KINDS = {_STT_NOTYPE, _STT_OBJECT, _STT_FUNC, _STT_GNU_IFUNC}
_STB_RANK = {1: 0, 2: 1, 0: 2}          # GLOBAL before WEAK before LOCAL
_SHN_LORESERVE = 0xFF00                  # ABS, COMMON, XINDEX: no section to bound them
_SHF_ALLOC = 0x2
_VERSYM_HIDDEN = 0x8000                  # `name@VER` (not the default `name@@VER`)
_R_X86_64_GLOB_DAT, _R_X86_64_JUMP_SLOT = 6, 7
_EM_X86_64 = "EM_X86_64"


@dataclass(frozen=True)
class _Candidate:
    address: int
    size: int
    name: str
    section: int
    rank: tuple[int, int, int, int]   # (table, hidden version, binding, untyped): lower wins
    ifunc: bool = False               # STT_GNU_IFUNC: the address is a resolver's


class SymbolTable:
    """Sorted arrays of symbol starts/ends/names plus a name index; bisect to symbolize."""

    def __init__(self, candidates: list[_Candidate], section_ends: dict[int, int]) -> None:
        best: dict[str, tuple[tuple[int, int, int, int], int]] = {}
        for c in candidates:
            old = best.get(c.name)
            if old is None or c.rank < old[0]:
                best[c.name] = (c.rank, c.address)
        self.by_name: dict[str, int] = {name: addr for name, (_, addr) in best.items()}
        self.ifuncs: frozenset[int] = frozenset(c.address for c in candidates if c.ifunc)
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.names: list[str] = []
        self._build_ranges(candidates, section_ends)

    @classmethod
    def from_arrays(cls, arrays: symcache.Arrays) -> SymbolTable:
        """A table as to_arrays gave it (from the on-disk cache)."""
        table = cls.__new__(cls)
        by_name, ifuncs, table.starts, table.ends, table.names, table.sized = arrays
        table.by_name, table.ifuncs = by_name, frozenset(ifuncs)
        return table

    def to_arrays(self) -> symcache.Arrays:
        return self.by_name, sorted(self.ifuncs), self.starts, self.ends, self.names, self.sized

    def _build_ranges(self, candidates: list[_Candidate], section_ends: dict[int, int]) -> None:
        # One name per (address, size) span: the preferred alias (malloc, not __libc_malloc).
        chosen: dict[tuple[int, int], _Candidate] = {}
        for c in candidates:
            key = (c.address, c.size)
            if key not in chosen or _display_rank(c) < _display_rank(chosen[key]):
                chosen[key] = c
        spans = sorted(chosen.values(), key=lambda c: (c.address, -c.size))
        per_section: dict[int, list[int]] = {}
        for c in spans:
            per_section.setdefault(c.section, []).append(c.address)
        self.sized: list[bool] = []
        for c in spans:
            limit = section_ends.get(c.section, c.address)
            if c.size:
                end = c.address + c.size
            else:
                # A zero-size symbol (an assembler label) reaches the next symbol of its
                # section, and never beyond the section's end.
                addrs = per_section[c.section]
                k = bisect_right(addrs, c.address)
                end = min(addrs[k], limit) if k < len(addrs) else limit
            self.starts.append(c.address)
            self.ends.append(end)
            self.names.append(c.name)
            self.sized.append(bool(c.size))

    def symbolize(self, address: int) -> tuple[str, int] | None:
        hit = self.lookup(address)
        return None if hit is None else (hit[0], hit[1])

    def lookup(self, address: int) -> tuple[str, int, bool] | None:
        """(name, offset, sized): sized is False for a zero-size label's reach."""
        i = bisect_right(self.starts, address) - 1
        fallback: tuple[str, int, bool] | None = None
        # Symbols may nest (a label inside a function): look back a few entries and
        # prefer the innermost sized symbol that covers the address.
        for j in range(i, max(i - 8, -1), -1):
            start = self.starts[j]
            if start <= address < self.ends[j]:
                if self.sized[j]:
                    return self.names[j], address - start, True
                if fallback is None:
                    fallback = (self.names[j], address - start, False)
        return fallback

    def __len__(self) -> int:
        return len(self.starts)


def _display_rank(c: _Candidate) -> tuple[int, int, int, int, int, str]:
    """Which alias names a shared span: GLOBAL over LOCAL, typed over NOTYPE, the default
    version, then the plainest spelling (gdb shows `malloc`, not `__libc_malloc`)."""
    _table, hidden, binding, untyped = c.rank
    underscores = len(c.name) - len(c.name.lstrip("_"))
    return (binding, untyped, hidden, underscores, len(c.name), c.name)


class ElfImage:
    """One ELF file. Headers are read on open; symbols and DWARF only when first asked."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            with open(path, "rb") as f:
                h = elfread.read_headers(f)
                self.size: int = os.fstat(f.fileno()).st_size
                self.is_pie: bool = h.e_type == elfread.ET_DYN
                self.entry: int = h.entry
                self.machine: str = h.machine
                self.extent: tuple[int, int] = _extent(h)
                self.build_id: str | None = elfread.build_id(f, h)
                self.elfclass: int = h.elfclass
                # Link-time ranges of code (PF_X segments): where an int3 may go.
                self.code_ranges: tuple[tuple[int, int], ...] = tuple(
                    (seg.vaddr, seg.vaddr + seg.memsz) for seg in h.segments
                    if seg.type == elfread.PT_LOAD and seg.flags & elfread.PF_X)
        except NotElf as e:
            raise ImageError(f"{path}: not an ELF file ({e})") from e
        except OSError as e:
            raise ImageError(f"{path}: cannot read ({e.strerror or e})") from e

    def __repr__(self) -> str:
        return f"ElfImage({self.path!r}, pie={self.is_pie}, extent={self.extent[0]:#x}-{self.extent[1]:#x})"

    def is_code(self, address: int) -> bool:
        """Is this link-time address in an executable segment?"""
        return any(lo <= address < hi for lo, hi in self.code_ranges)

    # -- symbols -------------------------------------------------------------
    @cached_property
    def symbols(self) -> SymbolTable:
        # A system library's table comes from the on-disk cache, by build id.
        cached = self.build_id is not None and symcache.is_system(self.path)
        if cached and self.build_id is not None:
            arrays = symcache.load(self.build_id, self.size)
            if arrays is not None:
                return SymbolTable.from_arrays(arrays)
        # A file deleted or cut short since it was opened (a rebuild mid-session) has no
        # symbols rather than failing a crash report that only wanted a name.
        try:
            with self._lock, open(self.path, "rb") as f:
                table = _load_symbols(f, elfread.read_headers(f), self.machine)
        except (NotElf, OSError, struct.error, IndexError):
            return SymbolTable([], {})
        if cached and self.build_id is not None:
            symcache.store(self.build_id, self.size, table.to_arrays())
        return table

    @cached_property
    def _names(self) -> _Names:
        return _Names(self.symbols)

    @cached_property
    def _debug_names(self) -> _Names | None:
        table = self.debug_symbols
        return _Names(table) if table is not None else None

    def symbol_address(self, name: str, *, debug_file: bool = True) -> int | None:
        """Link-time address of a function or object (`name@plt` for PLT stubs; C++ by
        demangled name, with or without its parameter list); the debug file's .symtab
        answers what the file's own tables do not (static functions of a stripped file).
        debug_file=False: the file's own tables only."""
        name = _strip_version(name)
        address = self._names.address(name)
        if address is None and debug_file and self.debug_file is not None and self._debug_names is not None:
            address = self._debug_names.address(name)
        return address

    def symbolize(self, address: int) -> tuple[str, int] | None:
        """Link-time address -> (name, offset); C++ and Rust names come back demangled."""
        hit = self.symbolize_from(address)
        return None if hit is None else (hit[0], hit[1])

    def symbolize_from(self, address: int) -> tuple[str, int, bool] | None:
        """(name, offset, from the debug file). A stripped file's .dynsym names only
        exported functions: an address no sized symbol covers is asked of the separate
        debug file, whose .symtab has the static ones."""
        hit = self.symbols.lookup(address)
        if (hit is None or not hit[2]) and self.debug_file is not None and self._debug_names is not None:
            better = self._debug_names.table.lookup(address)
            if better is not None and (hit is None or better[2]):
                return self._debug_names.display(better[0]), better[1], True
        if hit is None:
            return None
        return self._names.display(hit[0]), hit[1], False

    def is_ifunc(self, address: int) -> bool:
        """Whether a link-time address is a GNU indirect function (strcpy in glibc): code
        that picks the implementation for this CPU and returns it, run once by ld.so."""
        return address in self.symbols.ifuncs

    # -- the separate debug file ---------------------------------------------------
    @cached_property
    def debug_file(self) -> str | None:
        """The separate debug file (symbols.debugfiles), looked up when first needed."""
        from .debugfiles import find_debug_file
        return find_debug_file(self.path)

    @cached_property
    def debug_symbols(self) -> SymbolTable | None:
        """The debug file's .symtab: static functions a stripped file no longer names
        (libc's __libc_message, a program's own functions). Read only when the file's
        own tables miss, so a recipe on exported names never opens the debug file."""
        path = self.debug_file
        if path is None:
            return None
        # A system library's debug file found by its build id (libc6-dbg's
        # /usr/lib/debug/.build-id/xx/yyyy.debug) is kept in the on-disk cache like the
        # library's own table, under that build id and the debug file's size: its 8000
        # symbols cost 70-100 ms to read, the first crash through libc of every run.
        key = None
        if self.build_id is not None and symcache.is_system(path) and path.endswith(
                f"/.build-id/{self.build_id[:2]}/{self.build_id[2:]}.debug"):
            try:
                key = (self.build_id, os.path.getsize(path))
            except OSError:
                return None
            arrays = symcache.load(*key)
            if arrays is not None:
                table = SymbolTable.from_arrays(arrays)
                return table if len(table) else None
        try:
            with self._lock, open(path, "rb") as f:
                table = _load_symbols(f, elfread.read_headers(f), self.machine, own_code=False)
        except (NotElf, OSError, struct.error, IndexError):
            return None
        if key is not None:
            symcache.store(*key, table.to_arrays())
        return table if len(table) else None

    # -- DWARF lines ------------------------------------------------------------
    @cached_property
    def lines(self) -> ModuleLines | NoLines:
        from .debugfiles import load_dwarf
        dwarf = load_dwarf(self.path)
        return ModuleLines(dwarf) if dwarf is not None else NoLines()

    def source_line(self, address: int) -> tuple[str, int] | None:
        """(source path, line) of a link-time address, from the file's DWARF or its debug file's."""
        try:
            return self.lines.source_line(address)
        except Exception:  # noqa: BLE001 - malformed DWARF costs a frame its line, never the record
            return None

    @cached_property
    def _inlines(self) -> Any:
        from .inlines import InlineIndex
        return InlineIndex(self.lines) if isinstance(self.lines, ModuleLines) else None

    def inlined_at(self, address: int) -> tuple[Any, ...]:
        """The inlined calls (symbols.inlines.InlinedCall) around a link-time address,
        innermost first; () without DWARF or outside inlined code."""
        index = self._inlines
        return index.at(address) if index is not None else ()

    def line_locations(self, file: str, line: int) -> tuple[int, list[int]] | None:
        """(the line used, one address per function that has code for it): `file:line`,
        or the next line with code when it has none (gdb's rule). A line of an inlined
        function has code in each function it was inlined into: one location each, its
        lowest is_stmt address there."""
        try:
            found = self.lines.line_addresses(file, line)
        except Exception:  # noqa: BLE001 - as for source_line
            return None
        if found is None:
            return None
        used, addresses = found
        per_function: dict[object, int] = {}
        for address in sorted(addresses):
            hit = self.symbolize(address)
            key: object = (hit[0], address - hit[1]) if hit is not None else address
            per_function.setdefault(key, address)
        return used, sorted(per_function.values())

    def line_address(self, file: str, line: int) -> int | None:
        """Lowest is_stmt address of `file:line`, or of the next line with code in that file."""
        found = self.line_locations(file, line)
        return found[1][0] if found is not None and found[1] else None


class _Names:
    """One symbol table's names, demangled lazily: only tables with mangled names pay for
    the c++filt run, and only when a name is first shown or looked up."""

    def __init__(self, table: SymbolTable) -> None:
        self.table = table

    @cached_property
    def _has_mangled(self) -> bool:
        return any(is_mangled(n) for n in self.table.by_name)

    @cached_property
    def _demangled(self) -> tuple[dict[str, int], dict[str, str]]:
        """(demangled or parameterless name -> address, mangled -> demangled)."""
        table = self.table
        mangled = [n for n in table.by_name if is_mangled(n)]
        plain = demangle_many(mangled)
        index: dict[str, int] = {}
        names: dict[str, str] = {}
        for m, d in zip(mangled, plain):
            if d == m:
                continue
            names[m] = d
            index.setdefault(d, table.by_name[m])
            for alias in lookup_aliases(d):
                index.setdefault(alias, table.by_name[m])
        return index, names

    def address(self, name: str) -> int | None:
        address = self.table.by_name.get(name)
        if address is None and not is_mangled(name) and self._has_mangled:
            address = self._demangled[0].get(name)
        return address

    def display(self, name: str) -> str:
        return self._demangled[1].get(name, name) if is_mangled(name) else name


def _strip_version(name: str) -> str:
    # `memcpy@@GLIBC_2.14` / `memcpy@GLIBC_2.2.5` -> `memcpy`; keep our own `@plt`.
    if "@" not in name or name.endswith("@plt"):
        return name
    return name.split("@", 1)[0]


def _extent(h: ElfHeaders) -> tuple[int, int]:
    loads = [s for s in h.segments if s.type == elfread.PT_LOAD]
    if not loads:
        return (0, 0)
    return (min(s.vaddr for s in loads), max(s.vaddr + s.memsz for s in loads))


def _load_symbols(f: BinaryIO, h: ElfHeaders, machine: str, own_code: bool = True) -> SymbolTable:
    """The symbols of one file. own_code=False for a debug file: its code sections are
    SHT_NOBITS, so it has no PLT stubs to decode."""
    sections = h.sections
    section_ends = {i: s.addr + s.size for i, s in enumerate(sections) if s.flags & _SHF_ALLOC}
    candidates: list[_Candidate] = []
    dynsym_names: list[str] = []
    # .symtab ranks before .dynsym (table index 0 vs 1): it is the fuller, local truth.
    for table_rank, kind in ((0, elfread.SHT_SYMTAB), (1, elfread.SHT_DYNSYM)):
        for index, sec in enumerate(sections):
            if sec.type != kind:
                continue
            versyms = _versyms(f, sections, index) if kind == elfread.SHT_DYNSYM else None
            names = _read_symbols(f, h, sec, table_rank, versyms, candidates)
            if kind == elfread.SHT_DYNSYM:
                dynsym_names = names
    if machine == _EM_X86_64 and dynsym_names and own_code:
        candidates.extend(_plt_candidates(f, h, dynsym_names))
    return SymbolTable(candidates, section_ends)


def _versyms(f: BinaryIO, sections: tuple[Section, ...], dynsym_index: int) -> bytes | None:
    for sec in sections:
        if sec.type == elfread.SHT_GNU_VERSYM and sec.link == dynsym_index:
            return elfread.section_data(f, sec)
    return None


def _read_symbols(f: BinaryIO, h: ElfHeaders, sec: Section, table_rank: int,
                  versyms: bytes | None, out: list[_Candidate]) -> list[str]:
    """Append the address-bearing symbols of one table to `out`; return every name by index."""
    endian = h.endian
    names: list[str] = []
    for index, (raw_name, value, size, info, shndx) in enumerate(elfread.symbols(f, h, sec)):
        name = _strip_version(raw_name)
        names.append(name)
        if (info & 0xF) not in _KINDS or not name or shndx == 0 or shndx >= _SHN_LORESERVE:
            continue
        if shndx < len(h.sections) and not h.sections[shndx].flags & _SHF_ALLOC:
            continue      # in no loaded section (glibc's .gnu.warning.*): no runtime address
        hidden = 0
        if versyms is not None and 2 * index + 2 <= len(versyms):
            hidden = 1 if struct.unpack_from(endian + "H", versyms, 2 * index)[0] & _VERSYM_HIDDEN else 0
        kind_rank = 0 if (info & 0xF) != _STT_NOTYPE else 1
        rank = (table_rank, hidden, _STB_RANK.get(info >> 4, 3), kind_rank)
        out.append(_Candidate(value, size, name, shndx, rank, (info & 0xF) == _STT_GNU_IFUNC))
    return names


def _plt_candidates(f: BinaryIO, h: ElfHeaders, dynsym_names: list[str]) -> list[_Candidate]:
    """`name@plt` for each x86-64 PLT stub: find the GOT slot each stub jumps through
    (`jmp *disp32(%rip)`, `ff 25`) and name it after the relocation of that slot.

    Decoding the stubs (as objdump does) rather than counting entries works the same
    for lazy .plt, IBT's .plt.sec and the .plt.got stubs of GLOB_DAT slots."""
    got: dict[int, str] = {}
    for sec in h.sections:
        if sec.type != elfread.SHT_RELA:
            continue
        data = elfread.section_data(f, sec)
        for r_offset, r_info, _addend in struct.iter_unpack(h.endian + "QQq", data[:len(data) // 24 * 24]):
            sym, rtype = r_info >> 32, r_info & 0xFFFFFFFF
            if rtype in (_R_X86_64_JUMP_SLOT, _R_X86_64_GLOB_DAT) and 0 < sym < len(dynsym_names):
                got.setdefault(r_offset, dynsym_names[sym])
    out: list[_Candidate] = []
    for index, sec in enumerate(h.sections):
        if sec.name not in (".plt", ".plt.sec", ".plt.got") or sec.type != elfread.SHT_PROGBITS:
            continue
        step = sec.entsize or 16
        data, base = elfread.section_data(f, sec), sec.addr
        for off in range(0, len(data) - step + 1, step):
            p = data.find(b"\xff\x25", off, off + step)
            if p < 0 or p + 6 > off + step:
                continue
            target = base + p + 6 + struct.unpack_from("<i", data, p + 2)[0]
            name = got.get(target)
            if name:
                out.append(_Candidate(base + off, step, name + "@plt", index, (2, 0, 0, 0)))
    return out


# -- the cache -------------------------------------------------------------------
_images: FileCache[ElfImage] = FileCache(ElfImage)


def open_image(path: str) -> ElfImage:
    """The ElfImage of `path`, shared while the file is unchanged (realpath, mtime, size).

    A triage run opens the same binary for each of thousands of inputs; the key
    makes a rebuilt binary a new image. Raises ImageError."""
    return _images.get(path, ImageError)


@functools.lru_cache(maxsize=64)
def needed_libraries(path: str) -> tuple[str, ...]:
    """DT_NEEDED entries of an ELF: the libraries the loader maps before main runs."""
    with open(path, "rb") as f:
        try:
            return elfread.needed(f, elfread.read_headers(f))
        except (NotElf, struct.error, IndexError):
            return ()
