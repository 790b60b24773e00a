"""The `signals:` section: signal names, the section's forms and errors, capabilities, and the engine's
dispatch of deliveries (records, when, limit, disposition, the step-over re-hit) on the fake backend."""

from __future__ import annotations

from typing import Any

import pytest

from instrument.arch.x86_64 import Abi
from instrument.backend.base import Capabilities
from instrument.backend.core.backend import CORE_CAPABILITIES
from instrument.backend.fake import FakeBackend
from instrument.backend.siginfo import si_code_name, signal_number
from instrument.compiler.plan import compile_plan
from instrument.engine.session import run
from instrument.errors import RecipeErrors
from instrument.events import DebugEvent, EventCode, ExceptionCode, ExceptionInfo
from instrument.recipe.load import load_recipe
from tests.unit.test_engine_fake import HIT, ORIGINAL, FakeModules, reach

HEADER = "version: 1\nname: t\ndescription: test\n"
WINDOWS = Capabilities(os="windows", arch="x86_64", abi=Abi.MS_X64, hardware_breakpoints=4,
                       memory_breakpoints=True, follow_forks=True, attach=True)


@pytest.mark.parametrize("text, number", [
    ("SIGUSR1", 10), ("usr1", 10), ("sigusr1", 10), ("10", 10), (10, 10), ("SIGPIPE", 13),
    ("SIGRTMIN", 34), ("SIGRTMIN+3", 37), ("rtmin+3", 37), ("SIGRTMAX", 64), ("SIGRTMAX-2", 62),
    ("SIGIOT", 6), ("SIGCLD", 17), ("SIGPOLL", 29), ("SIGTRAP", 5),
])
def test_signal_names_numbers_and_real_time_offsets(text, number):
    assert signal_number(text) == number


@pytest.mark.parametrize("text", ["SIGBOGUS", "0", "32", "33", "65", "SIGRTMIN+31", "SIGRTMAX-31",
                                  "SIGRTMIN+", "SIGRTMIN*2", "", True, -1])
def test_what_names_no_signal(text):
    assert signal_number(text) is None


@pytest.mark.parametrize("signo, code, name", [
    (10, 0, "SI_USER"), (10, -6, "SI_TKILL"), (10, -1, "SI_QUEUE"), (14, -2, "SI_TIMER"),
    (11, 0x80, "SI_KERNEL"), (11, 1, "SEGV_MAPERR"), (11, 2, "SEGV_ACCERR"), (5, 1, "TRAP_BRKPT"),
    (5, 4, "TRAP_HWBKPT"), (8, 1, "FPE_INTDIV"), (17, 1, "CLD_EXITED"), (7, 2, "BUS_ADRERR"),
    (10, 3, "3"), (10, -42, "-42"),
])
def test_si_code_names_as_strace_shows_them(signo, code, name):
    assert si_code_name(signo, code) == name


def compile_text(body: str, capabilities: Capabilities | None = None):
    return compile_plan(load_recipe(HEADER + body, file="s.yaml"), command=["fake"], capabilities=capabilities)


def errors_of(body: str, capabilities: Capabilities | None = None) -> list[str]:
    with pytest.raises(RecipeErrors) as e:
        compile_text(body, capabilities)
    return [str(err) for err in e.value.errors]


def test_the_three_forms_compile_into_the_table_by_signal_number():
    plan = compile_text("signals:\n  SIGPIPE: suppress\n  usr2: [log: x]\n  SIGRTMIN+3:\n"
                        "    disposition: suppress\n    when: 'si_pid != 0'\n    limit: 5\n"
                        "    actions:\n      - log: '{signal}'\n  14: pass\n")
    table = plan.table.by_signal
    assert sorted(table) == [12, 13, 14, 37]
    assert (table[13].key, table[13].disposition, table[13].actions) == ("SIGPIPE", "suppress", ())
    assert (table[12].key, table[12].disposition, len(table[12].actions)) == ("SIGUSR2", "pass", 1)
    rt = table[37]
    assert (rt.key, rt.suppress, rt.when.text, rt.limit, len(rt.actions)) == ("SIGRTMIN+3", True, "si_pid != 0", 5, 1)
    assert table[14].key == "SIGALRM" and not table[14].suppress


