"""Separate debug files, found as gdb finds them, and the DWARF of a module wherever it lives.

A distribution ships its binaries stripped and their `.symtab`, DWARF and
`.debug_frame` in a separate file (libc6-dbg, *-dbgsym, debuginfod). gdb looks,
in order (gdb manual, "Separate Debug Files"):

1. by build id: ROOT/.build-id/xx/yyyy….debug, for each debug root;
2. by `.gnu_debuglink` (a file name and the CRC-32 of that file): DIR/NAME,
   DIR/.debug/NAME and ROOT/DIR/NAME, where DIR is the binary's directory;
   a file whose CRC differs belongs to another build and is ignored;
3. from the debuginfod servers in DEBUGINFOD_URLS, only when it is set.

The debug roots are INSTRUMENT_DEBUG_DIRS (os.pathsep-separated; for tests and
for a debug tree kept elsewhere) and then /usr/lib/debug. Downloads land in the
debuginfod client's own cache layout (DEBUGINFOD_CACHE_PATH, else
$XDG_CACHE_HOME/debuginfod_client), so gdb and instrument share what one fetched.
"""

from __future__ import annotations

import functools
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from ..errors import TargetError
from .filecache import FileCache

SYSTEM_DEBUG_ROOT = "/usr/lib/debug"
DEBUG_DIRS_VARIABLE = "INSTRUMENT_DEBUG_DIRS"
# A debuginfod server that does not answer must not hold up a crash report for long.
DEBUGINFOD_TIMEOUT = 10.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class _Facts:
    """What the lookup needs from one ELF file's headers."""

    build_id: str | None
    debuglink: tuple[str, int] | None      # (file name, CRC-32)
    has_dwarf: bool                        # a .debug_info with contents (not SHT_NOBITS)


def _read_facts(path: str) -> _Facts | None:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            link: tuple[str, int] | None = None
            has_dwarf = False
            build_id: str | None = None
            # Section headers only: pyelftools builds hash sections' tables when it makes
            # section objects (30 ms for libc), and this runs on every image a crash names.
            for i in range(elf.num_sections()):
                header = elf._get_section_header(i)
                name = elf._get_section_name(header)
                kind, size = header["sh_type"], header["sh_size"]
                if kind == "SHT_NOBITS" or not size:
                    continue
                if name == ".gnu_debuglink":
                    f.seek(header["sh_offset"])
                    link = _parse_debuglink(f.read(size), elf.little_endian)
                elif name in (".debug_info", ".zdebug_info"):
                    has_dwarf = True
                elif name == ".note.gnu.build-id" and build_id is None:
                    f.seek(header["sh_offset"])
                    build_id = _note_build_id(f.read(size), elf.little_endian)
            return _Facts(build_id or _build_id(elf), link, has_dwarf)
    except (ELFError, OSError, struct.error, ValueError):
        return None


def _note_build_id(data: bytes, little_endian: bool) -> str | None:
    """The NT_GNU_BUILD_ID (3) note of a .note.gnu.build-id section: namesz, descsz, type,
    the name "GNU\0", then the id, each padded to 4 bytes."""
    if len(data) < 12:
        return None
    namesz, descsz, kind = struct.unpack_from("<III" if little_endian else ">III", data, 0)
    start = 12 + ((namesz + 3) & ~3)
    if kind != 3 or start + descsz > len(data) or not descsz:
        return None
    return data[start:start + descsz].hex()


def _parse_debuglink(data: bytes, little_endian: bool) -> tuple[str, int] | None:
    """`.gnu_debuglink`: a NUL-terminated file name, padding to 4, then a 4-byte CRC-32."""
    end = data.find(b"\0")
    if end <= 0:
        return None
    crc_at = (end + 4) & ~3
    if crc_at + 4 > len(data):
        return None
    (crc,) = struct.unpack_from("<I" if little_endian else ">I", data, crc_at)
    return os.fsdecode(data[:end]), crc


def _build_id(elf: Any) -> str | None:
    """The build id from any note (the section has another name, or there are only
    segments). Sections first: a debug file's segments describe the stripped file."""
    notes = [s for s in elf.iter_sections() if s["sh_type"] == "SHT_NOTE"]
    notes += [s for s in elf.iter_segments() if s["p_type"] == "PT_NOTE"]
    for holder in notes:
        try:
            for note in holder.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID":
                    desc = note["n_desc"]
                    return desc if isinstance(desc, str) else bytes(desc).hex()
        except Exception:  # noqa: BLE001 - a note pyelftools cannot parse: look at the next
            continue
    return None


_facts: FileCache[_Facts | None] = FileCache(_read_facts)


def _facts_of(path: str) -> _Facts | None:
    try:
        return _facts.get(path)
    except TargetError:
        return None


def file_crc32(path: str) -> int | None:
    """The CRC-32 `.gnu_debuglink` records (binutils' bfd_calc_gnu_debuglink_crc32 is zlib's)."""
    crc = 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                crc = zlib.crc32(chunk, crc)
    except OSError:
        return None
    return crc & 0xFFFFFFFF


