"""ctypes declarations for the Linux debug API (ptrace, process_vm_readv, perf_event_open, sched_getcpu); nothing else."""

from __future__ import annotations

import ctypes
import os
from ctypes import (
    POINTER, Structure, c_int, c_int32, c_long, c_size_t, c_ssize_t, c_uint64, c_ulong,
    c_void_p,
)
from typing import Any

from ...arch.x86_64 import MASK64
from ...errors import DebuggerError

# -- requests and constants (include/uapi/linux/ptrace.h) ---------------------------
PTRACE_PEEKUSER = 3
PTRACE_POKEUSER = 6
PTRACE_CONT = 7
PTRACE_KILL = 8
PTRACE_SINGLESTEP = 9
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_DETACH = 17
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_SETSIGINFO = 0x4203
PTRACE_GETSIGINFO = 0x4202
PTRACE_GETREGSET = 0x4204
PTRACE_SETREGSET = 0x4205
PTRACE_GETSIGMASK = 0x420a
PTRACE_SETSIGMASK = 0x420b
NT_PRFPREG = 2             # the legacy FXSAVE area: x87, MXCSR, xmm0-15 (512 bytes)
NT_X86_XSTATE = 0x202      # the whole XSAVE area: also ymm/zmm upper halves, opmasks, PKRU
# XSAVE areas are under 3 KB with AVX-512 and about 11 KB with AMX tiles; the kernel
# copies min(this, its size) and says how much in iov_len.
XSTATE_BUFFER = 16384
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_LISTEN = 0x4208
PTRACE_PEEKSIGINFO = 0x4209

PTRACE_O_TRACESYSGOOD = 0x01
PTRACE_O_TRACEFORK = 0x02
PTRACE_O_TRACEVFORK = 0x04
PTRACE_O_TRACEVFORKDONE = 0x20
PTRACE_O_TRACECLONE = 0x08
PTRACE_O_TRACEEXEC = 0x10
PTRACE_O_EXITKILL = 0x100000
PTRACE_O_TRACESECCOMP = 0x80
PTRACE_SYSCALL = 24
PTRACE_GET_SYSCALL_INFO = 0x420e
PTRACE_SYSCALL_INFO_ENTRY = 1
PTRACE_SYSCALL_INFO_EXIT = 2
PTRACE_SYSCALL_INFO_SECCOMP = 3
PTRACE_EVENT_SECCOMP = 7

PTRACE_EVENT_FORK = 1
PTRACE_EVENT_VFORK = 2
PTRACE_EVENT_VFORK_DONE = 5
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_EXEC = 4
PTRACE_EVENT_STOP = 128

# waitpid: also wait for clone children (threads), which do not send SIGCHLD.
WALL = 0x40000000

# siginfo si_code values (include/uapi/asm-generic/siginfo.h)
SI_USER = 0
SI_KERNEL = 0x80
SI_TKILL = -6
TRAP_BRKPT = 1
TRAP_TRACE = 2
TRAP_HWBKPT = 4
FPE_INTDIV = 1
FPE_INTOVF = 2
FPE_FLTDIV = 3
FPE_FLTOVF = 4
FPE_FLTUND = 5
FPE_FLTRES = 6
FPE_FLTINV = 7

# offsetof(struct user, u_debugreg) on x86-64: measured with gcc 12 against
# <sys/user.h> (848), and checked again by the tests through DR7 round trips.
USER_DEBUGREG_OFFSET = 848


class UserRegs(Structure):
    """struct user_regs_struct (arch/x86/include/uapi/asm/ptrace.h), kernel field order."""

    _fields_ = [(name, c_uint64) for name in (
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
        "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags",
        "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
    )]


REGISTER_NAMES: tuple[str, ...] = tuple(field[0] for field in UserRegs._fields_)


class SigInfo(Structure):
    """The head of siginfo_t: si_signo, si_errno, si_code, then the union (si_addr first
    for SIGSEGV/SIGBUS/SIGILL/SIGFPE/SIGTRAP). The kernel copies all 128 bytes."""

    _fields_ = [
        ("si_signo", c_int32),
        ("si_errno", c_int32),
        ("si_code", c_int32),
        ("_pad0", c_int32),        # the union is 8-byte aligned on x86-64
        ("si_addr", c_uint64),     # also si_pid/si_uid for SI_USER, read as one u64
        ("_rest", ctypes.c_uint8 * 104),
    ]


