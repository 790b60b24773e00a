"""DWARF line tables (.debug_line): address -> (file, line), and `loop.c:42` -> addresses.

A module's lines are read per compilation unit, when first asked: the CU of an
address comes from .debug_aranges (the index compilers emit for this), and a
`file:line` query reads only the CUs whose line-program header names that file.
libc's debug file has some 2000 CUs; a crash frame in it costs one CU's table.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_right
from typing import Any

from .lineprog import Aranges, decode_rows, read_aranges


class LineTable:
    """Line-program rows as sorted arrays (address -> file, line) plus a
    (file, line) -> is_stmt addresses index for `loop.c:42` breakpoints."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self._file_ids: dict[str, int] = {}
        self._rows: list[tuple[int, int, int, int, bool]] = []   # (address, order, file id or -1, line, is_stmt)
        self.starts: list[int] = []
        self._where: list[tuple[int, int]] = []
        self._stmt: dict[int, dict[int, list[int]]] = {}    # file id -> line -> is_stmt addresses

    def file_id(self, path: str) -> int:
        fid = self._file_ids.get(path)
        if fid is None:
            fid = self._file_ids[path] = len(self.files)
            self.files.append(path)
        return fid

    def add_row(self, address: int, file_id: int, line: int, is_stmt: bool, end_sequence: bool) -> None:
        # An end_sequence row sorts before a row starting at the same address, so
        # bisect_right lands on the real row of the sequence that follows.
        self._rows.append((address, 1 if not end_sequence else 0, -1 if end_sequence else file_id, line,
                           is_stmt))
        if is_stmt and not end_sequence and line > 0 and file_id >= 0:
            self._stmt.setdefault(file_id, {}).setdefault(line, []).append(address)

    def finish(self) -> LineTable:
        self._rows.sort(key=lambda r: (r[0], r[1]))
        # Several rows at one address (a function's opening lines, -O2's views): the one
        # that names it is the last is_stmt row there, as gdb picks (find_pc_sect_line).
        kept: list[tuple[int, int, int, int, bool]] = []
        for row in self._rows:
            if kept and kept[-1][0] == row[0] and kept[-1][1] == row[1] == 1:
                if row[4] or not kept[-1][4]:
                    kept[-1] = row
                continue
            kept.append(row)
        self.starts = [r[0] for r in kept]
        self._where = [(r[2], r[3]) for r in kept]
        del self._rows
        return self

    def source_line(self, address: int) -> tuple[str, int] | None:
        i = bisect_right(self.starts, address) - 1
        if i < 0:
            return None
        fid, line = self._where[i]
        if fid < 0 or line <= 0:
            return None
        return self.files[fid], line

    def _tables(self, file: str) -> list[dict[int, list[int]]]:
        return [self._stmt[fid] for fid, path in enumerate(self.files)
                if fid in self._stmt and same_file(file, path)]

    def code_lines(self, file: str) -> dict[int, list[int]]:
        """line -> is_stmt addresses, for every line of `file` with code here."""
        out: dict[int, list[int]] = {}
        for table in self._tables(file):
            for line, addresses in table.items():
                out.setdefault(line, []).extend(addresses)
        return out

    def line_address(self, file: str, line: int) -> int | None:
        """Lowest is_stmt address of `file:line`, or of the next line with code in that file."""
        found = nearest_line(self.code_lines(file), line)
        return min(found[1]) if found is not None else None


def nearest_line(lines: dict[int, list[int]], line: int) -> tuple[int, list[int]] | None:
    """(line, addresses) of `line`, or of the first later line with code, as gdb does
    for a line with none (a comment, a declaration, a blank)."""
    if line in lines:
        return line, sorted(set(lines[line]))
    later = [n for n in lines if n > line]
    if not later:
        return None
    first = min(later)
    return first, sorted(set(lines[first]))


def same_file(wanted: str, path: str) -> bool:
    """`loop.c` names /src/tests/loop.c; `tests/loop.c` too; `j/loop.c` does not (whole components)."""
    wanted = os.path.normpath(wanted)
    path = os.path.normpath(path)
    return path == wanted or path.endswith("/" + wanted)


def read_cu_lines(dwarf: Any, cu: Any, table: LineTable | None = None) -> LineTable:
    """One CU's line program, appended to `table` (a new one by default), finished."""
    table = table if table is not None else LineTable()
    program = dwarf.line_program_for_CU(cu)
    if program is not None:
        names = _line_program_files(program, cu, table)
        rows = decode_rows(program, bool(dwarf.config.little_endian))
        if rows is not None:
            add = table.add_row
            for address, file, line, is_stmt, end in rows:
                add(address, names.get(file, -1), line, is_stmt, end)
            return table
        for entry in program.get_entries():
            st = entry.state
            if st is None:
                continue
            fid = names.get(st.file, -1)
            table.add_row(st.address, fid, st.line, bool(st.is_stmt), bool(st.end_sequence))
    return table


def cu_file_names(dwarf: Any, cu: Any) -> list[str]:
    """The source files a CU's line program names (its header only: no rows decoded)."""
    program = dwarf.line_program_for_CU(cu)
    if program is None:
        return []
    scratch = LineTable()
    _line_program_files(program, cu, scratch)
    return scratch.files


def cu_file_table(dwarf: Any, cu: Any) -> dict[int, str]:
    """Line-program file index -> path, for DW_AT_decl_file and DW_AT_call_file."""
    program = dwarf.line_program_for_CU(cu)
    if program is None:
        return {}
    scratch = LineTable()
    return {index: scratch.files[fid] for index, fid in _line_program_files(program, cu, scratch).items()}


