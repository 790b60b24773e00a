"""Debug events as the Windows debugging API numbers them, as frozen values.

Every backend reports these and only these: the engine dispatches on
`DebugEvent.code` (and, for exceptions, `ExceptionInfo.code`) through the
handler table, whatever the operating system underneath.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Mapping, Union


class EventCode(enum.IntEnum):
    """dwDebugEventCode of the Windows DEBUG_EVENT structure."""

    EXCEPTION_DEBUG_EVENT = 1
    CREATE_THREAD_DEBUG_EVENT = 2
    CREATE_PROCESS_DEBUG_EVENT = 3
    EXIT_THREAD_DEBUG_EVENT = 4
    EXIT_PROCESS_DEBUG_EVENT = 5
    LOAD_DLL_DEBUG_EVENT = 6
    UNLOAD_DLL_DEBUG_EVENT = 7
    OUTPUT_DEBUG_STRING_EVENT = 8
    RIP_EVENT = 9
    # Beyond the Windows numbering (which has no system call event): a system call
    # stop, entry or exit, of a call a recipe names (Linux: seccomp-bpf or PTRACE_SYSCALL).
    SYSCALL_EVENT = 0x100

    @property
    def record_name(self) -> str:
        """The `event` field of this event's output record (and its key under `events:`)."""
        return EVENT_RECORD_NAMES.get(self) or SECTION_RECORD_NAMES[self]


EVENT_RECORD_NAMES: dict[EventCode, str] = {
    EventCode.EXCEPTION_DEBUG_EVENT: "exception",
    EventCode.CREATE_THREAD_DEBUG_EVENT: "create_thread",
    EventCode.CREATE_PROCESS_DEBUG_EVENT: "create_process",
    EventCode.EXIT_THREAD_DEBUG_EVENT: "exit_thread",
    EventCode.EXIT_PROCESS_DEBUG_EVENT: "exit_process",
    EventCode.LOAD_DLL_DEBUG_EVENT: "load_dll",
    EventCode.UNLOAD_DLL_DEBUG_EVENT: "unload_dll",
    EventCode.OUTPUT_DEBUG_STRING_EVENT: "debug_string",
    EventCode.RIP_EVENT: "rip",
}
EVENT_CODES_BY_NAME: dict[str, EventCode] = {v: k for k, v in EVENT_RECORD_NAMES.items()}
# Events with a recipe section of their own (not keys of `events:`).
SECTION_RECORD_NAMES: dict[EventCode, str] = {EventCode.SYSCALL_EVENT: "syscall"}


class ExceptionCode(enum.IntEnum):
    """NTSTATUS exception codes (EXCEPTION_RECORD.ExceptionCode)."""

    GUARD_PAGE = 0x80000001
    DATATYPE_MISALIGNMENT = 0x80000002
    BREAKPOINT = 0x80000003
    SINGLE_STEP = 0x80000004
    ACCESS_VIOLATION = 0xC0000005
    IN_PAGE_ERROR = 0xC0000006
    INVALID_HANDLE = 0xC0000008
    ILLEGAL_INSTRUCTION = 0xC000001D
    NONCONTINUABLE_EXCEPTION = 0xC0000025
    ARRAY_BOUNDS_EXCEEDED = 0xC000008C
    FLT_DIVIDE_BY_ZERO = 0xC000008E
    FLT_INVALID_OPERATION = 0xC0000090
    FLT_OVERFLOW = 0xC0000091
    INT_DIVIDE_BY_ZERO = 0xC0000094
    INT_OVERFLOW = 0xC0000095
    PRIV_INSTRUCTION = 0xC0000096
    STACK_OVERFLOW = 0xC00000FD
    CONTROL_C_EXIT = 0xC000013A
    HEAP_CORRUPTION = 0xC0000374
    STACK_BUFFER_OVERRUN = 0xC0000409
    # Not an NTSTATUS: a POSIX signal with no Windows counterpart (SIGABRT
    # from abort(), SIGTERM, ...). 0xE0000000 is the customer bit range.
    SIGNAL = 0xE0000000


class Access(str, enum.Enum):
    """What the faulting or watched access did."""

    READ = "read"
    WRITE = "write"
    EXECUTE = "execute"


