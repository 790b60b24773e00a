"""Unit tests of the symbol layer's pure logic: name matching, tables, module maps by name."""

from __future__ import annotations

import pytest

from instrument.backend.base import Module
from instrument.errors import InstrumentError
from instrument.symbols.demangle import demangle_many, without_parameters
from instrument.symbols.elf import ImageError, LineTable, SymbolTable, _Candidate, open_image
from instrument.symbols.modules import ModuleMap, UnknownSymbol, module_matches

LIBC = Module("/lib/x86_64-linux-gnu/libc.so.6", 0x7F0000000000)
LD = Module("/lib64/ld-linux-x86-64.so.2", 0x7F1000000000)
MAIN = Module("./target_loop", 0x555555554000)
KERNEL32 = Module("C:\\Windows\\System32\\KERNEL32.DLL", 0x7FFB0000)


@pytest.mark.parametrize("name, module, expected", [
    ("libc.so.6", LIBC, True),
    ("libc", LIBC, True),
    ("/lib/x86_64-linux-gnu/libc.so.6", LIBC, True),
    ("/lib/x86_64-linux-gnu/../x86_64-linux-gnu/libc.so.6", LIBC, True),
    ("libc.so", LIBC, False),
    ("libcrypto", LIBC, False),
    ("LIBC", LIBC, False),                       # ELF names are case-sensitive
    ("ld", LD, True),
    ("ld-linux-x86-64.so.2", LD, True),
    ("target_loop", MAIN, True),
    ("./target_loop", MAIN, True),
    ("target", MAIN, False),
    ("kernel32.dll", KERNEL32, True),           # PE names are not
    ("kernel32", KERNEL32, True),
    ("", LIBC, False),
])
def test_module_matches(name: str, module: Module, expected: bool) -> None:
    assert module_matches(name, module) is expected


def test_unreadable_modules_still_work_by_name() -> None:
    vdso = Module("linux-vdso.so.1", 0x7FFF0000)
    gone = Module("/nonexistent/libgone.so", 0x7E000000)
    mm = ModuleMap([MAIN, vdso, gone])     # ./target_loop does not exist either
    assert mm.main == MAIN
    assert list(mm) == [MAIN, vdso, gone]
    assert mm.resolve("linux-vdso.so.1") == 0x7FFF0000
    assert mm.resolve("libgone") == 0x7E000000
    assert mm.try_resolve("libgone!f") is None
    # Without a file there is no extent: the address belongs to no module.
    assert mm.find(0x7E000010) is None
    assert mm.symbol_text(0x7E000010) == "0x7e000010"
    assert mm.describe(0x7E000010) == {"module": None, "offset": None, "symbol": None,
                                        "file": None, "line": None}


def test_remove_and_main() -> None:
    mm = ModuleMap()
    assert mm.main is None and len(mm) == 0
    mm.add(MAIN)
    mm.add(LD)
    assert mm.remove(LD.base) == LD
    assert mm.remove(LD.base) is None
    assert list(mm) == [MAIN] and mm.main == MAIN
    mm.add(Module("/other/path/target_loop", MAIN.base))   # same base: replaced, not duplicated
    assert [m.path for m in mm] == ["/other/path/target_loop"]


@pytest.mark.parametrize("name, fragment", [
    ("nosuch", "no symbol or module"),
    ("libzip!deflate", "no module 'libzip' is loaded"),
    ("target_loop!nosuch", "no symbol 'nosuch' in module 'target_loop'"),
    ("loop.c:42", "no code at that source line"),
])
def test_unknown_names_raise_keyerror_naming_them(name: str, fragment: str) -> None:
    mm = ModuleMap([MAIN])
    with pytest.raises(KeyError) as info:
        mm.resolve(name)
    assert isinstance(info.value, UnknownSymbol)
    assert repr(name) in str(info.value) and fragment in str(info.value)
    assert mm.try_resolve(name) is None


def _cand(address: int, size: int, name: str, section: int = 1,
          rank: tuple[int, int, int, int] = (0, 0, 0, 0)) -> _Candidate:
    return _Candidate(address, size, name, section, rank)


def test_symbol_table_sizes_labels_and_section_ends() -> None:
    table = SymbolTable([
        _cand(0x1000, 0x20, "f"),
        _cand(0x1030, 0, "label"),           # zero size: reaches the next symbol (0x1040)
        _cand(0x1040, 0x10, "g"),
        _cand(0x1060, 0, "tail"),            # zero size, last: reaches the section end
        _cand(0x2000, 0, "other_section", section=2),
    ], section_ends={1: 0x1070, 2: 0x2008})
    assert table.symbolize(0x1000) == ("f", 0)
    assert table.symbolize(0x101F) == ("f", 0x1F)
    assert table.symbolize(0x1020) is None               # padding after f: nothing
    assert table.symbolize(0x103F) == ("label", 0xF)
    assert table.symbolize(0x1045) == ("g", 5)
    assert table.symbolize(0x106F) == ("tail", 0xF)
    assert table.symbolize(0x1070) is None               # never beyond the section end
    assert table.symbolize(0x2007) == ("other_section", 7)
    assert table.symbolize(0xFFF) is None


