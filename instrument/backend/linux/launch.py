"""Starting traced programs (fork, SIGSTOP, PTRACE_SEIZE, exec), their stderr pump, and timed waits."""

from __future__ import annotations

import fcntl
import os
import re
import select
import shutil
import signal
import struct
import termios
import threading
import time
from collections import deque
from typing import Callable

from ... import interrupts
from ...errors import TargetError
from ...events import DebugStringInfo
from ..base import SpawnOptions
from . import _ffi, seccomp
from .sigpump import SignalPump, write_all as _write_all

_STAGE_CHDIR, _STAGE_EXEC, _STAGE_FILTER = 1, 2, 3
_WAIT_FLAGS = os.WEXITED | os.WSTOPPED | os.WNOWAIT | _ffi.WALL


class Expired(Exception):
    """Raised out of a blocking wait by SIGALRM: the deadline passed, or stderr has news."""


class WaitAlarm:
    """Blocking waits that a deadline (setitimer/SIGALRM) or the stderr pump can interrupt.

    A Python signal handler can only interrupt a system call by raising. Raising
    right after waitpid() returned would lose a status, so the interruptible
    wait is waitid(WNOWAIT), which consumes nothing, followed by a WNOHANG
    waitpid. The timer is re-armed only when the deadline moves later, so an
    engine passing the remaining session time does not pay setitimer per stop.
    Signals are a main-thread affair; in other threads the wait polls. SIGIO
    (sigpump.SignalPump's pipes) is counted and interrupts a wait likewise.
    """

    def __init__(self) -> None:
        self._main = threading.main_thread().ident
        self._installed = False
        self._previous: object = None
        self._armed_for: float | None = None
        self._waiting = False
        self._io_previous: object = None
        self._io_installed = False
        self.io_count = 0

    def waitpid(self, deadline: float | None) -> tuple[int, int]:
        # In the main thread every blocking wait is the interruptible one: SIGINT
        # and SIGTERM (instrument.interrupts) may only end the session there.
        in_main = threading.get_ident() == self._main
        if deadline is None and not in_main:
            return os.waitpid(-1, _ffi.WALL)
        if not in_main:
            return self._poll(deadline or 0.0)
        if not self._installed:       # checked here: one call less per stop
            self._install()
        while True:
            if deadline is not None:
                # A status that is there already wins over a deadline just passed.
                got = os.waitpid(-1, _ffi.WALL | os.WNOHANG)
                if got[0]:
                    return got
                if time.monotonic() >= deadline:
                    raise Expired()
                self._arm(deadline)
            interrupts.check()
            self._waiting = interrupts.state.waiting = True
            try:
                # Returns at once when a status is waiting: no WNOHANG probe first,
                # which would cost a system call on every stop (HOUSE rule 12).
                os.waitid(os.P_ALL, 0, _WAIT_FLAGS)
            finally:
                self._waiting = interrupts.state.waiting = False
            got = os.waitpid(-1, _ffi.WALL | os.WNOHANG)
            if got[0]:
                return got

    def _poll(self, deadline: float) -> tuple[int, int]:
        pause = 0.0002
        while True:
            got = os.waitpid(-1, _ffi.WALL | os.WNOHANG)
            if got[0]:
                return got
            if time.monotonic() >= deadline:
                raise Expired()
            time.sleep(pause)
            pause = min(pause * 2, 0.01)

    def _install(self) -> None:
        if not self._installed:
            self._previous = signal.signal(signal.SIGALRM, self._on_alarm)
            self._installed = True

    def _arm(self, deadline: float) -> None:
        if self._armed_for is not None and self._armed_for <= deadline + 0.001:
            return   # pending (the handler clears it on firing) and no later than we need
        signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 0.0001))
        self._armed_for = deadline

    def _on_alarm(self, signo: int, frame: object) -> None:
        if signal.getitimer(signal.ITIMER_REAL)[0] == 0:
            self._armed_for = None       # the timer fired (not a wake-up from the pump)
        if self._waiting:
            raise Expired()

    def _on_io(self, signo: int, frame: object) -> None:
        self.io_count += 1
        if self._waiting:
            raise Expired()

    def watch_io(self) -> Callable[[], int] | None:
        """Count SIGIO from now on (before any fd is made O_ASYNC: SIGIO's default is to
        terminate); the count's reader, or None outside the main thread."""
        if threading.get_ident() != self._main:
            return None
        if not self._io_installed:
            self._io_previous = signal.signal(signal.SIGIO, self._on_io)
            self._io_installed = True
        return lambda: self.io_count

    def wake(self) -> None:
        """Called from the stderr pump thread: interrupt a blocked wait so lines go out now."""
        if self._installed and self._waiting and self._main is not None:
            signal.pthread_kill(self._main, signal.SIGALRM)

    def close(self) -> None:
        if self._installed and threading.get_ident() == self._main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous)  # type: ignore[arg-type]
            self._installed = False
            self._armed_for = None
        if self._io_installed and threading.get_ident() == self._main:
            signal.signal(signal.SIGIO, self._io_previous)  # type: ignore[arg-type]
            self._io_installed = False


