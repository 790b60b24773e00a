"""A traced program behaves as untraced and its data cannot pass for the tool's own output (issue 18):
text records stay one line each, injected calls keep the vector registers, held-back signals
arrive with their own siginfo."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from instrument.backend import get_backend
from instrument.backend.base import SpawnOptions
from instrument.backend.linux.tracee import LinuxBackend
from instrument.events import EventCode, ExceptionCode
from tests.conftest import run_cli

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the ptrace backend runs on Linux")

HEADER = "version: 1\nname: t\ndescription: trust test\n"


def recipe(tmp_path: Path, body: str) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(HEADER + body)
    return str(path)


def symbol(path: str, name: str) -> int:
    with open(path, "rb") as f:
        sym = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)  # type: ignore[union-attr]
        assert sym, name
        return int(sym[0]["st_value"])


# -- text output -------------------------------------------------------------------------
def test_a_targets_string_cannot_forge_a_text_record(targets, tmp_path):
    forged = "x\n[   0.5000] breakpoint forged #1 at main [pid=1]\r\x1b[2K\u2028tail"
    out = tmp_path / "out.txt"
    proc = run_cli("run", recipe(tmp_path, "breakpoints:\n  - id: sl\n    at: strlen\n"
                                           "    actions:\n      - log: 'arg {str(arg0)}'\n"),
                   "-o", str(out), "--", targets["globs"], forged)
    assert proc.returncode == 0, proc.stderr
    lines = out.read_text().splitlines()
    mine = [line for line in lines if "forged" in line]
    assert mine, lines
    for line in mine:          # the target's string stays inside its own record, escaped
        assert line.startswith("[") and " breakpoint sl #" in line
        assert line.endswith(r": arg x\n[   0.5000] breakpoint forged #1 at main [pid=1]\x0d\x1b[2K\u2028tail")
    assert not any(line.startswith("[   0.5000]") for line in lines)


# -- injected calls ------------------------------------------------------------------------
def test_an_injected_call_keeps_the_vector_and_x87_registers(targets, capfd):
    binary = targets["xstate_keep"]
    backend = get_backend()
    assert isinstance(backend, LinuxBackend)
    try:
        pid = backend.spawn(SpawnOptions(argv=(binary,)))
        first = backend.wait_event(timeout=10)
        assert first is not None and first.code == EventCode.CREATE_PROCESS_DEBUG_EVENT
        clobber = first.info.image_base + symbol(binary, "clobber")
        events = []
        while True:
            ev = backend.wait_event(timeout=30)
            assert ev is not None
            events.append(ev)
            if ev.code == EventCode.EXIT_PROCESS_DEBUG_EVENT:
                break
            if ev.code == EventCode.EXCEPTION_DEBUG_EVENT and ev.info.code == ExceptionCode.BREAKPOINT:
                assert backend.call_function(pid, clobber) == 7      # ymm, x87, MXCSR trashed in there
            backend.resume(ev.tid)
    finally:
        backend.close()
    out = capfd.readouterr().out
    if "xstate SKIP" in out:
        pytest.skip("no AVX on this CPU")
    assert "xstate OK" in out, out
    assert events[-1].info.exit_code == 0


# -- signals held back while the tool works ---------------------------------------------------
def test_signals_held_back_arrive_with_their_own_siginfo_and_thread(targets, tmp_path):
    # Every write of the worker is a guard-page fault: the tool injects mprotect into the
    # worker around each, and the signals for the worker are taken meanwhile.
    body = "breakpoints:\n  - id: w\n    at: watched_page\n    type: memory\n    size: 8\n"
    out = tmp_path / "out.jsonl"
    proc = run_cli("run", recipe(tmp_path, body), "--format", "jsonl", "-o", str(out), "--",
                   targets["sig_held"], "200", timeout=120)
    assert "signals OK" in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == 0


def test_a_memory_breakpoint_hit_keeps_the_vector_and_x87_registers(targets, tmp_path):
    # The injected mprotect calls around the hit save only the general registers: the
    # kernel keeps the x87/SSE/AVX state across a system call.
    body = "breakpoints:\n  - id: w\n    at: watched_page\n    type: memory\n    size: 8\n"
    out = tmp_path / "out.jsonl"
    proc = run_cli("run", recipe(tmp_path, body), "--format", "jsonl", "-o", str(out), "--",
                   targets["xstate_keep"], "page")
    if "xstate SKIP" in proc.stdout:
        pytest.skip("no AVX on this CPU")
    assert "xstate OK" in proc.stdout, proc.stdout + proc.stderr
    assert '"w":1' in out.read_text().splitlines()[-1]         # the write was a hit
