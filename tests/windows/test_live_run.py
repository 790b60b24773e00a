"""`instrument run` end to end inside a Windows CPython (wine or Windows): the CLI, engine,
module map (PE exports) and WindowsBackend together, on the mingw-built targets.

.ci/wine.sh builds tests/targets/win/*.c into $INSTRUMENT_WIN_TARGETS and starts
pytest here with the project on PYTHONPATH. Records are compared with what the
Linux suite asserts for the same recipes (tests/integration/test_run.py,
test_crash_records.py): same events, codes and fields.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Windows only: off Windows there is no kernel32 to debug with (tests/windows/conftest.py
# ignores the live files on Linux; this keeps the file inert even where it is collected).
__test__ = sys.platform == "win32"

TARGETS = Path(os.environ.get("INSTRUMENT_WIN_TARGETS", "."))
N = 5
EXPECTED_SUM = sum(i + 1 for i in range(N))   # hits.exe's exit code

HITS_RECIPE = """\
version: 1
name: win-hits
description: Each hitlib.dll!hit call with its first argument, every DLL load.
target:
  run: ["hits.exe"]
  timeout: 60
breakpoints:
  - id: on-hit
    at: HITLIB.DLL!hit            # module names are case-insensitive on Windows
    actions:
      - log: "hit {hits}: arg0={arg0}"
      - log: {registers: [rcx, rip]}
  - id: on-debug-string
    at: kernel32.dll!OutputDebugStringA
    actions:
      - log: "text={str(arg0)}"
events:
  create_process:
    - log: "started"
  load_dll:
    - log: "loaded {module}"
  exit_process:
    - log: "exited"
"""

CRASH_RECIPE = """\
version: 1
name: win-crash
description: The crash record of a write through a bad pointer.
target:
  run: ["crash.exe"]
  timeout: 60
crash:
  - backtrace: {depth: 16}
"""


def run(tmp_path: Path, recipe: str, *command: str) -> tuple[list[dict], subprocess.CompletedProcess[str]]:
    recipe_path, out = tmp_path / "recipe.yaml", tmp_path / "out.jsonl"
    recipe_path.write_text(recipe)
    # python.exe under wine needs pipes for stdout and stderr: capture both.
    proc = subprocess.run([sys.executable, "-m", "instrument", "run", str(recipe_path), "--format", "jsonl",
                           "-o", str(out), "--", *command], cwd=TARGETS, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=180)
    assert out.exists(), proc.stderr
    return [json.loads(line) for line in out.read_text().splitlines()], proc


def basename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1].lower()


def test_run_hits_records(tmp_path: Path) -> None:
    records, proc = run(tmp_path, HITS_RECIPE, str(TARGETS / "hits.exe"), str(N))
    assert proc.returncode == 0, proc.stderr
    events = [r["event"] for r in records]
    assert events[0] == "create_process" and records[0]["code"] == 3, records[0]
    assert basename(records[0]["image_path"]) == "hits.exe" and int(records[0]["base"], 16)
    assert events[-2:] == ["exit_process", "summary"]

    loads = [r for r in records if r["event"] == "load_dll"]
    assert all(r["code"] == 6 and r["message"] == f"loaded {r['module']}" for r in loads)
    assert {"ntdll.dll", "kernel32.dll", "hitlib.dll"} <= {basename(r["module"]) for r in loads}

    hits = [r for r in records if r["event"] == "breakpoint" and r["id"] == "on-hit"]
    assert len(hits) == N
    for i, hit in enumerate(hits):
        assert hit["code"] == 1 and hit["type"] == "soft" and hit["hits"] == i + 1
        assert hit["symbol"] == "hitlib.dll!hit"
        # ms_x64 ABI: the first argument is rcx, and rip is the export's runtime address.
        assert hit["message"] == f"hit {i + 1}: arg0={i}"
        assert int(hit["registers"]["rcx"], 16) & 0xFFFFFFFF == i
        assert hit["registers"]["rip"] == hit["address"] == hits[0]["address"]
    assert events.index("breakpoint") > events.index("load_dll")

    # A system DLL's export, resolved by name in kernel32.dll when it loads.
    texts = [r for r in records if r["event"] == "breakpoint" and r["id"] == "on-debug-string"]
    assert [t["message"] for t in texts] == [f"text=hits done: {N}"]
    assert texts[0]["symbol"] == "kernel32.dll!OutputDebugStringA"

    exit_record, summary = records[-2], records[-1]
    assert exit_record["code"] == 5 and exit_record["exit_code"] == EXPECTED_SUM
    assert summary["ended"] == "exited" and summary["exit_code"] == EXPECTED_SUM and not summary["crashed"]
    assert summary["breakpoints"] == {"on-hit": N, "on-debug-string": 1}
    assert summary["recipe"]["name"] == "win-hits"


def test_run_crash_record(tmp_path: Path) -> None:
    records, proc = run(tmp_path, CRASH_RECIPE, str(TARGETS / "crash.exe"))
    assert proc.returncode == 1, proc.stderr          # SPEC 4: the target crashed
    crashes = [r for r in records if r["event"] == "crash"]
    assert len(crashes) == 1, records
    crash = crashes[0]
    assert crash["code"] == 1 and crash["exception"] == "ACCESS_VIOLATION"
    assert crash["exception_code"] == "0xc0000005" and crash["signal"] is None
    assert crash["access"] == "write" and crash["fault_address"] == "0x10"   # *(int *)0x10 = 42
    assert crash["module"] == "crash.exe" and crash["symbol"].startswith("main+")
    assert crash["registers"]["rip"] == crash["address"]
    assert [i["text"] for i in crash["disassembly"] if i.get("fault")] == ["mov dword ptr [rax], 0x2a"]
    # Frame 0 is exact. The CFI unwinder reads ELF .eh_frame only, not PE .pdata/.xdata,
    # so the caller comes from the rbp chain that mingw's -O0 code keeps.
    frames = crash["frames"]
    assert frames[0]["pc"] == crash["address"] and frames[0]["symbol"].startswith("main+")
    assert frames[0]["module"] == "crash.exe" and int(frames[0]["offset"], 16) > 0
    assert len(frames) >= 2 and frames[1]["module"] == "crash.exe" and frames[1]["method"] == "fp"
    summary = records[-1]
    assert summary["event"] == "summary" and summary["crashed"] and summary["ended"] == "crashed"
    assert summary["exit_code"] == 0xC0000005
