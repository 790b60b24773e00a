#!/usr/bin/env python3
"""Benchmarks of the hard breakpoints: hardware execute hits vs a minimal C loop, the
multi-thread hit rate, and the cost of one memory (guard-page) breakpoint hit.

    python bench/hard.py                 # everything
    python bench/hard.py --hits 20000 --only hw,threads,memory

Prints per-hit costs and ratios, each against a reference measured in the same
run; nothing here asserts a time (HOUSE.md rule 11). The C reference runs pinned
to CPU 0 (taskset); instrument pins itself and its target to one CPU by default.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from run import HERE, ROOT, instrument_exe, symbol_address, timed  # bench/ is sys.path[0]

TARGETS = ROOT / "tests" / "targets"


def build(tmp: Path) -> dict[str, Path]:
    out = {"loop": tmp / "loop", "ref": tmp / "hw_ref", "threads": tmp / "threads", "mem": tmp / "mem_page"}
    subprocess.run(["gcc", "-O0", "-g", "-no-pie", "-fno-pie", "-o", out["loop"], TARGETS / "loop.c"], check=True)
    subprocess.run(["gcc", "-O2", "-o", out["ref"], HERE / "hw_ref.c"], check=True)
    subprocess.run(["gcc", "-O0", "-g", "-o", out["threads"], TARGETS / "threads.c", "-lpthread"], check=True)
    subprocess.run(["gcc", "-O0", "-g", "-no-pie", "-o", out["mem"], TARGETS / "mem_page.c", "-lpthread"], check=True)
    return out


def recipe(tmp: Path, name: str, body: str) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(f"version: 1\nname: {name}\ndescription: benchmark\n{body}")
    return path


def run_instrument(tmp: Path, recipe_path: Path, *command: str, options: tuple[str, ...] = ()) -> float:
    return timed([*instrument_exe(), "run", str(recipe_path), "--format", "jsonl", "-o", str(tmp / "o.jsonl"),
                  *options, "--", *command], pin=False)


def per_hit(total: float, fixed: float, hits: int) -> float:
    """Microseconds per hit once the fixed cost (start-up, symbols; run with 0 hits) is off."""
    return (total - fixed) / hits * 1e6


def bench_hardware(bins: dict[str, Path], hits: int, tmp: Path) -> None:
    addr = symbol_address(bins["loop"], "hit")
    r = recipe(tmp, "hw", "breakpoints:\n  - id: hit\n    at: hit\n    type: hardware\n"
               "    actions:\n      - log: {registers: [rdi]}\n")
    gdb_script = tmp / "hw.gdb"
    # gdb sets debug registers only in a live process: start it, then hbreak.
    gdb_script.write_text("set pagination off\nstarti\nhbreak hit\ncommands\nsilent\ninfo registers rdi\n"
                          "continue\nend\ncontinue\n")
    floor = [sys.executable, str(HERE / "hw_floor.py")]
    target = [hex(addr), str(bins["loop"])]
    # The ptrace loops run on one CPU: the C and Python loops under taskset, instrument
    # --no-sampling pinning itself (its default when hits stop the target). The floors
    # are Python loops with no engine at all. Plain instrument samples the hits (this
    # recipe only logs a register): the target never stops, and it runs on a second CPU.
    commands: dict[str, Callable[[int], float]] = {
        "c-ptrace": lambda n: timed([str(bins["ref"]), *target, str(n)]),
        "py-floor": lambda n: timed([*floor, *target, str(n)]),
        "py-floor+record": lambda n: timed([*floor, "--record", *target, str(n)]),
        "instrument": lambda n: run_instrument(tmp, r, str(bins["loop"]), str(n)),
        "--no-sampling": lambda n: run_instrument(tmp, r, str(bins["loop"]), str(n), options=("--no-sampling",)),
    }
    if shutil.which("gdb"):
        commands["gdb"] = lambda n: timed(["gdb", "-batch", "-nx", "-x", str(gdb_script), "--args",
                                           str(bins["loop"]), str(n)])
    # Fixed costs (start-up, symbols) come off; each figure is the best of three
    # runs, as this VM's timings wander by a third between runs.
    per = {}
    for name, run in commands.items():
        fixed = min(run(0) for _ in range(3))
        per[name] = per_hit(min(run(hits) for _ in range(3)), fixed, hits)
    print(f"hardware execute breakpoint (DR0), {hits} hits, best of 3:")
    for name, us in per.items():
        print(f"  {name:<16} {us:7.1f} us/hit ({1e6 / us:8.0f} hits/s)  {us / per['c-ptrace']:5.2f}x the C loop")
    print(f"  instrument --no-sampling over the Python floor with records: "
          f"{per['--no-sampling'] - per['py-floor+record']:+.1f} us/hit")


def bench_threads(bins: dict[str, Path], calls: int, tmp: Path) -> None:
    threads = 8
    total_hits = threads * calls
    for kind, options in (("soft", ()), ("hardware", ()), ("hardware", ("--no-sampling",))):
        r = recipe(tmp, f"threads-{kind}", f"breakpoints:\n  - id: work\n    at: work\n    type: {kind}\n"
                   "    actions:\n      - log: '{arg0}'\n")
        fixed = min(run_instrument(tmp, r, str(bins["threads"]), str(threads), "0", options=options)
                    for _ in range(2))
        total = run_instrument(tmp, r, str(bins["threads"]), str(threads), str(calls), options=options)
        us = per_hit(total, fixed, total_hits)
        print(f"{kind} breakpoint{' ' + ' '.join(options) if options else ''}, {threads} threads x {calls} calls: "
              f"{total:6.2f} s, {us:6.1f} us/hit ({1e6 / us:7.0f} hits/s)")


def bench_memory(bins: dict[str, Path], rounds: int, tmp: Path) -> None:
    # Each round of mem_page: 3 accesses inside the window (reported) and 4 outside it
    # on the same page (silent): every one is a fault, an open/step/close and a resume.
    r = recipe(tmp, "mem", "breakpoints:\n  - id: arm\n    at: ready\n    actions:\n      - enable: win\n"
               "  - id: win\n    at: u64[watch_ptr]\n    type: memory\n    size: 8\n    enabled: false\n")
    none = recipe(tmp, "none", "breakpoints:\n  - id: arm\n    at: ready\n")
    base = min(run_instrument(tmp, none, str(bins["mem"]), "global", str(rounds)) for _ in range(2))
    total = run_instrument(tmp, r, str(bins["mem"]), "global", str(rounds))
    faults = 7 * rounds
    us = per_hit(total, base, faults)     # base: the same run with nothing armed
    print(f"memory breakpoint, {rounds} rounds = {3 * rounds} hits + {4 * rounds} silent faults: {total:6.2f} s")
    print(f"  {us:7.1f} us per guarded access (fault + mprotect open + step + mprotect close + resume)")
    print(f"  {(total - base) / (3 * rounds) * 1e6:7.1f} us per reported hit, silent faults included")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hits", type=int, default=20000)
    ap.add_argument("--only", default="hw,threads,memory")
    args = ap.parse_args()
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        bins = build(tmp)
        if "hw" in only:
            bench_hardware(bins, args.hits, tmp)
        if "threads" in only:
            bench_threads(bins, max(args.hits // 8, 1), tmp)
        if "memory" in only:
            bench_memory(bins, max(args.hits // 20, 1), tmp)


if __name__ == "__main__":
    main()
