"""Sampled soft breakpoints on real programs: hits reported from uprobe perf events while
the target runs on (backend/linux/uprobes.py), record for record the same as the int3
stops they replace (`--no-sampling`), across threads and followed forks, with `when:`
and `limit:`; an attached target is left without a uprobe; where perf refuses, int3s."""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from instrument.backend.linux import uprobes
from instrument.backend.linux.tracee import LinuxBackend
from instrument.compiler.plan import compile_plan
from instrument.engine.session import run
from instrument.recipe.load import load_recipe
from tests.integration.test_stress import debug_registers

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the ptrace backend runs on Linux")

HEADER = "version: 1\nname: t\ndescription: sampled soft breakpoints\n"
# Each run lays the program out anew (ASLR) and has its own pids: what may differ.
VARIES = {"time", "pid", "tid", "address"}


class CountingBackend(LinuxBackend):
    """The real backend, counting the soft breakpoint hits it reported without a stop."""

    def __init__(self) -> None:
        super().__init__()
        self.sampled = 0

    def wait_event(self, timeout: float | None = None) -> Any:
        event = super().wait_event(timeout)
        if event is not None and getattr(event.info, "registers", None) is not None:
            self.sampled += 1
        return event


def run_in_process(body: str, *argv: str, sampling: bool = True) -> tuple[CountingBackend, list[dict[str, Any]]]:
    backend = CountingBackend()
    plan = compile_plan(load_recipe(HEADER + body, file="t.yaml"), command=list(argv),
                        capabilities=backend.capabilities, sample_hits=sampling)
    assert any(bp.sampled for bp in plan.breakpoints) == sampling
    records: list[dict[str, Any]] = []
    result = run(plan, emit=records.append, backend=backend)
    assert result.exit_status == 0, records[-1]
    return backend, records


def hits_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["event"] == "breakpoint"]


def same(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in VARIES}


def late_only(summary: dict[str, Any]) -> None:
    """The summary of a sampled run complains of nothing but hits that came too late."""
    assert all("were dropped: in flight" in e for e in summary.get("errors", [])), summary["errors"]


LOOP = ("breakpoints:\n"
        "  - id: hit\n    at: hit\n    when: arg0 % 3 == 1\n    limit: 700\n    actions:\n"
        "      - log: {registers: [rdi, rsi, eflags]}\n      - log: \"i={arg0} hits={hits}\"\n"
        # A stopping breakpoint that reads the code under the uprobe: the program's byte, not int3.
        "  - id: decide\n    at: decide\n    actions:\n      - log: \"x={arg0} first={u8[hit]:#x}\"\n")


def test_a_loop_sampled_gives_the_records_of_its_stops(targets):
    sampled_backend, sampled = run_in_process(LOOP, targets["loop"], "5000", "17")
    _, stopped = run_in_process(LOOP, targets["loop"], "5000", "17", sampling=False)
    hits = hits_of(sampled)
    assert len([h for h in hits if h["id"] == "hit"]) == 700            # limit: exactly
    assert [h["message"] for h in hits if h["id"] == "hit"] == [f"i={3 * k + 1} hits={k + 1}" for k in range(700)]
    first = (Path(targets["loop"]).read_bytes()[hit_offset(targets["loop"])])
    assert first != 0xCC and [h["message"] for h in hits if h["id"] == "decide"] == [f"x=17 first={first:#x}"]
    # Every hit that was taken (the condition's misses are not hits) came without a stop.
    assert sampled_backend.sampled >= len(hits)
    assert [same(r) for r in hits] == [same(r) for r in hits_of(stopped)]
    assert sampled[-1]["breakpoints"] == stopped[-1]["breakpoints"] == {"hit": 700, "decide": 1}
    late_only(sampled[-1])
    times = [r["time"] for r in hits]
    assert times == sorted(times) and all(0 < t <= sampled[-1]["time"] for t in times)


def hit_offset(binary: str) -> int:
    """Where hit()'s first byte is in the file."""
    from instrument.symbols.elf import open_image

    with open(binary, "rb") as f:
        from elftools.elf.elffile import ELFFile

        address = open_image(binary).symbol_address("hit")
        for seg in ELFFile(f).iter_segments("PT_LOAD"):
            if seg["p_vaddr"] <= address < seg["p_vaddr"] + seg["p_filesz"]:
                return int(address - seg["p_vaddr"] + seg["p_offset"])
    raise AssertionError("hit() is in no PT_LOAD segment")


THREADS = ("breakpoints:\n  - id: work\n    at: work\n    when: arg0 % 100000 < 1500\n    actions:\n"
           "      - log: \"{arg0}\"\n")


