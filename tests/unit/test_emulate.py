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
    b"\x48\x11\xc8",              # adc rax, rcx: reads CF
    b"\x48\x83\xd0\x01",          # adc rax, 1
    b"\x48\x83\x2f\x01",          # sub qword [rdi], 1: a memory operand
    b"\x66\x85\xff",              # test di, di: an operand-size prefix
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


# -- the flag-setting forms, against the CPU itself -----------------------------------------
# Each case runs natively (machine code in an executable page, called through ctypes):
# rax = a, rcx = b, the instruction, then rax and the flags are stored. The emulation of the
# same instruction must give the same rax and the same CF, PF, AF, ZF, SF, OF.

EDGES = [0, 1, 2, 0x0F, 0x10, 0x7F, 0x80, 0xFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF,
         0x1_0000_0000, 0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, 0xFFFF_FFFF_FFFF_FFFF]


def _cases() -> list[tuple[bytes, int, int]]:
    import random
    rng = random.Random(14)
    values = EDGES + [rng.getrandbits(64) for _ in range(6)] + [rng.getrandbits(8) for _ in range(3)]
    pairs = [(a, b) for a in values[:12] for b in values[:12:3]] + [(rng.choice(values), rng.choice(values))
                                                                   for _ in range(40)]
    out = []
    for opcode in (0x01, 0x03, 0x09, 0x0B, 0x21, 0x23, 0x29, 0x2B, 0x31, 0x33, 0x39, 0x3B, 0x85):
        for rex in (b"\x48", b""):
            # r/m = rax, reg = rcx for the 01-form (to r/m); the 03-form has them the other way
            modrm = 0xC8 if opcode & 2 == 0 else 0xC1
            for a, b in pairs[::3]:
                out.append((rex + bytes([opcode, modrm]), a, b))
    for ext in (0, 1, 4, 5, 6, 7):               # add, or, and, sub, xor, cmp with an immediate
        for rex in (b"\x48", b""):
            for a, b in pairs[::5]:
                out.append((rex + bytes([0x83, 0xC0 | ext << 3, b & 0xFF]), a, 0))
                out.append((rex + bytes([0x81, 0xC0 | ext << 3]) + (b & 0xFFFF_FFFF).to_bytes(4, "little"), a, 0))
    return out


@pytest.fixture(scope="module")
def cpu():
    import ctypes
    import mmap
    import platform
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("runs x86-64 code natively")
    page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    base = ctypes.addressof(ctypes.c_char.from_buffer(page))
    call = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(base)
    out = (ctypes.c_uint64 * 2)()

    def run(instruction: bytes, a: int, b: int) -> tuple[int, int]:
        code = (b"\x48\xb8" + a.to_bytes(8, "little") + b"\x48\xb9" + b.to_bytes(8, "little") + instruction
                + b"\x9c\x5a"                          # pushfq; pop rdx
                + b"\x48\x89\x07\x48\x89\x57\x08\xc3")  # mov [rdi], rax; mov [rdi+8], rdx; ret
        page.seek(0)
        page.write(code)
        call(ctypes.addressof(out))
        return out[0], out[1]
    return run


def test_flag_setting_instructions_match_the_cpu(cpu):
    from instrument.arch.x86_64 import STATUS_FLAGS, compile_emulation
    mismatches = []
    for instruction, a, b in _cases():
        rax, flags = cpu(instruction, a, b)
        emulation = compile_emulation(instruction)
        assert emulation is not None, instruction.hex()
        regs = {name: 0 for name in REG64}
        regs.update(rax=a, rcx=b, rip=0x1000, eflags=0x202 | STATUS_FLAGS)
        emulation(regs, 0x1000, lambda addr, n: b"", lambda addr, data: None)
        if regs["rip"] != 0x1000 + len(instruction) or regs["rax"] != rax or \
                regs["eflags"] & STATUS_FLAGS != flags & STATUS_FLAGS or regs["eflags"] & ~STATUS_FLAGS != 0x202:
            mismatches.append(f"{instruction.hex()} a={a:#x} b={b:#x}: cpu rax={rax:#x} flags={flags & STATUS_FLAGS:#x}, "
                              f"emulated rax={regs['rax']:#x} flags={regs['eflags'] & STATUS_FLAGS:#x}")
    assert not mismatches, "\n".join(mismatches[:20])


@pytest.mark.parametrize("width, opcode", [(8, b"\x80"), (32, b"\x83"), (64, b"\x48\x83"), (32, b"\x81"),
                                           (64, b"\x48\x81")])
def test_a_global_compared_at_entry_matches_the_cpu(cpu, width, opcode):
    # cmp [rip+disp32], imm as the emulator runs it, against cmp al/eax/rax, imm on the CPU
    # (the flags of cmp do not depend on where the first operand comes from).
    from instrument.arch.x86_64 import STATUS_FLAGS, compile_emulation
    size = 4 if opcode[-1] == 0x81 else 1
    for a in EDGES:
        for imm in (0, 1, 0x7F, 0x80, 0xFF) if size == 1 else (0, 1, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF):
            immediate = imm.to_bytes(size, "little")
            rax, flags = cpu(opcode + bytes([0xF8]) + immediate, a, 0)
            read_at = []
            emulation = compile_emulation(opcode + b"\x3d" + (0x100).to_bytes(4, "little") + immediate)
            assert emulation is not None
            regs = {name: 0 for name in REG64}
            regs.update(rip=0x1000, eflags=0x202)
            emulation(regs, 0x1000, lambda addr, n: read_at.append((addr, n)) or
                      (a & ((1 << width) - 1)).to_bytes(n, "little"), lambda addr, data: None)
            length = len(opcode) + 5 + size
            assert read_at == [(0x1000 + length + 0x100, width // 8)]
            assert regs["rip"] == 0x1000 + length
            assert regs["eflags"] & STATUS_FLAGS == flags & STATUS_FLAGS, (hex(a), hex(imm))


@pytest.mark.parametrize("code, length, changes", [
    (b"\x48\x8d\x05\x10\x00\x00\x00", 7, {"rax": 0x400000 + 7 + 0x10}),      # lea rax, [rip+0x10]
    (b"\x48\x8d\x35\xf0\xff\xff\xff", 7, {"rsi": 0x400000 + 7 - 0x10}),      # lea rsi, [rip-0x10]
    (b"\x89\xfa", 2, {"rdx": 0x1007}),                                         # mov edx, edi (zero-extends)
    (b"\x41\x89\xc0", 3, {"r8": 0x1000}),                                     # mov r8d, eax
])
def test_moves_and_lea(code, length, changes):
    ok, before, regs, memory = run(code + b"\xcc" * 8, rdi=0xFFFF_FFFF_0000_1007)
    assert ok and memory == {}
    assert regs == dict(before, rip=before["rip"] + length, **changes)
