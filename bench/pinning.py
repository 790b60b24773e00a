#!/usr/bin/env python3
"""What pinning tracer and target to one CPU costs a multi-threaded target, measured in one run.

    python bench/pinning.py                 # 4 threads, 30M calls each, best of 3
    python bench/pinning.py --threads 4 --calls 30000000 --runs 3

Times tests/targets/threads.c (T threads, each calling work() M times) untraced,
then under `instrument run` with one breakpoint hit once (on main: the cost is
scheduling, not stops), pinned (the default) and with --no-pin; and a run whose
breakpoint is hit in every thread (work, `limit: 20000`) both ways, where pinning
makes the stops cheaper. Prints seconds and ratios to the untraced run; nothing
here asserts a time (HOUSE.md rule 11).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from run import ROOT, best, instrument_exe  # bench/ is sys.path[0]

ONE_HIT = "version: 1\nbreakpoints:\n  - {at: main, actions: [{log: start}]}\n"
MANY_HITS = "version: 1\nbreakpoints:\n  - {at: work, limit: 20000, actions: [{log: {registers: [rdi]}}]}\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--calls", type=int, default=30_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        target = tmp / "threads"
        subprocess.run(["gcc", "-O0", "-g", "-pthread", "-o", str(target), str(ROOT / "tests/targets/threads.c")],
                       check=True)
        argv = [str(target), str(args.threads), str(args.calls)]
        (tmp / "one.yaml").write_text(ONE_HIT)
        (tmp / "many.yaml").write_text(MANY_HITS)
        out = ["--format", "jsonl", "-o", str(tmp / "out.jsonl")]
        untraced = best(argv, args.runs)
        print(f"{args.threads} threads x {args.calls} calls of work(), best of {args.runs}:")
        print(f"  untraced                                {untraced:7.2f} s")
        for label, recipe in (("one hit (on main)", "one.yaml"), ("20,000 hits (on work)", "many.yaml")):
            for pin_label, pin in (("pinned", []), ("--no-pin", ["--no-pin"])):
                t = best([*instrument_exe(), "run", str(tmp / recipe), *out, *pin, "--", *argv], args.runs)
                print(f"  instrument, {label:<22} {pin_label:<9} {t:7.2f} s  ({t / untraced:.2f}x untraced)")


if __name__ == "__main__":
    main()
