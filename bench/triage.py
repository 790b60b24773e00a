#!/usr/bin/env python3
"""Per-crash time of `instrument triage` (--jobs 1 and --jobs 2) against gdb on the same crashing inputs.

    python bench/triage.py                                   # 60 inputs, gdb -batch bt only
    python bench/triage.py --exploitable PATH/exploitable.py # and gdb + the exploitable plugin
    python bench/triage.py --inputs 200 --gdb-inputs 30

Every figure comes from this run, on this machine (HOUSE.md rule 11):

- `instrument triage --inputs DIR --jobs J` over a folder of crashing inputs (six
  crash kinds in turn), wall time divided by the number of inputs, CLI start-up,
  classification, bucketing and the JSON report included;
- `gdb -nx -batch -ex run -ex bt` once per input, on the first --gdb-inputs of them;
- `gdb -nx -batch -ex 'source exploitable.py' -ex run -ex exploitable` likewise,
  when --exploitable names the plugin (jfoote/exploitable is not on PyPI nor in
  Debian: point at a checkout's exploitable/exploitable.py; without it the bench
  says so and prints the bt ratio alone).

The gdb references run with the same parallelism as the triage run they are
compared with (two gdb processes at a time against --jobs 2), so a ratio never
credits the second core to one side only. The measurements are interleaved in
--rounds rounds (the whole folder through triage, then a share of the gdb
inputs through each gdb reference, and again), so a burst of load from the
machine's other users falls on both sides of a ratio, not on whichever ran
during it. Prints milliseconds per crash, the ratios and the load average;
asserts nothing. Beside the wall-time ratios it prints CPU-time ones (user +
system of each side's whole process tree: the tool, gdb, the targets), which
the other users of a shared machine disturb far less than wall time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "targets" / "triage_input.c"
KINDS = ("null-read", "null-write", "wild-write", "div", "abort", "double-free")


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


def triage_env(tmp: Path) -> dict[str, str]:
    """The environment of an installed tool: Python keeps its compiled modules (here in
    a cache of this run's own; a development shell may have PYTHONDONTWRITEBYTECODE)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    return env


def _children_cpu() -> float:
    """CPU seconds of every reaped child process so far (each reaps its own: the targets
    count into the tool's or gdb's figure, and that into ours)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Clock:
    """Wall and CPU seconds spent in the `with` blocks, summed."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> "Clock":
        self._start = (time.perf_counter(), _children_cpu())
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._start[0]
        self.cpu += _children_cpu() - self._start[1]


def time_triage(program: Path, inputs: Path, jobs: int, out: Path, env: dict[str, str]) -> float:
    exe = Path(sys.executable).parent / "instrument"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "instrument"]
    start = time.perf_counter()
    proc = subprocess.run([*cmd, "triage", "--inputs", str(inputs), "--jobs", str(jobs), "--quiet",
                           "-o", str(out), "--", str(program), "@@"], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 1:
        raise SystemExit(f"triage failed ({proc.returncode}): {proc.stderr}")
    return elapsed


def gdb_command(program: Path, path: Path, plugin: Path | None) -> list[str]:
    if plugin is None:
        return ["gdb", "-nx", "-batch", "-ex", "run", "-ex", "bt", "--args", str(program), str(path)]
    return ["gdb", "-nx", "-batch", "-ex", f"source {plugin}", "-ex", "run", "-ex", "exploitable",
            "--args", str(program), str(path)]


def time_gdb(program: Path, files: Sequence[Path], jobs: int, plugin: Path | None) -> float:
    """Wall time of one gdb per input, `jobs` at a time."""
    def one(path: Path) -> str:
        return subprocess.run(gdb_command(program, path, plugin), capture_output=True, text=True,
                              check=False).stdout

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        outputs = list(pool.map(one, files))
    elapsed = time.perf_counter() - start
    if plugin is not None and not any("Exploitability Classification" in o for o in outputs):
        raise SystemExit(f"gdb + {plugin}: no classification in its output; is it the exploitable plugin?")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=60, help="How many crashing inputs (default 60, at least 50).")
    parser.add_argument("--gdb-inputs", type=int, default=12,
                        help="How many of them each gdb reference runs, per job count (default 12).")
    parser.add_argument("--rounds", type=int, default=3,
                        help="Interleaved rounds per job count (default 3): triage of the whole folder, "
                             "then 1/ROUNDS of the gdb inputs through each reference.")
    parser.add_argument("--exploitable", metavar="PATH", default=os.environ.get("EXPLOITABLE_PY"),
                        help="The exploitable plugin's exploitable.py (default: $EXPLOITABLE_PY).")
    args = parser.parse_args()
    if args.inputs < 50:
        parser.error("--inputs: at least 50 (the issue's folder size)")
    plugin = Path(args.exploitable).resolve() if args.exploitable else None
    if plugin is not None and not plugin.is_file():
        parser.error(f"--exploitable {args.exploitable}: no such file")
    have_gdb = shutil.which("gdb") is not None
    with tempfile.TemporaryDirectory(prefix="bench-triage-") as tmpdir:
        tmp = Path(tmpdir)
        program = build(tmp)
        inputs = make_inputs(tmp, args.inputs)
        files = sorted(inputs.iterdir())[:args.gdb_inputs]
        n = args.inputs
        env = triage_env(tmp)
        # Warm-up, untimed: compiled modules cached, the program and libc in the page cache.
        warm = tmp / "warm"
        warm.mkdir()
        shutil.copy(files[0], warm / files[0].name)
        time_triage(program, warm, 1, tmp / "warm.json", env)
        if have_gdb:
            time_gdb(program, files[:1], 1, plugin)
        rounds = max(1, min(args.rounds, len(files)))
        print(f"{n} crashing inputs ({', '.join(KINDS)} in turn); gdb references on {len(files)} of them; "
              f"{rounds} interleaved rounds; load average {_load()}")
        for jobs in (1, 2):
            ours, bt, expl = Clock(), Clock(), Clock()
            for r in range(rounds):
                share = files[r::rounds]
                with ours:
                    time_triage(program, inputs, jobs, tmp / f"jobs{jobs}.json", env)
                if have_gdb:
                    with bt:
                        time_gdb(program, share, jobs, None)
                    if plugin is not None:
                        with expl:
                            time_gdb(program, share, jobs, plugin)
            per = n * rounds
            print(f"--jobs {jobs}: instrument triage      {ours.wall / per * 1000:8.1f} ms per crash"
                  f"   (CPU {ours.cpu / per * 1000:6.1f} ms)")
            if not have_gdb:
                print("          gdb not found: no reference")
                continue
            for name, clock in (("gdb -batch run+bt", bt), ("gdb + exploitable", expl)):
                if clock is expl and plugin is None:
                    print("          gdb + exploitable       not measured: the plugin is not installed "
                          "(not on PyPI or in Debian; pass --exploitable PATH/exploitable.py)")
                    continue
                wall, cpu = clock.wall / len(files), clock.cpu / len(files)
                print(f"          {name:22s}  {wall * 1000:8.1f} ms per crash  -> {wall / (ours.wall / per):6.1f}x"
                      f"   (CPU {cpu * 1000:6.1f} ms -> {cpu / (ours.cpu / per):6.1f}x)")
        print(f"load average at the end {_load()}")


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"

if __name__ == "__main__":
    main()