class StderrPump:
    """Reads the target's stderr pipe: passes each chunk through to our fd 2 at once,
    and keeps one DebugStringInfo per line (without its newline) for the event queue.

    When the target has exited, `take(final=True)` needs what it wrote before it
    went, not end of file: a background child still holding the pipe would hold
    that back for good. So the pump thread, asked through a self-pipe, says when
    nothing is left unread; it decides alone, so no chunk is ever between threads."""

    FINAL_WAIT = 2.0        # at most, for a target whose last writes are still coming in

    def __init__(self, fd: int, wake: Callable[[], None]) -> None:
        self._fd = fd
        self._wake = wake
        self._lines: deque[DebugStringInfo] = deque()
        self._done = threading.Event()
        self._final = False
        self._drained = threading.Event()
        self._ask_r, self._ask_w = os.pipe2(os.O_CLOEXEC)
        self._ask_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"instrument-stderr-{fd}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        partial = b""
        poller = select.poll()
        for fd in (self._fd, self._ask_r):
            poller.register(fd, select.POLLIN)
        try:
            while True:
                ready = {fd for fd, _ in poller.poll()}       # poll: select fails on fds >= 1024
                if self._ask_r in ready:
                    os.read(self._ask_r, 64)
                if self._fd in ready:
                    try:
                        chunk = os.read(self._fd, 65536)
                    except OSError:
                        break
                    if not chunk:
                        break
                    _write_all(2, chunk)
                    *lines, partial = (partial + chunk).split(b"\n")
                    self._lines.extend(DebugStringInfo(line.decode("utf-8", "replace")) for line in lines)
                    if lines:
                        self._wake()
                if self._final and _unread(self._fd) == 0:
                    if partial:      # the target is gone: its last line has no newline to wait for
                        self._lines.append(DebugStringInfo(partial.decode("utf-8", "replace")))
                        partial = b""
                    self._drained.set()
        finally:
            if partial:
                self._lines.append(DebugStringInfo(partial.decode("utf-8", "replace")))
            os.close(self._fd)
            with self._ask_lock:        # take() must never write to a closed (reused) fd
                os.close(self._ask_r)
                os.close(self._ask_w)
                self._done.set()

    def pending(self) -> bool:
        """Lines are waiting (cheap: asked before every wait for the next event)."""
        return bool(self._lines)

    def take(self, final: bool) -> list[DebugStringInfo]:
        """The lines read so far; with `final` (the target has exited), first every
        line it wrote: up to end of file, or until nothing is left unread."""
        if final and not self._done.is_set():
            self._final = True
            with self._ask_lock:
                if not self._done.is_set():
                    os.write(self._ask_w, b"?")
            deadline = time.monotonic() + self.FINAL_WAIT
            while not (self._done.wait(0) or self._drained.wait(0.001)) and time.monotonic() < deadline:
                pass
        out: list[DebugStringInfo] = []
        while self._lines:
            out.append(self._lines.popleft())
        return out

    def join(self, timeout: float) -> None:
        self._done.wait(timeout)


def _unread(fd: int) -> int:
    """Bytes waiting in a pipe."""
    try:
        return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])
    except OSError:
        return 0


