"""The stress test of issue 18: attach to a 4-thread program that checks its own registers
and text, arm soft, hardware and memory breakpoints, end the tool by SIGINT, SIGTERM,
--timeout and a closed pipe (5 of each); after every run the program's results, text bytes,
debug registers, page protections and signal masks are as before.

The suite runs one round (20 sessions); bench/stress.py runs the round 20 times."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the ptrace backend runs on Linux")

ENDINGS = ("SIGINT", "SIGTERM", "timeout", "pipe")
RECIPE = """version: 1
name: stress
description: every kind of breakpoint on a program that checks itself
breakpoints:
  - id: s
    at: soft_hit
    actions:
      - log: '{arg0}'
  - id: h
    at: hw_hit
    type: hardware
  - id: m
    at: watched
    type: memory
    size: 8
"""
# Without the memory breakpoint: the soft one is then sampled, a uprobe (a recipe that
# watches data keeps its soft breakpoints as int3 stops: compiler/sampling.py).
RECIPE_UPROBES = RECIPE.split("  - id: m\n")[0]
HITS = 30            # records seen before the tool is ended (SIGINT, SIGTERM, pipe)
DEBUG_REGS = (0, 1, 2, 3, 6, 7)


def debug_registers(pid: int) -> dict[int, tuple[int, ...]]:
    """DR0-3, DR6 and DR7 of every thread, read by seizing it for a moment."""
    from instrument.backend.linux import _ffi

    found: dict[int, tuple[int, ...]] = {}
    for tid in sorted(int(t) for t in os.listdir(f"/proc/{pid}/task")):
        _ffi.ptrace(_ffi.PTRACE_SEIZE, tid, None, 0)
        try:
            _ffi.ptrace(_ffi.PTRACE_INTERRUPT, tid, None, None)
            _, status = os.waitpid(tid, _ffi.WALL)
            assert os.WIFSTOPPED(status) and status >> 16 == _ffi.PTRACE_EVENT_STOP, hex(status)
            found[tid] = tuple(_ffi.peek_user(tid, _ffi.USER_DEBUGREG_OFFSET + 8 * n) for n in DEBUG_REGS)
        finally:
            _ffi.ptrace(_ffi.PTRACE_DETACH, tid, None, 0)
    return found


def snapshot(pid: int, binary: str) -> dict[str, object]:
    """What a session must leave as it found it."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    text = b""
    with open(f"/proc/{pid}/mem", "rb") as mem:
        for line in maps:
            fields = line.split()
            if fields[-1] == binary and "x" in fields[1]:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                mem.seek(start)
                text += mem.read(end - start)
    masks = {}
    for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
        status = dict(line.split(":\t", 1) for line in (task / "status").read_text().splitlines() if ":\t" in line)
        masks[task.name] = (status["SigBlk"], status["TracerPid"])
    return {"maps": [line.split()[:2] + line.split()[5:] for line in maps], "text": text,
            "masks": masks, "debug registers": debug_registers(pid)}


def without_xol_page(maps: object, before: object) -> object:
    """`maps` without the kernel's one `[uprobes]` page, where `before` had none: the
    first hit of a uprobe that single-steps its instruction out of line maps it, and it
    stays until the process execs or exits (the one trace a sampled soft breakpoint
    leaves; README, "What a detach leaves"). Any other change stays for the test to see."""
    assert isinstance(maps, list) and isinstance(before, list)
    if any(m[-1] == "[uprobes]" for m in before):
        return maps
    xol = [m for m in maps if m[-1] == "[uprobes]"]
    assert len(xol) <= 1 and all(m[1] == "--xp" for m in xol), xol   # one execute-only page
    return [m for m in maps if m[-1] != "[uprobes]"]


