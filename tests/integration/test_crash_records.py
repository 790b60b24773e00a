"""Crash records from `instrument run` on real crashing programs (SPEC 5, issue 4)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli

RECIPE = "version: 1\nname: crash\ndescription: crash records only\n"


def crash_of(targets, tmp_path: Path, program: str, recipe: str = RECIPE) -> tuple[dict, list[dict], int]:
    path = tmp_path / "crash.yaml"
    path.write_text(recipe)
    out = tmp_path / "out.jsonl"
    proc = run_cli("run", str(path), "--format", "jsonl", "-o", str(out), "--",
                   program if "/" in program else targets[program])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    crashes = [r for r in records if r["event"] == "crash"]
    assert len(crashes) == 1, (proc.stderr, records[-1])
    return crashes[0], records, proc.returncode


def symbols(crash: dict) -> list[str | None]:
    return [f["symbol"].split("+")[0] if f.get("symbol") else None for f in crash["frames"]]


@pytest.mark.parametrize("program, exception, signal, access, fault, function", [
    ("crash_null_read", "ACCESS_VIOLATION", "SIGSEGV", "read", "0x10", "read_value"),
    ("crash_null_write", "ACCESS_VIOLATION", "SIGSEGV", "write", "0x0", "store"),
    ("crash_wild_write", "ACCESS_VIOLATION", "SIGSEGV", "write", "0xdeadbeef000", "poke"),
    ("crash_wild_read", "ACCESS_VIOLATION", "SIGSEGV", "read", "0x4141414141414141", "peek"),
    ("crash_bad_call", "ACCESS_VIOLATION", "SIGSEGV", "execute", "0xdeadbeef", "dispatch"),
    ("crash_ret_smash", "ACCESS_VIOLATION", "SIGSEGV", "execute", "0x4141414141414141", "smash"),
    ("crash_div_zero", "INT_DIVIDE_BY_ZERO", "SIGFPE", None, None, "divide"),
    ("crash_trap", "ILLEGAL_INSTRUCTION", "SIGILL", None, None, "unreachable_state"),
    ("crash_int3", "BREAKPOINT", "SIGTRAP", None, None, "trip"),
    ("crash_abort", "SIGNAL", "SIGABRT", None, None, "give_up"),
    ("crash_stack_protector", "STACK_BUFFER_OVERRUN", "SIGABRT", None, None, "smash"),
    ("crash_fortify", "STACK_BUFFER_OVERRUN", "SIGABRT", None, None, "main"),
    ("crash_double_free", "HEAP_CORRUPTION", "SIGABRT", None, None, "release"),
    ("crash_recursion", "STACK_OVERFLOW", "SIGSEGV", "write", None, "recurse"),
])
def test_crash_record_fields(targets, tmp_path, program, exception, signal, access, fault, function):
    crash, records, status = crash_of(targets, tmp_path, program)
    assert status == 1
    assert crash["exception"] == exception and crash["signal"] == signal
    assert crash["access"] == access
    if fault is not None:
        assert crash["fault_address"] == fault
    assert crash["exception_code"].startswith("0x") and crash["code"] == 1
    assert function in symbols(crash), crash["frames"]
    if program not in ("crash_recursion", "crash_ret_smash"):   # main is 32+ frames down / smashed away
        assert "main" in symbols(crash)
    assert set(crash["registers"]) >= {"rip", "rsp", "rax"}
    # int3 traps after itself: the exception names the int3, the registers say where the CPU is.
    rip = int(crash["registers"]["rip"], 16) - (exception == "BREAKPOINT")
    assert rip == int(crash["address"], 16) or exception == "ACCESS_VIOLATION" and access == "execute"
    marked = [i for i in crash["disassembly"] if i.get("fault")]
    if crash["address"] not in ("0xdeadbeef",):
        assert len(marked) == 1 and marked[0]["address"] == crash["address"]
    summary = records[-1]
    assert summary["event"] == "summary" and summary["crashed"] and summary["signal"] == signal


def test_the_programs_own_int3_with_a_handler_is_passed_to_it(targets, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE)
    proc = run_cli("run", str(path), "--format", "jsonl", "--", targets["int3_handled"])
    assert proc.returncode == 0, proc.stderr
    assert "handled=3" in proc.stdout and '"event":"crash"' not in proc.stdout


def test_ret_to_non_canonical_faults_on_the_ret(targets, tmp_path):
    crash, _, _ = crash_of(targets, tmp_path, "crash_ret_smash")
    assert crash["instruction"] == "ret" and crash["symbol"].startswith("smash")


def test_optimised_code_without_frame_pointers_unwinds_through_cfi(targets, tmp_path):
    crash, _, _ = crash_of(targets, tmp_path, "crash_deep")
    assert symbols(crash)[:4] == ["level3", "level2", "level1", "main"]


def test_crash_inside_libc_memcpy(targets, tmp_path):
    crash, _, _ = crash_of(targets, tmp_path, "crash_memcpy")
    frames = crash["frames"]
    assert frames[0]["module"] == "libc.so.6"
    assert symbols(crash)[1:3] == ["copy_block", "main"]


def test_crash_in_a_worker_thread_names_that_thread(targets, tmp_path):
    crash, records, _ = crash_of(targets, tmp_path, "crash_thread")
    assert crash["tid"] != crash["pid"]
    assert symbols(crash)[0] == "worker_fault"
    assert crash["registers"]["rip"] == crash["address"]


def test_same_symbolic_frames_for_pie_nonpie_and_a_copy(targets, tmp_path):
    copy = tmp_path / "elsewhere" / "crash_null_write"
    copy.parent.mkdir()
    shutil.copy2(targets["crash_null_write"], copy)
    seen = []
    for i, program in enumerate((targets["crash_null_write"], targets["crash_null_write-nopie"], str(copy))):
        d = tmp_path / f"run{i}"
        d.mkdir()
        crash, _, _ = crash_of(targets, d, program)
        seen.append([(Path(f["module"] or "").name.replace("-nopie", ""), f["symbol"]) for f in crash["frames"][:2]])
    assert seen[0] == seen[1] == seen[2]
    assert seen[0][0] == ("crash_null_write", "store+0x12") or seen[0][0][1].startswith("store")


def test_crash_handlers_run_with_the_crash_record(targets, tmp_path):
    recipe = RECIPE + ("crash:\n  - log: 'died at {symbol} ({exception}) access={access}'\n"
                       "  - dump: {at: rsp, size: 16}\n")
    crash, _, status = crash_of(targets, tmp_path, "crash_null_write", recipe)
    assert status == 1
    assert crash["message"] == "died at store+0x12 (ACCESS_VIOLATION) access=write" or crash["message"].startswith("died at store")
    assert len(crash["dump"][0]["hex"]) == 32


def test_sigtrap_sent_by_raise_is_a_signal_not_a_breakpoint(targets, tmp_path):
    crash, records, status = crash_of(targets, tmp_path, "bk_signals")
    assert status == 1
    assert crash["exception"] == "SIGNAL" and crash["signal"] == "SIGTRAP"
    assert not [r for r in records if r["event"] == "breakpoint"]
