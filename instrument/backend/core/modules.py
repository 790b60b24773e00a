"""The modules of a dumped process, as the live backend would have reported them, with their build ids.

The live backend names the main program from /proc/PID/exe, the dynamic
loader from its mapping at AT_BASE, and every other object from the loader's
link_map list (r_debug, found through the program's DT_DEBUG), at the load
bias l_addr. The core holds the same link_map in its memory, so the same
walk gives the same names and bases, which the stack hash depends on.
Objects the list does not have (a static program, a loader mid-change) come
from NT_FILE: each mapped ELF file, based at its first mapping.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

from .elfcore import AT_BASE, AT_ENTRY, AT_PHDR, AT_PHNUM, CoreFile

AT_SYSINFO_EHDR = 33
PT_LOAD, PT_DYNAMIC, PT_NOTE, PT_PHDR = 1, 2, 4, 6
DT_NULL, DT_DEBUG = 0, 21
NT_GNU_BUILD_ID = 3
VDSO_NAME = "linux-vdso.so.1"
PAGE_MASK = ~0xFFF
_MAX_OBJECTS = 4096         # a corrupt or cyclic link_map must not hang us
_MAX_DYNAMIC = 1024
_PHDR = struct.Struct("<IIQQQQQQ")

Read = Callable[[int, int], bytes]


@dataclass(frozen=True)
class CoreModule:
    """A module of the dumped process: `path` as the live backend names it, its load bias,
    the NT_FILE path its bytes come from (None: none), its build id from the core's own bytes."""

    path: str
    base: int
    file: str | None
    build_id: str | None


def _try(read: Read, address: int, size: int) -> bytes | None:
    try:
        data = read(address, size)
    except Exception:  # noqa: BLE001 - any unreadable byte: the structure is not there
        return None
    return data if len(data) == size else None


def _u64(read: Read, address: int) -> int | None:
    data = _try(read, address, 8)
    return None if data is None else int.from_bytes(data, "little")


def _cstring(read: Read, address: int, limit: int = 4096) -> str | None:
    out = b""
    while len(out) < limit:
        at = address + len(out)
        chunk = _try(read, at, 256 - at % 256)    # never across a 256-byte line: the next page may be gone
        if chunk is None:
            return None
        nul = chunk.find(b"\0")
        if nul >= 0:
            return (out + chunk[:nul]).decode("utf-8", "surrogateescape")
        out += chunk
    return None


def program_headers(read: Read, address: int, count: int) -> list[tuple[int, int, int]]:
    """(p_type, p_vaddr, p_memsz) of `count` program headers at `address`."""
    data = _try(read, address, count * _PHDR.size)
    if data is None:
        return []
    headers = []
    for i in range(count):
        p_type, _flags, _offset, vaddr, _paddr, _filesz, memsz, _align = _PHDR.unpack_from(data, i * _PHDR.size)
        headers.append((p_type, vaddr, memsz))
    return headers


def image_headers(read: Read, header: int) -> list[tuple[int, int, int]]:
    """The program headers of the ELF image whose header is mapped at `header`."""
    ehdr = _try(read, header, 64)
    if ehdr is None or ehdr[:4] != b"\x7fELF":
        return []
    e_phoff = struct.unpack_from("<Q", ehdr, 32)[0]
    e_phnum = struct.unpack_from("<H", ehdr, 56)[0]
    return program_headers(read, header + e_phoff, min(e_phnum, 256))


def build_id(read: Read, base: int, headers: list[tuple[int, int, int]]) -> str | None:
    """The GNU build id in the PT_NOTE segments of an image at load bias `base`."""
    for p_type, vaddr, memsz in headers:
        if p_type != PT_NOTE:
            continue
        notes = _try(read, base + vaddr, min(memsz, 4096))
        pos = 0
        while notes is not None and pos + 12 <= len(notes):
            namesz, descsz, n_type = struct.unpack_from("<III", notes, pos)
            name_at = pos + 12
            desc_at = name_at + ((namesz + 3) & ~3)
            if n_type == NT_GNU_BUILD_ID and notes[name_at:name_at + namesz].rstrip(b"\0") == b"GNU":
                return notes[desc_at:desc_at + descsz].hex() or None
            pos = desc_at + ((descsz + 3) & ~3)
    return None


def _lowest_load(headers: list[tuple[int, int, int]]) -> int | None:
    loads = [vaddr for p_type, vaddr, _ in headers if p_type == PT_LOAD]
    return min(loads) & PAGE_MASK if loads else None


