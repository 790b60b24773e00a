"""Static facts about one PE file (extent, build id, exports, COFF symbols), shaped like ElfImage.

Addresses here are RVAs: a PE module's `Module.base` is its image base, so the
module map's runtime address is base + RVA, exactly as base + link-time address
is for a PIE. Exports come from `pe.parse_pe`; this module adds what the map
needs on top: SizeOfImage (the extent), the CodeView record or the
TimeDateStamp/SizeOfImage pair (the build id, as a symbol server keys them) and
the COFF symbol table that mingw-w64 leaves in unstripped images, which names
non-exported functions such as `main`. There is no PDB reader: an MSVC image
without exports or COFF symbols symbolizes as `module+offset`.
"""

from __future__ import annotations

import struct
import threading
from bisect import bisect_right
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..errors import SymbolError
from .elf import ImageError
from .pe import parse_pe
from .filecache import FileCache

_PE32_PLUS = 0x20B
_DEBUG_DIRECTORY = 6
_IMAGE_DEBUG_TYPE_CODEVIEW = 2
_SCN_MEM_EXECUTE = 0x20000000
_COFF_SYMBOL_SIZE = 18
_COFF_FUNCTION_TYPE = 0x20                 # (DT_FCN << 4): the symbol is a function
_COFF_EXTERNAL, _COFF_STATIC = 2, 3
_MAX_COFF_SYMBOLS = 1 << 22                # a corrupt count must not read gigabytes


@dataclass(frozen=True)
class Section:
    name: str
    rva: int
    size: int            # in memory (VirtualSize, or the raw size where that is 0)
    offset: int          # in the file
    raw_size: int
    characteristics: int

    @property
    def executable(self) -> bool:
        return bool(self.characteristics & _SCN_MEM_EXECUTE)


@dataclass(frozen=True)
class Headers:
    machine: int
    timestamp: int
    size_of_image: int
    entry: int                          # AddressOfEntryPoint (an RVA)
    is_64: bool
    sections: tuple[Section, ...]
    directories: tuple[tuple[int, int], ...]    # (rva, size) per data directory
    symbol_table: int                   # PointerToSymbolTable (a file offset; 0: none)
    symbol_count: int


def read_headers(data: bytes) -> Headers:
    """The COFF and optional headers and the section table. SymbolError if not a PE."""
    try:
        return _read_headers(data)
    except struct.error as e:
        raise SymbolError(f"not a valid PE image: {e}") from None


def _read_headers(data: bytes) -> Headers:
    if data[:2] != b"MZ":
        raise SymbolError("not a PE image (no MZ header)")
    (pe,) = struct.unpack_from("<I", data, 0x3C)
    if data[pe:pe + 4] != b"PE\0\0":
        raise SymbolError("not a PE image (no PE signature)")
    machine, nsections, timestamp, symtab, nsyms, opt_size, _ = struct.unpack_from("<HHIIIHH", data, pe + 4)
    opt = pe + 24
    (magic,) = struct.unpack_from("<H", data, opt)
    is_64 = magic == _PE32_PLUS
    (entry,) = struct.unpack_from("<I", data, opt + 16)
    (size_of_image,) = struct.unpack_from("<I", data, opt + 56)
    count_at = opt + (108 if is_64 else 92)
    (count,) = struct.unpack_from("<I", data, count_at)
    dirs = tuple(struct.unpack_from("<II", data, count_at + 4 + 8 * i) for i in range(min(count, 16)))
    sections = []
    for i in range(nsections):
        at = opt + opt_size + 40 * i
        raw_name, vsize, rva, raw_size, raw_offset = struct.unpack_from("<8sIIII", data, at)
        (flags,) = struct.unpack_from("<I", data, at + 36)
        name = raw_name.rstrip(b"\0").decode("utf-8", "replace")
        sections.append(Section(name, rva, vsize or raw_size, raw_offset, raw_size, flags))
    return Headers(machine, timestamp, size_of_image, entry, is_64, tuple(sections), dirs, symtab, nsyms)


def rva_to_offset(headers: Headers, rva: int) -> int | None:
    for s in headers.sections:
        if s.rva <= rva < s.rva + min(s.size, s.raw_size):
            return rva - s.rva + s.offset
    return None


def build_id(data: bytes, headers: Headers) -> str:
    """The symbol-server key: `GUID+age` of a CodeView (RSDS) record where the image has
    one (what pairs it with its PDB), else TimeDateStamp (8 digits) + SizeOfImage, the
    key of the binary itself. Either way the same file gives the same id on every run."""
    guid = _codeview_guid(data, headers)
    if guid is not None:
        return guid
    return f"{headers.timestamp:08X}{headers.size_of_image:x}"


