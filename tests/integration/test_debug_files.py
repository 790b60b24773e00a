"""Separate debug files, found as gdb finds them (symbols/debugfiles.py), and frames with source.

A test program is built, split with `objcopy --only-keep-debug` and stripped; its
names, lines and crash frames must come back equal to the unstripped binary's,
through `.gnu_debuglink` (beside it, in .debug/, under a debug root), through a
build-id tree under INSTRUMENT_DEBUG_DIRS, and through a debuginfod server (a
local http.server); a debug file whose CRC differs is ignored. gdb is the oracle
for frames (function, file, line). Where libc6-dbg is installed, libc's static
functions are named in crash frames, with their source lines.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from instrument.symbols.debugfiles import file_crc32, find_debug_file
from instrument.symbols.elf import open_image
from tests.conftest import run_cli

RECIPE = "version: 1\nname: frames\ndescription: crash frames\ncrash:\n  - backtrace: {depth: 16}\n"
SOURCE = Path(__file__).parents[1] / "targets" / "debug_split.c"


def _run(*cmd: str, cwd: Path | None = None) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=cwd).stdout


def _marker_line(marker: str) -> int:
    return next(i for i, text in enumerate(SOURCE.read_text().splitlines(), 1) if marker in text)


def _functions(path: str) -> dict[str, int]:
    """name -> address of the defined functions, from nm (the reference)."""
    out: dict[str, int] = {}
    for line in _run("nm", "--defined-only", path).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW" and not parts[2].startswith("."):
            out.setdefault(parts[2], int(parts[0], 16))
    return out


def _split(full: str, where: Path, *, link: bool = True, name: str = "prog") -> tuple[Path, Path]:
    """A stripped copy of `full` in `where` and its debug file (`name.debug`, beside it)."""
    where.mkdir(parents=True, exist_ok=True)
    program, debug = where / name, where / f"{name}.debug"
    _run("objcopy", "--only-keep-debug", full, str(debug))
    _run("strip", "-o", str(program), full)
    if link:
        # objcopy records the CRC of the file named, and its base name.
        _run("objcopy", f"--add-gnu-debuglink={debug.name}", str(program), cwd=where)
    return program, debug


def _build_id(path: str) -> str:
    image = open_image(path)
    assert image.build_id, "gcc on this machine emits build ids"
    return image.build_id


@pytest.fixture(scope="module", params=["debug_split", "debug_split-o2"])
def full(request, targets) -> str:
    return targets[request.param]


def _same_symbols(full: str, stripped: str) -> None:
    want, got = open_image(full), open_image(stripped)
    functions = _functions(full)
    assert {"left", "right", "smash", "middle", "main"} <= set(functions)
    for name, address in functions.items():
        assert got.symbol_address(name) == want.symbol_address(name), name
        for offset in (0, 1):
            assert got.symbolize(address + offset) == want.symbolize(address + offset), name
            assert got.source_line(address + offset) == want.source_line(address + offset), name
    for marker in ("LINE_TWICE", "LINE_SMASH"):
        line = _marker_line(marker)
        assert got.line_locations("debug_split.c", line) == want.line_locations("debug_split.c", line)


def test_stripped_names_nothing_without_its_debug_file(full, tmp_path) -> None:
    program, debug = _split(full, tmp_path)
    debug.unlink()
    image = open_image(str(program))
    assert image.symbol_address("smash") is None
    assert image.source_line(open_image(full).symbol_address("smash") or 0) is None


def test_debuglink_beside_the_file(full, tmp_path) -> None:
    program, debug = _split(full, tmp_path)
    assert find_debug_file(str(program)) == str(debug)
    _same_symbols(full, str(program))


def test_debuglink_in_dot_debug_and_under_a_debug_root(full, tmp_path, monkeypatch) -> None:
    program, debug = _split(full, tmp_path / "a")
    (tmp_path / "a" / ".debug").mkdir()
    moved = tmp_path / "a" / ".debug" / debug.name
    debug.rename(moved)
    assert find_debug_file(str(program)) == str(moved)
    _same_symbols(full, str(program))

    other, debug = _split(full, tmp_path / "b")
    root = tmp_path / "root"
    under = root / str(other.parent).lstrip("/") / debug.name
    under.parent.mkdir(parents=True)
    debug.rename(under)
    assert find_debug_file(str(other)) is None
    monkeypatch.setenv("INSTRUMENT_DEBUG_DIRS", str(root))
    assert find_debug_file(str(other)) == str(under)
    _same_symbols(full, str(other))


def test_a_debug_file_with_another_crc_is_ignored(full, targets, tmp_path) -> None:
    program, debug = _split(full, tmp_path)
    crc = file_crc32(str(debug))
    # Another build's debug file under the same name: the CRC in .gnu_debuglink tells.
    _run("objcopy", "--only-keep-debug", targets["loop"], str(debug))
    assert file_crc32(str(debug)) != crc
    assert find_debug_file(str(program)) is None
    assert open_image(str(program)).symbol_address("smash") is None


def test_build_id_tree_under_instrument_debug_dirs(full, tmp_path, monkeypatch) -> None:
    program, debug = _split(full, tmp_path / "bin", link=False)
    build_id = _build_id(str(program))
    root = tmp_path / "debugroot"
    target = root / ".build-id" / build_id[:2] / f"{build_id[2:]}.debug"
    target.parent.mkdir(parents=True)
    debug.rename(target)
    assert find_debug_file(str(program)) is None
    monkeypatch.setenv("INSTRUMENT_DEBUG_DIRS", str(root))
    assert find_debug_file(str(program)) == str(target)
    _same_symbols(full, str(program))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, format: str, *args: object) -> None:
        _Quiet.requests.append(self.path)


def test_debuginfod_fetches_by_build_id_only_when_set(full, tmp_path, monkeypatch) -> None:
    program, debug = _split(full, tmp_path / "bin", link=False)
    build_id = _build_id(str(program))
    served = tmp_path / "served" / "buildid" / build_id / "debuginfo"
    served.parent.mkdir(parents=True)
    shutil.copy(debug, served)
    debug.unlink()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(tmp_path / "served")))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        cache = tmp_path / "cache"
        monkeypatch.setenv("DEBUGINFOD_CACHE_PATH", str(cache))
        monkeypatch.delenv("DEBUGINFOD_URLS", raising=False)
        _Quiet.requests.clear()
        assert find_debug_file(str(program)) is None
        assert _Quiet.requests == [] and not cache.exists()      # nothing fetched when unset
        monkeypatch.setenv("DEBUGINFOD_URLS", f"http://127.0.0.1:{server.server_address[1]}")
        found = find_debug_file(str(program))
        assert found == str(cache / build_id / "debuginfo")
        assert _Quiet.requests == [f"/buildid/{build_id}/debuginfo"]
        _same_symbols(full, str(program))
    finally:
        server.shutdown()
        server.server_close()


# -- crash frames ---------------------------------------------------------------------

def _crash_frames(program: str, tmp_path: Path, env: dict[str, str] | None = None) -> list[dict]:
    recipe = tmp_path / "frames.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "out.jsonl"
    proc = run_cli("run", str(recipe), "--format", "jsonl", "-o", str(out), "--", program, "x", env=env)
    crashes = [r for r in map(json.loads, out.read_text().splitlines()) if r["event"] == "crash"]
    assert proc.returncode == 1 and len(crashes) == 1, proc.stderr
    return crashes[0]["frames"]


def _program_frames(frames: list[dict]) -> list[tuple]:
    return [(f["symbol"].split("+")[0] if f.get("symbol") else None, f.get("file"), f.get("line"))
            for f in frames if f["module"] == "prog"]


def _gdb_frames(program: str) -> list[tuple[str, str, int]]:
    """(function, file name, line) of each frame gdb prints for the crash."""
    out = _run("gdb", "-nx", "-batch", "-ex", "run", "-ex", "bt", "--args", program, "x")
    frames = []
    for m in re.finditer(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(\S+) \(.*?\) at (\S+):(\d+)$", out, re.M):
        frames.append((m.group(1), os.path.basename(m.group(2)), int(m.group(3))))
    return frames


@pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is the oracle and is not installed")
def test_frames_agree_with_gdb_stripped_or_not(full, tmp_path) -> None:
    whole = tmp_path / "whole" / "prog"
    whole.parent.mkdir()
    shutil.copy(full, whole)
    stripped, _ = _split(full, tmp_path / "split")
    ours = _program_frames(_crash_frames(str(whole), tmp_path))
    assert ours[0] == ("smash", str(SOURCE.resolve()), _marker_line("LINE_SMASH"))
    assert [f[0] for f in ours[:3]] == ["smash", "middle", "main"]
    # gdb names the same frames with the same lines (it shows inlined frames we do not
    # expand; none are on this path).
    oracle = [f for f in _gdb_frames(str(whole)) if f[1] == SOURCE.name]
    with_lines = [(name, os.path.basename(file), line) for name, file, line in ours if file]
    assert with_lines == oracle
    # The stripped copy with its debug file beside it: the same frames, found there.
    split_frames = _crash_frames(str(stripped), tmp_path)
    assert _program_frames(split_frames) == ours
    assert all(f.get("separate_debug") for f in split_frames if f["module"] == "prog" and f.get("file"))


def test_hash_does_not_depend_on_the_debug_file(full, tmp_path, targets) -> None:
    from instrument.analysis.signature import stack_hash

    stripped, debug = _split(full, tmp_path / "split")
    with_debug = _crash_frames(str(stripped), tmp_path)
    debug.unlink()
    without = _crash_frames(str(stripped), tmp_path)
    assert stack_hash(with_debug) == stack_hash(without)


# -- libc6-dbg ------------------------------------------------------------------------

def _libc() -> str:
    out = _run("ldd", shutil.which("true") or "/bin/true")
    m = re.search(r"libc\.so\.6 => (\S+)", out)
    assert m
    return m.group(1)


needs_libc_dbg = pytest.mark.skipif(
    find_debug_file(_libc()) is None,
    reason="libc6-dbg (libc's separate debug file) is not installed: libc's static functions have no names")


@needs_libc_dbg
def test_libc_static_functions_named_in_a_crash_inside_libc(targets, tmp_path) -> None:
    frames = _crash_frames(targets["crash_abort"], tmp_path)
    by_name = {f["symbol"].split("+")[0]: f for f in frames if f.get("symbol")}
    top = frames[0]
    # raise() -> pthread_kill -> __pthread_kill_implementation (static in nptl/pthread_kill.c).
    assert top["symbol"].startswith("__pthread_kill_implementation") and top["separate_debug"]
    assert top["file"].endswith("pthread_kill.c") and top["line"] > 0
    assert by_name["abort"]["file"].endswith("abort.c") and by_name["abort"]["line"] > 0
    assert "give_up" in by_name and "main" in by_name
    if shutil.which("gdb"):
        oracle = _gdb_frames(targets["crash_abort"])
        assert oracle[0][:2] == ("__pthread_kill_implementation", os.path.basename(top["file"]))
        assert oracle[0][2] == top["line"]


@needs_libc_dbg
def test_libc_static_functions_in_triage_records(targets) -> None:
    from instrument.triage.runner import TriageConfig, triage

    report = triage(TriageConfig(command=(targets["crash_double_free"],), jobs=1, timeout=20))
    (bucket,) = report["buckets"]
    frames = bucket["crash"]["frames"]
    names = [f["symbol"].split("+")[0] for f in frames if f.get("symbol")]
    # glibc's heap check: free -> _int_free -> malloc_printerr -> __libc_message -> abort.
    assert "malloc_printerr" in names and "_int_free" in names, names
    assert all(f.get("file") and f.get("line") for f in frames
               if f.get("symbol", "").startswith(("malloc_printerr", "_int_free")))
    # The bucket is still named by the program's frames: libc's internals are machinery.
    from instrument.analysis.signature import frame_key, significant_frames
    assert [frame_key(f) for f in significant_frames(frames)][:2] == ["libc.so.6!free", "crash_double_free!release"]


# -- breakpoints through the debug file ----------------------------------------------------

LINE_RECIPE = """version: 1
name: lines
description: a line inlined into two functions, and a static function by name
breakpoints:
  - id: twice
    at: debug_split.c:{twice}
  - id: smash
    at: smash