class ModuleFinder:
    """Finds the modules of one core: `read` reads the process's memory (core, then files),
    `dumped` only the bytes the core holds (for build ids: the files may have changed)."""

    def __init__(self, core: CoreFile, read: Read, dumped: Read, exe: str | None) -> None:
        self.core, self.read, self.dumped, self.exe = core, read, dumped, exe

    def _first_mapping(self, path: str) -> int | None:
        starts = [f.start for f in self.core.files if f.path == path and f.offset == 0]
        return min(starts) if starts else None

    def _file_at(self, address: int) -> str | None:
        return next((f.path for f in self.core.files if f.start <= address < f.end), None)

    def _module(self, path: str, base: int, file: str | None,
                headers: list[tuple[int, int, int]] | None = None) -> CoreModule:
        if headers is None:
            # An image linked at 0 has its ELF header at its load bias; else at its first mapping.
            headers = image_headers(self.read, base)
            start = self._first_mapping(file) if file else None
            if not headers and start is not None:
                headers = image_headers(self.read, start)
        return CoreModule(path, base, file, build_id(self.dumped, base, headers))

    def main_module(self) -> CoreModule | None:
        aux = self.core.auxv
        entry = aux.get(AT_ENTRY)
        file = self._file_at(entry) if entry is not None else None
        path = self.exe or file
        if path is None:
            return None
        headers = program_headers(self.read, aux[AT_PHDR], min(aux.get(AT_PHNUM, 0), 256)) if AT_PHDR in aux else []
        base = None
        phdr = next((vaddr for p_type, vaddr, _ in headers if p_type == PT_PHDR), None)
        if phdr is not None:
            base = aux[AT_PHDR] - phdr
        else:
            # No PT_PHDR (a static non-PIE program): AT_ENTRY minus the header's e_entry, as live.
            start = self._first_mapping(file) if file else None
            ehdr = _try(self.read, start, 64) if start is not None else None
            if ehdr is not None and entry is not None:
                base = entry - struct.unpack_from("<Q", ehdr, 24)[0]
        return CoreModule(path, base or 0, file, build_id(self.dumped, base or 0, headers))

    def loader(self) -> CoreModule | None:
        base = self.core.auxv.get(AT_BASE, 0)
        file = self._file_at(base) if base else None
        if not base or file is None:
            return None
        return self._module(file, base, file)

    def _r_debug(self, main: CoreModule) -> int | None:
        aux = self.core.auxv
        if AT_PHDR not in aux:
            return None
        headers = program_headers(self.read, aux[AT_PHDR], min(aux.get(AT_PHNUM, 0), 256))
        dynamic = next(((vaddr, memsz) for p_type, vaddr, memsz in headers if p_type == PT_DYNAMIC), None)
        if dynamic is None:
            return None
        entries = _try(self.read, main.base + dynamic[0], min(dynamic[1], _MAX_DYNAMIC * 16) & ~15)
        for i in range(0, len(entries or b""), 16):
            tag, value = struct.unpack_from("<qQ", entries or b"", i)
            if tag == DT_NULL:
                break
            if tag == DT_DEBUG:
                return value or None
        return None

    def linked(self, main: CoreModule) -> list[tuple[str, int]]:
        """(name, l_addr) of each named object in the loader's link_map, in list order."""
        r_debug = self._r_debug(main)
        node = _u64(self.read, r_debug + 8) if r_debug else None
        found: list[tuple[str, int]] = []
        for _ in range(_MAX_OBJECTS):
            if not node:
                break
            raw = _try(self.read, node, 32)
            if raw is None:
                break
            l_addr, l_name, _l_ld, node = struct.unpack("<QQQQ", raw)
            name = _cstring(self.read, l_name) if l_name else ""
            if name:            # the main program's l_name is empty
                if l_addr == 0 and name == VDSO_NAME:
                    l_addr = self.core.auxv.get(AT_SYSINFO_EHDR, 0)
                found.append((name, l_addr))
        return found

    def mapped_images(self) -> list[tuple[str, int, list[tuple[int, int, int]]]]:
        """(NT_FILE path, load bias, program headers) of each mapped ELF file, by address."""
        images = []
        seen: set[str] = set()
        for f in sorted(self.core.files, key=lambda f: f.start):
            if f.offset != 0 or f.path in seen:
                continue
            seen.add(f.path)
            headers = image_headers(self.read, f.start)
            low = _lowest_load(headers)
            if low is not None:
                images.append((f.path, f.start - low, headers))
        return images

    def modules(self) -> list[CoreModule]:
        """Main program first, then the loader, then the link_map's objects, then any other ELF file mapped."""
        main = self.main_module()
        if main is None:
            return []
        found = [main]
        loader = self.loader()
        if loader is not None:
            found.append(loader)
        bases = {m.base for m in found}
        for name, base in self.linked(main):
            if base not in bases:
                bases.add(base)
                found.append(self._module(name, base, self._file_at(base)))
        for path, base, headers in self.mapped_images():
            if base not in bases and path != main.file:
                bases.add(base)
                found.append(self._module(path, base, path, headers))
        return found
