"""Mistakes a new user makes, each answered with a clear message and an intact target
(found by running the tool as a newcomer would, on programs the other tests do not use)."""

from __future__ import annotations

import stat

from tests.conftest import run_cli, run_recipe_jsonl

HEADER = "version: 1\nname: t\ndescription: user mistakes\n"


def test_soft_breakpoint_on_a_variable_is_refused_and_the_program_is_untouched(targets, tmp_path):
    proc, recs = run_recipe_jsonl(tmp_path, HEADER + "breakpoints:\n  - {id: var, at: counter}\n",
                                  targets["loop"], "20")
    assert "sum=380 counter=190" in proc.stdout            # an int3 in `counter` would change it
    assert proc.returncode == 0
    assert "breakpoint var" in proc.stderr and "is not code" in proc.stderr and "type: hardware" in proc.stderr
    assert recs[-1]["not_armed"] == ["var"]


def test_breakpoint_inside_an_instruction_is_refused_not_hung(targets, tmp_path):
    # hit+1 is inside `push rbp`/`endbr64`-free -O0 prologues only if the first instruction
    # is longer than one byte; pick an offset inside `mov rbp, rsp` (3 bytes at hit+1).
    proc, recs = run_recipe_jsonl(tmp_path, HEADER + "breakpoints:\n  - {id: mid, at: hit+2}\n",
                                  targets["loop"], "5", timeout=30)
    assert proc.returncode == 0 and "sum=20" in proc.stdout
    assert "inside the instruction" in proc.stderr and recs[-1]["not_armed"] == ["mid"]


def test_a_program_for_another_architecture_is_refused(tmp_path):
    fake32 = tmp_path / "prog32"
    # An ELF32 header for i386 (EM_386 = 3): refused before anything runs.
    fake32.write_bytes(b"\x7fELF\x01\x01\x01" + b"\0" * 9 + b"\x02\x00\x03\x00" + b"\0" * 32)
    fake32.chmod(fake32.stat().st_mode | stat.S_IEXEC)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(HEADER)
    proc = run_cli("run", str(recipe), "--", str(fake32))
    assert proc.returncode == 3
    assert proc.stderr.strip() == f"instrument: error: {fake32} is built for x86; this backend debugs x86_64 programs only"


def test_unknown_names_in_conditions_and_logs_are_recipe_errors(targets, tmp_path):
    recipe = tmp_path / "names.yaml"
    recipe.write_text(HEADER + f"target:\n  run: [{targets['loop']}]\n"
                      "breakpoints:\n  - at: hit\n    when: \"arg > 0\"\n"
                      "    actions:\n      - log: \"{arg0} {counter} {nosuchname}\"\n")
    proc = run_cli("validate", str(recipe))
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"{recipe}:8:12: error: unknown name 'arg'")
    assert lines[1].startswith(f"{recipe}:10:33: error: unknown name 'nosuchname'")


def test_an_unwritable_output_file_is_a_usage_error(targets, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(HEADER)
    missing = tmp_path / "no" / "such" / "out.jsonl"
    for args in (("run", str(recipe), "-o", str(missing), "--", targets["loop"]),
                 ("triage", "-o", str(missing), "--", targets["crash_null_write"])):
        proc = run_cli(*args)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == f"instrument: error: cannot write -o {missing}: No such file or directory"


def test_disassembling_unreadable_memory_reports_an_error(targets, tmp_path):
    _, recs = run_recipe_jsonl(tmp_path, HEADER + "breakpoints:\n  - at: decide\n    actions:\n"
                               "      - disassemble: {at: 0, count: 2}\n", targets["loop"])
    hit = next(r for r in recs if r["event"] == "breakpoint")
    assert "disassembly" not in hit and "no instructions could be read at 0x0" in hit["errors"][0]


def test_cpp_names_with_scopes_are_breakpoint_addresses(targets, tmp_path):
    recipe = tmp_path / "cpp.yaml"
    recipe.write_text(HEADER + "breakpoints:\n  - at: geo::area\n  - at: geo::nosuch\n")
    proc = run_cli("validate", str(recipe), "--target", targets["sym_cpp"])
    assert proc.returncode == 2
    assert "unknown symbol 'geo::nosuch'" in proc.stderr and "geo::area" not in proc.stderr
