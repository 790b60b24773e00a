#!/usr/bin/env python3
"""Per-crash time of `instrument triage` (one and two jobs) against gdb on the same crashing inputs.

    python bench/triage.py                # 60 inputs
    python bench/triage.py --inputs 200

The gdb reference runs `gdb -batch -ex run -ex bt` once per input, which is
what gdb with the `exploitable` plugin does before its own analysis (the
plugin is not on PyPI; with it, this machine measured about 0.42 s per
crash). Prints seconds per crash and the ratios; asserts nothing (HOUSE.md
rule 11).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "targets" / "triage_input.c"
KINDS = ("null-read", "null-write", "wild-write", "div", "abort", "double-free")
GDB_EXPLOITABLE_REFERENCE = 0.42     # s per crash, gdb + exploitable on this machine


def build(tmp: Path) -> Path:
    out = tmp / "triage_input"
    subprocess.run(["gcc", "-g", "-O0", "-o", str(out), str(SOURCE), "-lpthread"], check=True)
    return out


def make_inputs(tmp: Path, count: int) -> Path:
    folder = tmp / "crashes"
    folder.mkdir()
    for i in range(count):
        (folder / f"id:{i:06d}").write_text(KINDS[i % len(KINDS)] + "\n")
    return folder


def time_triage(program: Path, inputs: Path, jobs: int, out: Path) -> float:
    exe = Path(sys.executable).parent / "instrument"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "instrument"]
    start = time.perf_counter()
    proc = subprocess.run([*cmd, "triage", "--inputs", str(inputs), "--jobs", str(jobs), "--quiet",
                           "-o", str(out), "--", str(program), "@@"], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 1:
        raise SystemExit(f"triage failed ({proc.returncode}): {proc.stderr}")
    return elapsed


def time_gdb(program: Path, inputs: Path, limit: int) -> tuple[float, int]:
    files = sorted(inputs.iterdir())[:limit]
    start = time.perf_counter()
    for path in files:
        subprocess.run(["gdb", "-nx", "-batch", "-ex", "run", "-ex", "bt", "--args", str(program), str(path)],
                       capture_output=True, text=True, check=False)
    return time.perf_counter() - start, len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=60, help="How many crashing inputs (default 60).")
    parser.add_argument("--gdb-inputs", type=int, default=20, help="How many of them gdb runs (default 20).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-triage-") as tmpdir:
        tmp = Path(tmpdir)
        program = build(tmp)
        inputs = make_inputs(tmp, args.inputs)
        n = args.inputs
        one = time_triage(program, inputs, 1, tmp / "one.json") / n
        two = time_triage(program, inputs, 2, tmp / "two.json") / n
        print(f"instrument triage --jobs 1: {one * 1000:7.1f} ms per crash ({n} crashes, CLI start-up included)")
        print(f"instrument triage --jobs 2: {two * 1000:7.1f} ms per crash")
        if shutil.which("gdb"):
            total, count = time_gdb(program, inputs, args.gdb_inputs)
            gdb = total / count
            print(f"gdb -batch -ex run -ex bt:  {gdb * 1000:7.1f} ms per crash ({count} crashes)")
            print(f"speed-up, one job:  {gdb / one:5.1f}x over gdb bt, "
                  f"{GDB_EXPLOITABLE_REFERENCE / one:5.1f}x over gdb+exploitable ({GDB_EXPLOITABLE_REFERENCE} s)")
            print(f"speed-up, two jobs: {gdb / two:5.1f}x over gdb bt, "
                  f"{GDB_EXPLOITABLE_REFERENCE / two:5.1f}x over gdb+exploitable")
        else:
            print(f"gdb not found; gdb+exploitable reference {GDB_EXPLOITABLE_REFERENCE} s per crash: "
                  f"{GDB_EXPLOITABLE_REFERENCE / one:.1f}x (one job)")


if __name__ == "__main__":
    main()
