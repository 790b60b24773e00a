"""PeImage and the module map on PE files: a PE built byte by byte here and, where
mingw-w64 exists, the live suite's own hitlib.dll and hits.exe."""

from __future__ import annotations

import shutil
import struct
import subprocess
import uuid
from pathlib import Path

import pytest

from instrument.backend.base import Module
from instrument.symbols.elf import ElfImage, ImageError
from instrument.symbols.modules import ModuleMap, UnknownSymbol, open_module_image
from instrument.symbols.pe import read_pe_file
from instrument.symbols.pe_image import PeImage, open_pe_image
from tests.unit.test_pe import tiny_pe

# tiny_pe(): headers at 0x40 (PE) / 0x58 (optional header), one .edata section at
# RVA 0x1000 exporting Alpha=0x2010 and Beta=0x2020. We add .text (RVA 0x2000,
# executable) and .rdata (RVA 0x3000, the debug directory), a timestamp, SizeOfImage
# and a COFF symbol table, as mingw-w64 leaves them.
_OPT, _SECTIONS = 0x58, 0x58 + 240
TEXT_RVA, TEXT_SIZE, RDATA_RVA = 0x2000, 0x100, 0x3000
TIMESTAMP, SIZE_OF_IMAGE = 0x5EADBEEF, 0x4000
GUID = uuid.UUID("12345678-9abc-def0-1122-334455667788")
BASE = 0x7FF6_0000_0000


def _coff_symbol(name: bytes, value: int, section: int, kind: int, storage: int, aux: int = 0) -> bytes:
    return struct.pack("<8sIhHBB", name, value, section, kind, storage, aux) + bytes(18 * aux)


