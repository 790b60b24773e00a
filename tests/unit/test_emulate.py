"""Prologue instructions emulated instead of single-stepped: exact register and memory effects."""

from __future__ import annotations

import pytest

from instrument.arch.x86_64 import REG64, emulate


def machine(**overrides: int):
    regs = {name: 0x1000 + i for i, name in enumerate(REG64)}
    regs.update(rip=0x400000, rsp=0x7ff0, eflags=0x246)
    regs.update(overrides)
    memory: dict[int, bytes] = {}
    return regs, memory


def run(code: bytes, **overrides: int):
    regs, memory = machine(**overrides)
    before = dict(regs)
    ok = emulate(code, regs, lambda a, n: (0x1122334455667788).to_bytes(8, "little"),
                 lambda a, d: memory.__setitem__(a, d))
    return ok, before, regs, memory


@pytest.mark.parametrize("code, length, changes, pushed", [
    (b"\x55", 1, {"rsp": 0x7fe8}, ("rbp",)),                       # push rbp
    (b"\x41\x54", 2, {"rsp": 0x7fe8}, ("r12",)),                   # push r12
    (b"\x41\x57", 2, {"rsp": 0x7fe8}, ("r15",)),                   # push r15
    (b"\x53", 1, {"rsp": 0x7fe8}, ("rbx",)),                       # push rbx
    (b"\xf3\x0f\x1e\xfa", 4, {}, ()),                              # endbr64
    (b"\x90", 1, {}, ()),                                          # nop
    (b"\x48\x89\xe5", 3, {"rbp": "rsp"}, ()),                      # mov rbp, rsp
    (b"\x49\x89\xfc", 3, {"r12": "rdi"}, ()),                      # mov r12, rdi
    (b"\x48\x8b\xec", 3, {"rbp": "rsp"}, ()),                      # mov rbp, rsp (8b form)
    (b"\xba\x01\x00\x00\x00", 5, {"rdx": 1}, ()),                  # mov edx, 1
    (b"\x41\xb8\xff\xff\xff\xff", 6, {"r8": 0xffffffff}, ()),      # mov r8d, -1 (zero-extended)
    (b"\x48\x8b\x05\x10\x00\x00\x00", 7, {"rax": 0x1122334455667788}, ()),   # mov rax, [rip+0x10]
])
def test_emulated_instructions(code, length, changes, pushed):
    ok, before, regs, memory = run(code + b"\xcc" * 8)
    assert ok
    assert regs["rip"] == before["rip"] + length
    assert regs["eflags"] == before["eflags"]
    expected = dict(before, rip=before["rip"] + length)
    for name, value in changes.items():
        expected[name] = before[value] if isinstance(value, str) else value
    assert regs == expected
    if pushed:
        assert memory == {0x7fe8: before[pushed[0]].to_bytes(8, "little")}
    else:
        assert memory == {}


@pytest.mark.parametrize("code", [
    b"\x48\x85\xff",              # test rdi, rdi: writes flags
    b"\x48\x83\xec\x08",          # sub rsp, 8: writes flags
    b"\xe8\x00\x00\x00\x00",      # call
    b"\xc3",                      # ret
    b"\x48\x8b\x07",              # mov rax, [rdi]: a load we do not emulate
    b"\x48\x50",                  # push with REX.W: not a valid plain push form we handle
    b"",
])
def test_everything_else_is_left_to_single_step(code):
    ok, before, regs, memory = run(code)
    assert not ok and regs == before and memory == {}


@pytest.mark.parametrize("code", [b"\x55", b"\x48\x89\xe5", b"\xba\x01\x00\x00\x00", b"\x48\x8b\x05\x10\x00\x00\x00"])
def test_a_compiled_emulation_is_reused_across_hits(code):
    # A site's instruction is decoded once (compile_emulation) and run at every hit: the
    # compiled form keeps no state of a hit, and each run is what emulate() does.
    from instrument.arch.x86_64 import compile_emulation

    compiled = compile_emulation(code)
    assert compiled is not None
    for rsp in (0x7ff0, 0x5000):
        expected = run(code, rsp=rsp)[2]
        regs, memory = machine(rsp=rsp)
        compiled(regs, regs["rip"], lambda a, n: (0x1122334455667788).to_bytes(8, "little"),
                 lambda a, d: memory.__setitem__(a, d))
        assert regs == expected


def test_what_is_not_emulated_compiles_to_none():
    from instrument.arch.x86_64 import compile_emulation

    assert compile_emulation(b"\xc3") is None and compile_emulation(b"") is None
