#!/usr/bin/env python3
"""Every figure in one run: per-hit cost of instrument, gdb and bpftrace against a minimal C ptrace loop.

    python bench/all.py                  # a few minutes
    python bench/all.py --hits 20000     # steadier, slower
    python bench/all.py --only soft,startup

Each line is microseconds per hit and the ratio to the C soft-breakpoint loop
(bench/ptrace_ref.c, pinned to CPU 0) measured in this same run, so a loaded
machine moves both: first wall-clock time, then CPU time (user + system of the
tool and its target, from getrusage), which a loaded machine inflates far less.
A tool's fixed cost (start-up, symbols) is measured with 0 hits and taken off;
each figure is the best of --repeat runs. Every run logs
rdi at each hit of `hit` in tests/targets/loop.c, as the same printf:
instrument `log: {registers: [rdi]}`, gdb `commands silent; printf; continue`
(started with `starti`), bpftrace `uprobe ... { printf(); }`. Nothing here
asserts a time (HOUSE.md rule 11); README's Performance section quotes a run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from run import HERE, ROOT, instrument_exe, symbol_address  # bench/ is sys.path[0]

TARGETS = ROOT / "tests" / "targets"
LOG = "    actions:\n      - log: {registers: [rdi]}\n"

Runner = Callable[[int], tuple[float, float]]


def timed(cmd: list[str], pin: bool = True, check_status: bool = True) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its children) of one run."""
    if pin:
        cmd = ["taskset", "-c", "0", *cmd]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=check_status, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def build(tmp: Path) -> dict[str, Path]:
    out = {"loop": tmp / "loop", "ref": tmp / "ptrace_ref", "threads": tmp / "threads"}
    subprocess.run(["gcc", "-O0", "-g", "-no-pie", "-fno-pie", "-o", out["loop"], TARGETS / "loop.c"], check=True)
    subprocess.run(["gcc", "-O2", "-o", out["ref"], HERE / "ptrace_ref.c"], check=True)
    subprocess.run(["gcc", "-O0", "-g", "-o", out["threads"], TARGETS / "threads.c", "-lpthread"], check=True)
    return out


def recipe(tmp: Path, name: str, body: str) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(f"version: 1\nname: {name}\ndescription: benchmark\n{body}")
    return path


class Bench:
    def __init__(self, tmp: Path, bins: dict[str, Path], hits: int, repeat: int) -> None:
        self.tmp, self.bins, self.hits, self.repeat = tmp, bins, hits, repeat
        self.ref: tuple[float, float] | None = None
        self.errors: list[str] = []           # the summary's errors of the last instrument run

    def per_hit(self, run: Runner, hits: int) -> tuple[float, float]:
        """(wall, CPU) microseconds per hit."""
        fixed = [run(0) for _ in range(self.repeat)]
        total = [run(hits) for _ in range(self.repeat)]
        return tuple((min(t[i] for t in total) - min(f[i] for f in fixed)) / hits * 1e6  # type: ignore[return-value]
                     for i in (0, 1))

    def line(self, label: str, us: tuple[float, float] | None, note: str = "") -> None:
        if us is None:
            print(f"  {label:<34} {note}")
            return
        ref = self.ref or us
        print(f"  {label:<34} {us[0]:7.1f} us/hit {us[0] / ref[0]:5.2f}x   cpu {us[1]:6.1f} us/hit "
              f"{us[1] / ref[1]:5.2f}x{('  ' + note) if note else ''}", flush=True)

    def instrument(self, recipe_path: Path, *command: str, options: tuple[str, ...] = (),
                   expect: Callable[[int], int] | None = None) -> Runner:
        out = self.tmp / "o.jsonl"

        def run(n: int) -> tuple[float, float]:
            secs = timed([*instrument_exe(), "run", str(recipe_path), "--format", "jsonl", "-o", str(out),
                          *options, "--", *command, str(n)], pin=False)
            want = expect(n) if expect else n
            lines = open(out).read().splitlines()
            got = sum(1 for line in lines if line.startswith('{"event":"breakpoint"') and '"id":"hit"' in line)
            self.errors = json.loads(lines[-1]).get("errors", []) if lines else []
            if got != want:
                print(f"  (warning: {recipe_path.stem} wrote {got} hit records, expected {want})")
            return secs
        return run