class WaitInfo(Structure):
    """siginfo_t as waitid(2) fills it in for a child (the SIGCHLD member of the union):
    si_pid, si_uid, si_status. si_code is CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_TRAPPED
    (a ptrace-stop) or CLD_STOPPED; 0 with si_pid 0 when nothing was waited for."""

    _fields_ = [
        ("si_signo", c_int32),
        ("si_errno", c_int32),
        ("si_code", c_int32),
        ("_pad0", c_int32),
        ("si_pid", c_int32),
        ("si_uid", ctypes.c_uint32),
        ("si_status", c_int32),
        ("_rest", ctypes.c_uint8 * 100),
    ]


class SyscallInfoHead(Structure):
    """The head of struct ptrace_syscall_info (include/uapi/linux/ptrace.h): op says
    entry, exit or seccomp stop; the rest (nr, args, rval) is read from the registers."""

    _fields_ = [("op", ctypes.c_uint8), ("pad", ctypes.c_uint8 * 3), ("arch", ctypes.c_uint32),
                ("instruction_pointer", c_uint64), ("stack_pointer", c_uint64),
                ("_union", c_uint64 * 8)]


class SockFilter(Structure):
    """struct sock_filter (linux/filter.h): one classic BPF instruction."""

    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class SockFprog(Structure):
    """struct sock_fprog: a BPF program for seccomp(SECCOMP_SET_MODE_FILTER)."""

    _fields_ = [("len", ctypes.c_uint16), ("filter", POINTER(SockFilter))]


class IoVec(Structure):
    """struct iovec (sys/uio.h)."""

    _fields_ = [("iov_base", c_void_p), ("iov_len", c_size_t)]


class SyscallError(DebuggerError):
    """A failed libc call, with its errno: the one error type this layer raises."""

    def __init__(self, func: str, err: int, detail: str = "") -> None:
        self.func = func
        self.errno = err
        self.strerror = os.strerror(err)
        super().__init__(f"{func}{detail}: {self.strerror}")


_libc = ctypes.CDLL(None, use_errno=True)

# long ptrace(enum __ptrace_request request, pid_t pid, void *addr, void *data);
_ptrace = _libc.ptrace
_ptrace.argtypes = [c_long, c_int32, c_void_p, c_void_p]
_ptrace.restype = c_long

# int sched_getcpu(void);
_sched_getcpu = _libc.sched_getcpu
_sched_getcpu.argtypes = []
_sched_getcpu.restype = c_int

_REQUEST_NAMES = {
    PTRACE_PEEKUSER: "PEEKUSER", PTRACE_POKEUSER: "POKEUSER", PTRACE_CONT: "CONT",
    PTRACE_KILL: "KILL", PTRACE_SINGLESTEP: "SINGLESTEP", PTRACE_GETREGS: "GETREGS",
    PTRACE_SETREGS: "SETREGS", PTRACE_DETACH: "DETACH", PTRACE_SETOPTIONS: "SETOPTIONS",
    PTRACE_GETEVENTMSG: "GETEVENTMSG", PTRACE_GETSIGINFO: "GETSIGINFO",
    PTRACE_SEIZE: "SEIZE", PTRACE_INTERRUPT: "INTERRUPT", PTRACE_LISTEN: "LISTEN",
    PTRACE_GETREGSET: "GETREGSET", PTRACE_SETREGSET: "SETREGSET", PTRACE_GETSIGMASK: "GETSIGMASK",
    PTRACE_SETSIGMASK: "SETSIGMASK", PTRACE_SETSIGINFO: "SETSIGINFO", PTRACE_PEEKSIGINFO: "PEEKSIGINFO",
    PTRACE_SYSCALL: "SYSCALL", PTRACE_GET_SYSCALL_INFO: "GET_SYSCALL_INFO",
}


_PEEKS = frozenset({1, 2, 3})   # PTRACE_PEEKTEXT, PEEKDATA, PEEKUSER


