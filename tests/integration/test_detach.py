"""Attach, hit breakpoints, end the tool with a signal: the target must run on untouched
(HOUSE rule 5, issue 6: every int3 byte and debug register restored, every thread detached)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from instrument.symbols.elf import open_image

TEXT_BYTES = 4096


def text_bytes(pid: int, binary: str) -> bytes:
    """The bytes of the target's code page that holds hit(), read from its memory."""
    image = open_image(binary)
    with open(f"/proc/{pid}/maps") as maps:
        base = next(int(line.split("-")[0], 16) for line in maps if binary in line)
    start = (base + image.symbol_address("hit")) & ~0xfff if image.is_pie else image.symbol_address("hit") & ~0xfff
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(start)
        return mem.read(TEXT_BYTES)


@pytest.mark.parametrize("kind, signum, extra", [
    # int3s (sampled soft breakpoints, uprobes, are test_sampled_soft.py's)
    ("soft", signal.SIGTERM, ("--no-sampling",)), ("soft", signal.SIGINT, ("--no-sampling",)),
    ("hardware", signal.SIGTERM, ()),                    # sampled: hits do not stop the target
    ("hardware", signal.SIGTERM, ("--no-sampling",)),    # debug registers, a stop per hit
])
def test_attach_hit_and_signal_leaves_target_intact(targets, tmp_path, kind, signum, extra):
    binary = targets["spin"]
    # Long enough for the tool to start and end on a loaded machine (it starts in ~0.5 s idle).
    target = subprocess.Popen([binary, "10"], stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout.readline().startswith("pid=")
        before = text_bytes(target.pid, binary)
        recipe = tmp_path / "r.yaml"
        recipe.write_text(f"version: 1\nname: t\ndescription: d\nbreakpoints:\n  - at: hit\n    type: {kind}\n"
                          "    actions:\n      - log: '{arg0}'\n")
        out = tmp_path / "out.jsonl"
        tool = subprocess.Popen([str(Path(sys.executable).parent / "instrument"), "run", str(recipe),
                                 "--pid", str(target.pid), "--format", "jsonl", "-o", str(out), *extra],
                                stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 20
        while time.time() < deadline and (not out.exists() or out.read_text().count('"breakpoint"') < 50):
            time.sleep(0.02)
        tool.send_signal(signum)
        _, err = tool.communicate(timeout=30)
        assert tool.returncode == 0, err
        assert text_bytes(target.pid, binary) == before      # no int3 left behind
        with open(f"/proc/{target.pid}/status") as status:
            assert "TracerPid:\t0" in status.read()
        rest = target.communicate(timeout=60)[0]
        assert target.returncode == 0 and "spin ok" in rest, rest
        recs = [json.loads(line) for line in out.read_text().splitlines()]
        hits = [r for r in recs if r["event"] == "breakpoint"]
        assert len(hits) >= 50
        # Consecutive hits: none missed while we were attached.
        args = [int(r["message"]) for r in hits]
        assert args == list(range(args[0], args[0] + len(args)))
        assert recs[-1]["event"] == "summary" and recs[-1]["ended"] == "interrupted"
    finally:
        if target.poll() is None:
            target.kill()
