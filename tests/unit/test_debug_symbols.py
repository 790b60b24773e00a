"""Debug-file plumbing without a process: .gnu_debuglink parsing, gdb's choice among rows at
one address, the Rust demangler on known names, hashing as the shipped file names frames."""

from __future__ import annotations

import struct
import zlib

import pytest

from instrument.analysis.signature import as_shipped, frame_key, significant_frames, stack_hash
from instrument.symbols.debugfiles import _parse_debuglink, file_crc32
from instrument.symbols.demangle import demangle_many, is_mangled, lookup_aliases
from instrument.symbols.lines import LineTable, nearest_line
from instrument.symbols.rust_demangle import demangle_rust


def test_debuglink_section_is_name_padding_and_crc() -> None:
    data = b"prog.debug\0\0" + struct.pack("<I", 0xDEADBEEF)
    assert _parse_debuglink(data, True) == ("prog.debug", 0xDEADBEEF)
    assert _parse_debuglink(b"ab\0\0" + struct.pack(">I", 7), False) == ("ab", 7)
    assert _parse_debuglink(b"cut\0", True) is None
    assert _parse_debuglink(b"", True) is None


def test_file_crc32_is_zlibs(tmp_path) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"hello debug" * 1000)
    assert file_crc32(str(f)) == zlib.crc32(f.read_bytes())
    assert file_crc32(str(tmp_path / "missing")) is None


def test_rows_at_one_address_name_it_by_the_last_is_stmt_one() -> None:
    # glibc's malloc: lines 3281..3288 all at 0x930, then a non-stmt 3281 view (gdb says 3288).
    t = LineTable()
    fid = t.file_id("/g/malloc.c")
    for line, stmt in ((3281, True), (3282, True), (3288, True), (3281, False)):
        t.add_row(0x930, fid, line, stmt, False)
    t.add_row(0x93B, fid, 3288, True, False)
    t.add_row(0x950, fid, 3288, True, True)
    t.finish()
    assert t.source_line(0x930) == ("/g/malloc.c", 3288)
    assert t.source_line(0x935) == ("/g/malloc.c", 3288)
    assert t.code_lines("malloc.c")[3281] == [0x930]


def test_nearest_line_is_the_next_with_code() -> None:
    lines = {4: [0x20, 0x10], 9: [0x40]}
    assert nearest_line(lines, 4) == (4, [0x10, 0x20])
    assert nearest_line(lines, 5) == (9, [0x40])
    assert nearest_line(lines, 10) is None


@pytest.mark.parametrize("mangled, plain", [
    ("_ZN4core3fmt5write17h5c4e6e7d8d2b2f1aE", "core::fmt::write"),
    ("_ZN5alloc3vec12Vec$LT$T$GT$4push17h0123456789abcdefE", "alloc::vec::Vec<T>::push"),
    ("_ZN4demo4main28_$u7b$$u7b$closure$u7d$$u7d$17h0123456789abcdefE", "demo::main::{{closure}}"),
    ("_ZN3std2rt10lang_start17h0123456789abcdefE.llvm.1234", "std::rt::lang_start"),
    ("_RNvCs1234_7mycrate3foo", "mycrate::foo"),
    ("_RNvC6_123foo3bar", "123foo::bar"),
    ("_RNvNtCs9ltgdHTiPiY_4core3ptr13drop_in_place", "core::ptr::drop_in_place"),
    ("_RINvNtCs9ltgdHTiPiY_4core3ptr13drop_in_placeNtNtCsd_5alloc6string6StringEB4_",
     "core::ptr::drop_in_place::<alloc::string::String>"),
    ("_RNCNvCs1234_4demo4main0", "demo::main::{closure#0}"),
    ("_RNvMs_NtCs1234_4demo6shapesNtB4_6Square4area", "<demo::shapes::Square>::area"),
    ("_RNvXNtCs1234_4demo6shapesNtB2_6SquareNtNtCs5678_4core3fmt7Display3fmt",
     "<demo::shapes::Square as core::fmt::Display>::fmt"),
    ("_RINvCs1234_4demo4takeRShE", "demo::take::<&[u8]>"),
    ("_RINvCs1234_4demo4sizeKj10_E", "demo::size::<16>"),
    # Punycode (v0's `u` identifiers); binutils 2.40's c++filt prints the same.
    ("_RNqCs4fqI2P2rA04_11utf8_identsu30____7hkackfecea1cbdathfdh9qlhdu",
     "utf8_idents::ამელად_გემიეჭხლი_ჭაფდილი"),
])
def test_rust_demangling(mangled: str, plain: str) -> None:
    assert is_mangled(mangled)
    assert demangle_rust(mangled) == plain
    assert demangle_many([mangled, "plain_c"]) == [plain, "plain_c"]


