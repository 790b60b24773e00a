"""The ptrace backend against real processes: events, breakpoints, registers, memory, threads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Callable, Iterator

import pytest
from elftools.elf.elffile import ELFFile

from instrument.backend import get_backend
from instrument.backend.base import SpawnOptions
from instrument.backend.linux import debugregs, procfs
from instrument.backend.linux.tracee import LinuxBackend
from instrument.errors import DebuggerError, TargetError
from instrument.events import DebugEvent, EventCode, ExceptionCode

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the ptrace backend runs on Linux")

INT3 = b"\xcc"


@pytest.fixture
def backend() -> Iterator[LinuxBackend]:
    b = get_backend()
    assert isinstance(b, LinuxBackend)
    try:
        yield b
    finally:
        b.close()


def symbol(path: str, name: str) -> int:
    with open(path, "rb") as f:
        sym = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)  # type: ignore[union-attr]
        assert sym, name
        return int(sym[0]["st_value"])


def spawn(backend: LinuxBackend, *argv: str, **kw: object) -> tuple[int, DebugEvent]:
    pid = backend.spawn(SpawnOptions(argv=tuple(argv), **kw))  # type: ignore[arg-type]
    first = backend.wait_event(timeout=10)
    assert first is not None and first.code == EventCode.CREATE_PROCESS_DEBUG_EVENT
    return pid, first


def run_to_exit(backend: LinuxBackend, on_event: Callable[[DebugEvent], None] | None = None,
                timeout: float = 30) -> list[DebugEvent]:
    """Pump events until EXIT_PROCESS, resuming each; returns them all."""
    events: list[DebugEvent] = []
    deadline = time.monotonic() + timeout
    while True:
        ev = backend.wait_event(timeout=max(deadline - time.monotonic(), 0.01))
        assert ev is not None, f"no EXIT_PROCESS within {timeout}s; got {[e.code.name for e in events[-5:]]}"
        events.append(ev)
        if on_event is not None:
            on_event(ev)
        if ev.code == EventCode.EXIT_PROCESS_DEBUG_EVENT:
            return events
        backend.resume(ev.tid)


def step_over(backend: LinuxBackend, ev: DebugEvent, address: int, original: bytes) -> None:
    """What the engine does at a soft breakpoint: hold the siblings, restore, rewind, step, re-insert."""
    backend.hold_others(ev.tid)
    backend.write_memory(ev.pid, address, original)
    backend.registers(ev.tid)["rip"] = address
    step = backend.single_step(ev.tid)
    assert step.code == EventCode.EXCEPTION_DEBUG_EVENT
    assert step.info.code == ExceptionCode.SINGLE_STEP  # type: ignore[union-attr]
    backend.write_memory(ev.pid, address, INT3)


def count_breakpoints(backend: LinuxBackend, address: int, original: bytes,
                      seen: list[DebugEvent]) -> Callable[[DebugEvent], None]:
    def on_event(ev: DebugEvent) -> None:
        if ev.code == EventCode.EXCEPTION_DEBUG_EVENT and ev.info.code == ExceptionCode.BREAKPOINT:  # type: ignore[union-attr]
            assert ev.info.address == address  # type: ignore[union-attr]
            seen.append(ev)
            step_over(backend, ev, address, original)
    return on_event


def names(events: list[DebugEvent], code: EventCode) -> list[str]:
    return [os.path.basename(e.info.path) for e in events if e.code == code]  # type: ignore[union-attr]


# -- events --------------------------------------------------------------------------
def test_loop_reports_process_modules_and_exit(backend, targets, capfd):
    pid, first = spawn(backend, targets["loop"], "3")
    assert first.info.image_path == targets["loop"]
    assert first.info.image_base == procfs.auxv(pid)[procfs.AT_ENTRY] - ELFFile(open(targets["loop"], "rb")).header["e_entry"]
    events = [first] + run_to_exit(backend)
    loaded = names(events, EventCode.LOAD_DLL_DEBUG_EVENT)
    assert loaded[0] == "ld-linux-x86-64.so.2"            # the loader right after CREATE_PROCESS
    assert "libc.so.6" in loaded and "linux-vdso.so.1" in loaded
    assert len(loaded) == len(set(loaded))
    assert events[-1].code == EventCode.EXIT_PROCESS_DEBUG_EVENT
    assert events[-1].info.exit_code == 0 and events[-1].info.signal is None
    assert sum(e.code == EventCode.CREATE_PROCESS_DEBUG_EVENT for e in events) == 1
    assert "sum=6 counter=3" in capfd.readouterr().out


def test_modules_lists_main_image_loader_and_libraries(backend, targets):
    pid, first = spawn(backend, targets["loop"], "1")
    address = first.info.image_base + symbol(targets["loop"], "hit")
    original = backend.read_memory(pid, address, 1)
    backend.write_memory(pid, address, INT3)
    backend.resume(pid)
    while True:
        ev = backend.wait_event(timeout=10)
        if ev.code == EventCode.EXCEPTION_DEBUG_EVENT:
            break
        backend.resume(ev.tid)
    mods = backend.modules(pid)
    assert mods[0].path == targets["loop"] and mods[0].base == first.info.image_base
    assert {"ld-linux-x86-64.so.2", "libc.so.6"} <= {m.name for m in mods}
    backend.write_memory(pid, address, original)
    backend.registers(ev.tid)["rip"] = address
    backend.resume(ev.tid)
    assert run_to_exit(backend)[-1].info.exit_code == 0


# -- soft breakpoints, registers, memory ------------------------------------------------
def test_int3_on_hit_reports_each_call_with_its_argument(backend, targets, capfd):
    n = 25
    pid, first = spawn(backend, targets["loop"], str(n))
    address = first.info.image_base + symbol(targets["loop"], "hit")
    original = backend.read_memory(pid, address, 1)
    backend.write_memory(pid, address, INT3)
    assert backend.read_memory(pid, address, 1) == INT3
    hits: list[DebugEvent] = []
    args: list[int] = []

    def on_event(ev: DebugEvent) -> None:
        if ev.code == EventCode.EXCEPTION_DEBUG_EVENT:
            args.append(backend.registers(ev.tid)["rdi"])
            assert ev.info.first_chance and ev.info.signal == "SIGTRAP"
        count_breakpoints(backend, address, original, hits)(ev)

    events = run_to_exit(backend, on_event)
    assert len(hits) == n and args == list(range(n))
    assert events[-1].info.exit_code == 0
    assert f"sum={n * (n - 1)} counter={n * (n - 1) // 2}" in capfd.readouterr().out


def test_register_write_changes_the_result(backend, targets, capfd):
    pid, first = spawn(backend, targets["loop"], "3")
    address = first.info.image_base + symbol(targets["loop"], "hit")
    original = backend.read_memory(pid, address, 1)
    backend.write_memory(pid, address, INT3)

    def on_event(ev: DebugEvent) -> None:
        if ev.code == EventCode.EXCEPTION_DEBUG_EVENT:
            regs = backend.registers(ev.tid)
            regs["rdi"] = 10                     # hit(10) each time: returns 20, adds 10
            assert backend.registers(ev.tid)["rdi"] == 10
            step_over(backend, ev, address, original)

    run_to_exit(backend, on_event)
    assert "sum=60 counter=30" in capfd.readouterr().out


def test_read_and_write_a_global(backend, targets, capfd):
    pid, first = spawn(backend, targets["loop"], "1")
    address = first.info.image_base + symbol(targets["loop"], "message")
    assert backend.read_memory(pid, address, 16) == b"hello from loop\0"
    backend.write_memory(pid, address, b"patched\0")
    assert backend.read_memory(pid, address, 8) == b"patched\0"
    run_to_exit(backend)
    assert "message=patched\n" in capfd.readouterr().out


def test_unreadable_memory_and_running_threads_raise(backend, targets):
    pid, _ = spawn(backend, targets["sleeper"], "50")
    with pytest.raises(DebuggerError, match="0x10"):
        backend.read_memory(pid, 0x10, 4)
    with pytest.raises(DebuggerError):
        backend.write_memory(pid, 0x10, b"x")
    backend.resume(pid)
    while (ev := backend.wait_event(timeout=0.2)) is not None:   # the LOAD_DLL burst
        backend.resume(ev.tid)
    with pytest.raises(DebuggerError, match="not stopped"):
        backend.registers(pid)
    backend.kill(pid)
    assert not procfs.is_alive(pid)


def test_wait_event_times_out_then_continues(backend, targets, capfd):
    # sleeper 100 runs 100 ticks of 10 ms. A wait that returns None before the target
    # is done timed out, rather than waiting for its exit (how late: bench/latency.py).
    pid, _ = spawn(backend, targets["sleeper"], "100")
    backend.resume(pid)
    while (ev := backend.wait_event(timeout=0.1)) is not None:
        backend.resume(ev.tid)
    assert "done" not in capfd.readouterr().out and procfs.is_alive(pid)
    assert run_to_exit(backend)[-1].info.exit_code == 0
    assert "done 100" in capfd.readouterr().out


# -- modules, stderr, crashes ---------------------------------------------------------
def test_dlopen_and_dlclose_are_load_and_unload(backend, targets, capfd):
    plugin = targets["plugin"]
    spawn(backend, targets["plugin_host"], plugin)
    events = run_to_exit(backend)
    loads = [e for e in events if e.code == EventCode.LOAD_DLL_DEBUG_EVENT and e.info.path == plugin]
    unloads = [e for e in events if e.code == EventCode.UNLOAD_DLL_DEBUG_EVENT]
    assert len(loads) == 1 and len(unloads) == 1
    assert unloads[0].info.base == loads[0].info.base and unloads[0].info.path == plugin
    assert events.index(loads[0]) < events.index(unloads[0])
    assert "plugin_work(7)=22" in capfd.readouterr().out


def test_stderr_lines_are_debug_strings_before_exit(backend, targets, capfd):
    spawn(backend, targets["stderr_writer"])
    events = run_to_exit(backend)
    texts = [e.info.text for e in events if e.code == EventCode.OUTPUT_DEBUG_STRING_EVENT]
    assert texts == ["first warning", "second warning"]
    assert events[-1].code == EventCode.EXIT_PROCESS_DEBUG_EVENT and events[-1].info.exit_code == 3
    out, err = capfd.readouterr()
    assert out == "normal output\n" and err == "first warning\nsecond warning\n"


def run_passing_signals(backend: LinuxBackend) -> tuple[list[DebugEvent], DebugEvent]:
    """Pump events to EXIT_PROCESS, delivering every exception: (exceptions, exit)."""
    exceptions: list[DebugEvent] = []
    while True:
        ev = backend.wait_event(timeout=10)
        assert ev is not None
        if ev.code == EventCode.EXIT_PROCESS_DEBUG_EVENT:
            return exceptions, ev
        if ev.code == EventCode.EXCEPTION_DEBUG_EVENT:
            exceptions.append(ev)
        backend.resume(ev.tid, pass_exception=True)


def test_segv_is_a_last_chance_access_violation(backend, targets):
    pid, first = spawn(backend, targets["bk_segv"])
    crashes, exit_event = run_passing_signals(backend)
    assert len(crashes) == 1
    info = crashes[0].info
    assert info.code == ExceptionCode.ACCESS_VIOLATION and info.signal == "SIGSEGV"
    assert info.fault_address == 0x1234 and info.first_chance is False and info.access is None
    assert not info.from_user
    poke = first.info.image_base + symbol(targets["bk_segv"], "poke")
    assert poke <= info.address < poke + 64
    assert exit_event.info.signal == "SIGSEGV" and exit_event.info.exit_code is None


def test_handled_segv_is_first_chance(backend, targets):
    spawn(backend, targets["bk_segv"], "handled")
    crashes, exit_event = run_passing_signals(backend)
    assert [c.info.first_chance for c in crashes] == [True]
    assert exit_event.info.exit_code == 7


# -- threads and all-stop stepping ------------------------------------------------------
def test_int3_in_threads_hits_every_call(backend, targets, capfd):
    t, m = 4, 150
    pid, first = spawn(backend, targets["threads"], str(t), str(m))
    address = first.info.image_base + symbol(targets["threads"], "work")
    original = backend.read_memory(pid, address, 1)
    backend.write_memory(pid, address, INT3)
    hits: list[DebugEvent] = []
    events = run_to_exit(backend, count_breakpoints(backend, address, original, hits), timeout=60)
    # Without hold_others (all-stop) a sibling would run through `work` while its int3 is out.
    assert len(hits) == t * m
    assert len({e.tid for e in hits}) == t
    created = [e.tid for e in events if e.code == EventCode.CREATE_THREAD_DEBUG_EVENT]
    exited = [e.tid for e in events if e.code == EventCode.EXIT_THREAD_DEBUG_EVENT]
    assert len(created) == t and sorted(created) == sorted(exited) and pid not in created
    assert "ok" in capfd.readouterr().out
    assert events[-1].info.exit_code == 0


# -- calls injected into the target ------------------------------------------------------
def test_an_injected_call_returns_its_value_and_leaves_the_thread_as_it_was(backend, targets, capfd):
    pid, first = spawn(backend, targets["loop"], "3")
    fact = first.info.image_base + symbol(targets["loop"], "fact")
    before = dict(backend.registers(pid))
    assert backend.call_function(pid, fact, 5) == 120
    assert backend.call_function(pid, fact, 10) == 3628800
    with pytest.raises(DebuggerError, match="SIGSEGV at 0x10"):
        backend.call_function(pid, 0x10)           # faults: reported, and the thread is restored
    assert dict(backend.registers(pid)) == before
    backend.resume(pid)
    events = run_to_exit(backend)
    assert events[-1].info.exit_code == 0
    assert "sum=6 counter=3\ndecision=0\nfact=120" in capfd.readouterr().out


# -- hardware breakpoints --------------------------------------------------------------
def test_dr7_encoding():
    assert debugregs.encode(0, 0, "execute", 1) == 0b1
    assert debugregs.encode(0, 1, "write", 8) == (1 << 2) | (0b01 << 20) | (0b10 << 22)
    assert debugregs.encode(0, 3, "readwrite", 4) == (1 << 6) | (0b11 << 28) | (0b11 << 30)
    both = debugregs.encode(debugregs.encode(0, 0, "execute", 1), 2, "write", 2)
    assert debugregs.cleared(both, 2) == 0b1


def test_which_slots_fired_is_known_without_dr6_only_for_execute_slots(monkeypatch):
    reads = []
    monkeypatch.setattr(debugregs, "read", lambda tid, register: reads.append(register) or 0b100)
    slots = debugregs.HardwareSlots()
    slots.set(0, 0x1000, "execute", 1)
    slots.set(3, 0x1000, "execute", 1)
    assert slots.execute_slots_at(0x1000) == (0, 3) and not slots.watches
    if debugregs._DR6_RESET_BY_KERNEL:
        assert debugregs.take_dr6(1, slots, 0x1000) == (0, 3) and reads == []
    assert debugregs.take_dr6(1, slots, 0x2000) == (2,)          # not ours by pc: DR6 says
    slots.set(2, 0x3000, "write", 8)
    assert slots.watches and slots.execute_slots_at(0x1000) == ()   # a watch may fire with it
    assert debugregs.take_dr6(1, slots, 0x1000) == (2,)
    slots.clear(2)
    copy = debugregs.HardwareSlots(list(slots.addresses), slots.dr7)    # as a fork child gets it
    assert copy.execute_slots_at(0x1000) == (0, 3) and not copy.watches


def test_hardware_execute_breakpoint(backend, targets, capfd):
    n = 20
    pid, first = spawn(backend, targets["loop"], str(n))
    address = first.info.image_base + symbol(targets["loop"], "hit")
    backend.set_hardware_breakpoint(pid, 1, address, "execute", 1)
    assert debugregs.read(pid, 1) == address and debugregs.read(pid, debugregs.DR7) & 0b1100 == 0b0100
    hits = []

    def on_event(ev: DebugEvent) -> None:
        if ev.code == EventCode.EXCEPTION_DEBUG_EVENT:
            assert ev.info.code == ExceptionCode.SINGLE_STEP and ev.info.hw_slots == (1,)
            assert ev.info.address == address
            hits.append(backend.registers(ev.tid)["rdi"])
            # Plain resume: the kernel sets RF, so the same instruction does not trap again.
    run_to_exit(backend, on_event)
    assert hits == list(range(n))
    assert f"sum={n * (n - 1)}" in capfd.readouterr().out


def test_hardware_write_watchpoint_and_clear(backend, targets, capfd):
    n = 12
    pid, first = spawn(backend, targets["loop"], str(n))
    counter = first.info.image_base + symbol(targets["loop"], "counter")
    backend.set_hardware_breakpoint(pid, 0, counter, "write", 8)
    values = []

    def on_event(ev: DebugEvent) -> None:
        if ev.code == EventCode.EXCEPTION_DEBUG_EVENT:
            assert ev.info.code == ExceptionCode.SINGLE_STEP and ev.info.hw_slots == (0,)
            assert ev.info.fault_address == counter
            values.append(int.from_bytes(backend.read_memory(ev.pid, counter, 8), "little"))
            if len(values) == n - 2:
                backend.clear_hardware_breakpoint(ev.pid, 0)
    run_to_exit(backend, on_event)
    # The trap comes after the write: each value is the running sum 0+1+...+i.
    assert values == [i * (i + 1) // 2 for i in range(n - 2)]
    assert f"counter={n * (n - 1) // 2}" in capfd.readouterr().out


def test_hardware_breakpoint_reaches_threads_created_later(backend, targets, capfd):
    t, m = 3, 40
    pid, first = spawn(backend, targets["threads"], str(t), str(m))
    address = first.info.image_base + symbol(targets["threads"], "work")
    backend.set_hardware_breakpoint(pid, 2, address, "execute", 1)
    events = run_to_exit(backend, timeout=60)
    hits = [e for e in events if e.code == EventCode.EXCEPTION_DEBUG_EVENT]
    assert len(hits) == t * m and all(e.info.hw_slots == (2,) for e in hits)
    assert "ok" in capfd.readouterr().out


def test_bad_hardware_breakpoints_are_refused(backend, targets):
    pid, _ = spawn(backend, targets["loop"], "1")
    with pytest.raises(DebuggerError, match="aligned"):
        backend.set_hardware_breakpoint(pid, 0, 0x1001, "write", 4)
    with pytest.raises(DebuggerError, match="slot"):
        backend.set_hardware_breakpoint(pid, 4, 0x1000, "execute", 1)
    with pytest.raises(DebuggerError, match="access"):
        backend.set_hardware_breakpoint(pid, 0, 0x1000, "read", 1)


# -- attach and detach ----------------------------------------------------------------
def test_attach_break_and_detach_leaves_the_process_running(backend, targets):
    sleeper = subprocess.Popen([targets["sleeper"], "80"], stdout=subprocess.PIPE, text=True)
    try:
        pid = sleeper.pid
        assert sleeper.stdout.readline() == f"pid={pid}\n"
        assert backend.attach(pid) == pid
        burst = []
        while (ev := backend.wait_event(timeout=0.5)) is not None:
            burst.append(ev)
            if ev.code == EventCode.CREATE_PROCESS_DEBUG_EVENT:
                base = ev.info.image_base
                address = base + symbol(targets["sleeper"], "tick")
                original = backend.read_memory(pid, address, 1)
                backend.write_memory(pid, address, INT3)
            if ev.code == EventCode.EXCEPTION_DEBUG_EVENT:
                break
            backend.resume(ev.tid)
        assert burst[0].code == EventCode.CREATE_PROCESS_DEBUG_EVENT
        assert burst[0].info.image_path == targets["sleeper"]
        assert {"libc.so.6", "ld-linux-x86-64.so.2"} <= set(names(burst, EventCode.LOAD_DLL_DEBUG_EVENT))
        hit = burst[-1]
        assert hit.info.code == ExceptionCode.BREAKPOINT and hit.info.address == address
        backend.write_memory(pid, address, original)
        backend.registers(hit.tid)["rip"] = address
        backend.detach(pid)
        status = procfs.status(pid)
        assert status["TracerPid"] == "0" and status["State"][0] in "RS"
        out, _ = sleeper.communicate(timeout=10)
        assert out.startswith("done 80") and sleeper.returncode == 0
    finally:
        sleeper.kill()
        sleeper.wait()


def test_attach_reports_existing_threads(backend, targets):
    proc = subprocess.Popen([targets["threads"], "3", "2000000000"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while len(procfs.tasks(proc.pid)) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        backend.attach(proc.pid)
        burst = []
        while (ev := backend.wait_event(timeout=0.3)) is not None:
            burst.append(ev)
            backend.resume(ev.tid)
        created = {e.tid for e in burst if e.code == EventCode.CREATE_THREAD_DEBUG_EVENT}
        assert len(created) == 3 and proc.pid not in created
        assert set(backend.threads(proc.pid)) == created | {proc.pid}
        backend.detach(proc.pid)
        assert procfs.status(proc.pid)["TracerPid"] == "0"
    finally:
        proc.kill()
        proc.wait()


def test_spawn_of_a_missing_file_is_a_target_error(backend):
    with pytest.raises(TargetError) as err:
        backend.spawn(SpawnOptions(argv=("./does-not-exist",)))
    assert str(err.value) == "cannot start './does-not-exist': No such file or directory"
    assert err.value.exit_status == 3


def test_spawn_of_a_file_that_is_not_executable(backend, tmp_path):
    script = tmp_path / "data.txt"
    script.write_text("not a program\n")
    with pytest.raises(TargetError, match="Permission denied"):
        backend.spawn(SpawnOptions(argv=(str(script),)))
    script.chmod(0o755)   # executable but no #! and not ELF: execve itself refuses it
    with pytest.raises(TargetError, match="Exec format error"):
        backend.spawn(SpawnOptions(argv=(str(script),)))
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG | 0x40000000)   # and no zombie was left behind


def test_attach_to_a_dead_pid_is_a_target_error(backend):
    child = subprocess.Popen(["true"])
    child.wait()
    with pytest.raises(TargetError, match=f"cannot attach to process {child.pid}"):
        backend.attach(child.pid)


def test_killed_from_outside_ends_the_session(backend, targets):
    pid, _ = spawn(backend, targets["sleeper"], "1000")
    backend.resume(pid)
    while (ev := backend.wait_event(timeout=0.2)) is not None:
        backend.resume(ev.tid)
    os.kill(pid, signal.SIGKILL)
    ev = backend.wait_event(timeout=5)
    assert ev is not None
    assert ev.code == EventCode.RIP_EVENT or (
        ev.code == EventCode.EXIT_PROCESS_DEBUG_EVENT and ev.info.signal == "SIGKILL")
    assert not procfs.is_alive(pid)


def test_close_kills_spawned_targets_without_zombies(targets):
    b = get_backend()
    pid, _ = spawn(b, targets["sleeper"], "1000")
    b.resume(pid)
    b.close()
    b.close()   # idempotent
    assert not os.path.exists(f"/proc/{pid}")


# -- measurement (printed, not asserted) -------------------------------------------------
def test_measure_soft_breakpoint_round_trips(backend, targets, capfd):
    n = 20000
    pid, first = spawn(backend, targets["loop"], str(n))
    address = first.info.image_base + symbol(targets["loop"], "hit")
    original = backend.read_memory(pid, address, 1)
    backend.write_memory(pid, address, INT3)
    hits: list[DebugEvent] = []
    started = time.perf_counter()
    run_to_exit(backend, count_breakpoints(backend, address, original, hits), timeout=120)
    elapsed = time.perf_counter() - started
    assert len(hits) == n
    with capfd.disabled():
        print(f"\n[bench] {n} soft breakpoint hits (int3 + step-over) in {elapsed:.2f}s: "
              f"{n / elapsed:,.0f} hits/s, {elapsed / n * 1e6:.1f} us/hit")


# -- forks and spawn options ----------------------------------------------------------
def test_unfollowed_fork_child_runs_free_of_our_breakpoints(backend, targets, capfd):
    pid, _ = spawn(backend, targets["bk_fork"], targets["plugin"])
    events = run_to_exit(backend)
    assert {e.pid for e in events} == {pid}
    assert "child exited 5" in capfd.readouterr().out


def test_followed_fork_is_a_new_process_with_its_own_modules(backend, targets, capfd):
    pid, _ = spawn(backend, targets["bk_fork"], targets["plugin"], follow_forks=True)
    events: list[DebugEvent] = []
    exits = 0
    while exits < 2:
        ev = backend.wait_event(timeout=10)
        assert ev is not None
        events.append(ev)
        exits += ev.code == EventCode.EXIT_PROCESS_DEBUG_EVENT
        backend.resume(ev.tid)
    created = [e for e in events if e.code == EventCode.CREATE_PROCESS_DEBUG_EVENT]
    assert len(created) == 1 and created[0].info.parent_pid == pid
    child = created[0].pid
    child_loads = [e for e in events if e.pid == child and e.code == EventCode.LOAD_DLL_DEBUG_EVENT]
    assert targets["plugin"] in [e.info.path for e in child_loads]
    ends = {e.pid: e.info.exit_code for e in events if e.code == EventCode.EXIT_PROCESS_DEBUG_EVENT}
    assert ends == {child: 5, pid: 0}
    assert "child exited 5" in capfd.readouterr().out


def test_env_cwd_stdin_and_pinning(backend, tmp_path, capfd):
    everywhere = os.sched_getaffinity(0)
    (tmp_path / "in.txt").write_text("from stdin\n")
    spawn(backend, "cat", stdin_path=str(tmp_path / "in.txt"), env={"PATH": "/usr/bin:/bin"})
    run_to_exit(backend)
    spawn(backend, "/bin/pwd", cwd=str(tmp_path))
    run_to_exit(backend)
    spawn(backend, "/usr/bin/env", env={"ONLY": "this"})
    run_to_exit(backend)
    assert capfd.readouterr().out == f"from stdin\n{tmp_path}\nONLY=this\n"
    pid, _ = spawn(backend, "/bin/sleep", "5")
    assert len(os.sched_getaffinity(pid)) == 1
    backend.kill(pid)
    pid, _ = spawn(backend, "/bin/sleep", "5", pin_cpu=False)
    assert os.sched_getaffinity(pid) == everywhere
    backend.kill(pid)


def test_signals_sent_by_the_program_are_signals_not_breakpoints(backend, targets, capfd):
    spawn(backend, targets["bk_signals"])
    exceptions, exit_event = run_passing_signals(backend)
    usr1, trap = (e.info for e in exceptions)
    assert (usr1.code, usr1.signal, usr1.from_user, usr1.first_chance) == \
        (ExceptionCode.SIGNAL, "SIGUSR1", True, True)
    assert (trap.code, trap.signal, trap.from_user, trap.first_chance) == \
        (ExceptionCode.SIGNAL, "SIGTRAP", True, False)
    assert exit_event.info.signal == "SIGTRAP"
    assert capfd.readouterr().out == "usr1\n"


def test_a_child_writing_stderr_after_its_parent_exited_lives(targets, tmp_path):
    """The stderr pipe outlives the started process while a child holds it: the child's
    later write is read (never EPIPE, SIGPIPE or a full pipe), and the child goes on."""
    from instrument.triage.runner import TriageConfig, Worker

    marker = tmp_path / "survived"
    outcome = Worker(TriageConfig(command=(targets["stderr_orphan"], str(marker)), timeout=20)).run(None)
    assert outcome["status"] == "clean", outcome
    assert marker.exists()
