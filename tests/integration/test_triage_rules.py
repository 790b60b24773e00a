"""Every classification rule, reached by a real crash of a small C program under the real backend."""

from __future__ import annotations

import pytest

from instrument.analysis.classify import default_rules
from instrument.triage.runner import TriageConfig, Worker

# (program, argv[1] or None, class, rule)
CORPUS = [
    ("triage_rules", "stack-exec", "EXPLOITABLE", "StackCodeExecution"),
    ("triage_rules", "call-wild", "EXPLOITABLE", "CallAv"),
    ("triage_rules", "jmp-wild", "EXPLOITABLE", "BranchAv"),
    ("triage_rules", "stack-corrupt", "EXPLOITABLE", "PossibleStackCorruption"),
    ("triage_rules", "bad-insn", "EXPLOITABLE", "BadInstruction"),
    ("triage_rules", "pc-null", "PROBABLY_EXPLOITABLE", "SegFaultOnPcNearNull"),
    ("triage_rules", "call-null", "PROBABLY_EXPLOITABLE", "CallAvNearNull"),
    ("triage_rules", "jmp-null", "PROBABLY_EXPLOITABLE", "BranchAvNearNull"),
    ("triage_rules", "rep-movs", "PROBABLY_EXPLOITABLE", "BlockMoveAv"),
    ("triage_rules", "sigterm", "PROBABLY_NOT_EXPLOITABLE", "BenignSignal"),
    ("triage_rules", "int3", "NOT_EXPLOITABLE", "TrapSignal"),
    ("triage_rules", "segv-raise", "UNKNOWN", "AccessViolation"),
    ("triage_rules", "sigsys", "UNKNOWN", "UncategorizedSignal"),
    ("crash_ret_smash", None, "EXPLOITABLE", "ReturnAv"),
    ("triage_rules", "pivot", "EXPLOITABLE", "ReturnAv"),      # a ret off a pivoted rsp: not exhaustion
    ("crash_bad_call", None, "EXPLOITABLE", "SegFaultOnPc"),
    ("crash_wild_write", None, "EXPLOITABLE", "DestAv"),
    ("crash_stack_protector", None, "EXPLOITABLE", "StackBufferOverflow"),
    ("crash_double_free", None, "EXPLOITABLE", "HeapError"),
    ("crash_recursion", None, "PROBABLY_EXPLOITABLE", "StackOverflow"),
    ("crash_stack_call", None, "PROBABLY_EXPLOITABLE", "StackOverflow"),
    ("crash_null_write", None, "PROBABLY_EXPLOITABLE", "DestAvNearNull"),
    ("crash_null_read", None, "PROBABLY_NOT_EXPLOITABLE", "SourceAvNearNull"),
    ("crash_div_zero", None, "PROBABLY_NOT_EXPLOITABLE", "FloatingPointException"),
    ("crash_trap", None, "PROBABLY_NOT_EXPLOITABLE", "CompilerTrap"),
    ("crash_fortify", None, "NOT_EXPLOITABLE", "SafeFunctionCheck"),
    ("crash_wild_read", None, "UNKNOWN", "SourceAv"),
    ("crash_abort", None, "UNKNOWN", "AbortSignal"),
    ("triage_asan", "uaf", "EXPLOITABLE", "UseAfterFree"),
    ("triage_asan", "heap-write", "EXPLOITABLE", "SanitizerOverflowWrite"),
    ("triage_asan", "heap-read", "PROBABLY_NOT_EXPLOITABLE", "SanitizerOverflowRead"),
    ("triage_asan", "double-free", "PROBABLY_EXPLOITABLE", "SanitizerBadFree"),
    ("triage_asan", "huge", "UNKNOWN", "SanitizerError"),
    ("triage_asan", "stack-overflow", "PROBABLY_EXPLOITABLE", "StackOverflow"),
    ("triage_ubsan", None, "PROBABLY_NOT_EXPLOITABLE", "UndefinedBehavior"),
]
# Rules that share their condition with an earlier one, under the other project's name:
# they never win, but must be listed among the matches (rule -> the crash that shows it).
SHADOWED = {"StackGuard": ("crash_stack_protector", None)}


def run_crash(targets, program: str, mode: str | None) -> dict:
    command = (targets[program],) + ((mode,) if mode else ())
    outcome = Worker(TriageConfig(command=command, timeout=20)).run(None)
    assert outcome["status"] == "crash", outcome
    return outcome["crash"]


def test_the_corpus_covers_every_shipped_rule():
    assert {rule for *_, rule in CORPUS} | set(SHADOWED) == {r.id for r in default_rules()}


@pytest.mark.parametrize("program, mode, cls, rule", CORPUS, ids=[f"{r}" for *_, r in CORPUS])
def test_rule(targets, program, mode, cls, rule):
    crash = run_crash(targets, program, mode)
    got = crash["classification"]
    assert (got["class"], got["rule"]) == (cls, rule), (crash.get("instruction"), got["matches"])
    assert len(crash["hash"]["major"]) == 16 and "pid" not in crash


@pytest.mark.parametrize("rule", sorted(SHADOWED))
def test_shadowed_rule_is_listed(targets, rule):
    crash = run_crash(targets, *SHADOWED[rule])
    assert rule in crash["classification"]["matches"]


def test_sanitizer_report_is_attached(targets):
    crash = run_crash(targets, "triage_asan", "heap-write")
    assert crash["sanitizer"]["bug_type"] == "heap-buffer-overflow"
    assert crash["sanitizer"]["access"] == "write" and crash["sanitizer"]["size"] == 1
    # The frames that identify the bug start at the program, not in the sanitizer runtime.
    from instrument.analysis.signature import frame_key, significant_frames
    assert frame_key(significant_frames(crash["frames"])[0]) == "triage_asan!overflow_write"


def test_a_recipe_can_add_its_own_rule(targets, tmp_path):
    """SPEC 6: a recipe (not only --rules FILE) may extend the classification rules."""
    import json

    from tests.conftest import run_cli

    recipe = tmp_path / "rules.yaml"
    recipe.write_text("version: 1\nname: own-rule\ndescription: d\nrules:\n"
                      "  - id: GaveUp\n    class: NOT_EXPLOITABLE\n    description: the program's own abort\n"
                      "    when: {signal: [SIGABRT], in_frames: [give_up]}\n")
    out = tmp_path / "out.jsonl"
    run_cli("run", str(recipe), "--format", "jsonl", "-o", str(out), "--", targets["crash_abort"])
    crash = next(json.loads(line) for line in out.read_text().splitlines() if '"crash"' in line)
    assert crash["classification"]["rule"] == "GaveUp" and crash["classification"]["class"] == "NOT_EXPLOITABLE"
    report = tmp_path / "report.json"
    proc = run_cli("triage", "--recipe", str(recipe), "-o", str(report), "--", targets["crash_abort"])
    assert proc.returncode == 1, proc.stderr
    assert json.loads(report.read_text())["buckets"][0]["rule"] == "GaveUp"


def test_a_bad_rule_in_a_recipe_is_a_recipe_error(tmp_path):
    from tests.conftest import run_cli

    recipe = tmp_path / "bad.yaml"
    recipe.write_text("version: 1\nname: bad-rule\ndescription: d\nrules:\n"
                      "  - id: Odd\n    class: NOT_EXPLOITABLE\n    when: {no_such_condition: 1}\n")
    proc = run_cli("validate", str(recipe))
    assert proc.returncode == 2 and f"{recipe}:5:" in proc.stderr and "no_such_condition" in proc.stderr