@pytest.mark.parametrize("name", [
    "_ZN3foo3barEv",          # C++: parameters after the name, no hash
    "_ZN2ns1xE",              # a C++ variable
    "_RB_",                   # a back-reference to nowhere
    "_RNvC",                  # cut short
    "_RNvCs1234_7mycrate99",  # a length past the end
])
def test_not_rust_or_malformed(name: str) -> None:
    assert demangle_rust(name) is None


def test_a_hostile_rust_name_does_not_recurse_forever() -> None:
    assert demangle_rust("_R" + "S" * 5000 + "a") is None
    assert demangle_rust("_R" + "NvNv" * 3000 + "C1a1b") is None


def test_rust_inherent_methods_are_found_as_gdb_spells_them() -> None:
    assert lookup_aliases("<demo::shapes::Square>::area") == ["demo::shapes::Square::area"]
    assert lookup_aliases("<demo::S as core::fmt::Display>::fmt") == []
    assert lookup_aliases("ns::K::m(int) const") == ["ns::K::m"]


def test_frames_hash_as_the_shipped_file_names_them() -> None:
    shipped = [
        {"module": "libc.so.6", "offset": "0x8aeec", "symbol": None},
        {"module": "libc.so.6", "offset": "0x3bfb2", "symbol": "raise+0x12"},
        {"module": "libc.so.6", "offset": "0x26472", "symbol": "abort+0xd3"},
        {"module": "libc.so.6", "offset": "0x7f000", "symbol": None},
        {"module": "libc.so.6", "offset": "0x9a000", "symbol": "free+0x40"},
        {"module": "prog", "offset": "0x1142", "symbol": "release+0x9"},
        {"module": "prog", "offset": "0x1150", "symbol": "main+0x9"},
    ]
    named = [dict(f) for f in shipped]
    named[0].update(symbol="__pthread_kill_implementation+0x10c", separate_debug=True, file="nptl/pthread_kill.c", line=44)
    named[3].update(symbol="malloc_printerr+0x10", separate_debug=True)
    named.insert(4, {"module": "libc.so.6", "offset": "0x9b000", "symbol": "_int_free+0x4b", "separate_debug": True})
    assert as_shipped(named[0])["symbol"] is None and as_shipped(shipped[1]) is shipped[1]
    assert stack_hash(named) == stack_hash(shipped[:4] + [{"module": "libc.so.6", "offset": "0x9b000", "symbol": None}]
                                           + shipped[4:])
    # Shown, libc's internals are still machinery: the bucket starts at free, then the caller.
    assert [frame_key(f) for f in significant_frames(named)][:2] == ["libc.so.6!free", "prog!release"]


def test_inlined_calls_become_frames_before_their_function() -> None:
    from instrument.engine.inspect import _with_inlined
    from instrument.symbols.inlines import InlinedCall

    physical = {"pc": "0x10", "module": "m", "offset": "0x10", "symbol": "outer+0x4", "file": "a.c", "line": 7}
    calls = (InlinedCall("inner", "b.h", 3), InlinedCall("middle", "a.c", 5))
    frames = _with_inlined(physical, calls)
    assert [(f["symbol"], f.get("file"), f.get("line"), f.get("inlined", False)) for f in frames] == [
        ("inner", "a.c", 7, True),        # the code's own line, from the line table
        ("middle", "b.h", 3, True),       # where inner was called, inside middle
        ("outer+0x4", "a.c", 5, False),   # where middle was called, inside outer
    ]
    assert _with_inlined(physical, ()) == [physical]
    # Neither the hash nor the bucket's frames count inlined calls.
    assert stack_hash(frames) == stack_hash([physical])
    assert significant_frames(frames) == [frames[-1]]
