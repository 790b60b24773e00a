"""A process whose main thread called pthread_exit (issue 18): its leader is a zombie that
never stops again, while its other threads run on. All-stop used to wait for that stop for
good, deaf to SIGTERM and SIGINT too; attaching to such a process failed."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

from instrument.symbols.elf import open_image

TOOL = str(Path(sys.executable).parent / "instrument")
RECIPE = """\
version: 1
name: leader-exit
description: breakpoints in the worker of a process whose main thread has exited
breakpoints:
  - id: s
    at: hit
    actions:
      - log: '{arg0}'
"""
MEMORY = """\
  - id: m
    at: total
    type: memory
    size: 8
"""
HARDWARE = """\
  - id: h
    at: hit
    type: hardware
"""


def live_thread(pid: int) -> int:
    """A thread of pid that is not a zombie: /proc/PID/mem of a zombie leader reads nothing."""
    for tid in sorted(int(t) for t in os.listdir(f"/proc/{pid}/task")):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] not in "ZX":
                return tid
    raise AssertionError(f"process {pid} has no live thread")


def snapshot(pid: int, binary: str) -> tuple[bytes, list[str]]:
    """The code page of hit() and the protections of every mapping, read through a live thread."""
    tid = live_thread(pid)
    image = open_image(binary)
    with open(f"/proc/{tid}/maps") as f:
        maps = f.read().splitlines()
    base = next(int(line.split("-")[0], 16) for line in maps if binary in line)
    start = ((base if image.is_pie else 0) + image.symbol_address("hit")) & ~0xFFF
    with open(f"/proc/{tid}/mem", "rb") as mem:
        mem.seek(start)
        text = mem.read(4096)
    return text, [" ".join(line.split()[:2]) for line in maps]


def first_lines(stream: IO[str], count: int, timeout: float = 60) -> list[str]:
    """The first `count` lines the target writes (through the tool, which may hang)."""
    fd, data, deadline = stream.fileno(), b"", time.time() + timeout
    while data.count(b"\n") < count:
        ready, _, _ = select.select([fd], [], [], max(deadline - time.time(), 0))
        chunk = os.read(fd, 4096) if ready else b""
        if not chunk:
            raise AssertionError(f"the target wrote {data!r}, then nothing more")
        data += chunk
    return data.decode().splitlines()[:count]


def records(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def wait_for_hits(out: Path, tool: subprocess.Popen[str], count: int = 50) -> None:
    deadline = time.time() + 30
    while time.time() < deadline and tool.poll() is None:
        if out.exists() and out.read_text().count('"breakpoint"') >= count:
            return
        time.sleep(0.02)


def consecutive(recs: list[dict[str, object]]) -> list[int]:
    args = [int(str(r["message"])) for r in recs if r["event"] == "breakpoint" and r.get("id") == "s"]
    assert args == list(range(args[0], args[0] + len(args))), "a hit of the worker went unreported"
    return args


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_a_session_whose_all_stop_meets_a_zombie_leader(targets, tmp_path, signum):
    # Started by the tool: the main thread exits while traced, and every memory breakpoint
    # hit in the worker then stops the others (all-stop) -- the zombie leader among them,
    # whose stop never comes. The tool hung at the first hit, and ignored the signal.
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE + MEMORY)
    out = tmp_path / "out.jsonl"
    tool = subprocess.Popen([TOOL, "run", str(recipe), "--no-sampling", "--format", "jsonl", "-o", str(out),
                             "--", targets["leader_exit"], "120"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            bufsize=0)
    try:
        assert tool.stdout is not None
        first, ready = first_lines(tool.stdout, 2)
        pid = int(first.split("=")[1])
        assert ready == "ready"
        wait_for_hits(out, tool)
        assert tool.poll() is None, tool.communicate()[1]
        tool.send_signal(signum)
        _, err = tool.communicate(timeout=60)
    finally:
        if tool.poll() is None:
            tool.kill()
            tool.communicate()
    assert tool.returncode == 128 + signum, err
    recs = records(out)
    assert recs[-1]["event"] == "summary" and recs[-1]["ended"] == "interrupted"
    assert len(consecutive(recs)) >= 10     # (50 records seen, the memory hits among them)
    assert any(r.get("id") == "m" for r in recs)
    assert not os.path.exists(f"/proc/{pid}"), "the started target was left behind"


@pytest.mark.parametrize("second, extra", [
    (MEMORY, ("--no-sampling",)),        # int3 and guard pages: stops, all-stop on every memory hit
    (HARDWARE, ()),                       # sampled: uprobe and perf breakpoint on the worker only
    (HARDWARE, ("--no-sampling",)),       # debug registers, set in the threads that can stop
], ids=["memory", "hardware-sampled", "hardware"])
def test_attach_to_a_process_whose_main_thread_exited(targets, tmp_path, second, extra):
    binary = targets["leader_exit"]
    target = subprocess.Popen([binary, "120"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None
        assert target.stdout.readline().startswith("pid=")
        assert target.stdout.readline() == "ready\n"      # the leader is a zombie now
        before = snapshot(target.pid, binary)
        recipe = tmp_path / "r.yaml"
        recipe.write_text(RECIPE + second)
        out = tmp_path / "out.jsonl"
        tool = subprocess.Popen([TOOL, "run", str(recipe), "--pid", str(target.pid), "--format", "jsonl",
                                 "-o", str(out), *extra], stderr=subprocess.PIPE, text=True)
        try:
            wait_for_hits(out, tool)
            assert tool.poll() is None, tool.communicate()[1]
            tool.send_signal(signal.SIGTERM)
            _, err = tool.communicate(timeout=60)
        finally:
            if tool.poll() is None:
                tool.kill()
                tool.communicate()
        assert tool.returncode == 0, err
        assert target.poll() is None, f"the target ended with {target.returncode} after the detach"
        assert snapshot(target.pid, binary) == before      # no int3, no guarded page left
        with open(f"/proc/{target.pid}/task/{live_thread(target.pid)}/status") as status:
            assert "TracerPid:\t0" in status.read()
        recs = records(out)
        assert recs[-1]["event"] == "summary" and recs[-1]["ended"] == "interrupted"
        assert len(consecutive(recs)) >= 10     # (50 records seen, the memory hits among them)
        rest = target.communicate(timeout=60)[0]         # (closes its stdin: it ends)
        assert target.returncode == 0 and "leader_exit ok" in rest, rest
    finally:
        if target.poll() is None:
            target.kill()
            target.wait()
