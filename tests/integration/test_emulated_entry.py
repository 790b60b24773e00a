"""Breakpoints on instructions the engine emulates at a hit instead of single-stepping them
(arch/x86_64/prologue.py): the program computes exactly what it computes untraced."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import run_recipe_jsonl

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the ptrace backend runs on Linux")

FUNCTIONS = ("is_zero", "below", "framed", "limit_is_small", "nothing", "low_half", "limit_address",
             "flags_of_decrement")


def test_flag_setting_entries_run_as_untraced(targets, tmp_path):
    from elftools.elf.elffile import ELFFile

    from instrument.arch.x86_64 import compile_emulation

    program = targets["entry_flags"]
    # Each function's first instruction is one the emulator takes (else this test would
    # only be testing the single-step).
    with open(program, "rb") as f:
        elf = ELFFile(f)
        text = elf.get_section_by_name(".text")
        symbols = {s.name: s["st_value"] for s in elf.get_section_by_name(".symtab").iter_symbols()}
        for name in FUNCTIONS:
            f.seek(text["sh_offset"] + symbols[name] - text["sh_addr"])
            assert compile_emulation(f.read(15)) is not None, name

    calls = 60
    untraced = subprocess.run([program, str(calls)], capture_output=True, text=True, check=True).stdout
    body = "breakpoints:\n" + "".join(f"  - id: {name}\n    at: {name}\n    actions:\n      - log: {{registers: [rdi, eflags]}}\n"
                                      for name in FUNCTIONS)
    proc, recs = run_recipe_jsonl(tmp_path, "version: 1\nname: t\ndescription: emulated entries\n" + body,
                                  program, str(calls), extra=("--no-sampling",))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == untraced
    summary = recs[-1]
    assert summary["breakpoints"] == {name: calls for name in FUNCTIONS}
    # The registers at each hit are those before the instruction ran.
    values = [int(line.split(":")[0]) for line in untraced.splitlines()[:-1]]
    assert [int(r["registers"]["rdi"], 16) for r in recs if r.get("id") == "is_zero"] == \
        [v & (2 ** 64 - 1) for v in values]


@pytest.mark.parametrize("watch", ["type: memory\n    size: 4", "type: hardware\n    access: readwrite\n    size: 4"])
def test_a_watched_read_under_a_breakpoint_still_reports(targets, tmp_path, watch):
    # limit_is_small starts with `cmp dword [rip+limit], 5`: emulated, that read would not
    # touch the guarded page nor trip the debug register. With a data watch armed in the
    # process the instruction is single-stepped, and the watch sees every read.
    calls = 5
    body = ("breakpoints:\n  - id: entry\n    at: limit_is_small\n    actions:\n      - log: {registers: [rdi]}\n"
            f"  - id: watch\n    at: limit\n    {watch}\n")
    proc, recs = run_recipe_jsonl(tmp_path, "version: 1\nname: t\ndescription: a watched read\n" + body,
                                  targets["entry_flags"], str(calls), extra=("--no-sampling",))
    assert proc.returncode == 0, proc.stderr
    assert recs[-1]["breakpoints"] == {"entry": calls, "watch": calls}
