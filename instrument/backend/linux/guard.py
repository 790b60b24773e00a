"""Memory (guard-page) breakpoints on Linux: mprotect injected into the target, faults sorted into hits and silent steps.

Linux has no PAGE_GUARD, so a watched page is made PROT_NONE (ranges with
`access: any`) or read-only (only `write` ranges on it) from outside the
target: the tracer makes a stopped thread execute one `mprotect` system call
(registers saved, rip pointed at a `syscall` instruction found in the vdso or
libc, one PTRACE_SINGLESTEP, registers and siginfo restored).

An access to a guarded page raises SIGSEGV (SEGV_ACCERR, si_addr = the data
address). The page-fault error code, which says read or write, never reaches
ptrace (it only lands in the signal frame, built after our stop), so the
access kind comes from decoding the faulting instruction with capstone and
matching its memory operands against si_addr. A fault inside a watched range
of the right kind is reported as GUARD_PAGE; any other fault on a guarded
page is handled silently. Either way, when the thread is continued it first
executes the faulting instruction with the page's original protection back,
while every other thread of the process is stopped (all-stop, as for int3
step-over: a sibling could otherwise run through the open page unseen), and
then the protection is put back.

Known limits: system calls that read or write a guarded page fail with EFAULT
instead of faulting (the kernel never raises SIGSEGV for them); a signal sent
to a thread whose stack page is guarded cannot push its frame (the kernel
kills the process); if the target itself mprotects a guarded page, the guard
is lost and clearing restores the protection we saw when arming.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ...arch.x86_64 import MASK64 as _MASK
from ...errors import DebuggerError, TargetLost
from ...events import Access, DebugEvent, EventCode, ExceptionCode, ExceptionInfo
from . import _ffi, procfs
from .calls import stop_preserved
from .stops import Events, StopControl

if TYPE_CHECKING:
    from .state import Process, Thread

PAGE = 0x1000
PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0, 1, 2, 4
SYS_MPROTECT = 10
SEGV_ACCERR = 2
SYSCALL_INSN = b"\x0f\x05"
MAX_TRIES = 32          # steps of one instruction (or one injected syscall) before giving up
_ESRCH = 3


def page_of(address: int) -> int:
    return address & ~(PAGE - 1)


def pages_of(address: int, size: int) -> range:
    return range(page_of(address), address + max(size, 1), PAGE)


def prot_of(perms: str) -> int:
    """`rw-p` (a /proc/PID/maps permission field) -> PROT_READ|PROT_WRITE."""
    return ((PROT_READ if perms[0] == "r" else 0) | (PROT_WRITE if perms[1] == "w" else 0)
            | (PROT_EXEC if perms[2] == "x" else 0))


@dataclass
class GuardBook:
    """One process's watched ranges and what we did to the protection of their pages."""

    ranges: dict[int, tuple[int, str]] = field(default_factory=dict)   # start -> (size, "write"|"any")
    original: dict[int, int] = field(default_factory=dict)             # page -> protection before us
    applied: dict[int, int] = field(default_factory=dict)              # page -> protection we set
    syscall: int | None = None                                         # a `syscall` instruction
    released: dict[int, int] = field(default_factory=dict)             # page -> protection given back

    def copy(self) -> GuardBook:
        """The same book for a fork child: its memory, protections included, is a copy."""
        return GuardBook(dict(self.ranges), dict(self.original), dict(self.applied), self.syscall,
                         dict(self.released))

    def owns(self, address: int) -> bool:
        return page_of(address) in self.applied

    def wanted(self, page: int) -> int | None:
        """The protection `page` needs now; None: no range left on it (give it back)."""
        kinds = {access for start, (size, access) in self.ranges.items()
                 if start < page + PAGE and page < start + size}
        if not kinds:
            return None
        if "any" in kinds:
            return PROT_NONE          # the strictest range on the page wins
        return self.original[page] & ~PROT_WRITE

    def match(self, lo: int, hi: int, access: Access) -> int | None:
        """The first byte of [lo, hi) inside a range that watches `access`; None: a silent fault."""
        best: int | None = None
        for start, (size, kind) in self.ranges.items():
            if kind == "write" and access != Access.WRITE:
                continue
            first = max(lo, start)
            if first < min(hi, start + size) and (best is None or first < best):
                best = first
        return best


