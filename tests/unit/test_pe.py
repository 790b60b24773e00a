"""The PE export reader, on PEs built byte by byte here and, where mingw-w64 exists, on a real DLL."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from instrument.errors import SymbolError
from instrument.symbols.pe import (
    IMAGE_FILE_MACHINE_AMD64, IMAGE_FILE_MACHINE_I386, parse_pe, read_pe_file,
)

SECTION_RVA, SECTION_OFFSET = 0x1000, 0x200


def _export_section(dll: str, names: dict[str, int], forwarders: dict[str, str], base: int) -> bytes:
    """An .edata section at SECTION_RVA: directory, tables, then strings."""
    entries = sorted(names) + sorted(forwarders)
    n = len(entries)
    funcs_at, names_at = 40, 40 + 4 * n
    ords_at = names_at + 4 * n
    strings_at = ords_at + 2 * n
    strings, string_rvas = b"", {}
    for s in dict.fromkeys([dll] + entries + list(forwarders.values())):
        string_rvas[s] = SECTION_RVA + strings_at + len(strings)
        strings += s.encode() + b"\0"
    size = strings_at + len(strings)
    funcs = [names[e] if e in names else string_rvas[forwarders[e]] for e in entries]
    directory = struct.pack("<IIHHIIIIIII", 0, 0, 0, 0, string_rvas[dll], base, n, n,
                            SECTION_RVA + funcs_at, SECTION_RVA + names_at, SECTION_RVA + ords_at)
    body = (directory + struct.pack(f"<{n}I", *funcs) + struct.pack(f"<{n}I", *[string_rvas[e] for e in entries])
            + struct.pack(f"<{n}H", *range(n)) + strings)
    assert len(body) == size
    return body


def tiny_pe(is_64: bool = True, image_base: int = 0x180000000) -> bytes:
    """A minimal DLL: DOS header, PE headers, one section holding only the export directory."""
    edata = _export_section("tiny.dll", {"Alpha": 0x2010, "Beta": 0x2020},
                            {"Gamma": "KERNEL32.Sleep"}, base=5)
    opt_size = 240 if is_64 else 224
    dos = b"MZ" + bytes(0x3A) + struct.pack("<I", 0x40)
    coff = struct.pack("<HHIIIHH", IMAGE_FILE_MACHINE_AMD64 if is_64 else IMAGE_FILE_MACHINE_I386,
                       1, 0, 0, 0, opt_size, 0x2022)
    opt = bytearray(opt_size)
    if is_64:
        struct.pack_into("<H", opt, 0, 0x20B)
        struct.pack_into("<Q", opt, 24, image_base)
        struct.pack_into("<I", opt, 108, 16)
        struct.pack_into("<II", opt, 112, SECTION_RVA, len(edata))
    else:
        struct.pack_into("<H", opt, 0, 0x10B)
        struct.pack_into("<I", opt, 28, image_base)
        struct.pack_into("<I", opt, 92, 16)
        struct.pack_into("<II", opt, 96, SECTION_RVA, len(edata))
    section = struct.pack("<8sIIIIIIHHI", b".edata", len(edata), SECTION_RVA, len(edata),
                          SECTION_OFFSET, 0, 0, 0, 0, 0x40000040)
    headers = dos + b"PE\0\0" + coff + bytes(opt) + section
    return headers.ljust(SECTION_OFFSET, b"\0") + edata


@pytest.mark.parametrize("is_64, base", [(True, 0x180000000), (False, 0x10000000)])
def test_tiny_pe_exports_and_image_base(is_64: bool, base: int, tmp_path: Path) -> None:
    path = tmp_path / "tiny.dll"
    path.write_bytes(tiny_pe(is_64, base))
    image = read_pe_file(path)
    assert (image.is_64, image.image_base, image.dll_name) == (is_64, base, "tiny.dll")
    assert image.machine == (IMAGE_FILE_MACHINE_AMD64 if is_64 else IMAGE_FILE_MACHINE_I386)
    assert image.export_rva("Alpha") == 0x2010 and image.export_rva("Beta") == 0x2020
    assert image.export_rva("#6") == 0x2020                      # ordinal = base + index
    assert image.exports["Gamma"].forwarder == "KERNEL32.Sleep"


def test_mapped_image_reads_rvas_directly() -> None:
    # The same bytes laid out as the loader maps them: RVA == offset.
    file = tiny_pe()
    mapped = bytearray(file[:SECTION_OFFSET].ljust(SECTION_RVA, b"\0") + file[SECTION_OFFSET:])
    image = parse_pe(lambda rva, size: bytes(mapped[rva:rva + size]), mapped=True)
    assert image.export_rva("Alpha") == 0x2010


def test_missing_and_forwarded_exports_are_symbol_errors(tmp_path: Path) -> None:
    path = tmp_path / "tiny.dll"
    path.write_bytes(tiny_pe())
    image = read_pe_file(path)
    with pytest.raises(SymbolError, match="exports no Delta"):
        image.export_rva("Delta")
    with pytest.raises(SymbolError, match="forwarded to KERNEL32.Sleep"):
        image.export_rva("Gamma")


@pytest.mark.parametrize("data", [b"", b"ELF....", b"MZ" + bytes(0x3A) + struct.pack("<I", 0x40) + b"NOPE",
                                  tiny_pe()[:0x90]])
def test_garbage_is_a_symbol_error(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "bad.dll"
    path.write_bytes(data)
    with pytest.raises(SymbolError):
        read_pe_file(path)


MINGW = shutil.which("x86_64-w64-mingw32-gcc")

if MINGW:  # only where the cross compiler is installed (.ci/wine.sh installs it)
    def test_mingw_built_dll_exports(tmp_path: Path) -> None:
        source = tmp_path / "exports.c"
        source.write_text("__declspec(dllexport) int add_one(int x) { return x + 1; }\n"
                          "__declspec(dllexport) int twice(int x) { return 2 * x; }\n")
        dll = tmp_path / "exports.dll"
        subprocess.run([MINGW, "-shared", "-O0", "-o", str(dll), str(source),
                        "-Wl,--image-base,0x6f000000"], check=True, capture_output=True)
        image = read_pe_file(dll)
        assert image.is_64 and image.image_base == 0x6F000000 and image.dll_name == "exports.dll"
        assert {"add_one", "twice"} <= set(image.exports)
        nm = subprocess.run(["x86_64-w64-mingw32-nm", str(dll)], capture_output=True, text=True).stdout
        symbols = {line.split()[-1]: int(line.split()[0], 16) for line in nm.splitlines() if len(line.split()) == 3}
        assert image.export_rva("add_one") == symbols["add_one"] - image.image_base