class Launcher:
    """fork (or posix_spawn of a shell trampoline) + SIGSTOP + PTRACE_SEIZE + exec, so the
    target is traced before its first instruction and SEIZE semantics (PTRACE_INTERRUPT,
    clean detach) hold throughout."""

    def __init__(self, wake: Callable[[], None], watch_io: Callable[[], Callable[[], int] | None] | None = None
                 ) -> None:
        self._wake = wake
        self._watch_io = watch_io
        self._pumps: list[SignalPump] = []
        self._errpipes: dict[int, int] = {}
        self._saved_affinity: set[int] | None = None

    def start(self, options: SpawnOptions) -> tuple[int, StderrPump | SignalPump | None]:
        argv = list(options.argv)
        if not argv:
            raise TargetError("cannot start '': empty command")
        env = dict(os.environ) if options.env is None else dict(options.env)
        path = _resolve(argv[0], env.get("PATH", os.defpath), options.cwd)
        stdin_fd = None
        if options.stdin_path is not None:
            try:
                stdin_fd = os.open(options.stdin_path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise TargetError(f"cannot open stdin '{options.stdin_path}': {e.strerror}") from None
        if options.pin_cpu:
            self._pin()
        # Unpinned, the child gets the mask we had before any pinning of ours.
        affinity = None if options.pin_cpu else self._saved_affinity
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC) if options.capture_stderr else (None, None)
        bpf = seccomp.program(options.syscalls) if options.syscall_filter and options.syscalls else None
        pid = None
        if options.cwd is None and affinity is None and bpf is None:
            pid = _spawn_by_shell(path, argv, env, stdin_fd, out_w)
        if pid is None:
            pid = os.fork()
            if pid == 0:
                _child(path, argv, env, options.cwd, stdin_fd, out_w, err_w, affinity, bpf)
        for fd in (err_w, out_w, stdin_fd):
            if fd is not None:
                os.close(fd)
        self._errpipes[pid] = err_r
        return pid, (self._pump(out_r) if out_r is not None else None)

    def _pump(self, fd: int) -> StderrPump | SignalPump:
        news = self._watch_io() if self._watch_io is not None else None
        if news is None:
            return StderrPump(fd, self._wake)
        pump = SignalPump(fd, news)
        self._pumps.append(pump)
        return pump

    def seize_until_exec(self, pid: int, options: int, argv0: str = "") -> None:
        """Attach to the child stopped before exec and run it to its PTRACE_EVENT_EXEC stop."""
        err_r = self._errpipes.pop(pid)
        try:
            _, status = os.waitpid(pid, os.WUNTRACED)
            if not os.WIFSTOPPED(status):
                raise _failure(err_r, status, argv0)
            _ffi.ptrace(_ffi.PTRACE_SEIZE, pid, None, options)
            # SEIZE of a stopped child reports its group-stop; SIGCONT then brings a
            # signal-delivery-stop. Both are ours: continue without a signal.
            os.kill(pid, signal.SIGCONT)
            while True:
                _, status = os.waitpid(pid, _ffi.WALL)
                if not os.WIFSTOPPED(status):
                    raise _failure(err_r, status, argv0)
                if status >> 16 == _ffi.PTRACE_EVENT_EXEC:
                    return
                _ffi.ptrace(_ffi.PTRACE_CONT, pid, None, 0)
        except BaseException:
            _kill_and_reap(pid)
            raise
        finally:
            os.close(err_r)

    @property
    def saved_affinity(self) -> set[int] | None:
        """The CPUs we had before pinning ourselves (None: not pinned)."""
        return self._saved_affinity

    def _pin(self) -> None:
        # HOUSE rule 12: a stop/resume round trip is ~8x cheaper when tracer and
        # target share a CPU (no idle CPU to wake); the child inherits the mask.
        if self._saved_affinity is None:
            self._saved_affinity = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {_ffi.sched_getcpu()})

    def close(self) -> None:
        for fd in self._errpipes.values():
            os.close(fd)
        self._errpipes.clear()
        for pump in self._pumps:
            pump.close()
        self._pumps.clear()
        if self._saved_affinity is not None:
            os.sched_setaffinity(0, self._saved_affinity)
            self._saved_affinity = None


def _resolve(program: str, search_path: str, cwd: str | None) -> str:
    """The file execve will run, or TargetError worded like a shell's."""
    if "/" in program:
        full = os.path.join(cwd, program) if cwd and not os.path.isabs(program) else program
        if not os.path.exists(full):
            raise TargetError(f"cannot start '{program}': No such file or directory")
        if os.path.isdir(full) or not os.access(full, os.X_OK):
            raise TargetError(f"cannot start '{program}': Permission denied")
        return program
    found = shutil.which(program, path=search_path)
    if found is None:
        raise TargetError(f"cannot start '{program}': No such file or directory")
    return found


