"""The backend boundary: what the engine asks of an operating system's debug API.

Only ints, bytes, strings, dicts and the event values of `instrument.events`
cross this boundary. The backend never sees a recipe; the engine never sees
ctypes. A backend owns every process it started or attached, reports their
events one at a time, and keeps the thread that reported an event stopped
until the engine calls `resume` for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, MutableMapping, Protocol

from ..arch.x86_64 import Abi, abi_of
from ..events import DebugEvent, Module

# Module is a value of instrument.events (the symbol layer, below this one, maps addresses
# into it); it is named here too because backends report it (Backend.modules).
__all__ = ["Backend", "Capabilities", "Module", "SpawnOptions"]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; the compiler checks recipes against this."""

    os: str                        # "linux" | "windows"
    arch: str                      # "x86_64" | "x86"
    abi: Abi                       # where arg0..arg5 live (a name such as "sysv" is accepted)
    hardware_breakpoints: int      # debug-register slots (arch.x86_64.DEBUG_SLOTS)
    memory_breakpoints: bool       # guard pages
    follow_forks: bool
    attach: bool
    # Registers a hardware execute breakpoint can report without stopping its thread
    # (set_hardware_breakpoint(sample=True)); empty: every hit stops the thread.
    sampled_registers: frozenset[str] = frozenset()
    # Soft breakpoints too can report those registers without stopping the thread
    # (sample_code: a uprobe on Linux); where refused for one, it stops as an int3.
    sampled_soft: bool = False
    # Nothing runs and nothing can change (a core file): no breakpoints of any kind, no
    # `set`, `write` or `return`; the compiler refuses recipes that need them.
    read_only: bool = False
    # POSIX signals are reported as they are delivered and can be passed on or dropped
    # (the `signals:` section); False: the reason the compiler gives for refusing it.
    signals: bool = False
    # System call stops (a recipe's `syscalls:` section): entry and exit of named calls,
    # skipping a call (skip_syscall). `syscall_filter`: a spawned target can have only the
    # named calls stop it (seccomp-bpf); without, every call stops and is sorted here.
    syscalls: bool = False
    syscall_filter: bool = False

    def __post_init__(self) -> None:
        # A backend naming an ABI the register code cannot read fails here, at
        # its creation, not when a recipe first reads an argument.
        object.__setattr__(self, "abi", abi_of(self.abi))


@dataclass(frozen=True)
class SpawnOptions:
    argv: tuple[str, ...]
    env: dict[str, str] | None = None     # None: inherit ours
    cwd: str | None = None
    stdin_path: str | None = None         # None: inherit ours
    follow_forks: bool = False
    capture_stderr: bool = True           # stderr -> passed through + debug_string events
    pin_cpu: bool = True                  # run tracer and target on one CPU (HOUSE rule 12)
    # System calls to report (numbers; None: none), and those whose exit is reported too.
    # `syscall_filter`: only these stop the target (Capabilities.syscall_filter), for good:
    # a filtered process must never be let go untraced (its named calls would fail).
    syscalls: frozenset[int] | None = None
    syscall_exits: frozenset[int] = frozenset()
    syscall_filter: bool = False
    # Memory breakpoints: the same filter (for good, likewise) also stops the system calls
    # that take a pointer, and only those, so a call on a guarded page can have it opened;
    # without it every call stops while a page is guarded.
    guard_filter: bool = False