def ptrace(request: int, tid: int, addr: int | None = None, data: int | object | None = None) -> int:
    """ptrace(2); raises SyscallError. `data` is an int or a ctypes object passed by pointer."""
    # `obj` keeps a ctypes object alive through the call: addressof() holds no reference,
    # and a temporary (set_sigmask's c_uint64, set_regset's iovec) freed before the system
    # call had the kernel read whatever reused its memory (seen: a thread's signal mask set
    # to an address of the tracer's heap, once in ~20 stress rounds).
    obj = data
    if obj is not None and not isinstance(obj, int):
        data = ctypes.addressof(obj)  # type: ignore[arg-type]
    if request in _PEEKS:
        ctypes.set_errno(0)        # only PEEK* can return -1 on success
    result: int = _ptrace(request, tid, addr, data)
    del obj
    if result == -1:
        # PEEK* return the word itself, so -1 is an error only with errno set.
        err = ctypes.get_errno()
        if err:
            raise SyscallError(f"ptrace(PTRACE_{_REQUEST_NAMES.get(request, request)})", err,
                               f" on {tid}")
    return result


def peek_user(tid: int, offset: int) -> int:
    """One word of struct user (debug registers), as an unsigned 64-bit value."""
    return ptrace(PTRACE_PEEKUSER, tid, offset) & MASK64


def get_regset(tid: int, note: int) -> bytes:
    """PTRACE_GETREGSET of register set `note` (NT_X86_XSTATE, NT_PRFPREG): its bytes, as
    long as the kernel says (ptrace(PTRACE_GETREGSET, tid, note, struct iovec *))."""
    buf = ctypes.create_string_buffer(XSTATE_BUFFER)
    iov = IoVec(ctypes.cast(buf, c_void_p), XSTATE_BUFFER)
    ptrace(PTRACE_GETREGSET, tid, note, iov)
    return buf.raw[:iov.iov_len]


def set_regset(tid: int, note: int, data: bytes) -> None:
    """PTRACE_SETREGSET: register set `note` of stopped thread `tid` becomes `data`."""
    buf = ctypes.create_string_buffer(data, len(data))
    ptrace(PTRACE_SETREGSET, tid, note, IoVec(ctypes.cast(buf, c_void_p), len(data)))


def get_sigmask(tid: int) -> int:
    """PTRACE_GETSIGMASK: the thread's blocked signals, bit signo-1
    (ptrace(PTRACE_GETSIGMASK, tid, sizeof(sigset_t) = 8, uint64_t *))."""
    mask = c_uint64()
    ptrace(PTRACE_GETSIGMASK, tid, 8, mask)
    return mask.value


def set_sigmask(tid: int, mask: int) -> None:
    """PTRACE_SETSIGMASK (ptrace(PTRACE_SETSIGMASK, tid, 8, const uint64_t *))."""
    ptrace(PTRACE_SETSIGMASK, tid, 8, c_uint64(mask & MASK64))


class PeekSigInfoArgs(Structure):
    """struct ptrace_peeksiginfo_args (include/uapi/linux/ptrace.h)."""

    _fields_ = [("off", c_uint64), ("flags", ctypes.c_uint32), ("nr", c_int32)]


def pending_signals(tid: int, limit: int = 32) -> list[SigInfo]:
    """The signals queued for thread `tid` itself (not its process), oldest first, not
    yet dequeued: PTRACE_PEEKSIGINFO (flags 0: the thread's private queue), up to `limit`."""
    args = PeekSigInfoArgs(0, 0, limit)
    buf = (SigInfo * limit)()
    n = ptrace(PTRACE_PEEKSIGINFO, tid, ctypes.addressof(args), buf)
    return list(buf[:n])


def get_event_msg(tid: int) -> int:
    """PTRACE_GETEVENTMSG: the new tid of a clone/fork, the former tid at exec."""
    msg = c_ulong(0)
    ptrace(PTRACE_GETEVENTMSG, tid, None, msg)
    return msg.value