@dataclass
class GuardFault:
    """A thread stopped on a guarded page: the pages its instruction needs open to complete."""

    pages: frozenset[int]


# -- the access an instruction made -----------------------------------------------------
_STACK_WRITES = ("push", "call")
_STACK_READS = ("pop", "ret", "leave")
_decoded: dict[tuple[int, bytes], Any] = {}


MAX_INSN = 15      # bytes in the longest x86 instruction


def _decode(code: bytes, pc: int) -> Any | None:
    # capstone is imported on the first guarded fault, not at start-up: most
    # sessions have no memory breakpoint.
    from ...arch.x86_64.decode import engine

    key = (pc, code)
    insn = _decoded.get(key)
    if insn is None:
        insn = next(iter(engine(detail=True).disasm(code, pc, 1)), None)
        if insn is not None and len(_decoded) < 4096:
            _decoded[key] = insn
    return insn


def classify_access(code: bytes, pc: int, regs: Any, fault: int) -> tuple[Access, int, int]:
    """(access, lo, hi): what the instruction at pc did to the faulting address, and
    the span of that operand, from its decoded memory operands (capstone).

    A read-modify-write operand (`add [x], 1`) counts as a write. Implicit stack
    operands (push, call, pop, ret) are not listed by capstone, so they go by
    mnemonic."""
    import capstone
    from capstone import x86

    from ...arch.x86_64.decode import effective_address

    if fault == pc:
        return Access.EXECUTE, fault, fault + 1
    insn = _decode(code, pc)
    if insn is None:
        return Access.READ, fault, fault + 1
    values = {name: getattr(regs, name) for name in _ffi.REGISTER_NAMES}
    for op in insn.operands:
        if op.type != x86.X86_OP_MEM:
            continue
        lo = effective_address(insn, op, values)
        hi = lo + max(op.size, 1)
        if lo <= fault < hi:
            kind = Access.WRITE if op.access & capstone.CS_AC_WRITE else Access.READ
            return kind, lo, hi
    mnemonic = insn.mnemonic
    if mnemonic.startswith(_STACK_WRITES):
        return Access.WRITE, fault, fault + 8
    if mnemonic.startswith(_STACK_READS):
        return Access.READ, fault, fault + 8
    # Operands capstone sizes oddly (xsave areas, gathers): judge by whether it writes memory.
    writes = any(op.type == x86.X86_OP_MEM and op.access & capstone.CS_AC_WRITE for op in insn.operands)
    return (Access.WRITE if writes else Access.READ), fault, fault + 1


# -- running one system call inside the target ----------------------------------------------
def find_syscall(pid: int, read: Any) -> int:
    """The address of a `syscall` instruction in an executable mapping, the vdso first
    ([vsyscall] is emulated execute-only memory: never there)."""
    maps = [m for m in procfs.maps(pid) if m.perms[2] == "x" and m.path != "[vsyscall]"]
    maps.sort(key=lambda m: m.path != "[vdso]")
    for m in maps:
        for at in range(m.start, m.end, 1 << 20):
            try:
                data = read(at, min(1 << 20, m.end - at))
            except DebuggerError:
                break
            i = data.find(SYSCALL_INSN)
            if i >= 0:
                return at + i
    raise DebuggerError(f"no syscall instruction found in process {pid} to change page protections")


def inject_syscall(tid: int, wait: Callable[[int], int], address: int, number: int, *args: int) -> int:
    """Make stopped thread `tid` run one system call; return its result (-errno on failure).
    `wait(tid)` returns the thread's next waitpid status.

    Every register and the thread's stop siginfo are restored afterwards. orig_rax
    is set to -1 for the call: a thread interrupted inside a blocking system call
    has orig_rax = its number and rax = -ERESTARTSYS, and the kernel's restart logic
    (on the way back to user mode) would otherwise rewind our rip by 2. Restoring
    them afterwards lets that system call restart as it would have."""
    saved = _ffi.UserRegs()
    _ffi.ptrace(_ffi.PTRACE_GETREGS, tid, None, saved)
    regs = _ffi.UserRegs.from_buffer_copy(saved)
    regs.rax, regs.orig_rax, regs.rip = number, _MASK, address
    for name, value in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), args):
        setattr(regs, name, value & _MASK)
    # A signal that arrives meanwhile is taken at our step (delivered to the tracer
    # before the instruction runs): stop_preserved sends it again afterwards.
    with stop_preserved(tid, saved) as late:
        return _step_syscall(tid, wait, address, regs, late, saved)