def test_symbol_table_prefers_sized_aliases_and_plain_names() -> None:
    table = SymbolTable([
        _cand(0x100, 0x40, "__libc_malloc"),
        _cand(0x100, 0x40, "malloc"),
        _cand(0x100, 0x40, "local_copy", rank=(0, 0, 2, 0)),   # LOCAL loses to GLOBAL
        _cand(0x110, 0, "inner_label", rank=(0, 0, 2, 1)),      # nested label
    ], section_ends={1: 0x1000})
    assert table.symbolize(0x120) == ("malloc", 0x20)
    assert table.by_name["__libc_malloc"] == table.by_name["malloc"] == 0x100


def test_symbol_table_name_index_prefers_symtab_default_version_global() -> None:
    table = SymbolTable([
        _cand(0x200, 40, "memcpy", rank=(1, 1, 0, 0)),   # memcpy@GLIBC_2.2.5 (hidden)
        _cand(0x300, 265, "memcpy", rank=(1, 0, 0, 0)),  # memcpy@@GLIBC_2.14 (default)
        _cand(0x400, 8, "dup", rank=(1, 0, 0, 0)),       # .dynsym
        _cand(0x500, 8, "dup", rank=(0, 0, 2, 0)),       # .symtab wins even as LOCAL
    ], section_ends={1: 0x1000})
    assert table.by_name["memcpy"] == 0x300
    assert table.by_name["dup"] == 0x500


def _line_table() -> LineTable:
    t = LineTable()
    a = t.file_id("/src/proj/a.c")
    b = t.file_id("/src/other/b.c")
    for addr, fid, line in [(0x10, a, 3), (0x18, a, 4), (0x20, a, 3), (0x28, a, 7)]:
        t.add_row(addr, fid, line, True, False)
    t.add_row(0x30, a, 7, False, True)                   # end of that sequence
    t.add_row(0x30, b, 20, True, False)                  # next sequence starts right there
    t.add_row(0x38, b, 0, True, False)                   # line 0: compiler-made code
    t.add_row(0x40, b, 20, True, True)
    return t.finish()


def test_line_table_lookups() -> None:
    t = _line_table()
    assert t.source_line(0x0F) is None
    assert t.source_line(0x10) == ("/src/proj/a.c", 3)
    assert t.source_line(0x1F) == ("/src/proj/a.c", 4)
    assert t.source_line(0x30) == ("/src/other/b.c", 20)
    assert t.source_line(0x38) is None
    assert t.source_line(0x40) is None                   # past the last sequence
    assert t.line_address("a.c", 3) == 0x10              # lowest of its two ranges
    assert t.line_address("proj/a.c", 5) == 0x28         # no code on 5: the next line, 7
    assert t.line_address("a.c", 8) is None              # nothing after it in a.c
    assert t.line_address("b.c", 1) == 0x30
    assert t.line_address("j/a.c", 3) is None           # suffixes match whole components
    assert t.line_address("/src/other/b.c", 20) == 0x30


def test_without_parameters() -> None:
    assert without_parameters("geo::area(int, int)") == "geo::area"
    assert without_parameters("geo::Box::perimeter() const") == "geo::Box::perimeter"
    assert without_parameters("S::operator()(int)") == "S::operator()"
    assert without_parameters("f(void (*)(int))") == "f"
    assert without_parameters("plain") == "plain"


def test_demangle_many_is_batched_and_total() -> None:
    # c++filt ships with binutils, which gcc itself needs, so it is present wherever
    # the test targets build.
    names = ["_ZN3geo4areaEii", "malloc", "_ZNK3geo3Box9perimeterEv", "_Znot_really"]
    assert demangle_many(names) == ["geo::area(int, int)", "malloc",
                                    "geo::Box::perimeter() const", "_Znot_really"]
    assert demangle_many([]) == []


def test_open_image_errors(tmp_path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an ELF file at all\n")
    with pytest.raises(ImageError, match="not an ELF file"):
        open_image(str(text))
    with pytest.raises(ImageError, match="cannot read") as info:
        open_image(str(tmp_path / "missing"))
    assert isinstance(info.value, InstrumentError)


def test_a_file_gone_after_open_has_no_symbols_instead_of_failing(tmp_path) -> None:
    copy = tmp_path / "true"
    copy.write_bytes(open("/bin/true", "rb").read())
    image = open_image(str(copy))          # headers read now; symbols and lines lazily
    copy.unlink()
    assert image.symbol_address("main") is None and image.symbolize(image.entry) is None
    assert image.source_line(image.entry) is None
    assert image.build_id                  # read with the headers, before the file went
