"""docs/tutorial.md runs as written: its files are saved, its commands run in order, and each step
produces the records the text promises (HOUSE rule 10: examples are tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from instrument.backend import get_backend

TUTORIAL = Path(__file__).parents[2] / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)
FILE_MARK = re.compile(r"^(?:#|//) file: (\S+)$")

Proc = subprocess.CompletedProcess

HAS_GUARD_PAGES = get_backend().capabilities.memory_breakpoints


def blocks() -> list[tuple[str, str]]:
    return BLOCK.findall(TUTORIAL.read_text())


def in_order(text: str, *pieces: str) -> bool:
    at = 0
    for piece in pieces:
        at = text.find(piece, at)
        if at < 0:
            return False
        at += len(piece)
    return True


def check_build(p: Proc) -> None:
    assert p.returncode == 0 and p.stdout == "access denied\ncounter=6\n", p.stderr


def check_events(p: Proc) -> None:
    assert p.returncode == 0, p.stderr
    assert in_order(p.stdout, "create_process (code 3)", "(event code 3)", "load_dll (code 6)",
                    "loaded /lib/x86_64-linux-gnu/libc.so.6 at 0x", "access denied",
                    "exit_process (code 5)", "exited with 0 (event code 5)")


def check_explain(p: Proc) -> None:
    assert p.returncode == 0, p.stderr
    assert in_order(p.stdout, "handler table", "event 3 CREATE_PROCESS_DEBUG_EVENT (create_process)",
                    "event 5 EXIT_PROCESS_DEBUG_EVENT", "event 6 LOAD_DLL_DEBUG_EVENT (load_dll)")


def check_first(p: Proc) -> None:
    assert p.returncode == 0, p.stderr
    # Sampled after 1024 hits (it only reads registers): its one hit stops, as the tutorial
    # says; the program's own output is not ordered against the record here.
    assert in_order(p.stdout, "breakpoint first-breakpoint #1 at main", "first breakpoint: argc=1", "rip=0x",
                    "rsp=0x", "hits: first-breakpoint=1")
    assert "access denied" in p.stdout


def check_soft(p: Proc) -> None:
    assert p.returncode == 0, p.stderr
    assert in_order(p.stdout, "tick(1), hit 1", "return tick #1", "tick(1) returned", "tick(2), hit 2",
                    "tick(3), hit 3", "tick(3) returned", "check(wrong-password): forcing 1", "access granted",
                    "hits: tick=3, check=1")


def check_hardware(p: Proc) -> None:
    assert p.returncode == 0, p.stderr
    assert in_order(p.stdout, "tick(1) by DR", "counter = 1", "tick(2) by DR", "counter = 3",
                    "tick(3) by DR", "counter = 6", "hits: counter-written=3, tick-executed=3")


def check_watch_global(p: Proc) -> None:
    assert p.returncode == 0, p.stderr
    assert in_order(p.stdout, "= 1", "tick+", "= 3", "= 6", "hits: write=3")


def check_memory(p: Proc) -> None:
    if not HAS_GUARD_PAGES:
        assert p.returncode == 2
        assert p.stderr.strip() == "memory.yaml:8:11: error: memory breakpoints are not supported by this backend yet"
        return
    assert p.returncode == 0, p.stderr
    assert in_order(p.stdout, "breakpoint secret-read #1 at secret", "read of 0x", "check", "access denied")


def check_validate(p: Proc) -> None:
    assert p.returncode == 0, p.stderr
    assert in_order(p.stdout, "soft.yaml: ok against", "(fixed address,", "tick  ->  0x", "check  ->  0x",
                    "hardware.yaml: ok", "counter  ->  0x", "heap-trace: ok",
                    "libc.so.6!malloc  ->  deferred until libc.so.6 loads")


def check_trace(p: Proc) -> None:
    assert p.returncode == 0, p.stderr
    assert in_order(p.stdout, "breakpoint tick #1 at tick", ": tick(1)", "return tick #1", "-> 0x1",
                    ": tick(2)", "-> 0x3", ": tick(3)", "-> 0x6",
                    "breakpoint libc.so.6!strcmp #1 at libc.so.6!strcmp", "return libc.so.6!strcmp #1 at check+",
                    "access denied")


def check_saved_trace(p: Proc) -> None:
    assert p.returncode == 0, p.stderr
    # Sampled hits (they only read registers): the program's own output may come first.
    once = ("breakpoint tick #1 at tick", "arg0=0x1", "arg0=0x2", "arg0=0x3", "hits: tick=3")
    assert in_order(p.stdout, *once, *once) and p.stdout.count("access denied") == 2


def check_syscalls(p: Proc) -> None:
    assert p.returncode == 0, p.stderr
    assert in_order(p.stdout, 'syscall openat(AT_FDCWD, "/lib/x86_64-linux-gnu/libc.so.6", O_RDONLY|O_CLOEXEC) = 3',
                    "/lib/x86_64-linux-gnu/libc.so.6 -> 3", 'syscall write(1, "access denied',
                    "(skipped: returns -5)", "system calls stopped by seccomp-bpf")
    assert "access denied" not in [line.strip() for line in p.stdout.splitlines()]


def check_signals(p: Proc) -> None:
    assert p.returncode == 0, p.stderr
    assert in_order(p.stdout, "signal SIGUSR1 #1 (SI_USER from pid ", ") suppress [pid=",
                    ": SIGUSR1 (SI_USER) from pid ", ": not delivered", "still here", "summary exited exit code 0")


# Each command of the tutorial, in order, and what its step promises.
STEPS: dict[str, Callable[[Proc], None]] = {
    "gcc -g -O0 -no-pie -o app app.c\n./app": check_build,
    "instrument run events.yaml -- ./app": check_events,
    "instrument explain events.yaml -- ./app": check_explain,
    "instrument run first.yaml -- ./app": check_first,
    "instrument run soft.yaml -- ./app wrong-password": check_soft,
    "instrument run hardware.yaml -- ./app": check_hardware,
    "instrument run watch-global --set variable=counter -- ./app":
        check_watch_global,
    "instrument run memory.yaml -- ./app": check_memory,
    "instrument validate soft.yaml hardware.yaml heap-trace --target ./app": check_validate,
    "instrument trace -i 'tick: tick({arg0})' -i 'libc.so.6!str*cmp' --ret -- ./app": check_trace,
    "instrument trace -i 'ti*' --args 1 --save ticks.yaml -- ./app\ninstrument run ticks.yaml": check_saved_trace,
    "instrument run signals.yaml -- sh -c 'kill -USR1 $$; echo still here'": check_signals,
    "instrument run syscalls.yaml -- ./app": check_syscalls,
}


def test_the_tutorial_lists_exactly_the_checked_commands():
    commands = [body.strip() for lang, body in blocks() if lang == "sh"]
    assert commands == list(STEPS), "the tutorial's commands changed: update STEPS to check what they promise"


def test_every_file_block_is_named():
    for lang, body in blocks():
        if lang in ("yaml", "c"):
            assert FILE_MARK.match(body.splitlines()[0]), body[:60]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reader's folder: every file block saved under its name."""
    work = tmp_path_factory.mktemp("tutorial")
    for lang, body in blocks():
        mark = FILE_MARK.match(body.splitlines()[0]) if lang in ("yaml", "c") else None
        if mark:
            (work / mark.group(1)).write_text(body)
    return work


def run_step(command: str, cwd: Path) -> Proc:
    env = dict(os.environ)
    # `instrument` as the reader has it: the console script installed next to this Python.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(["bash", "-e", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_every_step_runs_as_written(workdir):
    # One test, in order: later steps use what earlier ones built (./app).
    for command, check in STEPS.items():
        proc = run_step(command, workdir)
        try:
            check(proc)
        except AssertionError as e:
            raise AssertionError(f"tutorial step `{command}` did not do what the text says:\n"
                                 f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}") from e


def test_yaml_blocks_are_valid_recipes(workdir):
    # The file blocks (a step may write more: `trace --save ticks.yaml`).
    recipes = sorted(p.name for p in workdir.glob("*.yaml") if p.name != "ticks.yaml")
    assert recipes == ["events.yaml", "first.yaml", "hardware.yaml", "memory.yaml", "signals.yaml", "soft.yaml", "syscalls.yaml"]
    proc = run_step("instrument validate " + " ".join(recipes), workdir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(": ok") == len(recipes)