@dataclass(frozen=True)
class ExceptionInfo:
    """EXCEPTION_DEBUG_INFO: a fault, trap or signal in one thread."""

    code: int                         # an ExceptionCode value
    address: int                      # pc of the faulting instruction / trap
    first_chance: bool = True
    fault_address: int | None = None  # the data address, where one applies
    access: Access | None = None
    signal: str | None = None         # POSIX name ("SIGSEGV") on Linux
    si_code: int | None = None
    hw_slots: tuple[int, ...] = ()    # DR6 bits that fired (SINGLE_STEP)
    from_user: bool = False           # sent by kill()/tkill(), not raised by the CPU
    # A signal's number and, when a process sent it (si_code SI_USER, SI_TKILL, SI_QUEUE..),
    # the sender's pid and uid and a sigqueue() value; None where the siginfo has none.
    signo: int | None = None
    si_pid: int | None = None
    si_uid: int | None = None
    si_value: int | None = None
    # A hit reported without stopping its thread (a sampled hardware breakpoint):
    # the registers at the hit, and when it was (time.monotonic() seconds).
    registers: Mapping[str, int] | None = field(default=None, compare=False)
    time: float | None = field(default=None, compare=False)

    def sampled(self, registers: Mapping[str, int], time: float) -> ExceptionInfo:
        """This exception as a sampled hit with these registers and time. Made for
        every sampled hit, so without the frozen dataclass __init__ (a third of
        what a hit costs the backend)."""
        info = object.__new__(ExceptionInfo)
        fields = self.__dict__.copy()
        fields["registers"], fields["time"] = registers, time
        object.__setattr__(info, "__dict__", fields)
        return info


@dataclass(frozen=True)
class CreateThreadInfo:
    start_address: int | None = None


@dataclass(frozen=True)
class CreateProcessInfo:
    image_path: str
    image_base: int | None = None
    parent_pid: int | None = None


@dataclass(frozen=True)
class ExitThreadInfo:
    exit_code: int | None = None


@dataclass(frozen=True)
class ExitProcessInfo:
    exit_code: int | None = None      # None when killed by a signal
    signal: str | None = None


@dataclass(frozen=True)
class LoadDllInfo:
    path: str
    base: int


@dataclass(frozen=True)
class UnloadDllInfo:
    base: int
    path: str | None = None


@dataclass(frozen=True)
class Module:
    """A loaded image: the main program or a shared library / DLL. A value the backends
    report (Backend.modules) and the symbol layer maps addresses into."""

    path: str      # as the loader names it (absolute where known)
    base: int      # load bias: runtime address = base + link-time address (ELF);
                   # the image base (PE)

    @property
    def name(self) -> str:
        return self.path.replace("\\", "/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class DebugStringInfo:
    text: str


@dataclass(frozen=True)
class RipInfo:
    error: str
    signal: str | None = None         # the signal that took the target, where known (SIGKILL)


@dataclass(frozen=True)
class SyscallInfo:
    """A system call stop: at its entry (arguments as the call got them) or its exit
    (`retval` as the kernel returned it, signed; -errno on failure)."""

    number: int
    entry: bool
    args: tuple[int, ...]             # the six argument registers, in the system call ABI
    retval: int | None = None         # exit only


EventInfo = Union[
    ExceptionInfo, CreateThreadInfo, CreateProcessInfo, ExitThreadInfo,
    ExitProcessInfo, LoadDllInfo, UnloadDllInfo, DebugStringInfo, RipInfo, SyscallInfo,
]

_INFO_TYPES: dict[EventCode, type] = {
    EventCode.EXCEPTION_DEBUG_EVENT: ExceptionInfo,
    EventCode.CREATE_THREAD_DEBUG_EVENT: CreateThreadInfo,
    EventCode.CREATE_PROCESS_DEBUG_EVENT: CreateProcessInfo,
    EventCode.EXIT_THREAD_DEBUG_EVENT: ExitThreadInfo,
    EventCode.EXIT_PROCESS_DEBUG_EVENT: ExitProcessInfo,
    EventCode.LOAD_DLL_DEBUG_EVENT: LoadDllInfo,
    EventCode.UNLOAD_DLL_DEBUG_EVENT: UnloadDllInfo,
    EventCode.OUTPUT_DEBUG_STRING_EVENT: DebugStringInfo,
    EventCode.RIP_EVENT: RipInfo,
    EventCode.SYSCALL_EVENT: SyscallInfo,
}


@dataclass(frozen=True)
class DebugEvent:
    """One DEBUG_EVENT: what happened, in which process and thread."""

    code: EventCode
    pid: int
    tid: int
    info: EventInfo = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        expected = _INFO_TYPES[self.code]
        if not isinstance(self.info, expected):
            raise TypeError(f"{self.code.name} carries {expected.__name__}, not {type(self.info).__name__}")


def exception_name(code: int) -> str:
    """EXCEPTION_ACCESS_VIOLATION-style short name ("ACCESS_VIOLATION") or hex."""
    try:
        return ExceptionCode(code).name
    except ValueError:
        return f"0x{code:08x}"