def debug_roots() -> list[str]:
    """Where debug trees are looked for: INSTRUMENT_DEBUG_DIRS first, then /usr/lib/debug."""
    extra = [d for d in os.environ.get(DEBUG_DIRS_VARIABLE, "").split(os.pathsep) if d]
    return [*extra, SYSTEM_DEBUG_ROOT]


def find_debug_file(path: str) -> str | None:
    """The separate debug file of the ELF file `path`, or None (gdb's order, module docstring).

    Looked up once per file version and environment: a triage run asks for libc's
    on every crash."""
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return None
    return _find(real, st.st_mtime_ns, st.st_size, tuple(debug_roots()),
                 os.environ.get("DEBUGINFOD_URLS", ""), _cache_root())


@functools.lru_cache(maxsize=512)
def _find(real: str, _mtime: int, _size: int, roots: tuple[str, ...], urls: str,
          cache: str) -> str | None:
    facts = _facts_of(real)
    if facts is None:
        return None
    if facts.build_id and len(facts.build_id) > 2:
        for root in roots:
            candidate = os.path.join(root, ".build-id", facts.build_id[:2], facts.build_id[2:] + ".debug")
            if _is_debug_file_for(candidate, facts.build_id, real):
                return candidate
    if facts.debuglink is not None:
        name, crc = facts.debuglink
        directory = os.path.dirname(real)
        places = [os.path.join(directory, name), os.path.join(directory, ".debug", name)]
        places += [os.path.join(root, directory.lstrip("/"), name) for root in roots]
        for candidate in places:
            if os.path.realpath(candidate) != real and os.path.isfile(candidate) \
                    and file_crc32(candidate) == crc:
                return candidate
    if urls.strip() and facts.build_id:
        return fetch_debuginfod(facts.build_id, urls.split(), cache)
    return None


def _is_debug_file_for(candidate: str, build_id: str, real: str) -> bool:
    """A build-id path names the right file when its own build id agrees (gdb checks too:
    a stale link in .build-id is not unheard of)."""
    if not os.path.isfile(candidate) or os.path.realpath(candidate) == real:
        return False
    facts = _facts_of(candidate)
    return facts is not None and (facts.build_id is None or facts.build_id == build_id)


def _cache_root() -> str:
    explicit = os.environ.get("DEBUGINFOD_CACHE_PATH")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "debuginfod_client")


def fetch_debuginfod(build_id: str, urls: list[str], cache: str) -> str | None:
    """CACHE/BUILD_ID/debuginfo, fetched from the first server of `urls` that has it
    (GET URL/buildid/BUILD_ID/debuginfo, the debuginfod protocol), or None."""
    # Imported here: only a lookup with DEBUGINFOD_URLS set pays for urllib.
    import tempfile
    import urllib.error
    import urllib.request

    if not all(c in "0123456789abcdef" for c in build_id):
        return None
    target = os.path.join(cache, build_id, "debuginfo")
    if os.path.isfile(target):
        return target
    for url in urls:
        if not url.startswith(("http://", "https://")):
            continue
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/buildid/{build_id}/debuginfo",
                                        timeout=DEBUGINFOD_TIMEOUT) as response:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                # Written beside and renamed: a concurrent reader never sees half a file.
                fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".tmp")
                try:
                    with os.fdopen(fd, "wb") as out:
                        while chunk := response.read(_CHUNK):
                            out.write(chunk)
                    os.replace(tmp, target)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
        except (urllib.error.URLError, OSError, ValueError):
            continue
        if _facts_of(target) is not None:
            return target
        os.unlink(target)       # not an ELF file: an error page, not debug info
    return None


def has_own_dwarf(path: str) -> bool:
    """Does the file itself carry .debug_info (built with -g and not stripped)?"""
    facts = _facts_of(path)
    return facts is not None and facts.has_dwarf


def dwarf_path(path: str) -> str | None:
    """The file holding the DWARF that describes `path`: itself, or its debug file."""
    if has_own_dwarf(path):
        return path
    debug = find_debug_file(path)
    return debug if debug is not None and has_own_dwarf(debug) else None


def _open_dwarf(real: str) -> Any:
    from elftools.elf.elffile import ELFFile

    from .lineprog import fast_abbrevs

    source = dwarf_path(real)
    if source is None:
        return None
    try:
        # pyelftools copies (and decompresses) each debug section into memory when the
        # DWARFInfo is made, so the file need not stay open.
        with open(source, "rb") as f:
            elf = ELFFile(f)
            # Only an object file (ET_REL) has relocations against its debug sections; asking
            # pyelftools to look costs a scan of every section header per debug section.
            relocate = elf["e_type"] == "ET_REL"
            if not elf.has_dwarf_info():
                return None
            dwarf = elf.get_dwarf_info(relocate_dwarf_sections=relocate)
            if dwarf.config.little_endian:
                fast_abbrevs(dwarf)
            return dwarf
    except Exception:  # noqa: BLE001 - pyelftools raises a zoo on odd files: no DWARF, then
        return None


_dwarf: FileCache[Any] = FileCache(_open_dwarf, size=64)


def load_dwarf(path: str) -> Any:
    """The pyelftools DWARFInfo describing the ELF file `path` (from the file or its debug
    file), or None. Shared per file version; only the section headers are parsed here,
    compilation units are read when asked for."""
    try:
        return _dwarf.get(path)
    except TargetError:
        return None