class Backend(Protocol):
    capabilities: Capabilities

    # Set by the engine before it starts a session: pid -> {address: original
    # bytes} of every int3 it has in that process now. A fork child we do not
    # follow inherits a copy of those int3s; the backend writes the originals
    # into the child's memory before letting it run untraced.
    patched_bytes: Callable[[int], Mapping[int, bytes]] | None

    # -- sessions --------------------------------------------------------
    def spawn(self, options: SpawnOptions) -> int:
        """Start a traced process; return its pid. Raises TargetError.

        The first event `wait_event` returns is its CREATE_PROCESS, with the
        process stopped before its first instruction, so breakpoints in the
        main image can be set before anything runs."""

    def attach(self, pid: int) -> int:
        """Attach to a running process and all its threads; raises TargetError.

        Reports CREATE_PROCESS, then LOAD_DLL for each module already loaded,
        then CREATE_THREAD for every other thread."""

    def detach(self, pid: int) -> None:
        """Let the process run on untraced. The caller restores what it patched first."""

    def kill(self, pid: int) -> None:
        """Kill the process and reap it; later events for it are dropped."""

    def close(self) -> None:
        """Kill spawned targets and detach attached ones still traced; idempotent."""

    # -- the event loop ----------------------------------------------------
    def wait_event(self, timeout: float | None = None) -> DebugEvent | None:
        """The next debug event, or None when `timeout` seconds pass first.

        For EXCEPTION events the reporting thread stays stopped until
        `resume`. For BREAKPOINT the event's address is the int3's own address
        (not pc+1). Events that stop nothing (debug_string, exit_process)
        still need a `resume` call, which is then a no-op."""

    def resume(self, tid: int, *, pass_exception: bool = False) -> None:
        """Continue the thread that reported the last event for it.

        pass_exception=True delivers the signal/exception to the target
        (DBG_EXCEPTION_NOT_HANDLED); False swallows it (DBG_CONTINUE)."""

    def hold_others(self, tid: int) -> None:
        """Keep every other thread of held thread `tid`'s process stopped until `tid`
        resumes: before the engine takes an int3 out to step over it, so that no sibling
        runs past it meanwhile. Breakpoint hits do not stop the others by themselves;
        every other exception does (Windows stops them all for every event)."""

    def single_step(self, tid: int) -> DebugEvent:
        """Execute one instruction in a stopped thread while every other thread
        of its process stays where it is; return the SINGLE_STEP event (or the
        exception the instruction raised instead). The thread stays stopped."""

    # -- state of a stopped thread ------------------------------------------
    def registers(self, tid: int) -> MutableMapping[str, int]:
        """The stopped thread's registers by their 64-bit names (rax..r15, rip,
        eflags, cs.., fs_base, gs_base). One read per stop; assignments are
        written back before the thread resumes or steps."""

    def read_memory(self, pid: int, address: int, size: int) -> bytes:
        """Raises DebuggerError (an EvaluationError subclass is not needed) when unreadable."""

    def write_memory(self, pid: int, address: int, data: bytes) -> None:
        """Writes even read-only text pages (breakpoints); flushes caches where needed."""

    def call_function(self, pid: int, address: int, *args: int) -> int:
        """Run `address(*args)` in a thread of `pid` stopped for an event the engine
        holds, every other thread standing still; return what it returns (rax).
        The thread's general-purpose registers and stop state are restored. Raises DebuggerError when the call
        faults or the backend cannot call (the engine then does without)."""

    def threads(self, pid: int) -> list[int]:
        """The live threads of a traced process."""

    def modules(self, pid: int) -> list[Module]:
        """Images loaded in the process now (the main image first)."""

    def command_line(self, pid: int) -> list[str] | None:
        """The process's argv as it stands now (crash attribution); None where unknown."""

    def thread_name(self, pid: int, tid: int) -> str | None:
        """The thread's name (Linux comm); None where unknown."""

    # -- system calls (capabilities.syscalls) ----------------------------------
    def trace_syscalls(self, pid: int, numbers: frozenset[int], exits: frozenset[int]) -> None:
        """Report the entry of system calls `numbers` (and the exit of `exits`) in every thread
        of pid and its followed children, as SYSCALL_EVENTs holding their thread, without a
        filter (every call stops and the backend sorts them): an attached process, or a
        spawned one started without SpawnOptions.syscall_filter."""

    def skip_syscall(self, tid: int, retval: int) -> None:
        """Thread `tid`, held at a system call's entry: the call is not made, and returns
        `retval` (-13: fails with EACCES)."""

    # -- hardware and memory breakpoints (capabilities permitting) ------------
    def set_hardware_breakpoint(self, pid: int, slot: int, address: int, access: str, size: int, *,
                                sample: bool = False) -> None:
        """Program debug register `slot` (0-3) in every thread of pid, and in
        threads created later. access: "execute" | "write" | "readwrite".

        `sample` (execute only, and only where capabilities.sampled_registers):
        a hit need not stop its thread. It is reported all the same, as a
        SINGLE_STEP whose ExceptionInfo carries the registers at the hit (only
        those in sampled_registers) and its time; the thread has run on, so the
        engine must neither read its memory nor change it for that hit. A thread
        where the backend cannot sample stops as usual."""

    def sample_code(self, pid: int, address: int) -> str | None:
        """Report every execution of the instruction at `address` in process pid (its
        threads now and later, followed fork children) without stopping the thread and
        without changing its memory: a BREAKPOINT whose ExceptionInfo carries the
        registers (those in sampled_registers) and the time, as for `sample` above.
        None when it does; else why it cannot (then nothing changed: the engine puts
        an int3 there). Only where capabilities.sampled_soft."""

    def unsample_code(self, pid: int, address: int) -> None:
        """Stop what sample_code started; hits already taken are still reported."""

    def take_samples(self) -> list[DebugEvent]:
        """Sampled hits not reported yet (the session is ending): handle them before
        detaching or killing."""

    def sampling_problems(self) -> list[str]:
        """What kept sampling from being whole, for the summary: hits lost (buffers
        overflowed), perf refusing (hits stopped the target instead). Complete only
        once the backend is closed."""

    def clear_hardware_breakpoint(self, pid: int, slot: int) -> None:
        ...

    def set_memory_breakpoint(self, pid: int, address: int, size: int, access: str) -> None:
        """Watch [address, address+size) with guard pages; access: "write" | "any".

        Accesses inside the range are reported as GUARD_PAGE exceptions (at the
        faulting instruction, before it completes, with fault_address and
        access); resuming that thread lets the access complete and re-arms the
        guard. Accesses elsewhere on the same pages run on silently."""

    def clear_memory_breakpoint(self, pid: int, address: int) -> None:
        """Stop watching the range that starts at `address`; restore protections."""