# The same ptrace(2) without argtypes, for the requests of every stop
# (GETSIGINFO, GETREGS, SETREGS, CONT): ctypes then converts nothing on the way in (small
# ints go as C ints, which libffi sign-extends into the argument registers, and
# buffers by byref), which takes a third off each call (HOUSE rule 11).
_ptrace_hot = ctypes.CDLL(None, use_errno=True).ptrace
_ptrace_hot.restype = c_long


def _failed(request: int, tid: int) -> SyscallError:
    return SyscallError(f"ptrace(PTRACE_{_REQUEST_NAMES[request]})", ctypes.get_errno(), f" on {tid}")


def _hot(request: int, tid: int, data: Any) -> None:
    if _ptrace_hot(request, tid, None, data) == -1:
        raise _failed(request, tid)


# The four of every stop call the C function themselves, not through _hot: a Python
# call less each, four per breakpoint hit (cProfile: _hot was the most called function).
def get_siginfo(tid: int, into: SigInfo) -> SigInfo:
    if _ptrace_hot(PTRACE_GETSIGINFO, tid, None, ctypes.byref(into)) == -1:
        raise _failed(PTRACE_GETSIGINFO, tid)
    return into


def get_regs(tid: int, into: UserRegs) -> None:
    if _ptrace_hot(PTRACE_GETREGS, tid, None, ctypes.byref(into)) == -1:
        raise _failed(PTRACE_GETREGS, tid)


def set_regs(tid: int, regs: UserRegs) -> None:
    """PTRACE_SETREGS: on every stop that moved pc (each emulated soft hit)."""
    if _ptrace_hot(PTRACE_SETREGS, tid, None, ctypes.byref(regs)) == -1:
        raise _failed(PTRACE_SETREGS, tid)


def cont(tid: int, sig: int) -> None:
    """PTRACE_CONT, delivering `sig` (0: none)."""
    if _ptrace_hot(PTRACE_CONT, tid, None, sig) == -1:
        raise _failed(PTRACE_CONT, tid)


# int waitid(idtype_t idtype, id_t id, siginfo_t *infop, int options);  (P_ALL: id ignored)
# Without argtypes, as _ptrace_hot: every stop waits once.
_waitid = ctypes.CDLL(None, use_errno=True).waitid
_waitid.restype = c_int
_P_ALL = 0
_CLD_EXITED, _CLD_KILLED, _CLD_DUMPED = 1, 2, 3


def waitid(info: WaitInfo, options: int) -> int:
    """waitid(P_ALL, 0, &info, options), filling `info`: 0, or the errno it failed with
    (EINTR when a signal came first, ECHILD when there is nothing to wait for)."""
    if _waitid(_P_ALL, 0, ctypes.byref(info), options) == -1:
        return ctypes.get_errno()
    return 0


def wait_status(info: WaitInfo) -> int:
    """The waitpid(2) status word of what waitid put in `info`: the same bits, ptrace
    event and TRACESYSGOOD included (the kernel's si_status for a stop is the whole
    exit_code that waitpid shifts left by 8)."""
    code, status = int(info.si_code), int(info.si_status)
    if code == _CLD_EXITED:
        return (status & 0xFF) << 8
    if code == _CLD_KILLED:
        return status & 0x7F
    if code == _CLD_DUMPED:
        return (status & 0x7F) | 0x80
    return ((status & 0xFFFF) << 8) | 0x7F      # CLD_TRAPPED, CLD_STOPPED


def syscall_cont(tid: int, sig: int) -> None:
    """PTRACE_SYSCALL: continue to the next system call entry or exit, delivering `sig`."""
    _hot(PTRACE_SYSCALL, tid, sig)


def syscall_op(tid: int, into: SyscallInfoHead) -> int:
    """PTRACE_GET_SYSCALL_INFO (ptrace(req, tid, sizeof buf, buf)): the stop's op."""
    if _ptrace_hot(PTRACE_GET_SYSCALL_INFO, tid, ctypes.sizeof(into), ctypes.byref(into)) == -1:
        raise SyscallError("ptrace(PTRACE_GET_SYSCALL_INFO)", ctypes.get_errno(), f" on {tid}")
    return int(into.op)


_PR_SET_NO_NEW_PRIVS = 38
_NR_SECCOMP = 317                  # x86-64
_SECCOMP_SET_MODE_FILTER = 1