def _line_program_files(program: Any, cu: Any, table: LineTable) -> dict[int, int]:
    """Line-program file index -> table file id. DWARF 5 numbers files and
    directories from 0 (entry 0 = the CU itself); DWARF 2-4 from 1, with directory 0
    meaning the CU's DW_AT_comp_dir."""
    header = program.header
    v5 = header["version"] >= 5
    dirs = [_text(d) for d in header["include_directory"]]
    comp = cu.get_top_DIE().attributes.get("DW_AT_comp_dir")
    comp_dir = _text(comp.value) if comp is not None else ""
    out: dict[int, int] = {}
    for i, fe in enumerate(header["file_entry"]):
        d = fe.dir_index
        if v5:
            # Entry 0 is the CU's directory itself (DW_AT_comp_dir, however spelled).
            directory = (comp_dir or (dirs[0] if dirs else "")) if d == 0 else (dirs[d] if d < len(dirs) else "")
        else:
            directory = comp_dir if d == 0 else (dirs[d - 1] if d - 1 < len(dirs) else "")
        if d != 0 and directory and comp_dir and not os.path.isabs(directory):
            directory = os.path.join(comp_dir, directory)
        path = os.path.normpath(os.path.join(directory, _text(fe.name)))
        out[i if v5 else i + 1] = table.file_id(path)
    return out


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class ModuleLines:
    """The line tables of one module's DWARF, read per compilation unit on demand."""

    def __init__(self, dwarf: Any) -> None:
        self._dwarf = dwarf
        self._lock = threading.RLock()
        self._by_cu: dict[int, LineTable] = {}
        self._cus: list[Any] | None = None
        self._aranges: Aranges | None = None
        self._aranges_read = False
        self._uncovered: LineTable | None = None
        self._files: dict[int, list[str]] = {}

    def _all_cus(self) -> list[Any]:
        if self._cus is None:
            self._cus = list(self._dwarf.iter_CUs()) if self._dwarf.has_debug_info else []
        return self._cus

    def _table(self, cu: Any) -> LineTable:
        table = self._by_cu.get(cu.cu_offset)
        if table is None:
            table = self._by_cu[cu.cu_offset] = read_cu_lines(self._dwarf, cu).finish()
        return table

    def _cu_offset_at(self, address: int) -> int | None:
        if not self._aranges_read:
            self._aranges_read = True
            try:
                self._aranges = read_aranges(self._dwarf)
                if self._aranges is None and self._dwarf.debug_aranges_sec is not None:
                    entries = self._dwarf.get_aranges().entries
                    self._aranges = Aranges([(e.begin_addr, e.length, e.info_offset) for e in entries])
            except Exception:  # noqa: BLE001 - a malformed index: fall back to every CU
                self._aranges = None
        if self._aranges is None or not self._aranges.spans:
            return None
        return self._aranges.cu_offset_at(address)

    def _rest(self) -> LineTable:
        """The CUs .debug_aranges does not list (all of them when it is absent), as one table."""
        if self._uncovered is None:
            listed = self._aranges.cu_offsets if self._aranges is not None else set()
            table = LineTable()
            for cu in self._all_cus():
                if cu.cu_offset not in listed:
                    read_cu_lines(self._dwarf, cu, table)
            self._uncovered = table.finish()
        return self._uncovered

    @property
    def dwarf(self) -> Any:
        """The pyelftools DWARFInfo these lines come from (symbols.debugfiles.load_dwarf)."""
        return self._dwarf

    def cu_at(self, address: int) -> Any:
        """The compilation unit whose code holds a link-time address (by .debug_aranges),
        or None: for readers of the CU's DIEs (variables, scopes) that must not walk them all."""
        with self._lock:
            offset = self._cu_offset_at(address)
            return self._dwarf.get_CU_at(offset) if offset is not None else None

    def source_line(self, address: int) -> tuple[str, int] | None:
        with self._lock:
            offset = self._cu_offset_at(address)
            if offset is not None:
                found = self._table(self._dwarf.get_CU_at(offset)).source_line(address)
                if found is not None:
                    return found
            return self._rest().source_line(address)

    def rows_after(self, address: int, count: int) -> list[int]:
        """The addresses of up to `count` line-table rows after `address`, in its CU."""
        with self._lock:
            offset = self._cu_offset_at(address)
            table = self._table(self._dwarf.get_CU_at(offset)) if offset is not None else self._rest()
            i = bisect_right(table.starts, address)
            return table.starts[i:i + count]

    def code_lines(self, file: str) -> dict[int, list[int]]:
        """line -> is_stmt addresses of `file`, over every CU whose header names it."""
        out: dict[int, list[int]] = {}
        with self._lock:
            for cu in self._all_cus():
                names = self._files.get(cu.cu_offset)
                if names is None:
                    names = self._files[cu.cu_offset] = cu_file_names(self._dwarf, cu)
                if not any(same_file(file, n) for n in names):
                    continue
                for line, addresses in self._table(cu).code_lines(file).items():
                    out.setdefault(line, []).extend(addresses)
        return out

    def line_addresses(self, file: str, line: int) -> tuple[int, list[int]] | None:
        """(the line used, its is_stmt addresses): `line`, or the next one with code."""
        return nearest_line(self.code_lines(file), line)


class NoLines:
    """A module without DWARF: no lines."""

    dwarf: Any = None

    def cu_at(self, address: int) -> Any:
        return None

    def rows_after(self, address: int, count: int) -> list[int]:
        return []

    def source_line(self, address: int) -> tuple[str, int] | None:
        return None

    def line_addresses(self, file: str, line: int) -> tuple[int, list[int]] | None:
        return None