def _step_syscall(tid: int, wait: Callable[[int], int], address: int, call: _ffi.UserRegs,
                  late: list[int], saved: _ffi.UserRegs) -> int:
    regs = _ffi.UserRegs()
    for _ in range(MAX_TRIES):
        # Set again before every try: a thread stopped inside a system call (a clone,
        # fork or exec event stop) first finishes that call on resume, which writes its
        # result over our rax and traps before our instruction has run.
        _ffi.ptrace(_ffi.PTRACE_SETREGS, tid, None, call)
        try:
            _ffi.ptrace(_ffi.PTRACE_SINGLESTEP, tid, None, 0)
        except _ffi.SyscallError as e:
            raise TargetLost(f"thread {tid} vanished while changing page protections: {e}") from None
        status = wait(tid)
        sig, event = os.WSTOPSIG(status), status >> 16
        if event:
            continue           # a stray PTRACE_INTERRUPT stop: the syscall has not run
        _ffi.ptrace(_ffi.PTRACE_GETREGS, tid, None, regs)
        if sig == signal.SIGTRAP and regs.rip == address + len(SYSCALL_INSN):
            return regs.rax - (1 << 64) if regs.rax >> 63 else regs.rax
        if regs.rip != address:
            raise DebuggerError(f"thread {tid} did not run the injected system call (pc {regs.rip:#x})")
        if sig == signal.SIGTRAP and _ffi.get_siginfo(tid, _ffi.SigInfo()).si_code > 0:
            # That was the thread's own system call finishing: its result is the thread's
            # rax from now on. Restoring the rax from before (-ENOSYS) would lose it: a
            # clone3 that created a thread would look failed, and glibc would create
            # another thread on the same stack.
            saved.rax = regs.rax
        else:
            late.append(sig)
    raise DebuggerError(f"thread {tid} never got to run the injected system call")