def install_seccomp(program: list[tuple[int, int, int, int]], no_new_privs: bool) -> None:
    """In the calling process (a child before exec): prctl(PR_SET_NO_NEW_PRIVS, 1) when
    asked (needed without CAP_SYS_ADMIN), then
    seccomp(SECCOMP_SET_MODE_FILTER, 0, const struct sock_fprog *prog)."""
    filters = (SockFilter * len(program))(*[SockFilter(*insn) for insn in program])
    prog = SockFprog(len(program), ctypes.cast(filters, POINTER(SockFilter)))
    if no_new_privs and _syscall(c_long(157), c_long(_PR_SET_NO_NEW_PRIVS), c_long(1), c_long(0),
                                 c_long(0), c_long(0)) != 0:     # 157: prctl
        raise SyscallError("prctl(PR_SET_NO_NEW_PRIVS)", ctypes.get_errno())
    if _syscall(c_long(_NR_SECCOMP), c_long(_SECCOMP_SET_MODE_FILTER), c_long(0), ctypes.byref(prog)) != 0:
        raise SyscallError("seccomp(SECCOMP_SET_MODE_FILTER)", ctypes.get_errno())


# ssize_t process_vm_readv(pid_t pid, const struct iovec *local_iov, unsigned long liovcnt,
#                          const struct iovec *remote_iov, unsigned long riovcnt, unsigned long flags);
# Without argtypes (as _ptrace_hot), and its two iovecs made once (the tracer reads
# target memory from its main thread only): half the call's Python cost.
_process_vm_readv_hot = ctypes.CDLL(None, use_errno=True).process_vm_readv
_process_vm_readv_hot.restype = c_ssize_t
_local_iov, _remote_iov = IoVec(), IoVec()


def vm_read(pid: int, address: int, buf: ctypes.Array[ctypes.c_char]) -> int:
    """process_vm_readv into `buf`: the number of bytes read (short at an unmapped page)."""
    size = len(buf)
    local, remote = _local_iov, _remote_iov
    local.iov_base, local.iov_len = ctypes.addressof(buf), size
    remote.iov_base, remote.iov_len = address, size
    n: int = _process_vm_readv_hot(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if n < 0:
        err = ctypes.get_errno()
        raise SyscallError("process_vm_readv", err, f" at {address:#x}")
    return n


class PerfEventAttr(Structure):
    """struct perf_event_attr up to PERF_ATTR_SIZE_VER5 (include/uapi/linux/perf_event.h)."""

    _fields_ = [("type", ctypes.c_uint32), ("size", ctypes.c_uint32), ("config", c_uint64),
                ("sample_period", c_uint64), ("sample_type", c_uint64), ("read_format", c_uint64),
                ("flags", c_uint64), ("wakeup_watermark", ctypes.c_uint32), ("bp_type", ctypes.c_uint32),
                ("bp_addr", c_uint64), ("bp_len", c_uint64), ("branch_sample_type", c_uint64),
                ("sample_regs_user", c_uint64), ("sample_stack_user", ctypes.c_uint32), ("clockid", c_int32),
                ("sample_regs_intr", c_uint64), ("aux_watermark", ctypes.c_uint32),
                ("sample_max_stack", ctypes.c_uint16), ("reserved_2", ctypes.c_uint16)]


_NR_PERF_EVENT_OPEN = 298          # x86-64
_syscall = ctypes.CDLL(None, use_errno=True).syscall
_syscall.restype = c_long


def perf_event_open(attr: PerfEventAttr, tid: int, flags: int, cpu: int = -1) -> int:
    """perf_event_open(2) for thread `tid` on CPU `cpu` (-1: any): the fd, or -errno."""
    attr.size = ctypes.sizeof(PerfEventAttr)
    fd: int = _syscall(c_long(_NR_PERF_EVENT_OPEN), ctypes.byref(attr), c_long(tid), c_long(cpu),
                       c_long(-1), c_long(flags))
    return fd if fd >= 0 else -ctypes.get_errno()


def sched_getcpu() -> int:
    cpu: int = _sched_getcpu()
    if cpu < 0:
        raise SyscallError("sched_getcpu", ctypes.get_errno())
    return cpu

