#!/usr/bin/env python3
"""How promptly instrument gives up waiting: the figures the test suite checks only as behaviour.

    python bench/latency.py              # everything
    python bench/latency.py --only wait,timeout,stderr --runs 5

- wait: how long LinuxBackend.wait_event(timeout=0.1) takes to return None while
  the target runs on (tests/integration/test_linux_backend.py checks that it does);
- timeout: how long after `--timeout 2` a session whose sampled hardware breakpoint
  is hit nonstop ends (test_sampled_hw.py checks that the target is killed then);
- stderr: how long a session lasts whose target leaves a background child holding
  stderr open (test_run.py checks that it ends while the child still runs).
Prints milliseconds (median and worst of the runs); nothing here asserts a time
(HOUSE.md rule 11).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import ROOT, instrument_exe  # bench/ is sys.path[0]

sys.path.insert(0, str(ROOT))

TARGETS = ROOT / "tests" / "targets"
HEADER = "version: 1\nname: latency\ndescription: benchmark\n"


def build(tmp: Path) -> dict[str, Path]:
    out = {"sleeper": tmp / "sleeper", "spin": tmp / "spin"}
    for name, path in out.items():
        subprocess.run(["gcc", "-O0", "-g", "-o", path, TARGETS / f"{name}.c"], check=True)
    return out


def report(what: str, samples_ms: list[float]) -> None:
    print(f"{what}: median {statistics.median(samples_ms):.1f} ms, worst {max(samples_ms):.1f} ms "
          f"({len(samples_ms)} runs)")


def bench_wait(bins: dict[str, Path], runs: int) -> None:
    from instrument.backend import get_backend
    from instrument.backend.base import SpawnOptions

    samples: list[float] = []
    backend = get_backend()
    quiet, saved = os.open(os.devnull, os.O_WRONLY), os.dup(1)
    os.dup2(quiet, 1)                        # the sleepers print their pid
    try:
        for _ in range(runs):
            pid = backend.spawn(SpawnOptions(argv=(str(bins["sleeper"]), "100")))
            ev = backend.wait_event(timeout=10)
            while ev is not None:            # CREATE_PROCESS, then the LOAD_DLL burst
                backend.resume(ev.tid)
                started = time.perf_counter()
                ev = backend.wait_event(timeout=0.1)
            samples.append((time.perf_counter() - started) * 1e3)
            backend.kill(pid)
    finally:
        backend.close()
        os.dup2(saved, 1)
        os.close(quiet)
        os.close(saved)
    report("wait_event(timeout=0.1) with nothing to report returned after", samples)


def run_jsonl(tmp: Path, body: str, *command: str, options: tuple[str, ...] = ()) -> tuple[float, list[dict]]:
    recipe, out = tmp / "r.yaml", tmp / "out.jsonl"
    recipe.write_text(HEADER + body)
    started = time.perf_counter()
    subprocess.run([*instrument_exe(), "run", str(recipe), "--format", "jsonl", "-o", str(out), *options,
                    "--", *command], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False)
    elapsed = time.perf_counter() - started
    return elapsed, [json.loads(line) for line in out.read_text().splitlines()]


def bench_timeout(bins: dict[str, Path], runs: int, tmp: Path) -> None:
    body = "breakpoints:\n  - id: hit\n    at: hit\n    type: hardware\n    actions:\n      - log: '{rdi}'\n"
    samples: list[float] = []
    fixed: list[float] = []
    for _ in range(runs):
        elapsed, recs = run_jsonl(tmp, body, str(bins["spin"]), "30", options=("--timeout", "2"))
        samples.append((elapsed - 2.0) * 1e3)
        if recs[-1].get("ended") != "timeout":
            print(f"  (a run ended {recs[-1].get('ended')!r}, not by the timeout)")
        elapsed, _ = run_jsonl(tmp, body, str(bins["spin"]), "0")     # the same session, ending at once
        fixed.append(elapsed * 1e3)
    report("a sampled session hit nonstop ended after its 2 s --timeout by", samples)
    report("  the fixed cost inside that (start-up, symbols, clean-up: spin 0)", fixed)


def bench_stderr(runs: int, tmp: Path) -> None:
    script = "echo bye >&2; sleep 30 >/dev/null & echo $!; exit 0"
    body = "events:\n  debug_string:\n    - log: '{text}'\n"
    samples: list[float] = []
    summary: list[float] = []
    for _ in range(runs):
        recipe, out = tmp / "r.yaml", tmp / "out.jsonl"
        recipe.write_text(HEADER + body)
        started = time.perf_counter()
        proc = subprocess.run([*instrument_exe(), "run", str(recipe), "--format", "jsonl", "-o", str(out),
                               "--", "/bin/sh", "-c", script], capture_output=True, text=True, check=False)
        samples.append((time.perf_counter() - started) * 1e3)
        summary.append(json.loads(out.read_text().splitlines()[-1])["time"] * 1e3)
        os.kill(int(proc.stdout.split()[0]), signal.SIGKILL)
    report("a session whose target's background child holds stderr lasted (whole command)", samples)
    report("  its summary's time", summary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default="wait,timeout,stderr")
    args = parser.parse_args()
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        bins = build(tmp)
        if "wait" in only:
            bench_wait(bins, args.runs)
        if "timeout" in only:
            bench_timeout(bins, args.runs, tmp)
        if "stderr" in only:
            bench_stderr(args.runs, tmp)


if __name__ == "__main__":
    main()