def test_bad_signal_names_are_errors_at_their_key():
    errors = errors_of("signals:\n  SIGUSR1: pass\n  SIGBOGUS: pass\n  10: suppress\n  SIGKILL: pass\n"
                       "  stop: pass\n  SIGRTMIN+40: pass\n")
    assert errors[0].startswith("s.yaml:6:3: error: unknown signal 'SIGBOGUS'")
    assert errors[1] == "s.yaml:7:3: error: signal '10' is SIGUSR1, handled already as 'SIGUSR1'"
    assert errors[2].startswith("s.yaml:8:3: error: signal 'SIGKILL': SIGKILL cannot be caught")
    assert errors[3].startswith("s.yaml:9:3: error: signal 'stop': SIGSTOP stops the process")
    assert errors[4].startswith("s.yaml:10:3: error: unknown signal 'SIGRTMIN+40'")
    assert len(errors) == 5


def test_a_bad_disposition_or_key_is_a_schema_error_with_its_place():
    errors = errors_of_load("signals:\n  SIGUSR1: ignore\n")
    assert errors and errors[0].startswith("s.yaml:5:12: error:")
    errors = errors_of_load("signals:\n  SIGUSR1:\n    disposition: pass\n    every: 2\n")
    assert any(e.startswith("s.yaml:") and "every" in e for e in errors)


def errors_of_load(body: str) -> list[str]:
    with pytest.raises(RecipeErrors) as e:
        load_recipe(HEADER + body, file="s.yaml")
    return [str(err) for err in e.value.errors]


def test_a_bad_condition_and_a_bad_action_are_errors_at_their_place():
    errors = errors_of("signals:\n  SIGUSR1:\n    when: 'si_pid =='\n")
    assert len(errors) == 1 and errors[0].startswith("s.yaml:6:") and "when" in errors[0]
    errors = errors_of("signals:\n  SIGUSR1:\n    actions:\n      - enable: nothing\n")
    assert len(errors) == 1 and errors[0].startswith("s.yaml:7:") and "nothing" in errors[0]


@pytest.mark.parametrize("caps, reason", [(WINDOWS, "Windows has no POSIX signals"),
                                          (CORE_CAPABILITIES, "a core file is read-only")])
def test_backends_without_signals_refuse_the_section(caps, reason):
    errors = errors_of("signals:\n  SIGPIPE: suppress\n", caps)
    assert len(errors) == 1 and errors[0].startswith("s.yaml:4:1: error: `signals:` is not supported")
    assert reason in errors[0]


def signal_event(signo: int, name: str, *, si_code: int = -6, pid: int | None = 555, value: int | None = None,
                 first_chance: bool = True, tid: int = 100, code: int = ExceptionCode.SIGNAL) -> tuple[str, DebugEvent]:
    info = ExceptionInfo(code, 0x4000, first_chance, signal=name, si_code=si_code, from_user=si_code <= 0,
                         signo=signo, si_pid=pid, si_uid=0 if pid is not None else None, si_value=value)
    return ("event", DebugEvent(EventCode.EXCEPTION_DEBUG_EVENT, 100, tid, info))


def session(body: str, script: list, memory: dict[int, int] | None = None, step_signals: list | None = None):
    plan = compile_text(body)
    backend = FakeBackend(script, memory=memory)
    backend.step_signals = list(step_signals or [])
    records: list[dict[str, Any]] = []
    result = run(plan, emit=records.append, backend=backend, module_map_factory=FakeModules)
    return result, records, backend


def resumes(backend: FakeBackend) -> list[bool]:
    return [entry[2] for entry in backend.log if entry[0] == "resume" and entry[1] == 100][1:]


