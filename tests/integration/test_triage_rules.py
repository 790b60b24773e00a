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
    ("triage_msan", None, "PROBABLY_NOT_EXPLOITABLE", "UninitializedValue"),
]
# The gaps issue 16 closed, each on a real program (mode -> class, rule): beside the
# corpus, which names each rule once.
GAPS = [
    ("triage_rules", "trap-kill", "NOT_EXPLOITABLE", "TrapSignal"),     # SI_USER from another process
    ("triage_rules", "trap-raise", "NOT_EXPLOITABLE", "TrapSignal"),    # SI_TKILL from itself
    ("triage_rules", "gp-write", "EXPLOITABLE", "DestAv"),              # non-canonical store: #GP, si_addr 0
    ("triage_rules", "gp-call", "EXPLOITABLE", "CallAv"),               # call to a non-canonical target
    ("triage_rules", "call-stack-end", "PROBABLY_EXPLOITABLE", "StackOverflow"),   # push at sp - 8 faults
    ("crash_fortify_printf", None, "NOT_EXPLOITABLE", "SafeFunctionCheck"),       # __printf_chk, no __chk_fail
]
# Rules that share their condition with an earlier one, under the other project's name:
# they never win, but must be listed among the matches (rule -> the crash that shows it).
SHADOWED = {"StackGuard": ("crash_stack_protector", None)}


def run_crash(targets, program: str, mode: str | None) -> dict:
    if program not in targets:
        pytest.skip(f"{program} needs a compiler this machine lacks (clang for MemorySanitizer; "
                    "INSTRUMENT_CI=1, as .ci/run sets, installs it from Debian's packages)")
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


@pytest.mark.parametrize("program, mode, cls, rule", GAPS, ids=[f"{m or p}" for p, m, *_ in GAPS])
def test_gap(targets, program, mode, cls, rule):
    test_rule(targets, program, mode, cls, rule)


@pytest.mark.parametrize("mode, si_code", [("trap-kill", 0), ("trap-raise", -6)])
def test_a_sigtrap_sent_by_a_process_is_a_signal_not_a_trap(targets, mode, si_code):
    """kill(SIGTRAP) from another process (SI_USER) and raise(SIGTRAP) (SI_TKILL) are
    messages: the record says who sent them (no pid), never BREAKPOINT or SINGLE_STEP."""
    crash = run_crash(targets, "triage_rules", mode)
    assert (crash["signal"], crash["exception"], crash["si_code"], crash["sent"]) == \
        ("SIGTRAP", "SIGNAL", si_code, True)
    assert "sender_pid" not in crash and "pid" not in crash
    int3 = run_crash(targets, "triage_rules", "int3")
    assert (int3["exception"], int3["sent"]) == ("BREAKPOINT", False) and int3["si_code"] > 0


def test_a_sent_sigtrap_does_not_pass_for_the_tools_own_breakpoint(targets, tmp_path):
    """A recipe with a breakpoint live: its hit is counted once, the sent SIGTRAP ends the
    program as a TrapSignal crash, and is not taken for a hit or a step of ours."""
    import json

    from tests.conftest import run_cli

    recipe = tmp_path / "bp.yaml"
    recipe.write_text("version: 1\nname: bp\ndescription: d\nbreakpoints:\n"
                      "  - id: sender\n    at: trap_from_another_process\n")
    out = tmp_path / "out.jsonl"
    run_cli("run", str(recipe), "--format", "jsonl", "-o", str(out), "--", targets["triage_rules"], "trap-kill")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    hits = [r for r in records if r.get("event") == "breakpoint"]
    (crash,) = [r for r in records if r.get("event") == "crash"]
    assert len(hits) == 1, [r.get("event") for r in records]
    assert (crash["classification"]["rule"], crash["sent"], crash["si_code"]) == ("TrapSignal", True, 0)


@pytest.mark.parametrize("mode, fault", [("gp-write", 0x8000000000001000), ("gp-call", 0x4141414141414141)])
def test_a_non_canonical_address_is_computed_from_the_operands(targets, mode, fault):
    """#GP: the kernel says SI_KERNEL and si_addr 0; the record has the decoded address."""
    crash = run_crash(targets, "triage_rules", mode)
    assert crash["si_code"] == 0x80 and int(crash["fault_address"], 16) == fault
    assert crash["access"] == ("write" if mode == "gp-write" else "execute")


