"""ELF symbols, lines and module maps against real gcc-built targets and the system libc,
cross-checked with nm, objdump, readelf and gdb."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from instrument.backend.base import Module
from instrument.symbols.elf import ElfImage, open_image
from instrument.symbols.modules import ModuleMap, StaticResolver

PIE_BASE = 0x555555554000
LIBC_BASE = 0x7FFFF7DD0000
LOOP_C = Path(__file__).parents[1] / "targets" / "loop.c"


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def _nm(path: str) -> dict[str, int]:
    """Defined text/data/bss symbols as nm lists them (versions stripped)."""
    out: dict[str, int] = {}
    for line in _run("nm", "--defined-only", path).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TtDdBbRrW":
            out.setdefault(parts[2].split("@")[0], int(parts[0], 16))
    return out


@pytest.fixture(scope="module")
def libc_path(targets) -> str:
    # The libc the targets really load, as the dynamic linker would find it.
    match = re.search(r"libc\.so\.6 => (\S+)", _run("ldd", targets["loop"]))
    assert match, "ldd did not list libc.so.6"
    return os.path.realpath(match.group(1))


def test_loop_symbols_match_nm(targets) -> None:
    image = open_image(targets["loop"])
    expected = _nm(targets["loop"])
    for name in ("hit", "main", "counter", "message", "buffer", "decide", "fact"):
        assert image.symbol_address(name) == expected[name], name
    assert image.symbolize(expected["hit"] + 4) == ("hit", 4)
    assert image.symbolize(expected["counter"]) == ("counter", 0)
    assert image.symbolize(expected["message"] + 63) == ("message", 63)
    assert image.symbolize(expected["message"] + 64) != ("message", 64)   # size 64
    assert image.symbol_address("no_such_symbol") is None


def test_every_defined_symbol_of_sym_pie_agrees_with_nm(targets) -> None:
    for name in ("sym_pie", "sym_pie-nopie"):
        image = open_image(targets[name])
        for sym, address in _nm(targets[name]).items():
            if sym.startswith("_") and sym not in ("_start", "_init", "_fini"):
                continue   # linker-made markers (__bss_start, _edata...) alias other symbols
            assert image.symbol_address(sym) == address, (name, sym)


def test_zero_size_label_and_local_symbols(targets) -> None:
    image = open_image(targets["sym_pie"])
    label = image.symbol_address("sym_label")
    local = image.symbol_address("sym_local")
    assert label is not None and local is not None and local > label
    # sym_label has no size: it stretches to the next symbol of .text, no further.
    assert image.symbolize(local - 1) == ("sym_label", local - 1 - label)
    assert image.symbolize(local) == ("sym_local", 0)
    assert image.symbol_address("sym_hidden_counter") is not None   # LOCAL, .symtab only
    table = image.symbol_address("sym_table")
    assert table is not None
    assert image.symbolize(table + 127) == ("sym_table", 127)
    assert image.symbolize(image.extent[1] + 0x10) is None


def test_plt_stubs_match_objdump(targets) -> None:
    for name in ("loop", "sym_pie", "sym_pie-nopie"):
        path = targets[name]
        listed = {m.group(2): int(m.group(1), 16) for m in re.finditer(
            r"^([0-9a-f]+) <(\w+@plt)>:", _run("objdump", "-d", path), re.M)}
        assert "puts@plt" in listed or "printf@plt" in listed
        image = open_image(path)
        for stub, address in listed.items():
            assert image.symbol_address(stub) == address, (name, stub)
            assert image.symbolize(address + 4) == (stub, 4)


def test_pie_and_nopie_give_the_same_symbolic_answers(targets) -> None:
    pie = ModuleMap([Module(targets["sym_pie"], PIE_BASE)])
    nopie = ModuleMap([Module(targets["sym_pie-nopie"], 0)])
    assert open_image(targets["sym_pie"]).is_pie and not open_image(targets["sym_pie-nopie"]).is_pie
    assert pie.resolve("sym_pie") == PIE_BASE
    assert nopie.resolve("sym_pie-nopie") == 0x400000
    for name in ("main", "sym_work", "sym_local", "sym_label", "sym_table", "sym_total", "puts@plt"):
        a, b = pie.resolve(name), nopie.resolve(name)
        assert a >= PIE_BASE and b < PIE_BASE
        for delta in (0, 1, 3):
            da, db = pie.describe(a + delta), nopie.describe(b + delta)
            assert da["symbol"] == db["symbol"]
            assert (da["file"], da["line"]) == (db["file"], db["line"])
            assert pie.symbol_text(a + delta) == nopie.symbol_text(b + delta)
    assert pie.describe(pie.resolve("sym_work"))["line"] == nopie.describe(nopie.resolve("sym_work"))["line"]


def test_build_id_present_stable_and_matches_readelf(targets) -> None:
    path = targets["loop"]
    match = re.search(r"Build ID: ([0-9a-f]+)", _run("readelf", "-n", path))
    assert match
    first = ElfImage(path).build_id
    assert first == match.group(1) and len(first) == 40
    assert ElfImage(path).build_id == first                 # a fresh parse agrees
    assert open_image(targets["sym_pie"]).build_id not in (None, first)


def test_source_lines_round_trip_on_loop_c(targets) -> None:
    image = open_image(targets["loop"])
    lines_with_code = 0
    for number in range(1, len(LOOP_C.read_text().splitlines()) + 1):
        address = image.line_address("loop.c", number)
        if address is None:
            continue
        where = image.source_line(address)
        assert where is not None and where[0].endswith("tests/targets/loop.c")
        if where[1] == number:
            lines_with_code += 1
        else:
            assert where[1] > number           # no code there: the next line that has some
    assert lines_with_code >= 10
    assert image.line_address("targets/loop.c", 10) == image.symbol_address("hit")
    assert image.line_address("other.c", 10) is None
    assert image.source_line(image.symbol_address("hit") + 4) == (image.source_line(
        image.symbol_address("hit"))[0], 10)


def test_line_addresses_agree_with_gdb(targets) -> None:
    image = open_image(targets["loop"])
    lines = (10, 13, 16, 17, 21)
    out = _run("gdb", "-nx", "-batch", *[a for n in lines for a in ("-ex", f"info line loop.c:{n}")],
               targets["loop"])
    found = re.findall(r'Line (\d+) of "[^"]+"\s+(?:starts at|is at) address (0x[0-9a-f]+)', out)
    assert len(found) == len(lines), out
    for number, address in found:
        assert image.line_address("loop.c", int(number)) == int(address, 16), number


def test_libc_symbols(libc_path: str) -> None:
    libc = open_image(libc_path)
    assert libc.is_pie and libc.build_id
    malloc = libc.symbol_address("malloc")
    memcpy = libc.symbol_address("memcpy")
    assert malloc and memcpy
    # memcpy has two versions; the default one (@@GLIBC_2.14) is what programs bind to.
    dyn = _run("readelf", "-W", "--dyn-syms", libc_path)
    default = re.search(r"([0-9a-f]{16})\s+\d+\s+\w+\s+GLOBAL\s+DEFAULT\s+\d+ memcpy@@", dyn)
    assert default and memcpy == int(default.group(1), 16)
    assert libc.symbol_address("memcpy@@GLIBC_2.14") == memcpy
    assert libc.symbolize(malloc + 0x10) == ("malloc", 0x10)   # not its alias __libc_malloc
    # The shipped libc has no DWARF; its lines come from libc6-dbg's file where installed.
    if libc.debug_file is None:
        assert libc.source_line(malloc) is None
    else:
        file, line = libc.source_line(malloc) or ("", 0)
        assert file.endswith("malloc.c") and line > 0


def test_module_map_with_fake_bases(targets, libc_path: str) -> None:
    loop = targets["loop"]
    mm = ModuleMap([Module(loop, PIE_BASE), Module(libc_path, LIBC_BASE)])
    hit = open_image(loop).symbol_address("hit")
    malloc = open_image(libc_path).symbol_address("malloc")
    assert hit is not None and malloc is not None
    assert mm.resolve("hit") == mm.resolve("loop!hit") == PIE_BASE + hit
    assert mm.resolve("libc.so.6!malloc") == mm.resolve("libc!malloc") == LIBC_BASE + malloc
    assert mm.resolve(f"{libc_path}!malloc") == LIBC_BASE + malloc
    assert mm.resolve("malloc") == LIBC_BASE + malloc         # not in the program: libc next
    assert mm.resolve("loop") + 0x1159 == PIE_BASE + 0x1159   # module + offset
    assert mm.resolve("loop.c:10") == PIE_BASE + hit
    assert mm.find(PIE_BASE + hit) == mm.main == Module(loop, PIE_BASE)
    assert mm.find(LIBC_BASE + malloc).name == "libc.so.6"
    assert mm.find(PIE_BASE - 1) is None

    where = mm.describe(PIE_BASE + hit + 4)
    assert where["module"] == "loop" and where["offset"] == hit + 4 and where["symbol"] == "hit+0x4"
    assert where["file"].endswith("loop.c") and where["line"] == 10
    assert mm.describe(LIBC_BASE + malloc)["symbol"] == "malloc"

    assert mm.symbol_text(PIE_BASE + hit) == "hit"
    assert mm.symbol_text(PIE_BASE + hit + 4) == "hit+0x4"
    assert mm.symbol_text(LIBC_BASE + malloc + 0x10) == "libc.so.6!malloc+0x10"
    assert mm.symbol_text(LIBC_BASE + 0x10) == "libc.so.6+0x10"     # ELF header: no symbol
    assert mm.symbol_text(0x1000) == "0x1000"
    with pytest.raises(KeyError, match="nosuch"):
        mm.resolve("libc!nosuch")
    mm.remove(LIBC_BASE)
    assert mm.try_resolve("libc!malloc") is None
    assert mm.symbol_text(LIBC_BASE + malloc) == hex(LIBC_BASE + malloc)


def test_cpp_names_are_demangled(targets) -> None:
    image = open_image(targets["sym_cpp"])
    area = image.symbol_address("_ZN3geo4areaEii")
    assert area is not None
    assert image.symbol_address("geo::area") == image.symbol_address("geo::area(int, int)") == area
    assert image.symbolize(area + 2) == ("geo::area(int, int)", 2)
    perimeter = image.symbol_address("geo::Box::perimeter")
    assert perimeter is not None and image.symbolize(perimeter) == ("geo::Box::perimeter() const", 0)
    mm = ModuleMap([Module(targets["sym_cpp"], PIE_BASE)])
    assert mm.symbol_text(PIE_BASE + area + 2) == "geo::area(int, int)+0x2"
    # `!` here is part of the name, not a module separator.
    negate = image.symbol_address("geo::Box::operator!() const")
    assert negate is not None and mm.resolve("geo::Box::operator!") == PIE_BASE + negate
    static = StaticResolver(targets["sym_cpp"])
    assert static.resolve("geo::Box::operator!") == negate
    assert static.module_of("geo::Box::operator!") is None
    assert not static.is_deferred("geo::Box::operator!")


def test_open_image_is_cached_until_the_file_changes(targets, tmp_path) -> None:
    assert open_image(targets["loop"]) is open_image(targets["loop"])
    copy = tmp_path / "loop"
    copy.write_bytes(Path(targets["loop"]).read_bytes())
    first = open_image(str(copy))
    assert open_image(str(tmp_path / "." / "loop")) is first          # keyed by realpath
    st = copy.stat()
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert open_image(str(copy)) is not first                           # a rebuilt binary


def test_static_resolver(targets) -> None:
    static = StaticResolver(targets["loop"])
    hit = open_image(targets["loop"]).symbol_address("hit")
    assert static.resolve("hit") == static.resolve("loop!hit") == hit
    assert static.resolve("loop") == 0
    assert static.resolve("loop.c:10") == hit
    assert static.resolve("nosuch") is None and static.resolve("libc!malloc") is None
    assert static.module_of("libc.so.6!malloc") == "libc.so.6"
    assert static.module_of("hit") is None and static.module_of("loop!hit") == "loop"
    assert static.module_of("libc.so.6") == "libc.so.6"
    assert static.is_deferred("libc.so.6!malloc") and static.is_deferred("libc.so.6")
    assert not static.is_deferred("loop!hit") and not static.is_deferred("hit")
    nopie = StaticResolver(targets["sym_pie-nopie"])
    assert nopie.resolve("sym_pie-nopie") == 0x400000
    assert StaticResolver("true").image.entry > 0                        # found on PATH
