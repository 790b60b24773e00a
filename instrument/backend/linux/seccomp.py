"""The seccomp-bpf filter that makes only the named system calls stop a spawned target.

As `strace --seccomp-bpf` does: the child installs it after its SIGSTOP (so the
tracer has seized it: SECCOMP_RET_TRACE with no tracer, or one without
PTRACE_O_TRACESECCOMP, fails the call with ENOSYS) and before exec. Every named
call then reports a PTRACE_EVENT_SECCOMP stop at its entry; every other call
runs without the tracer ever waking. The filter cannot be taken off again: it
stays with the process and every child it forks, which is why the engine uses it
only where no process it covers is ever let go untraced (syscalls.py).
"""

from __future__ import annotations

from typing import Iterable

from . import _ffi

_LD_W_ABS = 0x20              # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15                 # BPF_JMP | BPF_JEQ | BPF_K
_RET_K = 0x06                 # BPF_RET | BPF_K
_NR, _ARCH = 0, 4             # offsets in struct seccomp_data
AUDIT_ARCH_X86_64 = 0xC000003E
RET_ALLOW = 0x7FFF0000
RET_TRACE = 0x7FF00000
MAX_INSNS = 4096              # BPF_MAXINSNS

Insn = tuple[int, int, int, int]


def program(numbers: Iterable[int]) -> list[Insn]:
    """ALLOW everything but `numbers` of the x86-64 ABI, which TRACE. Each number is a
    compare followed by its own return, so no jump is longer than one instruction
    (jt/jf are 8 bits) however many calls are named. Calls of another ABI (i386
    through int 0x80) are allowed: their numbers mean other calls."""
    insns: list[Insn] = [
        (_LD_W_ABS, 0, 0, _ARCH),
        (_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        (_RET_K, 0, 0, RET_ALLOW),
        (_LD_W_ABS, 0, 0, _NR),
    ]
    for n in sorted(set(numbers)):
        insns.append((_JEQ_K, 0, 1, n))
        insns.append((_RET_K, 0, 0, RET_TRACE))
    insns.append((_RET_K, 0, 0, RET_ALLOW))
    if len(insns) > MAX_INSNS:
        raise ValueError(f"a seccomp filter of {len(insns)} instructions is too long")
    return insns


def install(insns: list[Insn], no_new_privs: bool) -> None:
    """Install `insns` in this process (a forked child before exec); raises SyscallError."""
    _ffi.install_seccomp(insns, no_new_privs)