# What the shell trampoline runs: stop for the tracer, then exec the target, as the fork
# path's child does. `unset PWD` where the caller's environment has none (dash adds it).
_TRAMPOLINE = 'kill -STOP $$; exec "$0" "$@"'
_TRAMPOLINE_NO_PWD = 'kill -STOP $$; unset PWD; exec "$0" "$@"'
_SHELL = "/bin/sh"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Variables a POSIX shell sets for itself whatever the environment says (dash: IFS to
# its default, OPTIND to 1, PPID to its parent): with any of them the fork path runs.
_SHELL_OWNED = frozenset({"IFS", "OPTIND", "PPID"})


def _spawn_by_shell(path: str, argv: list[str], env: dict[str, str], stdin_fd: int | None,
                    stderr_fd: int | None) -> int | None:
    """Start the target as gdb does by default (startup-with-shell): posix_spawn (vfork
    in glibc) of `/bin/sh -c 'kill -STOP $$; exec "$0" "$@"' PROGRAM ARGS`, which stops
    before its exec exactly as the fork path's child does. Forking this process copies
    its page tables and then every page either side writes until the exec: 4-10 ms per
    start here against about 1 ms for posix_spawn and the shell. None where the shell
    would change what the target gets (the fork path then): an argv[0] other than the
    file run, a file that is not ELF (a shell runs one that exec refuses as a script), an
    environment a shell does not pass through as is (names that are not identifiers,
    IFS/OPTIND/PPID, a PWD that is not the working directory)."""
    if argv[0] != path or not os.access(_SHELL, os.X_OK) or any(
            name in _SHELL_OWNED or not _NAME.match(name) for name in env):
        return None
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"\x7fELF":
                return None
        if "PWD" in env and not os.path.samefile(env["PWD"], "."):
            return None
    except OSError:
        return None
    actions: list[tuple[int, ...]] = []
    if stdin_fd is not None:
        actions.append((os.POSIX_SPAWN_DUP2, stdin_fd, 0))
    if stderr_fd is not None:
        actions.append((os.POSIX_SPAWN_DUP2, stderr_fd, 2))
    script = _TRAMPOLINE if "PWD" in env else _TRAMPOLINE_NO_PWD
    try:
        # Python ignores SIGPIPE and SIGXFSZ; exec keeps ignored signals ignored.
        return os.posix_spawn(_SHELL, [_SHELL, "-c", script, *argv], env, file_actions=actions,
                              setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
    except OSError:
        return None


def _child(path: str, argv: list[str], env: dict[str, str], cwd: str | None,
           stdin_fd: int | None, stderr_fd: int | None, err_w: int, affinity: set[int] | None,
           bpf: list[seccomp.Insn] | None) -> None:
    """In the forked child: set up fds, stop for the tracer, exec. Never returns."""
    stage = _STAGE_CHDIR
    try:
        # Python ignores SIGPIPE and SIGXFSZ; exec keeps ignored signals ignored.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        if stdin_fd is not None:
            os.dup2(stdin_fd, 0)
        if stderr_fd is not None:
            os.dup2(stderr_fd, 2)
        if affinity:
            os.sched_setaffinity(0, affinity)
        if cwd:
            os.chdir(cwd)
        stage = _STAGE_EXEC
        os.kill(os.getpid(), signal.SIGSTOP)
        if bpf is not None:
            # Now, seized: a filter installed before the tracer is there would fail the
            # named calls with ENOSYS. No new privileges is required without CAP_SYS_ADMIN.
            stage = _STAGE_FILTER
            seccomp.install(bpf, no_new_privs=os.geteuid() != 0)
            stage = _STAGE_EXEC
        os.execve(path, argv, env)
    except (OSError, _ffi.SyscallError) as e:
        os.write(err_w, bytes([stage]) + (e.errno or 0).to_bytes(4, "little"))
    finally:
        os._exit(127)


def _failure(err_r: int, status: int, argv0: str) -> TargetError:
    data = os.read(err_r, 5)
    if len(data) == 5:
        err = int.from_bytes(data[1:], "little")
        what = {_STAGE_CHDIR: "cannot enter its directory: ",
                _STAGE_FILTER: "cannot install the seccomp filter: "}.get(data[0], "")
        return TargetError(f"cannot start '{argv0}': {what}{os.strerror(err)}")
    return TargetError(f"cannot start '{argv0}': it ended before exec (status {status:#x})")


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, _ffi.WALL)
    except OSError:
        pass
