"""Issue 6 through `instrument run`: many threads hitting one breakpoint, hardware breakpoints
and watchpoints with exact counts, the four-register limit, and a target killed from outside."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_recipe_jsonl

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the ptrace backend runs on Linux")

HEADER = "version: 1\nname: t\ndescription: issue 6 test recipe\n"


def run(tmp_path: Path, body: str, *command: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    return run_recipe_jsonl(tmp_path, HEADER + body, *command, timeout=timeout)


def hits(recs: list[dict], bp: str) -> list[dict]:
    return [r for r in recs if r["event"] == "breakpoint" and r["id"] == bp]


def test_eight_threads_160000_hits_none_lost(targets, tmp_path):
    # The big one (about 20 s pinned): every call of work() in every thread is one record.
    threads, calls = 8, 20_000
    proc, recs = run(tmp_path, "breakpoints:\n  - id: work\n    at: work\n",
                     targets["threads"], str(threads), str(calls), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"checksum=\d+ ok", proc.stdout), proc.stdout
    records = hits(recs, "work")
    assert len(records) == threads * calls
    assert records[-1]["hits"] == threads * calls
    assert len({r["tid"] for r in records}) == threads
    assert recs[-1]["breakpoints"] == {"work": threads * calls} and recs[-1]["exit_code"] == 0


def test_stepping_over_an_int3_in_eight_threads_loses_no_hit(targets, tmp_path):
    # `twice` starts with lea, which is not emulated: every hit steps with the int3 out,
    # and the other threads must be held meanwhile or they would run past it.
    threads, calls = 8, 2000
    proc, recs = run(tmp_path, "breakpoints:\n  - id: twice\n    at: twice\n",
                     targets["threads"], str(threads), str(calls), timeout=300)
    assert proc.returncode == 0 and re.search(r"checksum=\d+ ok", proc.stdout), proc.stderr
    assert len(hits(recs, "twice")) == threads * calls


def test_a_spent_breakpoint_never_hands_its_trap_to_the_program(targets, tmp_path):
    # Other threads run into the int3 while the fifth hit takes it out; their traps
    # are already queued and must be rewound, not passed on (SIGTRAP would kill).
    for _ in range(3):
        proc, recs = run(tmp_path, "breakpoints:\n  - id: work\n    at: work\n    limit: 5\n",
                         targets["threads"], "8", "5000")
        assert proc.returncode == 0, proc.stderr
        assert re.search(r"checksum=\d+ ok", proc.stdout), proc.stdout
        assert len(hits(recs, "work")) == 5
        assert recs[-1]["ended"] == "exited" and recs[-1]["exit_code"] == 0 and recs[-1]["signal"] is None


def test_a_spent_hardware_breakpoint_never_hands_its_trap_to_the_program(targets, tmp_path):
    # The same race with a debug register: another thread's trap on the slot is queued
    # when the slot is cleared. Only we program debug registers: it is swallowed.
    for _ in range(2):
        proc, recs = run(tmp_path, "breakpoints:\n  - id: work\n    at: work\n    type: hardware\n    limit: 5\n",
                         targets["threads"], "8", "5000")
        assert proc.returncode == 0 and re.search(r"checksum=\d+ ok", proc.stdout), (proc.stderr, recs[-1])
        assert len(hits(recs, "work")) == 5 and not recs[-1]["crashed"] and recs[-1]["signal"] is None


def test_on_return_in_eight_threads_pairs_every_call(targets, tmp_path):
    threads, calls = 8, 2000
    proc, recs = run(tmp_path, "breakpoints:\n  - id: work\n    at: work\n"
                     "    on_return:\n      - log: \"{arg0} {retval}\"\n",
                     targets["threads"], str(threads), str(calls), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"checksum=\d+ ok", proc.stdout), proc.stdout
    returns = [r for r in recs if r["event"] == "return"]
    assert len(hits(recs, "work")) == len(returns) == threads * calls
    for r in returns:
        arg, retval = (int(x) for x in r["message"].split())
        assert retval == arg * 7 + 3
    assert recs[-1]["exit_code"] == 0 and recs[-1]["signal"] is None


HARDWARE = """breakpoints:
  - id: counter
    at: counter
    type: hardware
    access: write
    size: 8
    actions:
      - log: "{u64[counter]}"
  - id: step
    at: step
    type: hardware
  - id: other
    at: other
    type: hardware
  - id: late
    at: late
    type: hardware
    access: write
    actions:
      - log: "{u64[late]}"
