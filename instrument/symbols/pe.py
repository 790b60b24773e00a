"""Read a PE image's export directory and image base, for `module.dll!Function` addresses.

Written here rather than taken from pefile or LIEF: we need four things
(machine, image base, section map, export directory), about 150 lines of
struct unpacking. pefile parses every directory eagerly in pure Python
(seconds on a large DLL such as the ones under System32) and LIEF is a
compiled wheel that does not exist for every platform we run on (a Windows
CPython under wine, for one). The same reader works on a file on disk
(sections mapped through their file offsets) and on an image already loaded
in a debuggee (read through the backend, where an RVA is an offset).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import SymbolError

IMAGE_FILE_MACHINE_I386 = 0x14C
IMAGE_FILE_MACHINE_AMD64 = 0x8664
_PE32, _PE32_PLUS = 0x10B, 0x20B
_MAX_EXPORTS = 1 << 16       # a corrupt count must not make us loop for hours

# read(offset, size) -> bytes: file offsets for a file, RVAs for a mapped image.
Reader = Callable[[int, int], bytes]


@dataclass(frozen=True)
class Export:
    name: str | None         # None: exported by ordinal only
    ordinal: int
    rva: int                 # 0 for a forwarder
    forwarder: str | None = None   # "NTDLL.RtlAllocateHeap": the code lives in another DLL


@dataclass(frozen=True)
class PEImage:
    machine: int
    image_base: int          # the preferred base; ASLR may load it elsewhere
    is_64: bool
    dll_name: str | None
    exports: dict[str, Export] = field(default_factory=dict)      # by name
    ordinals: dict[int, Export] = field(default_factory=dict)

    def export_rva(self, name: str) -> int:
        """The RVA of an exported function (`#12` names an ordinal); SymbolError if absent."""
        export = self.ordinals.get(int(name[1:])) if name.startswith("#") and name[1:].isdigit() \
            else self.exports.get(name)
        if export is None:
            raise SymbolError(f"{self.dll_name or 'the image'} exports no {name}")
        if export.forwarder:
            raise SymbolError(f"{name} is forwarded to {export.forwarder}")
        return export.rva


@dataclass(frozen=True)
class _Section:
    rva: int
    size: int
    offset: int


def read_pe_file(path: str | Path) -> PEImage:
    data = Path(path).read_bytes()
    return parse_pe(lambda offset, size: data[offset:offset + size], mapped=False)


def parse_pe(read: Reader, mapped: bool) -> PEImage:
    """Parse headers and exports. `mapped`: `read` takes RVAs (an image in memory)."""
    try:
        return _parse(read, mapped)
    except (struct.error, IndexError, UnicodeDecodeError) as e:
        raise SymbolError(f"not a valid PE image: {e}") from None


def _parse(read: Reader, mapped: bool) -> PEImage:
    if read(0, 2) != b"MZ":
        raise SymbolError("not a PE image (no MZ header)")
    (pe_offset,) = struct.unpack("<I", read(0x3C, 4))
    if read(pe_offset, 4) != b"PE\0\0":
        raise SymbolError("not a PE image (no PE signature)")
    machine, nsections, opt_size = _coff(read(pe_offset + 4, 20))
    opt = pe_offset + 24
    magic, image_base, dirs = _optional_header(read, opt)
    sections = _sections(read(opt + opt_size, 40 * nsections), nsections)
    to_offset = (lambda rva: rva) if mapped else (lambda rva: _rva_to_offset(rva, sections))
    export_rva, export_size = dirs[0] if dirs else (0, 0)
    dll_name: str | None = None
    exports: dict[str, Export] = {}
    ordinals: dict[int, Export] = {}
    if export_rva:
        dll_name, exports, ordinals = _exports(read, to_offset, export_rva, export_size)
    return PEImage(machine, image_base, magic == _PE32_PLUS, dll_name, exports, ordinals)


def _coff(header: bytes) -> tuple[int, int, int]:
    machine, nsections, _, _, _, opt_size, _ = struct.unpack("<HHIIIHH", header)
    return machine, nsections, opt_size


def _optional_header(read: Reader, opt: int) -> tuple[int, int, list[tuple[int, int]]]:
    (magic,) = struct.unpack("<H", read(opt, 2))
    if magic == _PE32_PLUS:
        (image_base,) = struct.unpack("<Q", read(opt + 24, 8))
        count_at, dirs_at = opt + 108, opt + 112
    elif magic == _PE32:
        (image_base,) = struct.unpack("<I", read(opt + 28, 4))
        count_at, dirs_at = opt + 92, opt + 96
    else:
        raise SymbolError(f"unknown PE optional header magic {magic:#x}")
    (count,) = struct.unpack("<I", read(count_at, 4))
    raw = read(dirs_at, 8 * min(count, 16))
    return magic, image_base, [struct.unpack_from("<II", raw, 8 * i) for i in range(len(raw) // 8)]


def _sections(table: bytes, count: int) -> list[_Section]:
    sections = []
    for i in range(count):
        vsize, rva, raw_size, raw_offset = struct.unpack_from("<IIII", table, 40 * i + 8)
        sections.append(_Section(rva, max(vsize, raw_size), raw_offset))
    return sections


def _rva_to_offset(rva: int, sections: list[_Section]) -> int:
    for s in sections:
        if s.rva <= rva < s.rva + s.size:
            return rva - s.rva + s.offset
    raise SymbolError(f"RVA {rva:#x} is in no section")


def _exports(read: Reader, to_offset: Callable[[int], int], rva: int,
             size: int) -> tuple[str | None, dict[str, Export], dict[int, Export]]:
    (_, _, _, _, name_rva, base, nfuncs, nnames, funcs_rva, names_rva,
     ords_rva) = struct.unpack("<IIHHIIIIIII", read(to_offset(rva), 40))
    if nfuncs > _MAX_EXPORTS or nnames > _MAX_EXPORTS:
        raise SymbolError("export directory too large: a corrupt image")
    func_rvas = struct.unpack(f"<{nfuncs}I", read(to_offset(funcs_rva), 4 * nfuncs)) if nfuncs else ()
    name_rvas = struct.unpack(f"<{nnames}I", read(to_offset(names_rva), 4 * nnames)) if nnames else ()
    name_ords = struct.unpack(f"<{nnames}H", read(to_offset(ords_rva), 2 * nnames)) if nnames else ()
    names_by_index = {index: _cstring(read, to_offset(n)) for n, index in zip(name_rvas, name_ords)}
    exports: dict[str, Export] = {}
    ordinals: dict[int, Export] = {}
    for index, func_rva in enumerate(func_rvas):
        if not func_rva:
            continue  # a hole in the ordinal range
        name = names_by_index.get(index)
        # An RVA inside the export directory is not code but "DLL.Function" text.
        forwarder = _cstring(read, to_offset(func_rva)) if rva <= func_rva < rva + size else None
        export = Export(name, base + index, 0 if forwarder else func_rva, forwarder)
        ordinals[export.ordinal] = export
        if name is not None:
            exports[name] = export
    return _cstring(read, to_offset(name_rva)) if name_rva else None, exports, ordinals


def _cstring(read: Reader, offset: int, limit: int = 512) -> str:
    data = read(offset, limit)
    end = data.find(b"\0")
    return (data if end < 0 else data[:end]).decode("ascii")
