"""The on-disk symbol cache of system libraries: used, keyed and invalidated by build id, corrupt files ignored;
and the struct ELF reader agrees with what pyelftools reads."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from instrument.symbols import elfread, symcache
from instrument.symbols.elf import ElfImage, needed_libraries

LIBC = os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # Libraries built by the test count as system ones.
    monkeypatch.setattr(symcache, "SYSTEM_DIRS", (*symcache.SYSTEM_DIRS, str(tmp_path / "lib") + "/"))
    (tmp_path / "lib").mkdir()
    return tmp_path / "cache" / "instrument" / "symbols"


def _build_lib(tmp_path: Path, symbol: str, build_id: str) -> str:
    src = tmp_path / f"{symbol}.c"
    src.write_text(f"int {symbol}(int x) {{ return x + 1; }}\n")
    out = tmp_path / "lib" / "libt.so"
    subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,--build-id=0x{build_id}", "-o", str(out), str(src)], check=True)
    return str(out)


def test_a_system_library_table_is_stored_and_read_back_by_build_id(cache: Path, tmp_path: Path) -> None:
    lib = _build_lib(tmp_path, "first_fn", "aa" * 20)
    image = ElfImage(lib)
    assert image.build_id == "aa" * 20
    assert "first_fn" in image.symbols.by_name
    assert _entry(cache, "aa", lib).is_file()

    # The next open reads the stored table: put a name in it that the file does not have.
    by_name, ifuncs, starts, ends, names, sized = image.symbols.to_arrays()
    symcache.store("aa" * 20, os.path.getsize(lib), ({**by_name, "only_in_cache": 0x10}, ifuncs, starts, ends, names, sized))
    assert "only_in_cache" in ElfImage(lib).symbols.by_name

    # A rebuilt library has a new build id: the stored table is not used.
    lib = _build_lib(tmp_path, "second_fn", "bb" * 20)
    table = ElfImage(lib).symbols
    assert "second_fn" in table.by_name
    assert "only_in_cache" not in table.by_name and "first_fn" not in table.by_name
    assert _entry(cache, "bb", lib).is_file()


@pytest.mark.parametrize("garbage", [b"", b"\x00garbage\xff", b"\xe3" * 7])
def test_a_corrupt_cache_file_is_ignored_and_rewritten(cache: Path, tmp_path: Path, garbage: bytes) -> None:
    lib = _build_lib(tmp_path, "third_fn", "cc" * 20)
    expected = ElfImage(lib).symbols.to_arrays()
    entry = _entry(cache, "cc", lib)
    entry.write_bytes(garbage)
    assert ElfImage(lib).symbols.to_arrays() == expected
    assert symcache.load("cc" * 20, os.path.getsize(lib)) == expected


def test_a_cache_file_of_another_build_id_is_ignored(cache: Path, tmp_path: Path) -> None:
    lib = _build_lib(tmp_path, "fourth_fn", "dd" * 20)
    ElfImage(lib).symbols
    size = os.path.getsize(lib)
    (cache / f"{'ee' * 20}-{size}.sym").write_bytes(_entry(cache, "dd", lib).read_bytes())
    assert symcache.load("ee" * 20, size) is None


def test_a_debug_file_of_the_same_build_id_has_its_own_entry(cache: Path, tmp_path: Path) -> None:
    lib = _build_lib(tmp_path, "sixth_fn", "ab" * 20)
    debug = tmp_path / "lib" / "libt.debug"
    subprocess.run(["objcopy", "--only-keep-debug", lib, str(debug)], check=True)
    subprocess.run(["strip", "--strip-all", lib], check=True)    # .symtab gone: .dynsym only
    stripped, full = ElfImage(lib), ElfImage(str(debug))
    assert stripped.build_id == full.build_id == "ab" * 20
    assert stripped.symbols.to_arrays() != full.symbols.to_arrays()
    assert ElfImage(lib).symbols.to_arrays() == stripped.symbols.to_arrays()
    assert ElfImage(str(debug)).symbols.to_arrays() == full.symbols.to_arrays()


def _entry(cache: Path, byte: str, lib: str) -> Path:
    return cache / f"{byte * 20}-{os.path.getsize(lib)}.sym"


def test_an_unwritable_cache_directory_costs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert "malloc" in ElfImage(LIBC).symbols.by_name


def test_user_programs_are_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "lib").mkdir()
    lib = _build_lib(tmp_path, "fifth_fn", "ff" * 20)
    assert "fifth_fn" in ElfImage(lib).symbols.by_name
    assert not (tmp_path / "cache").exists()


def test_libc_from_the_cache_equals_libc_parsed(cache: Path) -> None:
    parsed = ElfImage(LIBC).symbols
    cached = ElfImage(LIBC).symbols
    assert cached.to_arrays() == parsed.to_arrays()
    assert cached.symbolize(parsed.by_name["malloc"] + 1) == parsed.symbolize(parsed.by_name["malloc"] + 1)


def test_the_struct_reader_agrees_with_pyelftools() -> None:
    from elftools.elf.elffile import ELFFile

    for path in (LIBC, os.path.realpath("/lib64/ld-linux-x86-64.so.2"), os.path.realpath("/bin/ls")):
        with open(path, "rb") as f:
            elf = ELFFile(f)
            h = elfread.read_headers(f)
            assert h.entry == elf.header["e_entry"] and h.machine == elf.header["e_machine"]
            assert [(s.type, s.vaddr, s.memsz, s.flags) for s in h.segments] == [
                (s.header["p_type"] if isinstance(s.header["p_type"], int) else _pt(s.header["p_type"]),
                 s["p_vaddr"], s["p_memsz"], s["p_flags"]) for s in elf.iter_segments()]
            assert [(s.name, s.addr, s.size, s.link) for s in h.sections] == [
                (s.name, s["sh_addr"], s["sh_size"], s["sh_link"]) for s in elf.iter_sections()]
            dynsym = elf.get_section_by_name(".dynsym")
            ours = next(s for s in h.sections if s.name == ".dynsym")
            assert [row[:2] for row in elfread.symbols(f, h, ours)] == [
                (s.name, s["st_value"]) for s in dynsym.iter_symbols()]    # type: ignore[union-attr]
        assert needed_libraries(path) == tuple(
            t.needed for t in ELFFile(open(path, "rb")).get_section_by_name(".dynamic").iter_tags()  # type: ignore[union-attr]
            if t.entry.d_tag == "DT_NEEDED")


def _pt(name: str) -> int:
    from elftools.elf.enums import ENUM_P_TYPE_BASE
    return int(ENUM_P_TYPE_BASE.get(name, ENUM_P_TYPE_BASE.get("PT_" + name.split("_", 1)[-1], -1)))