# -- the backend side ------------------------------------------------------------------
class GuardControl(StopControl):
    """Memory breakpoints for LinuxBackend: arming, faults, stepping through guarded pages."""

    def set_memory_breakpoint(self, pid: int, address: int, size: int, access: str) -> None:
        if access not in ("write", "any"):
            raise DebuggerError(f"memory breakpoint access must be write or any, not {access!r}")
        if size < 1:
            raise DebuggerError(f"memory breakpoint size must be at least 1, not {size}")
        proc = self._proc(pid)
        book = proc.guards = proc.guards or GuardBook()
        old = book.ranges.get(address)        # set again (a fork child's copy, a new size)
        book.ranges[address] = (size, access)
        pages = set(pages_of(address, size)) | (set(pages_of(address, old[0])) if old else set())
        try:
            self._sync_pages(proc, sorted(pages))
        except DebuggerError:
            if old is None:
                del book.ranges[address]
            else:
                book.ranges[address] = old
            raise

    def clear_memory_breakpoint(self, pid: int, address: int) -> None:
        proc = self._proc(pid)
        book = proc.guards
        if book is None or address not in book.ranges:
            return
        size, _ = book.ranges.pop(address)
        self._sync_pages(proc, pages_of(address, size))

    def _release_guards(self, proc: Process) -> None:
        """Give every guarded page its protection back (detach); all threads are stopped."""
        book = proc.guards
        if book is None or not book.applied:
            return
        book.ranges.clear()
        self._sync_pages(proc, list(book.applied))
        for th in proc.threads.values():
            th.guard = None

    def _sync_pages(self, proc: Process, pages: Any) -> None:
        """Bring `pages` to the protection the book wants, in as few mprotect calls as runs allow.

        Threads are stopped first and the book changed after: a thread that faulted on
        a page just before must have that fault sorted while the page still counts as
        guarded, or it would pass for a real access violation (and kill the target)."""
        book = proc.guards
        assert book is not None
        with self._all_stopped(proc):
            maps = None
            changes: list[tuple[int, int]] = []
            for page in pages:
                if page not in book.original:
                    maps = maps if maps is not None else procfs.maps(proc.pid)
                    mapping = next((m for m in maps if m.start <= page < m.end), None)
                    if mapping is None:
                        raise DebuggerError(f"no memory is mapped at {page:#x} in process {proc.pid}")
                    book.original[page] = prot_of(mapping.perms)
                want = book.wanted(page)
                now = book.applied.get(page, book.original[page])
                target = book.original[page] if want is None else want
                if target != now:
                    changes.append((page, target))
                if want is None:
                    book.applied.pop(page, None)
                    book.released[page] = book.original.pop(page)
                else:
                    book.applied[page] = want
            if changes:
                self._mprotect_runs(proc, self._injection_thread(proc), changes)

    def _wait_injected(self, tid: int) -> int:
        """The stop that ends an injected step; an exit instead (SIGKILL from outside) is
        kept for the event loop to report, and the injection is abandoned."""
        status = self._waitpid_tid(tid)
        if not os.WIFSTOPPED(status):
            self._deferred.append((tid, status))
            raise TargetLost(f"thread {tid} ended while changing page protections")
        return status

    def _injection_thread(self, proc: Process) -> Thread:
        for th in sorted(proc.threads.values(), key=lambda t: t.tid != proc.pid):
            if th.stopped:
                return th
        raise DebuggerError(f"no stopped thread in process {proc.pid} to change page protections in")

    def _mprotect_runs(self, proc: Process, th: Thread, changes: list[tuple[int, int]]) -> None:
        runs: list[list[int]] = []                   # [start, length, prot]
        for page, prot in sorted(changes):
            if runs and runs[-1][0] + runs[-1][1] == page and runs[-1][2] == prot:
                runs[-1][1] += PAGE
            else:
                runs.append([page, PAGE, prot])
        for start, length, prot in runs:
            self._mprotect(proc, th, start, length, prot)

    def _mprotect(self, proc: Process, th: Thread, start: int, length: int, prot: int) -> None:
        book = proc.guards
        assert book is not None
        if book.syscall is None:
            book.syscall = find_syscall(proc.pid, proc.read)
        self._flush(th)        # the engine's pending register edits go in before we save them
        try:
            result = inject_syscall(th.tid, self._wait_injected, book.syscall, SYS_MPROTECT, start, length, prot)
        except _ffi.SyscallError as e:
            raise self._lost(proc, e) from None
        if result < 0:
            raise DebuggerError(f"mprotect({start:#x}, {length:#x}, {prot}) in process {proc.pid}: "
                                f"{os.strerror(-result)}")

    # -- faults ------------------------------------------------------------------------
    def _on_guard_fault(self, proc: Process, th: Thread, si_code: int, address: int) -> Events | None:
        """A SIGSEGV stop: None when it is not ours (a real access violation); otherwise
        the GUARD_PAGE event of a hit (thread held), or nothing (thread continued by the
        caller, which steps it through the page: see _cont)."""
        book = proc.guards
        if book is None or si_code != SEGV_ACCERR:
            return None
        owned = book.owns(address)
        if not owned and page_of(address) not in book.released:
            return None
        regs = self._regs(th)
        pc = regs.rip
        try:
            code = proc.read(pc, MAX_INSN)
        except DebuggerError:
            code = b""
        access, lo, hi = classify_access(code, pc, regs, address)
        if not owned:
            return self._stale_fault(proc, th, book, address, access)
        if book.applied[page_of(address)] != PROT_NONE and access == Access.READ:
            access = Access.WRITE    # reads pass read-only pages: what faulted there wrote
        previous = th.guard.pages if th.guard is not None else frozenset()
        th.guard = GuardFault(previous | {page_of(address)})
        th.signal = 0                # never deliver our own SIGSEGV, not even on detach
        hit = book.match(lo, hi, access)
        if hit is None:
            th.held = False
            return []
        th.held = True
        return [DebugEvent(EventCode.EXCEPTION_DEBUG_EVENT, proc.pid, th.tid,
                           ExceptionInfo(ExceptionCode.GUARD_PAGE, pc, True, hit, access, "SIGSEGV", si_code))]

    def _stale_fault(self, proc: Process, th: Thread, book: GuardBook, address: int,
                     access: Access) -> Events | None:
        """A fault on a page we have given back since: the thread faulted while it was
        guarded and its stop was collected later. If the page allows the access now, the
        instruction simply runs again; otherwise it is a real access violation."""
        allowed = book.released[page_of(address)]
        needed = {Access.READ: PROT_READ, Access.WRITE: PROT_WRITE, Access.EXECUTE: PROT_EXEC}[access]
        mapping = procfs.mapping_at(proc.pid, address)
        if mapping is None or prot_of(mapping.perms) != allowed or not allowed & needed:
            return None
        th.signal, th.held = 0, False
        return []

    def _cont(self, th: Thread, sig: int) -> None:
        if th.guard is not None and th.stopped:
            proc = self._procs.get(th.pid)
            if proc is not None:
                try:
                    with self._all_stopped(proc, keep=th.tid):
                        self._queue.extend(self._step_past_guard(proc, th))
                except TargetLost:
                    th.guard = None
                    return           # killed under us: its exit status follows
                if th.tid not in self._threads or th.held:
                    return           # the step raised an event of its own: the thread waits for it
                sig = 0
        super()._cont(th, sig)

    def _step_past_guard(self, proc: Process, th: Thread) -> Events:
        """Execute th's faulting instruction with the guarded pages it touches open again;
        every other thread is stopped. Returns the events the step raised, none when the
        instruction simply completed (th then sits in an internal stop)."""
        hits: Events = []
        for _ in range(MAX_TRIES):
            fault = th.guard
            if fault is None:
                break
            status = self._step_open(proc, th, sorted(fault.pages))
            events = self._handle(th.tid, status)
            if th.tid not in self._threads:
                return hits + events
            if th.guard is not fault:
                hits += events       # it touched another guarded page: open that one too
                continue
            if self._plain_step(th, events):
                th.guard, th.held = None, bool(hits)
                return hits
            if not events and not th.held:
                continue             # a stray interrupt stop: the instruction has not run yet
            th.guard = None          # a signal or another fault: its event says what happened
            return hits + events
        th.guard = None
        raise DebuggerError(f"thread {th.tid} could not complete an access to a guarded page")

    def _step_open(self, proc: Process, th: Thread, pages: list[int]) -> int:
        book = proc.guards
        assert book is not None
        self._mprotect_runs(proc, th, [(p, book.original[p]) for p in pages if p in book.applied])
        status: int | None = None
        try:
            self._flush(th)
            th.stopped = th.held = False
            th.regs_valid = False
            try:
                _ffi.ptrace(_ffi.PTRACE_SINGLESTEP, th.tid, None, 0)
            except _ffi.SyscallError as e:
                raise self._lost(proc, e) from None
            status = self._waitpid_tid(th.tid)
        finally:
            self._reprotect(proc, th, pages, status is not None and os.WIFSTOPPED(status))
        return status

    def _reprotect(self, proc: Process, th: Thread, pages: list[int], th_stopped: bool) -> None:
        """Close the pages again, through th if its step ended in a stop (of whatever
        kind: injection preserves it), else through any stopped sibling (th was killed)."""
        book = proc.guards
        if book is None:
            return
        changes = [(p, book.applied[p]) for p in pages if p in book.applied]
        if not changes:
            return
        if th_stopped:
            th.stopped = True
            try:
                self._mprotect_runs(proc, th, changes)
            finally:
                th.stopped = False    # _handle decodes the step's status next
            return
        others = [t for t in proc.threads.values() if t.stopped and t is not th]
        if others:
            self._mprotect_runs(proc, others[0], changes)

    @staticmethod
    def _plain_step(th: Thread, events: Events) -> bool:
        """Whether `events` is just the trap of a completed single step."""
        if len(events) != 1:
            return False
        info = events[0].info
        return (events[0].tid == th.tid and isinstance(info, ExceptionInfo)
                and info.code == ExceptionCode.SINGLE_STEP and not info.hw_slots)

    def _fork_guards(self, parent: Process, child_pid: int, follow: bool, vfork: bool) -> GuardBook | None:
        """A fork child inherits the guarded pages: a followed child keeps a copy of the
        book; an unfollowed one gets its protections back before it runs untraced. A vfork
        child shares its parent's pages: nothing to do (nor possible) there."""
        book = parent.guards
        if book is None or not book.applied:
            return None
        if follow:
            return book.copy()
        if not vfork and book.syscall is not None:
            try:
                for page, prot in book.original.items():
                    if page in book.applied:
                        inject_syscall(child_pid, self._wait_injected, book.syscall, SYS_MPROTECT, page, PAGE, prot)
            except DebuggerError:
                pass       # the child died already; it is detached next either way
        return None
