"""The shipped recipe library: every recipe run by name against a real program, `validate --target`,
`requires`, and `instrument recipes` / `instrument run NAME` from an installed wheel (issue 8)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from instrument.backend import get_backend
from instrument.recipe.library import shipped_recipe_path, shipped_recipes
from instrument.recipe.source import parse_source
from instrument.symbols.elf import open_image
from tests.conftest import run_cli

ROOT = Path(__file__).parents[2]
# Recipes that run anywhere: no registers, no libc symbols.
PORTABLE = {"event-log", "crash-report", "crash-triage", "guard-watch"}
# Each shipped recipe -> the test that runs it against a real program.
RUN_BY = {
    "heap-trace": "test_heap_trace_pairs_sizes_pointers_and_callers",
    "file-opens": "test_file_opens_logs_paths_and_results",
    "watch-global": "test_watch_global_logs_every_write_with_its_value",
    "guard-watch": "test_guard_watch_reports_accesses_inside_the_buffer_only",
    "anti-debug-bypass": "test_anti_debug_bypass_fakes_ptrace_traceme",
    "copy-overflow": "test_copy_overflow_dumps_long_sources_only",
    "debug-events": "test_debug_events_logs_codes_and_catches_the_first_breakpoint",
    "event-log": "test_event_log_and_trace_calls",
    "trace-calls": "test_event_log_and_trace_calls",
    "crash-report": "test_crash_recipes_record_the_crash",
    "crash-triage": "test_crash_recipes_record_the_crash",
}


def run_recipe(tmp_path: Path, name: str, *command: str, sets: tuple[str, ...] = (),
               timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    out = tmp_path / f"{name}.jsonl"
    args = [a for s in sets for a in ("--set", s)]
    proc = run_cli("run", name, *args, "--format", "jsonl", "-o", str(out), "--", *command, timeout=timeout)
    recs = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return proc, recs


def of(recs: list[dict], event: str, bp_id: str | None = None) -> list[dict]:
    return [r for r in recs if r["event"] == event and (bp_id is None or r.get("id") == bp_id)]


def caller(rec: dict) -> str:
    """The symbol of frame 1 (the caller of the function the breakpoint is on)."""
    return rec["frames"][1]["symbol"]


# -- what every shipped recipe carries ---------------------------------------------------------

def test_every_shipped_recipe_is_documented_and_typed():
    entries = shipped_recipes()
    assert len(entries) >= 10
    for path, recipe in entries:
        # A recipe elsewhere may leave them out (its name is then its file's); a shipped one says them.
        written = parse_source(path.read_text(), str(path)).data
        assert "name" in written and "description" in written, path
        assert recipe.name == path.stem, path
        assert recipe.description and recipe.author and recipe.tags, recipe.name
        assert recipe.requires or recipe.name in PORTABLE, f"{recipe.name}: say where it runs (requires:)"
        for param in recipe.params:
            assert param.type in ("int", "float", "str", "bool"), (recipe.name, param.name)


def test_every_shipped_recipe_is_run_by_a_test_here():
    # A new recipe in recipes/ fails this until it gets a test below that runs it (HOUSE rule 10).
    assert {recipe.name for _, recipe in shipped_recipes()} == set(RUN_BY)
    assert all(callable(globals()[test]) for test in RUN_BY.values())


def test_recipes_command_lists_descriptions_params_and_requirements():
    proc = run_cli("recipes")
    assert proc.returncode == 0, proc.stderr
    for path, recipe in shipped_recipes():
        assert f"{recipe.name}  ({path.name})" in proc.stdout
    assert "--set min_size=<int>  (default 0)" in proc.stdout
    assert "--set variable=<str>  (required)" in proc.stdout
    assert "requires: os linux, arch x86_64" in proc.stdout


# -- the recipes, one by one -----------------------------------------------------------------

def test_heap_trace_pairs_sizes_pointers_and_callers(targets, tmp_path):
    proc, recs = run_recipe(tmp_path, "heap-trace", targets["lib_heap"])
    assert proc.returncode == 0, proc.stderr
    printed = dict(kv.split("=") for kv in proc.stdout.split("\n")[0].split())   # a=0x.. b=0x.. c=0x..
    mine = [r for r in of(recs, "breakpoint") if caller(r).startswith("work+")]
    assert [r["message"] for r in mine][:4] == ["malloc(24)", "calloc(4, 8)",
                                                mine[2]["message"], "malloc(7777)"]
    assert mine[2]["message"].startswith("realloc(0x") and mine[2]["message"].endswith(", 100)")
    returns = {r["message"].split(" = ")[0]: r["retval"] for r in of(recs, "return")}
    assert returns["calloc(4, 8)"] == printed["b"]
    assert returns["malloc(7777)"] == printed["c"]
    realloc_ret = next(v for k, v in returns.items() if k.startswith("realloc("))
    assert realloc_ret == printed["a"]
    freed = {r["message"] for r in mine if r["id"] == "free"}
    assert freed == {f"free({printed[k]})" for k in "abc"}
    assert of(recs, "summary")[0]["breakpoints"]["calloc"] >= 1


def test_heap_trace_min_size_filters_allocations(targets, tmp_path):
    proc, recs = run_recipe(tmp_path, "heap-trace", targets["lib_heap"], sets=("min_size=5000",))
    assert proc.returncode == 0, proc.stderr
    allocs = [r["message"] for r in of(recs, "breakpoint") if r["id"] != "free"]
    assert allocs == ["malloc(7777)"]


def test_file_opens_logs_paths_and_results(targets, tmp_path):
    real = tmp_path / "present.txt"
    real.write_text("x")
    missing = tmp_path / "absent.txt"
    proc, recs = run_recipe(tmp_path, "file-opens", targets["lib_files"], str(real), str(missing))
    assert proc.returncode == 0, proc.stderr
    messages = [r["message"] for r in recs if r["event"] in ("breakpoint", "return")]
    assert f"open({real}, flags=0x0)" in messages
    fd = int(proc.stdout.split("open=")[1].split()[0])
    assert f"open({real}) = {fd}" in messages
    assert f"fopen({missing}, r)" in messages
    assert f"fopen({missing}) = 0x0" in messages
    # fopen opens through glibc's open: the failure reads -1, sign-extended from eax.
    assert f"open({missing}) = -1" in messages


def test_watch_global_logs_every_write_with_its_value(targets, tmp_path):
    proc, recs = run_recipe(tmp_path, "watch-global", targets["lib_watch"], sets=("variable=score",))
    assert proc.returncode == 0, proc.stderr
    hits = of(recs, "breakpoint", "write")
    assert [r["message"] for r in hits] == [f"score = {v}" for v in (0, 1, 3, 6, 10)]
    assert all(r["type"] == "hardware" and r["frames"][0]["symbol"].startswith("add+") for r in hits)
    assert "score=10" in proc.stdout


def test_guard_watch_reports_accesses_inside_the_buffer_only(targets, tmp_path):
    address = open_image(targets["lib_watch"]).symbol_address("secret")
    proc, recs = run_recipe(tmp_path, "guard-watch", targets["lib_watch"], sets=("buffer=secret",))
    if not get_backend().capabilities.memory_breakpoints:
        # Guard pages are not in the Linux backend yet: the compiler must say so plainly.
        assert proc.returncode == 2
        assert "memory breakpoints are not supported by this backend yet" in proc.stderr
        assert "guard-watch.yaml:" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    hits = of(recs, "breakpoint", "access")
    assert hits and all(address <= int(r["address"], 16) < address + 16 for r in hits)
    assert {r["message"].split()[0] for r in hits} >= {"write", "read"}
    assert "secret=the_buffer under watch" in proc.stdout


def test_anti_debug_bypass_fakes_ptrace_traceme(targets, tmp_path):
    plain, _ = run_recipe(tmp_path, "event-log", targets["lib_antidebug"])
    assert plain.returncode == 0 and "debugger detected" in plain.stdout
    proc, recs = run_recipe(tmp_path, "anti-debug-bypass", targets["lib_antidebug"])
    assert proc.returncode == 0, proc.stderr
    assert "no debugger" in proc.stdout
    hit = of(recs, "breakpoint", "traceme")
    assert len(hit) == 1 and hit[0]["message"].endswith("returning 0")
    assert of(recs, "summary")[0]["exit_code"] == 0


def test_copy_overflow_dumps_long_sources_only(targets, tmp_path):
    proc, recs = run_recipe(tmp_path, "copy-overflow", targets["lib_copy"])
    assert proc.returncode == 0, proc.stderr
    strcpy, memcpy = of(recs, "breakpoint", "strcpy"), of(recs, "breakpoint", "memcpy")
    longer = "AAAAAAAAAABBBBBBBBBBCCCCCCCCCCDDDDDDDDDD"
    assert len(strcpy) == 1 and f'"{longer}"' in strcpy[0]["message"]          # "short" is not reported
    assert strcpy[0]["dump"][0]["hex"] == longer[:17].encode().hex()
    assert len(memcpy) == 1 and ", 100) longer than 16 bytes" in memcpy[0]["message"]   # 8 bytes is not
    assert memcpy[0]["dump"][0]["hex"] == "5a" * 100
    assert caller(strcpy[0]).startswith("main+") and caller(memcpy[0]).startswith("main+")
    proc, recs = run_recipe(tmp_path, "copy-overflow", targets["lib_copy"], sets=("max_len=4",))
    assert len(of(recs, "breakpoint", "strcpy")) == 2 and len(of(recs, "breakpoint", "memcpy")) == 2


def test_debug_events_logs_codes_and_catches_the_first_breakpoint(targets, tmp_path):
    proc, recs = run_recipe(tmp_path, "debug-events", targets["lib_antidebug"])
    assert proc.returncode == 0, proc.stderr
    events = [r["event"] for r in recs]
    assert events[0] == "create_process" and recs[0]["message"].startswith("CREATE_PROCESS_DEBUG_EVENT code=3")
    loads = of(recs, "load_dll")
    assert any("libc.so.6" in r["message"] for r in loads)
    assert all(r["message"].startswith("LOAD_DLL_DEBUG_EVENT code=6") for r in loads)
    first = of(recs, "breakpoint", "first-breakpoint")
    assert len(first) == 1 and first[0]["symbol"] == "main" and first[0]["registers"]["rip"] == first[0]["address"]
    # The first breakpoint comes after the loader mapped libc, and before the exit.
    assert events.index("breakpoint") > events.index("load_dll")
    assert of(recs, "exit_process")[0]["message"] == "EXIT_PROCESS_DEBUG_EVENT code=5 pid=%d exit_code=1" % recs[0]["pid"]
    _, recs = run_recipe(tmp_path, "debug-events", targets["lib_antidebug"], sets=("catch_first=false",))
    assert not of(recs, "breakpoint")


def test_event_log_and_trace_calls(targets, tmp_path):
    proc, recs = run_recipe(tmp_path, "event-log", targets["loop"], "3")
    assert proc.returncode == 0 and [r["code"] for r in recs[:1]] == [3] and of(recs, "exit_process")
    proc, recs = run_recipe(tmp_path, "trace-calls", targets["lib_heap"])
    assert proc.returncode == 0, proc.stderr
    assert {"malloc(24)", "malloc(7777)"} <= {r["message"] for r in of(recs, "breakpoint", "malloc")}


@pytest.mark.parametrize("name", ["crash-report", "crash-triage"])
def test_crash_recipes_record_the_crash(targets, tmp_path, name):
    assert shipped_recipe_path(name) is not None
    proc, recs = run_recipe(tmp_path, name, targets["crash_null_write"])
    assert proc.returncode == 1, proc.stderr
    crash = of(recs, "crash")
    assert len(crash) == 1 and crash[0]["exception"] == "ACCESS_VIOLATION" and crash[0]["frames"]
    if name == "crash-report":      # its own actions: registers, stack, faulting code
        assert crash[0]["registers"]["rip"] == crash[0]["address"] and crash[0]["disassembly"]
    else:                           # the triage engineer's recipe: the analysed crash record
        assert crash[0]["symbol"].startswith("store+") and crash[0]["registers"]
    assert of(recs, "summary")[0]["recipe"]["name"] == name


# -- requires and validate --target ------------------------------------------------------------

def test_a_windows_only_recipe_is_a_clear_error_on_linux(tmp_path):
    path = tmp_path / "win.yaml"
    path.write_text("version: 1\nname: win\ndescription: d\nrequires: {os: windows}\n"
                    "breakpoints:\n  - at: kernel32.dll!CreateFileW\n")
    proc = run_cli("run", str(path), "--", "/bin/true")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"{path}:4:16: error: this recipe requires os windows; this is linux"


def test_validate_target_lists_addresses_and_deferred_modules(targets):
    prog = targets["lib_heap"]
    main = open_image(prog).symbol_address("main")
    proc = run_cli("validate", "heap-trace", "debug-events", "--target", prog)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0].startswith(f"heap-trace: ok against {prog} (PIE, build id {open_image(prog).build_id})")
    assert any(line.split() == ["malloc", "soft", "libc.so.6!malloc", "->", "deferred", "until",
                                "libc.so.6", "loads"] for line in out)
    assert "  4 of 4 deferred; libraries needed: libc.so.6" in out
    assert any(f"first-breakpoint  soft      main  ->  {main:#x} (link-time; + the load base, PIE)" in line
               for line in out)


def test_validate_target_fixed_address_and_dlopened_library(targets, tmp_path):
    address = open_image(targets["lib_watch"]).symbol_address("score")
    proc = run_cli("validate", "watch-global", "--set", f"variable={address}", "--target", targets["lib_watch"])
    assert proc.returncode == 0, proc.stderr
    assert "(fixed address," in proc.stdout and f"->  {address:#x}" in proc.stdout
    proc = run_cli("validate", "watch-global", "--set", "variable=score", "--target", targets["lib_watch"])
    assert proc.returncode == 0 and f"{address:#x}" in proc.stdout, proc.stdout + proc.stderr
    path = tmp_path / "plugin.yaml"
    path.write_text("version: 1\nname: plugin\ndescription: d\nbreakpoints:\n  - id: work\n"
                    "    at: plugin.so!plugin_work\n")
    proc = run_cli("validate", str(path), "--target", targets["plugin_host"])
    assert proc.returncode == 0, proc.stderr
    assert "deferred until plugin.so loads (not a DT_NEEDED library: only if the program dlopen()s it)" in proc.stdout


def test_validate_target_reports_missing_symbols_and_non_elf(targets):
    proc = run_cli("validate", "copy-overflow", "--target", targets["lib_heap"])
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 2 and "copy-overflow.yaml:" in lines[0]
    assert lines[0].endswith(f"error: unknown symbol 'strcpy@plt' in {targets['lib_heap']}")
    proc = run_cli("validate", "debug-events", "--target", str(ROOT / "README.md"))
    assert proc.returncode == 2 and "not a readable ELF file" in proc.stderr
    proc = run_cli("validate", "debug-events", "--target", str(ROOT / ".ci" / "run"))
    assert proc.returncode == 2 and "a script (#!" in proc.stderr and "the program it runs" in proc.stderr


# -- from an installed wheel ------------------------------------------------------------------

def _copy_source(dest: Path) -> None:
    """Build from a copy: setuptools leaves build/ and *.egg-info behind in the tree it builds."""
    import shutil
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / "instrument", dest / "instrument",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def test_recipes_and_run_by_name_from_an_installed_wheel(tmp_path):
    src, wheels, venv, work = (tmp_path / d for d in ("src", "wheels", "venv", "elsewhere"))
    for d in (src, work):
        d.mkdir()
    _copy_source(src)
    py = sys.executable
    subprocess.run([py, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)],
                   check=True, capture_output=True, timeout=120)
    wheel = next(wheels.glob("instrument-*.whl"))
    subprocess.run([py, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    # The fresh venv gets only the wheel; its dependencies come from the project venv's
    # site-packages, appended after its own through a .pth file (pip install needs no index).
    site = next(venv.glob("lib/python*/site-packages"))
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "deps.pth").write_text("\n".join(deps) + "\n")
    vpy = venv / "bin" / "python"
    subprocess.run([py, "-m", "pip", "--python", str(vpy), "install", "--no-deps", "--no-index", "-q", str(wheel)],
                   check=True, capture_output=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run([str(vpy), "-c", "import instrument; print(instrument.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(site)), where.stdout

    exe = str(venv / "bin" / "instrument")
    listed = subprocess.run([exe, "recipes"], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    for path, recipe in shipped_recipes():
        assert f"{recipe.name}  ({path.name})" in listed.stdout

    ran = subprocess.run([exe, "run", "event-log", "--format", "jsonl", "--", "/bin/true"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout.splitlines()[-1])
    shipped_text = (site / "instrument" / "recipes" / "event-log.yaml").read_bytes()
    assert summary["recipe"] == {"name": "event-log", "sha256": hashlib.sha256(shipped_text).hexdigest()}
    assert summary["recipe"]["sha256"] == hashlib.sha256((ROOT / "recipes" / "event-log.yaml").read_bytes()).hexdigest()
    assert summary["tool"] == {"name": "instrument", "version": "0.1.0"}
    assert summary["target"]["build_id"] == open_image("/bin/true").build_id