def by_thread(records: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Each thread's hits in its own order, keyed by the worker it is (arg0 // 100000)."""
    threads: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in hits_of(records):
        threads[r["tid"]].append(r)
    return {int(rs[0]["message"]) // 100000: rs for rs in threads.values()}


def test_threads_sampled_give_each_thread_the_records_of_its_stops(targets):
    threads, calls, taken = 4, 3000, 1500
    backend, sampled = run_in_process(THREADS, targets["threads"], str(threads), str(calls))
    _, stopped = run_in_process(THREADS, targets["threads"], str(threads), str(calls), sampling=False)
    for records in (sampled, stopped):
        hits = hits_of(records)
        assert [r["hits"] for r in hits] == list(range(1, threads * taken + 1))
        assert records[-1]["breakpoints"] == {"work": threads * taken}
    assert backend.sampled == threads * calls         # every call, the condition's misses too
    a, b = by_thread(sampled), by_thread(stopped)
    assert sorted(a) == sorted(b) == list(range(threads))
    for worker in a:
        expected = [str(worker * 100000 + i) for i in range(taken)]
        assert [r["message"] for r in a[worker]] == [r["message"] for r in b[worker]] == expected
        # The same records but for the hit numbers, which depend on how the threads interleaved.
        assert [same(r) | {"hits": 0} for r in a[worker]] == [same(r) | {"hits": 0} for r in b[worker]]
    late_only(sampled[-1])


FORKS = ("target:\n  follow_forks: true\nbreakpoints:\n  - id: work\n    at: work\n    when: arg0 % 2 == 0\n"
         "    limit: 2500\n    actions:\n      - log: \"{arg0}\"\n")


def test_a_followed_fork_child_is_sampled_from_its_first_instruction(targets):
    calls = 2000                  # 1000 hits before the fork, 1000 in the child, 500 after to the limit
    backend, sampled = run_in_process(FORKS, targets["fork_calls"], str(calls))
    _, stopped = run_in_process(FORKS, targets["fork_calls"], str(calls), sampling=False)
    hits = hits_of(sampled)
    parent, child = sampled[0]["pid"], next(r["pid"] for r in hits if r["pid"] != sampled[0]["pid"])
    evens = [str(i) for i in range(0, calls, 2)]
    # Parent before the fork, the child (the parent waits), then the parent, to the limit.
    expected = (evens + [str(100000 + int(i)) for i in evens] + [str(200000 + int(i)) for i in evens])[:2500]
    assert [r["message"] for r in hits] == expected
    assert {r["pid"] for r in hits[:calls // 2]} == {parent} and {r["pid"] for r in hits[calls // 2:calls]} == {child}
    assert [same(r) for r in hits] == [same(r) for r in hits_of(stopped)]
    assert sampled[-1]["breakpoints"] == stopped[-1]["breakpoints"] == {"work": 2500}
    assert backend.sampled >= 2500
    late_only(sampled[-1])


@pytest.mark.parametrize("refusal, reason", [
    ("no PMU", "no uprobe PMU"),
    ("EACCES", "perf_event_open (uprobe): Permission denied"),     # perf_event_paranoid, no CAP_PERFMON
])
def test_where_perf_refuses_uprobes_every_hit_stops_and_the_summary_says_why(targets, monkeypatch, refusal, reason):
    if refusal == "no PMU":
        monkeypatch.setattr(uprobes, "UPROBE_TYPE_PATH", "/nonexistent/uprobe/type")
    else:
        real = uprobes._ffi.perf_event_open

        def refuse(attr: Any, tid: int, flags: int, cpu: int = -1) -> int:
            return -errno.EACCES if attr.type == uprobes.uprobe_type() else real(attr, tid, flags, cpu)
        monkeypatch.setattr(uprobes._ffi, "perf_event_open", refuse)
    backend, records = run_in_process(LOOP, targets["loop"], "3000", "17")
    assert backend.sampled == 0
    hits = hits_of(records)
    assert [h["message"] for h in hits if h["id"] == "hit"] == [f"i={3 * k + 1} hits={k + 1}" for k in range(700)]
    assert records[-1]["breakpoints"] == {"hit": 700, "decide": 1}
    assert f"1 soft breakpoint stopped the target at every hit: {reason}" in " ".join(records[-1]["errors"])


def test_explain_says_which_soft_breakpoints_are_sampled_and_how(targets, tmp_path, cli):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(HEADER + LOOP + "  - id: deep\n    at: fact\n    actions:\n      - backtrace: {depth: 2}\n")
    out = cli("explain", str(recipe), "--", targets["loop"]).stdout
    hit, deep = out.split("  hit:")[1].split("  decide:")[0], out.split("  deep:")[1]
    assert "sampled" in hit and "uprobe" in hit
    assert "sampled" not in deep


# -- an attached target is left without a uprobe --------------------------------------

def code_bytes(pid: int, binary: str) -> bytes:
    """hit()'s first bytes as the process has them in its memory, and as the file has them."""
    from instrument.symbols.elf import open_image

    image = open_image(binary)
    with open(f"/proc/{pid}/maps") as maps:
        base = next(int(line.split("-")[0], 16) for line in maps if binary in line)
    address = base + image.symbol_address("hit") if image.is_pie else image.symbol_address("hit")
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(address)
        return mem.read(16)


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "timeout"])
def test_an_attached_target_is_left_without_a_uprobe(targets, tmp_path, how):
    binary = targets["spin"]
    target = subprocess.Popen([binary, "120"], stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout.readline().startswith("pid=")
        before = code_bytes(target.pid, binary)
        assert before[0] != 0xCC
        registers_before = debug_registers(target.pid)
        recipe = tmp_path / "r.yaml"
        recipe.write_text(HEADER + "breakpoints:\n  - at: hit\n    actions:\n      - log: '{arg0}'\n")
        out = tmp_path / "out.jsonl"
        extra = ["--timeout", "3"] if how == "timeout" else []
        tool = subprocess.Popen([str(Path(sys.executable).parent / "instrument"), "run", str(recipe),
                                 "--pid", str(target.pid), "--format", "jsonl", "-o", str(out), *extra],
                                stderr=subprocess.PIPE, text=True)
        if how != "timeout":
            deadline = time.time() + 60
            while time.time() < deadline and (not out.exists() or out.read_text().count('"breakpoint"') < 50):
                time.sleep(0.02)
            assert code_bytes(target.pid, binary)[0] == 0xCC      # the kernel's uprobe, while we sample
            tool.send_signal(getattr(signal, how))
        _, err = tool.communicate(timeout=120)
        assert tool.returncode == 0, err
        assert code_bytes(target.pid, binary) == before       # the uprobe is gone with the tool
        # DR6 as it was: the kernel's out-of-line steps set its single-step bit until the
        # uprobe goes, and the detach puts it back only after that.
        assert debug_registers(target.pid) == registers_before
        with open(f"/proc/{target.pid}/status") as status:
            text = status.read()
        assert "TracerPid:\t0" in text and "State:\tR" in text  # untraced, running on
        recs = [json.loads(line) for line in out.read_text().splitlines()]
        hits = [r for r in recs if r["event"] == "breakpoint"]
        assert len(hits) >= 50
        args = [int(r["message"]) for r in hits]
        assert args == list(range(args[0], args[0] + len(args)))   # none missed while attached
        assert recs[-1]["ended"] == ("timeout" if how == "timeout" else "interrupted")
        # The target runs on until the session's end switches the uprobes off; a tracer
        # kept off the CPU meanwhile (a loaded machine) has the last hits dropped from
        # full rings: the summary says how many (those reported are consecutive, above).
        assert all("were dropped: in flight" in e or "were lost" in e for e in recs[-1].get("errors", []))
    finally:
        target.kill()
        target.wait()


MIXED = ("breakpoints:\n  - id: work\n    at: work\n    type: hardware\n    actions:\n      - log: \"w{arg0}\"\n"
         "  - id: twice\n    at: twice\n    actions:\n      - log: \"t{arg0}\"\n")


def test_sampled_hardware_and_soft_hits_come_in_each_threads_order(targets):
    threads, calls = 2, 2000
    backend, records = run_in_process(MIXED, targets["threads"], str(threads), str(calls))
    assert backend.sampled == 2 * threads * calls
    per_thread: dict[int, list[str]] = defaultdict(list)
    for r in hits_of(records):
        per_thread[r["tid"]].append(r["message"])
    for messages in per_thread.values():
        worker = int(messages[0][1:]) // 100000
        assert messages == [m for i in range(calls) for m in (f"w{worker * 100000 + i}", f"t{i}")]
    assert records[-1]["breakpoints"] == {"work": threads * calls, "twice": threads * calls}


@pytest.mark.parametrize("watch", ["    type: memory\n    access: write\n    size: 8\n",
                                   "    type: hardware\n    access: write\n    size: 8\n"])
def test_a_soft_breakpoint_on_an_instruction_that_a_data_watch_sees_stops_and_both_count_every_access(
        targets, tmp_path, watch):
    # tick()'s one `add` writes ticks[0]: run out of line by a uprobe, its write would escape
    # the watch (a debug register's hit lost; a guard page's fault counted twice by the
    # uprobe and a stray SIGTRAP for the program), so a recipe that watches data keeps
    # its soft breakpoints as int3 stops (compiler/sampling.py).
    from tests.conftest import run_recipe_jsonl

    body = "breakpoints:\n  - id: tick\n    at: tick\n  - id: w\n    at: ticks\n" + watch
    proc, records = run_recipe_jsonl(tmp_path, HEADER + body, targets["sig_flood"], "kill", "30", "1", timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = dict(pair.split("=", 1) for pair in proc.stdout.split() if "=" in pair)
    ticks = int(report["ticks"])
    assert ticks >= 1 and report["trap"] == "0" and report["bad"] == "0"
    assert records[-1]["breakpoints"] == {"tick": ticks, "w": ticks}