def test_a_call_whose_push_faults_is_a_stack_overflow_before_call_av(targets):
    crash = run_crash(targets, "triage_rules", "call-stack-end")
    assert crash["instruction"].startswith("call")
    assert int(crash["fault_address"], 16) == int(crash["registers"]["rsp"], 16) - 8
    matches = crash["classification"]["matches"]
    assert matches.index("StackOverflow") < matches.index("CallAv")


# CASR's class names for the same crashes (libcasr execution_class.rs).
CASR_NAMES = [
    ("triage_asan", "heap-write", "heap-buffer-overflow(write)"),
    ("triage_asan", "heap-read", "heap-buffer-overflow(read)"),
    ("triage_asan", "uaf", "heap-use-after-free(read)"),
    ("triage_asan", "double-free", "double-free"),
    ("triage_asan", "stack-overflow", "StackOverflow"),
    ("triage_ubsan", None, "undefined-behavior"),
    ("triage_msan", None, "use-of-uninitialized-value"),
    ("crash_stack_protector", None, "StackGuard"),
    ("crash_null_read", None, "SourceAvNearNull"),
    ("crash_div_zero", None, "FPE"),
    ("crash_fortify", None, "SafeFunctionCheck"),
]


@pytest.mark.parametrize("program, mode, casr", CASR_NAMES, ids=[c for *_, c in CASR_NAMES])
def test_classification_names_casrs_class(targets, program, mode, casr):
    assert run_crash(targets, program, mode)["classification"]["casr"] == casr


def test_every_shipped_rule_names_a_casr_class():
    assert all(rule.casr for rule in default_rules())


@pytest.mark.parametrize("program, mode, variable, options", [
    ("triage_asan", "heap-write", "ASAN_OPTIONS", "abort_on_error=0:halt_on_error=0"),
    ("triage_ubsan", None, "UBSAN_OPTIONS", "abort_on_error=0:halt_on_error=0"),
    ("triage_msan", None, "MSAN_OPTIONS", "abort_on_error=0"),
])
def test_a_users_abort_on_error_0_gives_the_same_record(targets, monkeypatch, program, mode, variable, options):
    """Without abort_on_error the sanitizer would _exit after its report; triage forces it
    (the user's other options kept), so the crash and its bucket are the same."""
    before = run_crash(targets, program, mode)
    monkeypatch.setenv(variable, options)
    after = run_crash(targets, program, mode)
    assert after["classification"] == before["classification"] and after["hash"] == before["hash"]


@pytest.mark.parametrize("program, mode, options, rule, casr", [
    ("triage_asan", "heap-write", "ASAN_OPTIONS=abort_on_error=0:detect_leaks=0:symbolize=0",
     "SanitizerOverflowWrite", "heap-buffer-overflow(write)"),
    ("triage_asan", "uaf", "ASAN_OPTIONS=abort_on_error=0:detect_leaks=0", "UseAfterFree", "heap-use-after-free(read)"),
    ("triage_ubsan", None, "UBSAN_OPTIONS=halt_on_error=0", "UndefinedBehavior", "undefined-behavior"),
])
def test_a_sanitizer_that_exits_after_its_report_is_still_a_crash(targets, program, mode, options, rule, casr):
    """Options triage cannot override (a wrapper sets its own, here `env`): ASan reports and
    _exits(1), UBSan reports and goes on to exit 0. The report is the finding: same class,
    CASR's name, and the report's own stack for frames (no pid, no absolute address)."""
    import shutil

    command = (shutil.which("env") or "/usr/bin/env", options, targets[program]) + ((mode,) if mode else ())
    outcome = Worker(TriageConfig(command=command, timeout=20)).run(None)
    assert outcome["status"] == "crash", outcome
    crash = outcome["crash"]
    assert (crash["classification"]["rule"], crash["classification"]["casr"]) == (rule, casr)
    assert crash["signal"] is None and "pid" not in crash
    if program == "triage_asan":
        assert crash["exit_code"] == 1
        assert [f["symbol"].split("+")[0] for f in crash["frames"][:2]] == [
            "overflow_write" if mode == "heap-write" else "use_after_free", "main"]
        assert all(f["pc"] is None for f in crash["frames"])
        if "symbolize=0" in options:
            # Module+offset frames (as triage's own options print them) hash as the live
            # stack of the aborting run does: one bucket. A symbolized report names no
            # module for a frame with a source line, so its bucket is its own.
            assert crash["hash"] == run_crash(targets, program, mode)["hash"]


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
