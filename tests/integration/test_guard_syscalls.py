"""System calls whose buffers lie on a page a memory breakpoint guards: they behave as
untraced (no EFAULT), and the kernel's access is reported as a hit of the right kind
(a read() INTO the watched buffer writes it, a write() FROM it reads it)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_recipe_jsonl
from tests.integration.test_memory_breakpoints import perms

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the ptrace backend runs on Linux")

# The window (8 bytes at watched+0x804) is armed when ready() runs and disarmed when
# done() runs, right after the call: only the call's own access can hit it.
RECIPE = """version: 1
name: guard-syscalls
description: memory breakpoint on a system call's buffer
{target}breakpoints:
  - id: arm
    at: ready
    actions:
      - enable: win{also}
  - id: quiet
    at: done
    actions:
      - disable: win
  - id: win
    at: u64[watch_ptr]
    type: memory
    size: 8
    access: {access}
    enabled: false
"""
# Another window on the same page, never touched, watched for any access: the page is
# PROT_NONE, not read-only, whatever the first window's `access`.
OTHER = """  - id: other
    at: watched+0x100
    type: memory
    size: 8
    enabled: false
"""
ALSO = "\n      - enable: other"
# With follow_forks the target is started with a seccomp filter that stops only the calls
# that take pointers; without it every call stops while a page is guarded (PTRACE_SYSCALL).
FILTERED = "target:\n  follow_forks: true\n"
MODES = pytest.mark.parametrize("target", ["", FILTERED], ids=["ptrace-syscall", "seccomp"])

# (target, mode, the access the kernel makes to the window)
CALLS = [
    ("guard_syscall", "read", "write"),
    ("guard_syscall", "write", "read"),
    ("guard_syscall", "stat", "write"),
    ("guard_syscall", "futex", "read"),
    ("guard_iov", "readv", "write"),
    ("guard_iov", "writev", "read"),
    ("guard_iov", "recvmsg", "write"),
    ("guard_iov", "sendmsg", "read"),
]


def untraced(binary: str, mode: str) -> str:
    out = subprocess.run([binary, mode], capture_output=True, text=True, timeout=30, check=True).stdout
    assert "errno=0" in out or mode in ("futex", "threads"), out
    return out


def wins(recs: list[dict]) -> list[dict]:
    return [r for r in recs if r["event"] == "breakpoint" and r["id"] == "win"]


@MODES
@pytest.mark.parametrize("name,mode,access", CALLS, ids=[c[1] for c in CALLS])
def test_call_on_a_guarded_page_runs_as_untraced_and_is_a_hit(targets, tmp_path: Path, name, mode, access, target):
    binary = targets[name]
    proc, recs = run_recipe_jsonl(tmp_path, RECIPE.format(access="any", also="", target=target), binary, mode,
                                  timeout=60)
    assert proc.returncode == 0, proc.stderr
    # The call's result and the bytes it moved are the untraced run's (EFAULT before).
    assert proc.stdout == untraced(binary, mode)
    assert "errno=14" not in proc.stdout
    hits = wins(recs)
    assert len(hits) == 1, hits
    assert hits[0]["access"] == access
    assert hits[0]["symbol"] == "watched+0x804"          # the first watched byte the call touched
    assert hits[0]["pc"] != hits[0]["address"]
    summary = recs[-1]
    assert summary["event"] == "summary" and summary["breakpoints"]["win"] == 1


@pytest.mark.parametrize("name,mode,access", CALLS, ids=[c[1] for c in CALLS])
def test_access_write_reports_only_the_calls_that_write(targets, tmp_path: Path, name, mode, access):
    binary = targets[name]
    proc, recs = run_recipe_jsonl(tmp_path, RECIPE.format(access="write", also=ALSO, target="") + OTHER, binary, mode, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == untraced(binary, mode)
    assert not [r for r in recs if r["event"] == "breakpoint" and r["id"] == "other"]
    hits = wins(recs)
    if access == "write":
        assert [h["access"] for h in hits] == ["write"]
    else:
        assert hits == []        # a write() FROM the buffer only reads it


@pytest.mark.parametrize("seccomp,target", [(True, ""), (False, ""), (True, FILTERED)],
                         ids=["seccomp", "ptrace-syscall", "seccomp-with-pointer-calls"])
def test_a_named_call_is_reported_once_and_our_mprotect_never(targets, tmp_path: Path, seccomp, target):
    binary = targets["guard_syscall"]
    text = (RECIPE.format(access="any", also="", target=target)
            + "syscalls:\n  read:\n    on: both\n  mprotect:\n    on: both\n")
    extra = () if seccomp else ("--no-seccomp",)
    proc, recs = run_recipe_jsonl(tmp_path, text, binary, "read", extra=extra, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == untraced(binary, "read")
    start = next(i for i, r in enumerate(recs) if r.get("id") == "arm")
    end = next(i for i, r in enumerate(recs) if r.get("id") == "quiet")
    between = recs[start + 1:end]
    calls = [(r["name"], r["phase"]) for r in between if r["event"] == "syscall"]
    # The read, entry and exit, once each; the mprotects that opened and closed the page
    # for it are the debugger's, never reported.
    assert calls == [("read", "entry"), ("read", "exit")], calls
    assert between[-1]["event"] == "syscall" and between[-1]["retval"] == 11
    assert [h["access"] for h in wins(between)] == ["write"]


@MODES
def test_two_threads_calls_on_one_page_keep_it_open_for_each_other(targets, tmp_path: Path, target):
    # Thread 1's read (beside the window) ends while thread 0's (over it) still has the
    # page open: guarding it again then would fail thread 0's read with EFAULT.
    binary = targets["guard_syscall"]
    proc, recs = run_recipe_jsonl(tmp_path, RECIPE.format(access="any", also="", target=target), binary, "threads",
                                  timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == untraced(binary, "threads") == "threads ret=8,8 data=thread-0,thread-1\n"
    hits = wins(recs)
    assert [(h["access"], h["symbol"]) for h in hits] == [("write", "watched+0x804")]
    assert hits[0]["tid"] != hits[0]["pid"]


@pytest.mark.parametrize("attempt", range(3))
def test_attached_call_heavy_program_is_let_go_as_it_was(targets, tmp_path: Path, attempt):
    # Every call of this program stops while the window is armed, so the tool's end finds
    # threads at system call entries (they are backed out of them to restore the page),
    # and the program's each 1000th read() goes INTO the window.
    binary = targets["guard_syscall"]
    rounds = 3_000_000
    target = subprocess.Popen([binary, "attach", str(rounds)], stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None and target.stdout.readline().startswith("pid=")
        before = perms(target.pid)
        recipe = tmp_path / "r.yaml"
        recipe.write_text("version: 1\nname: t\nbreakpoints:\n  - id: win\n    at: watched+0x804\n"
                          "    type: memory\n    size: 8\n")
        out = tmp_path / "out.jsonl"
        tool = subprocess.Popen([str(Path(sys.executable).parent / "instrument"), "run", str(recipe),
                                 "--pid", str(target.pid), "--format", "jsonl", "-o", str(out)],
                                stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 30
        while time.time() < deadline and (not out.exists() or out.read_text().count('"breakpoint"') < 3):
            time.sleep(0.02)
        tool.send_signal(signal.SIGTERM)
        _, err = tool.communicate(timeout=60)
        assert tool.returncode == 0, err
        assert perms(target.pid) == before
        with open(f"/proc/{target.pid}/status") as status:
            assert "TracerPid:\t0" in status.read()
        rest = target.communicate(timeout=120)[0]
        assert target.returncode == 0 and f"loop n={rounds} ok=1" in rest, rest
        recs = [json.loads(line) for line in out.read_text().splitlines()]
        hits = [r for r in recs if r["event"] == "breakpoint"]
        assert len(hits) >= 3 and {r["access"] for r in hits} == {"write"}
    finally:
        if target.poll() is None:
            target.kill()