def sampled_soft_available(recipe_path: Path, loop: Path) -> bool:
    """Whether this instrument samples soft breakpoints (uprobes): `explain` says so."""
    out = subprocess.run([*instrument_exe(), "explain", str(recipe_path), "--", str(loop)],
                         capture_output=True, text=True).stdout
    section = out.split("breakpoint", 1)[-1]
    return "sampled" in section and "uprobe" in out.lower()


def bench_soft_and_hard(b: Bench) -> None:
    loop = str(b.bins["loop"])
    addr = symbol_address(b.bins["loop"], "hit")
    n = b.hits
    print(f"{n} hits of `hit` (tests/targets/loop.c), each logging rdi; best of {b.repeat}; "
          "wall and CPU per hit, each against the C loop's:")
    b.ref = b.per_hit(lambda k: timed([str(b.bins["ref"]), hex(addr), loop, str(k)]), n)
    b.line("C ptrace loop (ptrace_ref.c)", b.ref)

    soft = recipe(b.tmp, "soft", "breakpoints:\n  - id: hit\n    at: hit\n" + LOG)
    hard = recipe(b.tmp, "hard", "breakpoints:\n  - id: hit\n    at: hit\n    type: hardware\n" + LOG)
    stopped = b.per_hit(b.instrument(soft, loop, options=("--no-sampling",)), n)
    b.line("instrument stopped soft", stopped)
    if sampled_soft_available(soft, b.bins["loop"]):
        # A uprobe from the first hit (--sample-after 0): the sampled path itself, its
        # uprobe's open and close in the fixed cost the zero-hit run measures. The default
        # (adaptive: an int3 for the first 1,024 hits, then the uprobe) is the next line;
        # its zero-hit run opens no uprobe, so its per-hit figure carries the close.
        sampled = b.per_hit(b.instrument(soft, loop, options=("--sample-after", "0")), n)
        # perf may refuse uprobes here (paranoia, no uprobe PMU): the hits were int3 stops then.
        refused = [e for e in b.errors if "stopped the target at every hit" in e]
        b.line("instrument sampled soft", sampled, f"(NOT sampled: {refused[0]})" if refused else "(uprobes)")
        b.line("instrument soft, default (adaptive)", b.per_hit(b.instrument(soft, loop), n))
    else:
        b.line("instrument sampled soft", None, "n/a (not built)")
    b.line("instrument sampled hardware", b.per_hit(b.instrument(hard, loop), n))
    b.line("instrument stopped hardware", b.per_hit(b.instrument(hard, loop, options=("--no-sampling",)), n))

    print("armed breakpoints (stopped soft; only `hit` is hit in the loop):")
    b.line("1 armed", stopped)
    many = recipe(b.tmp, "many", "breakpoints:\n  - id: hit\n    at: hit\n" + LOG
                  + "".join(f"  - at: libc.so.6!{name}\n" for name in cold_libc_functions(999)))
    b.line("1,000 armed", b.per_hit(b.instrument(many, loop, options=("--no-sampling",)), n))

    gdb = shutil.which("gdb")
    gdb_hits = max(400, n // 5)        # gdb costs ~0.3-1 ms a hit: fewer hits, the same per-hit figure
    for kind in ("break", "hbreak"):
        label = f"gdb {kind} + commands printf"
        if not gdb:
            b.line(label, None, "skipped: gdb not installed")
            continue
        script = b.tmp / f"{kind}.gdb"
        script.write_text(f"set pagination off\nstarti\n{kind} hit\ncommands\nsilent\nprintf \"%lx\\n\", $rdi\n"
                          "continue\nend\ncontinue\n")
        b.line(label, b.per_hit(lambda k: timed(["gdb", "-batch", "-nx", "-x", str(script), "--args", loop, str(k)],
                                                pin=False), gdb_hits), f"({gdb_hits} hits)")
    why = bpftrace_missing()
    if why:
        b.line("bpftrace uprobe + printf", None, f"skipped: {why}")
    else:
        prog = f'uprobe:{loop}:hit {{ printf("%lx\\n", reg("di")); }}'
        b.line("bpftrace uprobe + printf", b.per_hit(
            lambda k: timed(["bpftrace", "-e", prog, "-c", f"{loop} {k}"], pin=False), n))


def bench_threads(b: Bench) -> None:
    print("threads (stopped soft breakpoint on `work`, tests/targets/threads.c, logging rdi):")
    soft = recipe(b.tmp, "work", "breakpoints:\n  - id: hit\n    at: work\n" + LOG)
    for threads in (1, 8, 32):
        calls = max(1, b.hits // 2 // threads)
        runner = b.instrument(soft, str(b.bins["threads"]), str(threads), options=("--no-sampling",),
                              expect=lambda k, t=threads: k * t)
        wall, cpu = b.per_hit(runner, calls)
        us = (wall / threads, cpu / threads)
        b.line(f"{threads} thread{'s' if threads > 1 else ''} x {calls} calls", us)


def bench_startup(b: Bench, runs: int = 5) -> None:
    print(f"start-up (best of {runs}; each run starts the tool and the program to its end):")
    empty = recipe(b.tmp, "empty", "")
    one = recipe(b.tmp, "one", "breakpoints:\n  - id: hit\n    at: hit\n" + LOG)
    out = str(b.tmp / "s.jsonl")

    def best(cmd: list[str]) -> str:
        got = [timed(cmd, pin=False, check_status=False) for _ in range(runs)]
        return f"{min(g[0] for g in got) * 1000:7.1f} ms  (cpu {min(g[1] for g in got) * 1000:6.1f} ms)"

    rows = [("instrument --help", [*instrument_exe(), "--help"]),
            ("instrument run (no breakpoints) /bin/true", [*instrument_exe(), "run", str(empty), "-o", out, "--",
                                                            "/bin/true"]),
            ("instrument run one-hit recipe, loop 1", [*instrument_exe(), "run", str(one), "--format", "jsonl",
                                                        "-o", out, "--", str(b.bins["loop"]), "1"])]
    if shutil.which("gdb"):
        rows.append(("gdb -batch -ex run /bin/true", ["gdb", "-batch", "-nx", "-ex", "run", "/bin/true"]))
    for label, cmd in rows:
        print(f"  {label:<42} {best(cmd)}", flush=True)


def bpftrace_missing() -> str | None:
    if shutil.which("bpftrace") is None:
        return "bpftrace not installed (apt-get install bpftrace)"
    if os.geteuid() != 0:
        return "bpftrace needs root"
    probe = subprocess.run(["bpftrace", "-e", "BEGIN { exit(); }"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return "bpftrace cannot load a program here: " + (probe.stderr.strip().splitlines() or ["?"])[-1]
    return None


def cold_libc_functions(count: int) -> list[str]:
    """Exported libc functions that loop.c's run never calls (no printf/stdio/malloc/string
    machinery, no indirect functions), one name per address."""
    sys.path.insert(0, str(ROOT))
    from instrument.symbols import elfread

    libc = os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6")
    hot = ("_", "printf", "vfprintf", "fflush", "fwrite", "fputs", "fputc", "fclose", "fopen", "fileno",
           "flockfile", "funlockfile", "fstat", "fcntl", "str", "mem", "malloc", "free", "realloc", "calloc", "exit", "atexit",
           "pthread", "sig", "write", "read", "open", "close", "lseek", "mmap", "munmap", "brk", "sbrk",
           "isatty", "getenv", "secure", "setlocale", "wc", "abort", "raise", "dl", "tcache", "mbr", "btow")
    names: dict[int, str] = {}
    with open(libc, "rb") as f:
        h = elfread.read_headers(f)
        dynsym = next(s for s in h.sections if s.name == ".dynsym")
        for name, value, _size, info, shndx in elfread.symbols(f, h, dynsym):
            # STT_FUNC (2), global or weak: not STT_GNU_IFUNC (10), whose address is a resolver's
            if info not in (0x12, 0x22) or shndx == 0 or not value or name.startswith(hot):
                continue
            names.setdefault(value, name)
    picked = sorted(set(names.values()))
    if len(picked) < count:
        raise SystemExit(f"only {len(picked)} cold libc functions found")
    step = len(picked) / count
    return [picked[int(i * step)] for i in range(count)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hits", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure; the best counts (default 3)")
    ap.add_argument("--only", default="soft,threads,startup")
    args = ap.parse_args()
    only = set(args.only.split(","))
    started = time.monotonic()
    with open("/proc/loadavg") as f:
        print(f"load average at start: {' '.join(f.read().split()[:3])} ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        b = Bench(tmp, build(tmp), args.hits, args.repeat)
        if "soft" in only:
            bench_soft_and_hard(b)
        if "threads" in only:
            bench_threads(b)
        if "startup" in only:
            bench_startup(b)
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
