#!/usr/bin/env python3
"""Sampled soft breakpoints (uprobes) against stopped ones and the C ptrace loop, in one run.

    python bench/uprobe.py             # 20,000 hits of a register-log breakpoint
    python bench/uprobe.py --hits 50000

Per-hit µs: (time with N hits - time with 0 hits) / N, best of --runs, for the
same recipe on the same program: `instrument run` sampled (the default: a
uprobe perf event, no stop), `instrument run --no-sampling` (an int3 stop per
hit) and bench/ptrace_ref.c (the cheapest int3 loop in C, pinned to one CPU as
HOUSE.md rule 12 says). Prints ratios to the C loop; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from run import build, instrument_exe, symbol_address, timed

RECIPE = ("version: 1\nname: bench\ndescription: soft breakpoint with a register log\n"
          "breakpoints:\n  - id: hit\n    at: hit\n    actions:\n      - log: {registers: [rdi]}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hits", type=int, default=20000)
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
            "sampled soft": inst(),
            "stopped soft": inst("--no-sampling"),
        }
        per: dict[str, float] = {}
        print(f"soft breakpoint, {args.hits} hits, best of {args.runs}:")
        for name, command in commands.items():
            fixed = min(command(0) for _ in range(args.runs))
            total = min(command(args.hits) for _ in range(args.runs))
            per[name] = (total - fixed) / args.hits * 1e6
            note = ""
            if name != "c-ptrace":
                records = [json.loads(line) for line in out.read_text().splitlines()]
                hits = sum(1 for r in records if r["event"] == "breakpoint")
                note = f"  ({hits} records{'' if hits == args.hits else ': NOT EVERY HIT'})"
            print(f"  {name:<13} {total:7.3f} s total, {fixed:6.3f} s fixed, {per[name]:7.2f} us/hit{note}")
        c = per["c-ptrace"]
        for name in ("sampled soft", "stopped soft"):
            print(f"  {name} / C loop = {per[name] / c:.2f}x")
        print(f"  stopped / sampled = {per['stopped soft'] / per['sampled soft']:.2f}x")


if __name__ == "__main__":
    main()