"""


def test_hardware_watchpoints_and_execute_breakpoints_count_exactly(targets, tmp_path):
    m, t = 2000, 6
    proc, recs = run(tmp_path, HARDWARE, targets["hw_watch"], str(m), str(t))
    assert proc.returncode == 0, proc.stderr
    assert f"counter={m} late={t} ok" in proc.stdout
    # A write watch traps after the write: the new value is already in memory.
    assert [r["message"] for r in hits(recs, "counter")] == [str(i) for i in range(1, m + 1)]
    assert all(r["access"] == "write" and r["type"] == "hardware" for r in hits(recs, "counter"))
    assert len(hits(recs, "step")) == m and len(hits(recs, "other")) == 3
    assert recs[-1]["breakpoints"] == {"counter": m, "step": m, "other": 3, "late": t}


def test_watchpoint_set_before_threads_start_fires_in_each_later_thread(targets, tmp_path):
    t = 6
    proc, recs = run(tmp_path, HARDWARE, targets["hw_watch"], "10", str(t))
    assert proc.returncode == 0, proc.stderr
    late = hits(recs, "late")
    main = recs[-1]["pid"]
    # Armed at exec, before any thread existed; each new thread got the debug registers.
    assert len(late) == t and len({r["tid"] for r in late}) == t and all(r["tid"] != main for r in late)
    # The value is read when the engine handles the trap: a sibling that trapped right
    # after may have added its 1 already, so values can repeat, but never exceed t.
    values = sorted(int(r["message"]) for r in late)
    assert 1 <= values[0] and values[-1] == t


def test_a_watchpoint_and_a_memory_breakpoint_on_one_variable_both_fire(targets, tmp_path):
    # The guard page faults first; the write then completes in our single step, and
    # the kernel reports that step's trap (TRAP_TRACE) with the watch only in DR6.
    body = ("breakpoints:\n  - {id: hw, at: counter, type: hardware, access: write, size: 8}\n"
            "  - {id: mem, at: counter, type: memory, access: write, size: 8}\n")
    proc, recs = run(tmp_path, body, targets["hw_watch"], "40", "1")
    assert proc.returncode == 0, proc.stderr
    assert "counter=40 late=1 ok" in proc.stdout
    assert recs[-1]["breakpoints"] == {"hw": 40, "mem": 40}


def test_a_fifth_hardware_breakpoint_is_a_recipe_error(targets, tmp_path):
    body = HARDWARE + "  - id: fifth\n    at: main\n    type: hardware\n"
    proc, recs = run(tmp_path, body, targets["hw_watch"], "10", "1")
    assert proc.returncode == 2
    fifth_line = (HEADER + body).splitlines().index("  - id: fifth") + 1
    match = re.search(r"r\.yaml:(\d+):\d+: error: .*hardware", proc.stderr)
    assert match, proc.stderr
    assert int(match.group(1)) in (fifth_line, fifth_line + 2)   # the entry or its `type:` line
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert recs == []                          # nothing ran


@pytest.mark.parametrize("delay", [0.3, 0.8])
def test_target_killed_from_outside_ends_the_session_cleanly(targets, tmp_path, delay):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(HEADER + "breakpoints:\n  - id: work\n    at: work\n"
                      "events:\n  exit_process:\n    - log: gone\n  rip:\n    - log: lost\n")
    out = tmp_path / "out.jsonl"
    tool = subprocess.Popen([str(Path(sys.executable).parent / "instrument"), "run", str(recipe),
                             "--format", "jsonl", "-o", str(out), "--", targets["threads"], "8", "100000000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 20
        while time.time() < deadline and (not out.exists() or out.read_text().count('"breakpoint"') < 100):
            time.sleep(0.02)
        time.sleep(delay)
        target = _child_of(tool.pid)
        os.kill(target, signal.SIGKILL)         # mid-session, threads busy hitting work()
        _, err = tool.communicate(timeout=60)
    finally:
        if tool.poll() is None:
            tool.kill()
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    end = [r for r in recs if r["event"] in ("exit_process", "rip")]
    assert len(end) == 1 and end[0]["pid"] == target, end
    assert end[0]["event"] == "rip" or end[0]["signal"] == "SIGKILL"
    summary = recs[-1]
    assert summary["event"] == "summary" and summary["signal"] == "SIGKILL" and summary["exit_code"] is None
    # Killed from outside is not a crash of the target (no exception reached it): exit 0, per SPEC 4.
    assert tool.returncode == 0 and not summary["crashed"], err
    assert "Traceback" not in err


def _child_of(pid: int) -> int:
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            kids = f.read().split()
        if kids:
            return int(kids[0])
    raise AssertionError(f"process {pid} has no child")
