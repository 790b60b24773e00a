#!/usr/bin/env python3
"""Sampled soft breakpoints (uprobes) against stopped ones and the C ptrace loop, in one run.

    python bench/uprobe.py             # 50,000 hits of a register-log breakpoint
    python bench/uprobe.py --hits 200000 --runs 5

Per-hit µs: (time with N hits - time with 0 hits) / N, best of --runs, for the
same recipe on the same program: `instrument run --sample-after 0` (a uprobe
perf event from the first hit, no stop), the default (adaptive: an int3 stop
for the first 1,024 hits, then the uprobe; its zero-hit run opens no uprobe, so
the uprobe's close counts in its per-hit figure), `instrument run
--no-sampling` (an int3 stop per hit) and bench/ptrace_ref.c (the cheapest int3 loop in C, pinned to one CPU as
HOUSE.md rule 12 says). Also the CPU time (user + system, tracer and target)
per hit, which a loaded machine disturbs less than the wall clock. Prints
ratios to the C loop; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
from pathlib import Path
from typing import Callable

from run import build, instrument_exe, symbol_address, timed

RECIPE = ("version: 1\nname: bench\ndescription: soft breakpoint with a register log\n"
          "breakpoints:\n  - id: hit\n    at: hit\n    actions:\n      - log: {registers: [rdi]}\n")


def with_cpu(run: Callable[[int], float]) -> Callable[[int], tuple[float, float]]:
    """`run` timed on the wall clock and in CPU seconds of the processes it waited for."""
    def measured(n: int) -> tuple[float, float]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = run(n)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return measured


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hits", type=int, default=50000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        bins = build(tmp)
        recipe = tmp / "bench.yaml"
        recipe.write_text(RECIPE)
        out = tmp / "o.jsonl"
        addr = symbol_address(bins["loop"], "hit")

        def inst(*extra: str):
            return lambda n: timed([*instrument_exe(), "run", str(recipe), *extra, "--format", "jsonl",
                                    "-o", str(out), "--", str(bins["loop"]), str(n)], pin=False)

        commands = {
            "c-ptrace": lambda n: timed([str(bins["ref"]), hex(addr), str(bins["loop"]), str(n)]),
            "sampled soft": inst("--sample-after", "0"),   # a uprobe from the first hit
            "default soft (adaptive)": inst(),
            "stopped soft": inst("--no-sampling"),
        }
        per: dict[str, float] = {}
        cpu: dict[str, float] = {}
        print(f"soft breakpoint, {args.hits} hits, best of {args.runs}:")
        for name, plain in commands.items():
            command = with_cpu(plain)
            zero = [command(0) for _ in range(args.runs)]
            full = [command(args.hits) for _ in range(args.runs)]
            fixed, total = min(w for w, _ in zero), min(w for w, _ in full)
            per[name] = (total - fixed) / args.hits * 1e6
            cpu[name] = (min(c for _, c in full) - min(c for _, c in zero)) / args.hits * 1e6
            note = ""
            if name != "c-ptrace":
                records = [json.loads(line) for line in out.read_text().splitlines()]
                hits = sum(1 for r in records if r["event"] == "breakpoint")
                note = f"  ({hits} records{'' if hits == args.hits else ': NOT EVERY HIT'})"
            print(f"  {name:<23} {total:7.3f} s total, {fixed:6.3f} s fixed, {per[name]:7.2f} us/hit, "
                  f"{cpu[name]:7.2f} us CPU/hit{note}")
        for name in ("sampled soft", "default soft (adaptive)", "stopped soft"):
            print(f"  {name} / C loop = {per[name] / per['c-ptrace']:.2f}x (CPU: {cpu[name] / cpu['c-ptrace']:.2f}x)")
        print(f"  stopped / sampled = {per['stopped soft'] / per['sampled soft']:.2f}x")


if __name__ == "__main__":
    main()
