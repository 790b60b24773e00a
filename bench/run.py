#!/usr/bin/env python3
"""Benchmarks of instrument against gdb and a minimal C ptrace loop, measured in the same run.

    python bench/run.py            # everything
    python bench/run.py --hits 20000 --only soft,cli

Prints hits per second and ratios. Numbers go in the README's performance
section; nothing here asserts a time (HOUSE.md rule 11).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOOP_C = ROOT / "tests" / "targets" / "loop.c"


def build(tmp: Path) -> dict[str, Path]:
    out = {"loop": tmp / "loop", "ref": tmp / "ptrace_ref"}
    subprocess.run(["gcc", "-O0", "-g", "-no-pie", "-fno-pie", "-o", out["loop"], LOOP_C], check=True)
    subprocess.run(["gcc", "-O2", "-o", out["ref"], HERE / "ptrace_ref.c"], check=True)
    return out


def symbol_address(binary: Path, name: str) -> int:
    nm = subprocess.run(["nm", str(binary)], capture_output=True, text=True, check=True).stdout
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16)
    raise SystemExit(f"{name} not found in {binary}")


def timed(cmd: list[str], pin: bool = True, check_status: bool = True, **kw) -> float:
    if pin:
        cmd = ["taskset", "-c", "0", *cmd]
    start = time.perf_counter()
    subprocess.run(cmd, check=check_status, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - start


def best(cmd: list[str], runs: int) -> float:
    """The fastest of `runs` wall times of cmd (unpinned): the least disturbed by the load."""
    return min(timed(cmd, pin=False) for _ in range(runs))


def instrument_exe() -> list[str]:
    exe = Path(sys.executable).parent / "instrument"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "instrument"]


def bench_soft(bins: dict[str, Path], hits: int, tmp: Path) -> None:
    addr = symbol_address(bins["loop"], "hit")
    recipe = tmp / "bench.yaml"
    recipe.write_text(
        "version: 1\nname: bench\ndescription: soft breakpoint with a register log\n"
        "breakpoints:\n  - id: hit\n    at: hit\n    actions:\n      - log: {registers: [rdi]}\n")
    gdb_script = tmp / "bench.gdb"
    gdb_script.write_text("break hit\ncommands\nsilent\ninfo registers rdi\ncontinue\nend\nrun\n")
    commands = {
        "c-ptrace": lambda n: timed([str(bins["ref"]), hex(addr), str(bins["loop"]), str(n)]),
        "instrument": lambda n: timed([*instrument_exe(), "run", str(recipe), "--format", "jsonl",
                                       "-o", str(tmp / "o.jsonl"), "--", str(bins["loop"]), str(n)], pin=False),
    }
    if shutil.which("gdb"):
        commands["gdb"] = lambda n: timed(["gdb", "-batch", "-nx", "-x", str(gdb_script), "--args",
                                           str(bins["loop"]), str(n)])
    # Each tool's fixed cost (start-up, symbol loading) is measured with 0 hits and
    # taken off, so the per-hit figures compare the steady state.
    fixed = {name: min(run(0) for _ in range(3)) for name, run in commands.items()}
    results = {name: run(hits) for name, run in commands.items()}
    lines = sum(1 for line in open(tmp / "o.jsonl") if '"breakpoint"' in line)
    print(f"soft breakpoint, {hits} hits (instrument wrote {lines} hit records):")
    per = {}
    for name, secs in results.items():
        per[name] = (secs - fixed[name]) / hits * 1e6
        print(f"  {name:<11} {secs:7.3f} s total, {fixed[name]:6.3f} s fixed, {per[name]:7.1f} us/hit"
              f"  ({1e6 / per[name]:8.0f} hits/s)")
    print(f"  per hit: instrument / C loop = {per['instrument'] / per['c-ptrace']:.2f}x"
          f"   (totals: {results['instrument'] / results['c-ptrace']:.2f}x)")
    if "gdb" in per:
        print(f"  per hit: gdb / instrument    = {per['gdb'] / per['instrument']:.2f}x"
              f"   (totals: {results['gdb'] / results['instrument']:.2f}x)")


def bench_cli(tmp: Path) -> None:
    recipe = tmp / "big.yaml"
    bps = "".join(f"  - id: b{i}\n    at: {0x401000 + i * 16}\n    when: \"arg0 > {i}\"\n    actions:\n      - log: \"hit {{arg0:#x}}\"\n"
                  for i in range(200))
    recipe.write_text(f"version: 1\nname: big\ndescription: 200 breakpoints\nbreakpoints:\n{bps}")
    for label, args in (("--help", ["--help"]), ("validate 200 breakpoints", ["validate", str(recipe)])):
        best = min(timed([*instrument_exe(), *args], pin=False) for _ in range(5))
        print(f"  instrument {label:<26} {best * 1000:7.1f} ms (best of 5)")


def bench_crash(tmp: Path, runs: int = 10) -> None:
    """Time to a full crash record (frames, registers, disassembly, analysis) vs gdb's bt."""
    prog = tmp / "crash_deep"
    subprocess.run(["gcc", "-g", "-O2", "-fomit-frame-pointer", "-o", prog,
                    ROOT / "tests" / "targets" / "crash_deep.c"], check=True)
    recipe = tmp / "crash.yaml"
    recipe.write_text("version: 1\nname: crash\ndescription: crash record only\n")
    inst = min(timed([*instrument_exe(), "run", str(recipe), "--format", "jsonl", "-o", str(tmp / "c.jsonl"),
                      "--", str(prog)], pin=False, check_status=False) for _ in range(runs))
    print(f"crash record (best of {runs}):")
    print(f"  instrument run      {inst * 1000:7.1f} ms per crash")
    if shutil.which("gdb"):
        gdb = min(timed(["gdb", "-batch", "-nx", "-ex", "run", "-ex", "bt", str(prog)], pin=False)
                  for _ in range(runs))
        print(f"  gdb -batch run+bt   {gdb * 1000:7.1f} ms per crash")
        print(f"  ratio gdb / instrument: {gdb / inst:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hits", type=int, default=20000)
    ap.add_argument("--only", default="cli,soft,crash")
    args = ap.parse_args()
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        bins = build(tmp)
        if "cli" in only:
            print("CLI start-up:")
            bench_cli(tmp)
        if "soft" in only:
            bench_soft(bins, args.hits, tmp)
        if "crash" in only:
            bench_crash(tmp)


if __name__ == "__main__":
    main()
