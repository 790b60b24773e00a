"""symbols.lineprog decodes every CU's line program to the rows pyelftools decodes."""

from __future__ import annotations

import shutil

import pytest
from elftools.elf.elffile import ELFFile

from instrument.symbols.debugfiles import find_debug_file
from instrument.symbols.lineprog import decode_rows


def _pyelftools_rows(program):
    out = []
    for entry in program.get_entries():
        st = entry.state
        if st is not None:
            out.append((st.address, st.file, st.line, bool(st.is_stmt) and not st.end_sequence,
                        bool(st.end_sequence)))
    return out


def _check(path: str, limit: int | None = None) -> int:
    with open(path, "rb") as f:
        dwarf = ELFFile(f).get_dwarf_info()
    checked = 0
    for cu in dwarf.iter_CUs():
        program = dwarf.line_program_for_CU(cu)
        if program is None:
            continue
        ours = decode_rows(program, dwarf.config.little_endian)
        assert ours is not None
        ours = [(a, f, ln, s and not e, e) for a, f, ln, s, e in ours]
        assert ours == _pyelftools_rows(program), f"{path}: CU at {cu.cu_offset:#x}"
        checked += 1
        if limit is not None and checked >= limit:
            break
    return checked


@pytest.mark.parametrize("name", ["crash_deep", "loop", "dwarf_vars", "ifunc_calls"])
def test_rows_agree_with_pyelftools_on_test_programs(targets, name) -> None:
    assert _check(targets[name]) >= 1


def test_rows_agree_with_pyelftools_on_libc_debug_file() -> None:
    libc = next((p for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6")
                 if shutil.os.path.exists(p)), None)
    debug = find_debug_file(libc) if libc else None
    if debug is None:
        pytest.skip("libc6-dbg (libc's separate debug file) is not installed")
    assert _check(debug, limit=150) == 150      # DWARF 5 from gcc -O2, every opcode kind


def _check_aranges(path: str) -> int:
    from instrument.symbols.lineprog import read_aranges

    with open(path, "rb") as f:
        dwarf = ELFFile(f).get_dwarf_info()
    theirs = dwarf.get_aranges()
    ours = read_aranges(dwarf)
    if theirs is None:
        assert ours is None
        return 0
    assert ours is not None
    assert ours.spans == sorted((e.begin_addr, e.length, e.info_offset) for e in theirs.entries)
    for start, length, _ in ours.spans[:400]:
        for address in (start, start + length - 1, start + length):
            assert ours.cu_offset_at(address) == theirs.cu_offset_at_addr(address)
    return len(ours.spans)


def test_aranges_agree_with_pyelftools(targets) -> None:
    assert _check_aranges(targets["crash_deep"]) >= 1
    libc = "/lib/x86_64-linux-gnu/libc.so.6"
    debug = find_debug_file(libc) if shutil.os.path.exists(libc) else None
    if debug is not None:
        assert _check_aranges(debug) > 1000


def _check_abbrevs(path: str, limit: int) -> int:
    from instrument.symbols.lineprog import read_abbrev_table

    with open(path, "rb") as f:
        dwarf = ELFFile(f).get_dwarf_info()
    data = dwarf.debug_abbrev_sec.stream.getvalue()
    seen = 0
    for cu in dwarf.iter_CUs():
        offset = cu["debug_abbrev_offset"]
        theirs = dwarf.get_abbrev_table(offset)._abbrev_map
        ours = read_abbrev_table(data, offset)._abbrev_map
        assert ours.keys() == theirs.keys()
        for code, decl in theirs.items():
            mine = ours[code]
            assert (mine["tag"], mine.has_children()) == (decl["tag"], decl.has_children())
            assert [(a.name, a.form, a.value if a.form == "DW_FORM_implicit_const" else None)
                    for a in mine["attr_spec"]] == \
                [(a.name, a.form, a.value if a.form == "DW_FORM_implicit_const" else None) for a in decl["attr_spec"]]
        seen += 1
        if seen >= limit:
            break
    return seen


def test_abbreviation_tables_agree_with_pyelftools(targets) -> None:
    assert _check_abbrevs(targets["dwarf_vars"], 50) >= 1
    libc = "/lib/x86_64-linux-gnu/libc.so.6"
    debug = find_debug_file(libc) if shutil.os.path.exists(libc) else None
    if debug is not None:
        assert _check_abbrevs(debug, 150) == 150


def _check_inline_walks(path: str, spans: int, step: int) -> int:
    """The raw DIE walk (lineprog.DieReader) finds the inlined-call chain pyelftools' walk finds."""
    from instrument.symbols.debugfiles import load_dwarf
    from instrument.symbols.inlines import InlineIndex, _attr
    from instrument.symbols.lines import ModuleLines

    lines = ModuleLines(load_dwarf(path))
    index = InlineIndex(lines)
    lines._cu_offset_at(0)                 # reads .debug_aranges
    aranges = lines._aranges
    assert aranges is not None and aranges.spans
    compared = nonempty = 0
    for start, length, _ in aranges.spans[:spans]:
        for address in range(start, start + length, step):
            cu = lines.cu_at(address)
            if cu is None:
                continue
            top = cu.get_top_DIE()
            base = _attr(top, "DW_AT_low_pc") or 0
            fast = index._fast_chain(cu, top, address, base)
            slow: list = []
            index._walk(top, address, cu, base, slow, 0)
            assert fast == [d.offset for d in slow], f"{path} at {address:#x}"
            compared += 1
            nonempty += bool(fast)
    assert compared
    return nonempty


def test_raw_die_walk_agrees_with_pyelftools(targets) -> None:
    _check_inline_walks(targets["crash_deep"], 20, 3)
    libc = "/lib/x86_64-linux-gnu/libc.so.6"
    if not shutil.os.path.exists(libc) or find_debug_file(libc) is None:
        pytest.skip("libc6-dbg (libc's separate debug file) is not installed")
    assert _check_inline_walks(libc, 60, 41) > 10         # -O2 code: inlined calls found, and agreed on