def test_a_handled_delivery_gives_one_record_and_its_disposition():
    body = ("signals:\n  SIGUSR1:\n    actions:\n      - log: '{signal} {signo} {si_code} from {si_pid} #{hits}'\n"
            "  SIGRTMIN+1: suppress\n")
    script = [signal_event(10, "SIGUSR1"), signal_event(35, "SIGRTMIN+1", si_code=-1, value=7),
              signal_event(12, "SIGUSR2", si_code=0)]
    result, records, backend = session(body, script)
    signals = [r for r in records if r["event"] == "signal"]
    assert [(r["signal"], r["signo"], r["si_code"], r["si_pid"], r["disposition"], r["hits"]) for r in signals] == [
        ("SIGUSR1", 10, "SI_TKILL", 555, "pass", 1), ("SIGRTMIN+1", 35, "SI_QUEUE", 555, "suppress", 1)]
    assert signals[0]["message"] == "SIGUSR1 10 SI_TKILL from 555 #1"
    assert signals[1]["si_value"] == 7 and "si_value" not in signals[0]
    assert all(set(r) >= {"event", "code", "pid", "tid", "time", "address"} for r in signals)
    # Passed, suppressed, and SIGUSR2 (no handler) passed as without the section.
    assert resumes(backend) == [True, False, True]
    assert records[-1]["signals"] == {"SIGUSR1": 1, "SIGRTMIN+1": 1}


def test_when_and_limit_choose_the_deliveries_handled_and_the_rest_pass_untouched():
    body = "signals:\n  SIGUSR1:\n    disposition: suppress\n    when: 'si_pid == 7'\n    limit: 2\n"
    script = [signal_event(10, "SIGUSR1", pid=p) for p in (7, 8, 7, 7, 7)]
    _, records, backend = session(body, script)
    assert [r["si_pid"] for r in records if r["event"] == "signal"] == [7, 7]
    assert resumes(backend) == [False, True, False, True, True]


def test_a_suppressed_fatal_signal_is_no_crash_and_a_passed_one_is():
    fatal = [signal_event(15, "SIGTERM", si_code=0, first_chance=False)]
    result, records, _ = session("signals:\n  SIGTERM: suppress\n", fatal)
    assert not [r for r in records if r["event"] == "crash"] and not result.summary["crashed"]
    result, records, _ = session("signals:\n  SIGTERM: pass\n", list(fatal))
    crash = next(r for r in records if r["event"] == "crash")
    assert crash["si_code"] == 0 and "si_pid" not in crash and result.summary["crashed"]


def test_the_last_chance_report_of_a_passed_trap_is_not_a_second_delivery():
    trap = lambda first: signal_event(5, "SIGTRAP", si_code=0x80, pid=None, first_chance=first,  # noqa: E731
                                      code=ExceptionCode.BREAKPOINT)
    _, records, _ = session("signals:\n  SIGTRAP: pass\n", [trap(True), trap(False)])
    assert len([r for r in records if r["event"] == "signal"]) == 1
    assert len([r for r in records if r["event"] == "crash"]) == 1


def test_a_signal_that_interrupts_a_step_over_does_not_count_the_hit_twice():
    # The first hit's step is interrupted by a signal before the instruction runs: the
    # thread comes back to the int3 at the same rsp, which is the same hit. A later
    # call at another depth is a new hit.
    body = "breakpoints:\n  - id: h\n    at: hit\nsignals:\n  SIGUSR1: pass\n"
    interrupted = signal_event(10, "SIGUSR1")[1].info
    script = [reach(HIT, rsp=0x7000), reach(HIT, rsp=0x7000), reach(HIT, rsp=0x6000)]
    _, records, backend = session(body, script, memory={HIT: ORIGINAL}, step_signals=[interrupted])
    assert [r["hits"] for r in records if r["event"] == "breakpoint"] == [1, 2]
    assert len([r for r in records if r["event"] == "signal"]) == 1
    assert [e[2] for e in backend.log if e[0] == "step"] == [HIT, HIT, HIT]
    assert records[-1]["breakpoints"] == {"h": 2}