def _coff_table() -> tuple[bytes, int]:
    """(symbols + string table, symbol count): functions, a long name, data, an aux record."""
    long_name = b"a_long_function_name\0"
    symbols = [
        _coff_symbol(b"Local", 0x30, 2, 0x20, 3),                     # static function, .text+0x30
        _coff_symbol(b"\0\0\0\0" + struct.pack("<I", 4), 0x40, 2, 0x20, 2),   # long name: string table
        _coff_symbol(b"aliasA", 0x10, 2, 0x20, 2),                    # same address as the export Alpha
        _coff_symbol(b"data_sym", 0x50, 2, 0x00, 2),                  # not a function: ignored
        _coff_symbol(b".text", 0, 2, 0x00, 3, aux=1),                 # section symbol with an aux record
        _coff_symbol(b"Hidden", 0x60, 2, 0x20, 2),                    # after the aux record: still read
    ]
    strings = struct.pack("<I", 4 + len(long_name)) + long_name
    count = sum(len(s) // 18 for s in symbols)
    return b"".join(symbols) + strings, count


def pe_with_text(codeview: bool) -> bytes:
    data = bytearray(tiny_pe())
    struct.pack_into("<I", data, 0x40 + 8, TIMESTAMP)
    struct.pack_into("<I", data, _OPT + 56, SIZE_OF_IMAGE)
    struct.pack_into("<H", data, 0x40 + 6, 3)                         # NumberOfSections
    text_at = len(data)
    data += bytes(TEXT_SIZE)
    rdata_at = len(data)
    rsds_rva = RDATA_RVA + 28
    rsds = b"RSDS" + GUID.bytes_le + struct.pack("<I", 7) + b"tiny.pdb\0"
    debug = struct.pack("<IIHHIIII", 0, TIMESTAMP, 0, 0, 2, len(rsds), rsds_rva, rdata_at + 28)
    data += debug + rsds
    if codeview:
        struct.pack_into("<II", data, _OPT + 112 + 8 * 6, RDATA_RVA, len(debug))
    rdata_size = len(data) - rdata_at
    for i, (name, rva, size, at, flags) in enumerate([
            (b".text", TEXT_RVA, TEXT_SIZE, text_at, 0x60000020),
            (b".rdata", RDATA_RVA, rdata_size, rdata_at, 0x40000040)]):
        struct.pack_into("<8sIIIIIIHHI", data, _SECTIONS + 40 * (i + 1), name, size, rva, size, at,
                         0, 0, 0, 0, flags)
    table, count = _coff_table()
    struct.pack_into("<II", data, 0x40 + 12, len(data), count)        # PointerToSymbolTable, count
    return bytes(data + table)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "Tiny.dll"
    path.write_bytes(pe_with_text(codeview=False))
    return path


def test_extent_entry_and_timestamp_build_id(tiny: Path) -> None:
    image = PeImage(str(tiny))
    assert image.extent == (0, SIZE_OF_IMAGE) and image.is_pie
    # No CodeView record: the binary's symbol-server key, TimeDateStamp then SizeOfImage.
    assert image.build_id == f"{TIMESTAMP:08X}{SIZE_OF_IMAGE:x}" == "5EADBEEF4000"


def test_codeview_guid_and_age_are_the_build_id(tmp_path: Path) -> None:
    path = tmp_path / "cv.dll"
    path.write_bytes(pe_with_text(codeview=True))
    # The PDB's key: GUID as Windows prints it (fields in their own byte order), then the age.
    assert PeImage(str(path)).build_id == "123456789ABCDEF01122334455667788" + "7"


def test_exports_and_coff_functions_by_name(tiny: Path) -> None:
    image = PeImage(str(tiny))
    assert image.symbol_address("Alpha") == 0x2010 and image.symbol_address("Beta") == 0x2020
    assert image.symbol_address("Local") == TEXT_RVA + 0x30
    assert image.symbol_address("a_long_function_name") == TEXT_RVA + 0x40
    assert image.symbol_address("Hidden") == TEXT_RVA + 0x60
    assert image.symbol_address("data_sym") is None and image.symbol_address("Gamma") is None  # forwarder
    assert image.source_line(0x2010) is None and image.line_address("tiny.c", 3) is None


@pytest.mark.parametrize("rva, expected", [
    (0x2010, ("Alpha", 0)),          # the export names the address, not its COFF alias
    (0x2014, ("Alpha", 4)),
    (0x2025, ("Beta", 5)),
    (0x2031, ("Local", 1)),
    (0x20FF, ("Hidden", 0x9F)),       # nearest name below, up to the end of .text
    (0x2100, None),                  # past .text: not `Hidden+0xa0`
    (0x200F, None),                  # below the first name
    (0x1000, None),                  # .edata is not code
])
def test_symbolize_nearest_name_below_within_its_section(tiny: Path, rva: int, expected: object) -> None:
    assert PeImage(str(tiny)).symbolize(rva) == expected


def test_module_map_resolves_pe_names_case_insensitively(tiny: Path) -> None:
    modules = ModuleMap([Module(str(tiny), BASE)])
    assert modules.resolve("TINY.DLL!Alpha") == modules.resolve("tiny.dll!Alpha") == BASE + 0x2010
    assert modules.resolve("tiny!Beta") == BASE + 0x2020
    assert modules.resolve("Local") == BASE + TEXT_RVA + 0x30
    assert modules.find(BASE + SIZE_OF_IMAGE - 1) is not None and modules.find(BASE + SIZE_OF_IMAGE) is None
    described = modules.describe(BASE + 0x2014)
    assert (described["module"], described["offset"], described["symbol"]) == ("Tiny.dll", 0x2014, "Alpha+0x4")
    assert described["line"] is None


def test_symbol_text_of_a_dll_carries_its_module(tiny: Path, tmp_path: Path) -> None:
    main = tmp_path / "main.exe"
    main.write_bytes(pe_with_text(codeview=False))
    modules = ModuleMap([Module(str(main), 0x1_4000_0000), Module(str(tiny), BASE)])
    assert modules.symbol_text(0x1_4000_0000 + 0x2021) == "Beta+0x1"        # the main image: bare
    assert modules.symbol_text(BASE + 0x2021) == "Tiny.dll!Beta+0x1"
    assert modules.symbol_text(BASE + 0x3000) == "Tiny.dll+0x3000"          # no code name there
    with pytest.raises(UnknownSymbol, match="no symbol 'Nope' in module 'TINY.dll'"):
        modules.resolve("TINY.dll!Nope")


def test_wine_style_paths_name_their_modules(tiny: Path) -> None:
    # Files we cannot open still resolve by module name, from wine's Windows paths.
    modules = ModuleMap([Module(str(tiny), BASE),
                         Module(r"C:\windows\system32\KERNEL32.DLL", 0x7B600000),
                         Module(r"Z:\usr\lib\x86_64-linux-gnu\wine\x86_64-windows\ntdll.dll", 0x170000000)])
    assert modules.resolve("kernel32.dll") == 0x7B600000
    assert modules.resolve("NTDLL") == 0x170000000
    with pytest.raises(UnknownSymbol, match="no module 'user32.dll' is loaded"):
        modules.resolve("user32.dll!MessageBoxW")


def test_open_module_image_chooses_by_magic(tiny: Path, tmp_path: Path) -> None:
    assert isinstance(open_module_image(str(tiny)), PeImage)
    assert open_module_image(str(tiny)) is open_pe_image(str(tiny))          # cached
    elf = shutil.which("true")
    assert elf is not None and isinstance(open_module_image(elf), ElfImage)
    text = tmp_path / "notes.txt"
    text.write_text("neither ELF nor PE\n")
    with pytest.raises(ImageError):
        open_module_image(str(text))
    with pytest.raises(ImageError, match="cannot read"):
        open_module_image(str(tmp_path / "missing.dll"))
    truncated = tmp_path / "cut.dll"
    truncated.write_bytes(pe_with_text(codeview=False)[:0x60])
    with pytest.raises(ImageError, match="not a valid PE image"):
        open_module_image(str(truncated))


MINGW = shutil.which("x86_64-w64-mingw32-gcc")
WIN_TARGETS = Path(__file__).resolve().parents[1] / "targets" / "win"

if MINGW:  # only where the cross compiler is installed (.ci/wine.sh installs it)
    def _nm(path: Path) -> dict[str, int]:
        out = subprocess.run(["x86_64-w64-mingw32-nm", str(path)], capture_output=True, text=True).stdout
        return {p[2]: int(p[0], 16) for p in (line.split() for line in out.splitlines()) if len(p) == 3}

    def test_mingw_hitlib_and_hits(tmp_path: Path) -> None:
        dll, exe = tmp_path / "hitlib.dll", tmp_path / "hits.exe"
        subprocess.run([MINGW, "-shared", "-O0", "-g", "-o", str(dll), str(WIN_TARGETS / "hitlib.c")], check=True)
        subprocess.run([MINGW, "-O0", "-g", "-o", str(exe), str(WIN_TARGETS / "hits.c")], check=True)
        lib, prog = PeImage(str(dll)), PeImage(str(exe))
        lib_syms, prog_syms = _nm(dll), _nm(exe)
        lib_base, prog_base = read_pe_file(dll).image_base, read_pe_file(exe).image_base
        assert lib.symbol_address("hit") == lib_syms["hit"] - lib_base
        # main is not exported: the COFF symbol table names it.
        assert prog.symbol_address("main") == prog_syms["main"] - prog_base
        assert prog.symbolize(prog_syms["main"] - prog_base + 3) == ("main", 3)
        assert prog.symbol_address("counter") == prog_syms["counter"] - prog_base   # a data export
        assert lib.extent[1] > lib.symbol_address("hit") and len(lib.build_id or "") > 8
        modules = ModuleMap([Module(str(exe), prog_base), Module(str(dll), 0x6_0000_0000)])
        assert modules.symbol_text(0x6_0000_0000 + lib_syms["hit"] - lib_base + 1) == "hitlib.dll!hit+0x1"
