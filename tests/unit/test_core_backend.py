"""The core-file backend on synthetic cores: parsing, memory, signals, the replayed events, read-only refusals."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from instrument.backend.core import CORE_CAPABILITIES, open_core
from instrument.backend.core.elfcore import NT_AUXV, NT_FILE, NT_PRSTATUS, NT_SIGINFO, SigInfo, open_core_file
from instrument.backend.core.signals import ended_by, exception_for
from instrument.errors import DebuggerError, RecipeErrors, TargetError
from instrument.events import EventCode, ExceptionCode
from instrument.arch.x86_64 import USER_REGS_FIELDS

STACK = 0x7FFF0000
TEXT = 0x400000


def note(n_type: int, desc: bytes, name: bytes = b"CORE\0") -> bytes:
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(name), len(desc), n_type) + pad(name) + pad(desc)


def prstatus(tid: int, cursig: int, **regs: int) -> bytes:
    desc = bytearray(336)
    struct.pack_into("<h", desc, 12, cursig)
    struct.pack_into("<i", desc, 32, tid)
    values = [regs.get(name, 0) for name in USER_REGS_FIELDS]
    struct.pack_into(f"<{len(values)}Q", desc, 112, *values)
    return bytes(desc)


def siginfo(signo: int, code: int, addr: int) -> bytes:
    return struct.pack("<iiiiQ", signo, 0, code, 0, addr) + bytes(104)


def make_core(path: Path, *, signo: int = 11, code: int = 1, addr: int = 0x10, files: bytes = b"",
              e_type: int = 4, machine: int = 62) -> Path:
    """A core of pid 100 with two threads (101 crashed), a stack segment, and a text segment left out."""
    notes = b"".join([
        note(NT_PRSTATUS, prstatus(100, 0, rip=TEXT + 0x10, rsp=STACK + 0x100)),
        note(NT_PRSTATUS, prstatus(101, signo, rip=TEXT + 0x20, rsp=STACK + 0x200)),
        note(NT_SIGINFO, siginfo(signo, code, addr)),
        note(NT_AUXV, struct.pack("<QQQQ", 9, TEXT + 0x20, 0, 0)),
        note(NT_FILE, files) if files else b"",
    ])
    stack = bytes(range(256)) * 16                  # 4 KiB of known bytes
    phoff, phnum = 64, 3
    notes_at = phoff + phnum * 56
    stack_at = notes_at + len(notes)
    phdrs = struct.pack("<IIQQQQQQ", 4, 0, notes_at, 0, 0, len(notes), 0, 4)
    phdrs += struct.pack("<IIQQQQQQ", 1, 6, stack_at, STACK, 0, len(stack), len(stack), 0x1000)
    phdrs += struct.pack("<IIQQQQQQ", 1, 5, stack_at + len(stack), TEXT, 0, 0, 0x1000, 0x1000)  # text: not dumped
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    header = struct.pack("<16sHHIQQQIHHHHHH", ident, e_type, machine, 1, 0, phoff, 0, 0, 64, 56, phnum, 0, 0, 0)
    path.write_bytes(header + phdrs + notes + stack)
    return path


def nt_file(entries: list[tuple[int, int, int, str]], page_size: int = 4096) -> bytes:
    table = b"".join(struct.pack("<QQQ", s, e, off) for s, e, off, _ in entries)
    return struct.pack("<QQ", len(entries), page_size) + table + b"".join(p.encode() + b"\0" for *_, p in entries)


def test_parses_threads_signal_and_auxv(tmp_path):
    core = open_core_file(str(make_core(tmp_path / "c")))
    try:
        assert core.pid == 100                       # no NT_PRPSINFO: the lowest tid
        assert [t.tid for t in core.threads] == [101, 100]          # the signalled thread first
        assert core.threads[0].registers["rip"] == TEXT + 0x20
        assert core.siginfo == SigInfo(11, 1, 0, 0x10, None)
        assert core.auxv == {9: TEXT + 0x20}
    finally:
        core.close()


def test_memory_from_the_core_and_from_mapped_files(tmp_path):
    text = tmp_path / "prog"
    text.write_bytes(b"\x90" * 0x1000 + b"\xcc" * 0x1000)
    files = nt_file([(TEXT, TEXT + 0x1000, 1, str(text))])         # the file's second page
    backend = open_core(str(make_core(tmp_path / "c", files=files)))
    try:
        assert backend.read_memory(100, STACK + 1, 3) == b"\x01\x02\x03"
        assert backend.read_memory(100, TEXT, 2) == b"\xcc\xcc"        # left out of the core: from the file
        with pytest.raises(DebuggerError, match="not in the core"):
            backend.read_memory(100, STACK + 0x1000 - 2, 4)              # runs off the stack segment
        with pytest.raises(DebuggerError):
            backend.memory.read(TEXT, 2, dumped_only=True)
    finally:
        backend.close()


def test_replays_the_crash_as_a_live_backend_reports_it(tmp_path):
    backend = open_core(str(make_core(tmp_path / "c")))
    try:
        with pytest.raises(TargetError):
            backend.attach(4242)                      # not the core's process
        assert backend.attach(100) == 100
        events = []
        while True:
            event = backend.wait_event()
            events.append(event)
            if event.code == EventCode.EXIT_PROCESS_DEBUG_EVENT:
                break
        codes = [e.code for e in events]
        assert codes == [EventCode.CREATE_PROCESS_DEBUG_EVENT, EventCode.CREATE_THREAD_DEBUG_EVENT,
                         EventCode.EXCEPTION_DEBUG_EVENT, EventCode.EXIT_PROCESS_DEBUG_EVENT]
        crash = events[2]
        assert crash.tid == 101 and crash.info.code == ExceptionCode.ACCESS_VIOLATION
        assert not crash.info.first_chance and crash.info.fault_address == 0x10
        assert events[3].info.signal == "SIGSEGV"
        assert backend.warnings == []
    finally:
        backend.close()


def test_everything_that_changes_the_target_is_refused(tmp_path):
    backend = open_core(str(make_core(tmp_path / "c")))
    try:
        regs = backend.registers(101)
        for refused in (lambda: regs.__setitem__("rax", 1), lambda: backend.write_memory(100, STACK, b"x"),
                        lambda: backend.single_step(101), lambda: backend.call_function(100, TEXT),
                        lambda: backend.set_hardware_breakpoint(100, 0, TEXT, "execute", 1),
                        lambda: backend.set_memory_breakpoint(100, STACK, 8, "write")):
            with pytest.raises(DebuggerError, match="read-only"):
                refused()
        with pytest.raises(TargetError):
            from instrument.backend.base import SpawnOptions
            backend.spawn(SpawnOptions(argv=("/bin/true",)))
    finally:
        backend.close()


@pytest.mark.parametrize("content, says", [
    (b"", "too short"),
    (b"not an elf file at all, but long enough for a header" * 2, "no ELF header"),
    (b"\x28\xb5\x2f\xfd" + bytes(100), "zstd-compressed"),
])
def test_files_that_are_not_cores(tmp_path, content, says):
    path = tmp_path / "x"
    path.write_bytes(content)
    with pytest.raises(TargetError, match=says):
        open_core_file(str(path))


def test_elf_files_that_are_not_x86_64_cores(tmp_path):
    with pytest.raises(TargetError, match="not a core file: it is a shared object"):
        open_core_file(str(make_core(tmp_path / "a", e_type=3)))
    with pytest.raises(TargetError, match="machine 183"):
        open_core_file(str(make_core(tmp_path / "b", machine=183)))
    whole = make_core(tmp_path / "c").read_bytes()
    (tmp_path / "d").write_bytes(whole[:200])
    with pytest.raises(TargetError, match="truncated"):
        open_core_file(str(tmp_path / "d"))


def test_signals_become_the_live_backends_exceptions():
    rip = 0x401000
    trap = exception_for(SigInfo(5, 0x80, 0, 0, None), rip)
    assert trap.code == ExceptionCode.BREAKPOINT and trap.address == rip - 1 and not trap.first_chance
    abort = exception_for(SigInfo(6, -6, 0, 0, 1234), rip)
    assert abort.code == ExceptionCode.SIGNAL and abort.from_user and abort.signal == "SIGABRT"
    assert exception_for(SigInfo(8, 1, 0, rip, None), rip).code == ExceptionCode.INT_DIVIDE_BY_ZERO
    assert exception_for(SigInfo(4, 2, 0, rip, None), rip).code == ExceptionCode.ILLEGAL_INSTRUCTION
    segv = exception_for(SigInfo(11, 1, 0, 0xdead, None), rip)
    assert segv.fault_address == 0xdead and segv.si_code == 1
    assert ended_by(SigInfo(11, 1, 0, 0, None)) and not ended_by(SigInfo(19, 0x80, 0, 0, None))
    assert not ended_by(None) and not ended_by(SigInfo(0, 0, 0, 0, None))


def test_the_compiler_refuses_what_a_core_cannot_do(tmp_path):
    from instrument.compiler.plan import compile_plan
    from instrument.recipe.load import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\nname: r\ndescription: d\nbreakpoints:\n  - id: b\n    at: 0x401000\n"
                      "    type: hardware\ncrash:\n  - write: {at: rsp, bytes: '90'}\n  - log: hi\n")
    with pytest.raises(RecipeErrors) as caught:
        compile_plan(load_recipe(str(recipe)), pid=1, capabilities=CORE_CAPABILITIES, need_target=True)
    messages = [str(e) for e in caught.value.errors]
    assert any("breakpoint b" in m and "read-only" in m for m in messages)
    assert any("`write` changes the target" in m for m in messages)
    ok = tmp_path / "ok.yaml"
    ok.write_text("version: 1\nname: ok\ndescription: d\ncrash:\n  - backtrace: {depth: 4}\n  - log: hi\n")
    assert compile_plan(load_recipe(str(ok)), pid=1, capabilities=CORE_CAPABILITIES, need_target=True)