def _codeview_guid(data: bytes, headers: Headers) -> str | None:
    if len(headers.directories) <= _DEBUG_DIRECTORY:
        return None
    rva, size = headers.directories[_DEBUG_DIRECTORY]
    at = rva_to_offset(headers, rva) if rva else None
    if at is None:
        return None
    for i in range(min(size // 28, 64)):
        # IMAGE_DEBUG_DIRECTORY: Characteristics, TimeDateStamp, Major, Minor, Type,
        # SizeOfData, AddressOfRawData, PointerToRawData.
        _, _, _, _, kind, length, _, pointer = struct.unpack_from("<IIHHIIII", data, at + 28 * i)
        if kind != _IMAGE_DEBUG_TYPE_CODEVIEW or length < 24 or data[pointer:pointer + 4] != b"RSDS":
            continue
        d1, d2, d3 = struct.unpack_from("<IHH", data, pointer + 4)
        d4 = data[pointer + 12:pointer + 20]
        (age,) = struct.unpack_from("<I", data, pointer + 20)
        return f"{d1:08X}{d2:04X}{d3:04X}{d4.hex().upper()}{age:x}"
    return None


def coff_functions(data: bytes, headers: Headers) -> dict[str, int]:
    """Function name -> RVA from the COFF symbol table (mingw-w64 keeps it unless -s)."""
    if not headers.symbol_table or not 0 < headers.symbol_count <= _MAX_COFF_SYMBOLS:
        return {}
    table = headers.symbol_table
    strings = table + _COFF_SYMBOL_SIZE * headers.symbol_count   # the string table follows
    out: dict[str, int] = {}
    i = 0
    while i < headers.symbol_count:
        at = table + _COFF_SYMBOL_SIZE * i
        if at + _COFF_SYMBOL_SIZE > len(data):
            break
        raw, value, section, kind, storage, aux = struct.unpack_from("<8sIhHBB", data, at)
        i += 1 + aux
        if kind != _COFF_FUNCTION_TYPE or storage not in (_COFF_EXTERNAL, _COFF_STATIC):
            continue
        if not 0 < section <= len(headers.sections):
            continue
        name = _coff_name(data, raw, strings)
        if name:
            # Values are section-relative in a linked image.
            out.setdefault(name, headers.sections[section - 1].rva + value)
    return out


def _coff_name(data: bytes, raw: bytes, strings: int) -> str:
    if raw[:4] == b"\0\0\0\0":          # a long name: an offset into the string table
        (offset,) = struct.unpack_from("<I", raw, 4)
        start = strings + offset
        end = data.find(b"\0", start)
        raw = data[start:end if end >= 0 else len(data)]
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


class PeSymbolTable:
    """Sorted code symbol starts, each bounded by its section's end; bisect to symbolize."""

    def __init__(self, by_name: dict[str, int], code: list[tuple[int, int]]) -> None:
        self.by_name = by_name
        # One name per address; exports were added first, so they win over COFF aliases.
        first: dict[int, str] = {}
        for name, rva in by_name.items():
            first.setdefault(rva, name)
        self.starts = sorted(a for a in first if any(lo <= a < hi for lo, hi in code))
        self.names = [first[a] for a in self.starts]
        self._code = sorted(code)

    def symbolize(self, rva: int) -> tuple[str, int] | None:
        i = bisect_right(self.starts, rva) - 1
        if i < 0:
            return None
        start = self.starts[i]
        # The nearest name below, as WinDbg does without a PDB, but never across the
        # end of its section: `.rdata` bytes are not `LastExport+0x5000`.
        if not any(lo <= start and rva < hi for lo, hi in self._code):
            return None
        return self.names[i], rva - start


class PeImage:
    """One PE file, with the attributes and methods of ElfImage that the module map uses."""

    is_pie = True        # Module.base is the image base: runtime address = base + RVA

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        data = self._read()
        try:
            headers = read_headers(data)
        except SymbolError as e:
            raise ImageError(f"{path}: {e}") from e
        self.machine: int = headers.machine
        self.entry: int = headers.entry
        self.extent: tuple[int, int] = (0, headers.size_of_image)
        self.build_id: str | None = build_id(data, headers)

    def _read(self) -> bytes:
        try:
            return Path(self.path).read_bytes()
        except OSError as e:
            raise ImageError(f"{self.path}: cannot read ({e.strerror or e})") from e

    def __repr__(self) -> str:
        return f"PeImage({self.path!r}, size={self.extent[1]:#x})"

    @cached_property
    def symbols(self) -> PeSymbolTable:
        # As for ElfImage: a file that vanished or is corrupt has no symbols, not an error.
        try:
            with self._lock:
                data = self._read()
            headers = read_headers(data)
            exports = parse_pe(lambda offset, size: data[offset:offset + size], mapped=False)
        except (ImageError, SymbolError):
            return PeSymbolTable({}, [])
        by_name = {name: e.rva for name, e in exports.exports.items() if e.rva}
        for name, rva in coff_functions(data, headers).items():
            by_name.setdefault(name, rva)
        code = [(s.rva, s.rva + s.size) for s in headers.sections if s.executable]
        return PeSymbolTable(by_name, code)

    def symbol_address(self, name: str) -> int | None:
        """RVA of an export (or, in a mingw image, a COFF function); None if unknown."""
        return self.symbols.by_name.get(name)

    def symbolize(self, address: int) -> tuple[str, int] | None:
        """RVA -> (nearest named function at or below it in the same section, offset)."""
        return self.symbols.symbolize(address)

    def is_ifunc(self, address: int) -> bool:
        """PE has no indirect functions (ElfImage.is_ifunc)."""
        return False

    def source_line(self, address: int) -> tuple[str, int] | None:
        """PE images have no line tables we read (PDBs are out of scope)."""
        return None

    def line_address(self, file: str, line: int) -> int | None:
        return None


# -- the cache -------------------------------------------------------------------
_images: FileCache[PeImage] = FileCache(PeImage)


def open_pe_image(path: str) -> PeImage:
    """The PeImage of `path`, shared while the file is unchanged (realpath, mtime, size),
    as elf.open_image does for ELF files. Raises ImageError."""
    return _images.get(path, ImageError)
