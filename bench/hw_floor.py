#!/usr/bin/env python3
"""The cheapest hardware execute-breakpoint loop Python can run: the floor under instrument.

    python bench/hw_floor.py ADDRESS PROGRAM ARGS...            # wait, GETSIGINFO, GETREGS, CONT
    python bench/hw_floor.py --record ADDRESS PROGRAM ARGS...   # ... and one JSON record per hit

The same system calls as bench/hw_ref.c plus the GETSIGINFO any real debugger
needs (a SIGTRAP alone does not say who raised it), through instrument's own
_ffi wrappers. With --record it also builds and writes the record instrument
writes for the benchmark recipe. No engine, no recipe, no checks: what is left
between this and instrument is the cost of being a debugger rather than a loop.
Prints the hit count on stderr; timing is bench/hard.py's business.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from instrument.backend.linux import _ffi
from instrument.report.jsonl import encode

_PTRACE_TRACEME = 0


def main() -> None:
    args = sys.argv[1:]
    record = args[:1] == ["--record"]
    if record:
        args = args[1:]
    address, argv = int(args[0], 16), args[1:]
    pid = os.fork()
    if pid == 0:
        _ffi.ptrace(_PTRACE_TRACEME, 0)
        os.execv(argv[0], argv)
    os.waitpid(pid, 0)
    _ffi.ptrace(_ffi.PTRACE_POKEUSER, pid, _ffi.USER_DEBUGREG_OFFSET, address)
    _ffi.ptrace(_ffi.PTRACE_POKEUSER, pid, _ffi.USER_DEBUGREG_OFFSET + 7 * 8, 1)
    _ffi.ptrace(_ffi.PTRACE_CONT, pid, None, 0)
    regs, siginfo = _ffi.UserRegs(), _ffi.SigInfo()
    hits, start = 0, time.monotonic()
    with open(os.devnull, "w", buffering=1 << 16) as out:
        while True:
            _, status = os.waitpid(pid, 0)
            if not os.WIFSTOPPED(status):
                break
            sig = os.WSTOPSIG(status)
            if sig != signal.SIGTRAP:
                _ffi.ptrace(_ffi.PTRACE_CONT, pid, None, sig)
                continue
            _ffi.get_siginfo(pid, siginfo)
            _ffi.ptrace(_ffi.PTRACE_GETREGS, pid, None, regs)
            hits += 1
            if record:
                out.write(encode({
                    "event": "breakpoint", "code": 1, "pid": pid, "tid": pid,
                    "time": round(time.monotonic() - start, 6), "id": "hit", "type": "hardware",
                    "hits": hits, "address": hex(regs.rip), "symbol": "hit",
                    "registers": {"rdi": hex(regs.rdi)}}) + "\n")
            _ffi.ptrace(_ffi.PTRACE_CONT, pid, None, 0)
    print(f"hits={hits}", file=sys.stderr)


if __name__ == "__main__":
    main()
