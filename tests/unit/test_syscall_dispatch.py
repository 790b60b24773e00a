"""The engine's system call dispatch on the scripted fake backend: entry and exit paired per
thread, `when` and `limit`, `return:` skipping a call, the records' decoded fields."""

from __future__ import annotations

from typing import Any

from instrument.backend.fake import FakeBackend
from instrument.compiler.plan import compile_plan
from instrument.engine.session import run
from instrument.events import DebugEvent, EventCode, SyscallInfo
from instrument.recipe.load import load_recipe

from tests.unit.test_engine_fake import FakeModules

PATH_A, PATH_B = 0x5000, 0x6000
AT_FDCWD = (-100) & ((1 << 64) - 1)
HEADER = "version: 1\nname: t\ndescription: test\n"


class SyscallFake(FakeBackend):
    """The fake with system call stops: skip_syscall is logged."""

    def skip_syscall(self, tid: int, retval: int) -> None:
        self.log.append(("skip", tid, retval))


def call(tid: int, number: int, entry: bool, args: tuple[int, ...], retval: int | None = None) -> tuple[Any, ...]:
    return ("event", DebugEvent(EventCode.SYSCALL_EVENT, 100, tid, SyscallInfo(number, entry, args, retval)))


def openat(tid: int, path: int, retval: int) -> list[tuple[Any, ...]]:
    args = (AT_FDCWD, path, 0o2000000, 0, 0, 0)
    return [call(tid, 257, True, args), call(tid, 257, False, args, retval)]


def session(body: str, script: list[tuple[Any, ...]]) -> tuple[list[dict[str, Any]], SyscallFake]:
    plan = compile_plan(load_recipe(HEADER + body, file="t.yaml"), command=["fake"])
    memory = dict.fromkeys(range(PATH_A, PATH_B + 0x1000), 0)     # two pages the strings are on
    memory.update({PATH_A + i: b for i, b in enumerate(b"/etc/a")})
    memory.update({PATH_B + i: b for i, b in enumerate(b"/etc/b")})
    backend = SyscallFake(script, memory=memory)
    records: list[dict[str, Any]] = []
    run(plan, emit=records.append, backend=backend, module_map_factory=FakeModules)
    return [r for r in records if r["event"] == "syscall"], backend


def test_entry_and_exit_pair_per_thread_and_when_decides_both():
    a1, a2 = openat(101, PATH_A, 3)
    b1, b2 = openat(102, PATH_B, -2)
    body = """syscalls:
  openat:
    when: 'str(pathname) == "/etc/a"'
    actions:
      - log: "{phase} {syscall} {sysno}"
"""
    # Interleaved: thread 102's call (not chosen at its entry) must not pair with 101's exit.
    recs, _ = session(body, [a1, b1, b2, a2])
    assert [(r["tid"], r["phase"], r["message"]) for r in recs] == [
        (101, "entry", "entry openat 257"), (101, "exit", "exit openat 257")]
    assert recs[0]["args"] == {"dirfd": "AT_FDCWD", "pathname": '"/etc/a"', "flags": "O_RDONLY|O_CLOEXEC"}
    assert recs[1]["retval"] == 3 and recs[1]["result"] == "3" and "errno" not in recs[1]


def test_an_exit_handler_decides_at_the_exit_with_retval_and_errno():
    body = """syscalls:
  openat:
    on: exit
    when: retval < 0
    actions:
      - log: "{str(pathname)}: errno {errno}"
"""
    recs, _ = session(body, [*openat(101, PATH_A, 3), *openat(101, PATH_B, -2)])
    assert [(r["phase"], r["message"], r["errno"], r["result"]) for r in recs] == [
        ("exit", "/etc/b: errno 2", "ENOENT", "-1 ENOENT (No such file or directory)")]


def test_limit_counts_calls_and_the_summary_says_how_many():
    body = "syscalls:\n  open*:\n    on: both\n    limit: 2\n"
    recs, _ = session(body, [*openat(101, PATH_A, 3), *openat(101, PATH_B, 4), *openat(101, PATH_A, 5)])
    assert [r["phase"] for r in recs] == ["entry", "exit", "entry", "exit"]
    assert [r["retval"] for r in recs if r["phase"] == "exit"] == [3, 4]


def test_return_at_entry_asks_the_backend_to_skip_the_call():
    body = "syscalls:\n  openat:\n    on: entry\n    actions:\n      - return: -13\n"
    recs, backend = session(body, openat(101, PATH_A, -13))
    assert ("skip", 101, (-13) & ((1 << 64) - 1)) in backend.log
    assert len(recs) == 1 and recs[0]["skipped"] and recs[0]["returned"] == -13