"""


def test_line_and_static_breakpoints_on_a_stripped_program(full, tmp_path) -> None:
    """`at: file.c:N` of an inlined function (two locations) and a static function by
    name arm the same on the stripped program with its debug file as on the original."""
    recipe = tmp_path / "lines.yaml"
    # The comment line above LINE_TWICE has no code: it lands on LINE_TWICE.
    recipe.write_text(LINE_RECIPE.format(twice=_marker_line("LINE_TWICE") - 1))
    stripped, _ = _split(full, tmp_path / "split")
    summaries = []
    for program in (full, str(stripped)):
        out = tmp_path / "hits.jsonl"
        proc = run_cli("run", str(recipe), "--format", "jsonl", "-o", str(out), "--", program)
        assert proc.returncode == 0, proc.stderr
        records = [json.loads(line) for line in out.read_text().splitlines()]
        summaries.append(records[-1]["breakpoints"])
        explained = run_cli("explain", str(recipe), "--", program).stdout
        assert "twice[left]" in explained and "twice[right]" in explained
        assert f"has no code: on line {_marker_line('LINE_TWICE')}" in explained
    assert summaries[0] == summaries[1] == {"twice[left]": 3, "twice[right]": 3, "smash": 3}


def test_cpp_names_through_the_debug_file(targets, tmp_path) -> None:
    stripped, _ = _split(targets["sym_cpp"], tmp_path)
    want, got = open_image(targets["sym_cpp"]), open_image(str(stripped))
    for name in ("geo::Box::perimeter", "geo::Box::perimeter() const", "geo::area", "geo::Box::operator!"):
        address = want.symbol_address(name)
        assert address is not None and got.symbol_address(name) == address, name
        assert got.symbolize(address) == want.symbolize(address)
    assert got.symbolize(want.symbol_address("geo::area") or 0) == ("geo::area(int, int)", 0)


def test_patterns_over_a_stripped_program_match_through_its_debug_file(full, tmp_path) -> None:
    stripped, _ = _split(full, tmp_path / "split")
    recipe = tmp_path / "pattern.yaml"
    recipe.write_text("version: 1\nname: p\nbreakpoints:\n  - at: 'sm*'\n  - at: 'mid*'\n")
    for program in (full, str(stripped)):
        out = tmp_path / "p.jsonl"
        proc = run_cli("run", str(recipe), "--format", "jsonl", "-o", str(out), "--", program)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(out.read_text().splitlines()[-1])["breakpoints"] == {"smash": 3, "middle": 3}


def test_a_recipe_on_exported_names_reads_no_debug_file_nor_dwarf(targets, tmp_path) -> None:
    """Start-up stays as it was: resolving `hit` and `libc.so.6!malloc`, and naming a hit,
    open neither a debug file nor any DWARF (fresh copies, so no other test's cache counts)."""
    from instrument import compile_plan, load_recipe
    from instrument.events import Module
    from instrument.symbols import debugfiles
    from instrument.symbols.modules import ModuleMap

    program, libc = tmp_path / "loop", tmp_path / "libc.so.6"
    shutil.copy(targets["loop"], program)
    shutil.copy(_libc(), libc)
    recipe = load_recipe("version: 1\nname: t\nbreakpoints:\n  - at: hit\n  - at: libc.so.6!malloc\n")
    compile_plan(recipe, command=(str(program),))
    modules = ModuleMap([Module(str(program), 0x555555554000), Module(str(libc), 0x7FFFF7000000)])
    hit = modules.resolve("hit")
    malloc = modules.resolve("libc.so.6!malloc")
    assert modules.symbol_text(hit + 1) == "hit+0x1" and modules.symbol_text(malloc) == "libc.so.6!malloc"
    opened = {key[0] for key in (*debugfiles._facts.entries(), *debugfiles._dwarf.entries())}
    assert str(libc) not in opened
    assert not any(key[0] == str(program) for key in debugfiles._dwarf.entries())


def test_variables_by_name_through_the_debug_file(full, tmp_path) -> None:
    """The DWARF reader (symbols/dwarf_info.py) opens the stripped program's debug file."""
    recipe = tmp_path / "vars.yaml"
    recipe.write_text("version: 1\nname: v\nbreakpoints:\n  - at: smash\n    actions:\n      - log: {vars: [v]}\n")
    stripped, _ = _split(full, tmp_path / "split")
    values = []
    for program in (full, str(stripped)):
        out = tmp_path / "vars.jsonl"
        proc = run_cli("run", str(recipe), "--format", "jsonl", "-o", str(out), "--", program)
        assert proc.returncode == 0, proc.stderr
        values.append([r["vars"] for r in map(json.loads, out.read_text().splitlines()) if r["event"] == "breakpoint"])
    assert len(values[0]) == 3 and values[0] == values[1]


@needs_libc_dbg
def test_libc_debug_file_symbols_come_back_from_the_cache_alike(tmp_path, monkeypatch) -> None:
    from instrument.symbols.elf import ElfImage

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = ElfImage(_libc()).debug_symbols          # parsed, then stored under libc's build id
    assert first is not None and list((tmp_path / "instrument" / "symbols").glob("*.sym"))
    again = ElfImage(_libc()).debug_symbols          # read back from the cache
    assert again is not None
    assert (again.starts, again.ends, again.names, again.sized, again.by_name) == \
        (first.starts, first.ends, first.names, first.sized, first.by_name)
    assert again.lookup(first.starts[len(first) // 2]) == first.lookup(first.starts[len(first) // 2])