def tool_env(tmp: Path) -> dict[str, str]:
    """The tool's environment: its bytecode cached under tmp, so that 20 sessions do not
    compile instrument 20 times (PYTHONDONTWRITEBYTECODE may be set for the checkout)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    return env


def end_one_session(binary: str, pid: int, ending: str, tmp: Path, n: int) -> set[str]:
    """One `instrument run --pid`, ended the way `ending` says; asserts how it ended and
    returns the ids of the breakpoints that were hit."""
    recipe = tmp / "stress.yaml"
    # Rounds of four sessions, one per ending: sampled (perf events for the hardware
    # breakpoint), then stopped (--no-sampling), then sampled with the soft breakpoint
    # as a uprobe, in turn.
    turn = n // len(ENDINGS) % 3
    recipe.write_text(RECIPE_UPROBES if turn == 2 else RECIPE)
    exe = str(Path(sys.executable).parent / "instrument")
    cmd = [exe, "run", str(recipe), "--pid", str(pid), "--format", "jsonl"]
    if turn == 1:
        cmd.append("--no-sampling")          # soft and hardware hits stop the target too
    out = tmp / f"out{n}.jsonl"
    out.unlink(missing_ok=True)       # (bench/stress.py runs rounds in one directory)
    if ending == "pipe":
        tool = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=tool_env(tmp))
        assert tool.stdout is not None
        hit: list[str] = []
        while len(hit) < HITS:
            line = tool.stdout.readline()
            assert line, tool.communicate(timeout=60)[1]
            record = json.loads(line)
            if record["event"] == "breakpoint":
                hit.append(record["id"])
        tool.stdout.close()                  # the reader goes away: the next write fails
        err = tool.communicate(timeout=60)[1].decode()
        assert tool.returncode == 128 + signal.SIGPIPE, err
        assert "Traceback" not in err, err
        return set(hit)
    if ending == "timeout":
        cmd += ["--timeout", "1"]
    tool = subprocess.Popen([*cmd, "-o", str(out)], stderr=subprocess.PIPE, text=True, env=tool_env(tmp))
    if ending != "timeout":
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.read_text().count('"breakpoint"') < HITS):
            time.sleep(0.02)
        tool.send_signal(signal.SIGINT if ending == "SIGINT" else signal.SIGTERM)
    err = tool.communicate(timeout=60)[1]
    assert tool.returncode == 0, (tool.returncode, err)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[-1]["event"] == "summary", records[-1]
    assert records[-1]["ended"] == ("interrupted" if ending != "timeout" else "timeout"), records[-1]
    return {r["id"] for r in records if r["event"] == "breakpoint"}


def stress_round(binary: str, tmp: Path, per_ending: int = 5) -> None:
    """Attach and end a session 4 x per_ending times; the target must be as before each time."""
    target = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert target.stdin is not None and target.stdout is not None
    try:
        assert target.stdout.readline().startswith("pid=")
        ready = target.stdout.readline().split()
        assert ready[0] == "ready" and ready[2] == "bad=0", ready
        before = snapshot(target.pid, binary)
        calls, hit, xol = 0, set(), False
        for n in range(per_ending * len(ENDINGS)):
            ending = ENDINGS[n % len(ENDINGS)]
            hit |= end_one_session(binary, target.pid, ending, tmp, n)
            assert target.poll() is None, f"the target ended ({target.returncode}) after session {n} ({ending})"
            after = snapshot(target.pid, binary)
            xol |= any(m[-1] == "[uprobes]" for m in after["maps"])      # type: ignore[attr-defined]
            after["maps"] = without_xol_page(after["maps"], before["maps"])
            for key, value in before.items():
                shown = "" if key == "text" else f": {value!r} -> {after[key]!r}"
                assert after[key] == value, f"{key} changed by session {n} ({ending}){shown}"
            target.stdin.write("check\n")
            target.stdin.flush()
            check = target.stdout.readline().split()
            assert check[:3] == ["check", ready[1], "bad=0"], (n, ending, check)
            now = int(check[3].removeprefix("calls="))
            assert now > calls
            calls = now
        assert hit == {"s", "h", "m"}, hit        # every kind was armed and hit
        if os.geteuid() == 0 and os.path.exists("/sys/bus/event_source/devices/uprobe/type"):
            assert xol, "no session sampled the soft breakpoint (a uprobe's first hit maps [uprobes])"
        target.stdin.close()
        rest = target.stdout.read()
        assert target.wait(timeout=60) == 0 and "stress ok" in rest, rest
    finally:
        if target.poll() is None:
            target.kill()
            target.wait()


def test_twenty_sessions_ended_four_ways_leave_the_program_as_it_was(targets, tmp_path):
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        pytest.skip("x86-64 only")
    stress_round(targets["stress4"], tmp_path)
