#!/usr/bin/env python3
"""What a `syscalls:` recipe naming one call costs a system-call-heavy program, against strace, in one run.

    python bench/syscalls.py                    # 200,000 getppid calls and one write, best of 3
    python bench/syscalls.py --calls 200000 --runs 3 --guard-rounds 20000

Times tests/targets/sys_heavy.c (N getppid calls, then one write) untraced; under
`instrument run` with a recipe that names only `write`, with the seccomp-bpf
filter (only that write stops the target) and with --no-seccomp (PTRACE_SYSCALL:
every call stops twice and is sorted by instrument); under `strace -f -e
trace=write` and `strace -f --seccomp-bpf -e trace=write`. instrument's fixed cost
(Python start-up, the target's symbols) is measured with N = 0 and shown apart.

Then what an armed memory breakpoint costs a system-call-heavy program: while a
page is guarded every call stops twice (PTRACE_SYSCALL, so that a call whose
buffer is on a guarded page can have it opened: backend/linux/guardcalls.py).
tests/targets/guard_syscall.c `loop` makes M getppid() and M read()s of
/dev/zero into a buffer off the page, under a recipe that arms a memory
breakpoint on the page and under the same recipe without it; then with
`follow_forks: true`, where the target gets a seccomp filter that stops only
the calls that take pointers (the getppid()s run on, each read() stops once).
Prints seconds and ratios; nothing here asserts a time (HOUSE.md rule 11).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from run import ROOT, best, instrument_exe  # bench/ is sys.path[0]

RECIPE = "version: 1\ntarget:\n  follow_forks: true\nsyscalls:\n  write:\n    on: exit\n"
GUARD = """version: 1
{target}breakpoints:
  - id: arm
    at: ready
    actions:
      - enable: win
  - id: win
    at: u64[watch_ptr]
    type: {type}
    access: write
    size: 8
    enabled: false
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--guard-rounds", type=int, default=20_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        target = tmp / "sys_heavy"
        subprocess.run(["gcc", "-O2", "-o", str(target), str(ROOT / "tests/targets/sys_heavy.c")], check=True)
        (tmp / "write.yaml").write_text(RECIPE)
        argv = [str(target), str(args.calls)]
        run = [*instrument_exe(), "run", str(tmp / "write.yaml"), "--format", "jsonl", "-o", str(tmp / "out.jsonl")]
        untraced = best(argv, args.runs)
        fixed = best([*run, "--", str(target), "0"], args.runs)
        rows = [("instrument, seccomp-bpf filter", best([*run, "--", *argv], args.runs)),
                ("instrument --no-seccomp (PTRACE_SYSCALL)", best([*run, "--no-seccomp", "--", *argv], args.runs))]
        if shutil.which("strace"):
            rows.append(("strace -f -e trace=write", best(["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=write",
                                                           *argv], args.runs)))
            rows.append(("strace -f --seccomp-bpf -e trace=write",
                         best(["strace", "-f", "-qq", "--seccomp-bpf", "-o", "/dev/null", "-e", "trace=write", *argv],
                              args.runs)))
        print(f"{args.calls} getppid calls + 1 write, a recipe naming only write, best of {args.runs}:")
        print(f"  untraced                                          {untraced * 1000:9.1f} ms")
        print(f"  instrument fixed cost (the same run with 0 calls) {fixed * 1000:9.1f} ms")
        by_label = dict(rows)
        for label, t in rows:
            extra = f", {(t - fixed) * 1000:.0f} ms past its fixed cost" if label.startswith("instrument") else ""
            print(f"  {label:<49} {t * 1000:9.1f} ms  ({t / untraced:6.1f}x untraced{extra})")
        seccomp, ptrace = by_label["instrument, seccomp-bpf filter"], by_label["instrument --no-seccomp (PTRACE_SYSCALL)"]
        print(f"  PTRACE_SYSCALL / seccomp-bpf (instrument): {ptrace / seccomp:.1f}x")
        if "strace -f -e trace=write" in by_label:
            print(f"  strace -f / instrument seccomp-bpf: {by_label['strace -f -e trace=write'] / seccomp:.1f}x; "
                  f"instrument seccomp-bpf / strace --seccomp-bpf: "
                  f"{seccomp / by_label['strace -f --seccomp-bpf -e trace=write']:.1f}x")
        guard_calls(tmp, args.guard_rounds, args.runs)


def guard_calls(tmp: Path, rounds: int, runs: int) -> None:
    """A system-call-heavy loop with and without an armed memory breakpoint."""
    target = tmp / "guard_syscall"
    subprocess.run(["gcc", "-O0", "-no-pie", "-o", str(target), str(ROOT / "tests/targets/guard_syscall.c")],
                   check=True)
    # `hardware` stands in for "no memory breakpoint": the same recipe, the same soft
    # breakpoint at ready(), a watch (DR0) that costs nothing while untouched.
    (tmp / "memory.yaml").write_text(GUARD.format(type="memory", target=""))
    (tmp / "plain.yaml").write_text(GUARD.format(type="hardware", target=""))
    (tmp / "filtered.yaml").write_text(GUARD.format(type="memory", target="target:\n  follow_forks: true\n"))
    argv = [str(target), "loop", str(rounds)]
    untraced = best(argv, runs)

    def under(recipe: str) -> float:
        return best([*instrument_exe(), "run", str(tmp / recipe), "--format", "jsonl", "-o", str(tmp / "g.jsonl"),
                     "--", *argv], runs)

    plain, memory, filtered = under("plain.yaml"), under("memory.yaml"), under("filtered.yaml")
    fixed = best([*instrument_exe(), "run", str(tmp / "memory.yaml"), "--format", "jsonl", "-o",
                  str(tmp / "g.jsonl"), "--", str(target), "loop", "0"], runs)
    calls = 2 * rounds
    print(f"{calls} system calls (getppid, read), a memory breakpoint armed on a page they never touch, "
          f"best of {runs}:")
    print(f"  untraced                                          {untraced * 1000:9.1f} ms")
    print(f"  instrument, no memory breakpoint                  {plain * 1000:9.1f} ms  ({plain / untraced:6.1f}x untraced)")
    print(f"  instrument, memory breakpoint armed               {memory * 1000:9.1f} ms  ({memory / untraced:6.1f}x untraced)")
    print(f"  ... armed, follow_forks (seccomp filter)         {filtered * 1000:9.1f} ms  "
          f"({filtered / untraced:6.1f}x untraced)")
    print(f"  armed / not armed: {memory / plain:.1f}x PTRACE_SYSCALL, {filtered / plain:.1f}x seccomp filter; "
          f"{(memory - fixed) / calls * 1e6:.1f} / {(filtered - fixed) / calls * 1e6:.1f} us per system call "
          f"past the fixed cost ({fixed * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
