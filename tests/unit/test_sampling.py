"""Which hardware breakpoints are sampled (compiler/sampling.py), and how a perf ring
is read (backend/linux/perfbp.py): whole samples, a wrap at the end, lost hits."""

from __future__ import annotations

import mmap
import struct

import pytest

from instrument.backend.linux import cpurings, perfbp, uprobes
from instrument.compiler.plan import compile_plan
from instrument.compiler.sampling import can_sample, sampled_registers
from instrument.recipe.load import load_recipe

HEADER = "version: 1\nname: t\ndescription: test\ntarget:\n  run: [./x]\n"
REGS = perfbp.SAMPLED_REGISTERS


def plan_of(body: str):
    plan = compile_plan(load_recipe(HEADER + "breakpoints:\n  - id: b\n    at: 0x401000\n" + body, file="t.yaml"))
    return plan.breakpoints[0]


@pytest.mark.parametrize("body, expected", [
    ("    type: hardware\n", {"rip"}),
    ("    type: hardware\n    actions:\n      - log: {registers: [rdi, eax]}\n", {"rip", "rdi", "rax"}),
    ("    type: hardware\n    when: arg1 > 3\n    actions:\n      - log: \"{arg0:#x} {hits} {tid}\"\n",
     {"rip", "rdi", "rsi"}),
    ("    type: hardware\n    limit: 3\n    actions:\n      - log: {registers: all}\n",
     {"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13",
      "r14", "r15", "rip", "eflags"}),
])
def test_breakpoints_that_only_read_registers_are_sampled(body, expected):
    plan = plan_of(body)
    assert sampled_registers(plan, "sysv") == frozenset(expected)
    assert can_sample(plan, "sysv", REGS)


@pytest.mark.parametrize("body", [
    "    type: soft\n",
    "    type: hardware\n    access: write\n    size: 8\n",
    "    type: hardware\n    actions:\n      - log: \"{u64[rsp]:#x}\"\n",      # memory: must be read at the hit
    "    type: hardware\n    actions:\n      - log: \"{str(rdi)}\"\n",
    "    type: hardware\n    when: u8[rdi] == 0\n",
    "    type: hardware\n    actions:\n      - log: \"{arg6}\"\n",               # on the stack
    "    type: hardware\n    actions:\n      - backtrace: {depth: 4}\n",
    "    type: hardware\n    actions:\n      - set: {rax: 1}\n",
    "    type: hardware\n    actions:\n      - stop\n",
    "    type: hardware\n    on_return:\n      - log: \"{retval}\"\n",
])
def test_breakpoints_whose_hits_need_the_thread_stopped_are_not(body):
    plan = plan_of(body)
    assert sampled_registers(plan, "sysv") is None
    assert not can_sample(plan, "sysv", REGS)


def test_registers_perf_cannot_sample_keep_the_thread_stopped():
    plan = plan_of("    type: hardware\n    actions:\n      - log: {registers: [fs_base]}\n")
    assert sampled_registers(plan, "sysv") == {"rip", "fs_base"}
    assert not can_sample(plan, "sysv", REGS)
    assert not can_sample(plan_of("    type: hardware\n"), "sysv", frozenset())    # a backend that cannot


def test_the_compiler_records_which_breakpoints_are_sampled():
    from instrument.backend.base import Capabilities
    from instrument.compiler.sampling import choose_sampled

    caps = Capabilities(os="linux", arch="x86_64", abi="sysv", hardware_breakpoints=4, memory_breakpoints=True,
                        follow_forks=True, attach=True, sampled_registers=REGS)
    text = HEADER + ("breakpoints:\n  - id: logs\n    at: 0x401000\n    type: hardware\n"
                     "  - id: stops\n    at: 0x402000\n    type: hardware\n    actions:\n      - backtrace: {depth: 2}\n")
    plan = compile_plan(load_recipe(text, file="t.yaml"), capabilities=caps)
    assert plan.sampling_chosen and [b.sampled for b in plan.breakpoints] == [True, False]
    off = compile_plan(load_recipe(text, file="t.yaml"), capabilities=caps, sample_hits=False)
    assert off.sampling_chosen and not any(b.sampled for b in off.breakpoints)
    neutral = compile_plan(load_recipe(text, file="t.yaml"))     # no backend in view: chosen at run time
    assert not neutral.sampling_chosen and not any(b.sampled for b in neutral.breakpoints)
    assert [b.sampled for b in choose_sampled(neutral, "sysv", REGS).breakpoints] == [True, False]


# -- reading a ring ---------------------------------------------------------------------

PAGE = mmap.PAGESIZE


def sample(ip: int, ns: int, rdi: int) -> bytes:
    regs = [0] * len(perfbp._SAMPLE_ORDER)
    regs[perfbp._SAMPLE_ORDER.index("rdi")] = rdi
    regs[perfbp._SAMPLE_ORDER.index("rip")] = ip
    return perfbp._SAMPLE.pack(perfbp._RECORD_SAMPLE, 0, perfbp._SAMPLE.size, ip, ns, 2, *regs)


def lost(count: int) -> bytes:
    return perfbp._HEADER.pack(perfbp._RECORD_LOST, 0, 24) + perfbp._U64.pack(7) + perfbp._U64.pack(count)


def fake_ring(pages: int, slots: dict[int, int]) -> perfbp.Ring:
    """A Ring over an anonymous mapping laid out as the kernel's: a header page, then data."""
    ring = perfbp.Ring(42)
    ring._size = pages * PAGE
    ring._buf = mmap.mmap(-1, PAGE + ring._size)
    ring.addresses = dict(slots)
    ring._derive()
    return ring


def produce(ring: perfbp.Ring, records: bytes) -> None:
    """Write records as the kernel does: at data_head, wrapping at the end, then move data_head."""
    assert ring._buf is not None
    head = perfbp._U64.unpack_from(ring._buf, perfbp._DATA_HEAD)[0]
    for i, byte in enumerate(records):
        ring._buf[PAGE + (head + i) % ring._size] = byte
    perfbp._U64.pack_into(ring._buf, perfbp._DATA_HEAD, head + len(records))


def test_a_ring_gives_each_sample_once_with_its_registers_and_frees_the_room():
    ring = fake_ring(1, {0: 0x401000, 2: 0x401000, 1: 0x402000})
    produce(ring, sample(0x401000, 1_500_000_000, 7) + sample(0x402000, 2_000_000_000, 8))
    got = ring.take()
    assert [(s.tid, s.address, s.slots, s.time, s.registers["rdi"]) for s in got] == [
        (42, 0x401000, (0, 2), 1.5, 7), (42, 0x402000, (1,), 2.0, 8)]
    assert got[0].registers["rip"] == 0x401000 and len(got[0].registers) == len(perfbp.SAMPLED_REGISTERS)
    assert perfbp._U64.unpack_from(ring._buf, perfbp._DATA_TAIL)[0] == 2 * perfbp._SAMPLE.size
    assert ring.take() == [] and not ring.pending()


def test_samples_that_wrap_round_the_end_of_the_ring_and_lost_hits_are_read():
    ring = fake_ring(1, {0: 0x401000})
    per = perfbp._SAMPLE.size
    n = PAGE // per                 # fill most of the ring, then wrap
    produce(ring, b"".join(sample(0x401000, i, i) for i in range(n)))
    assert [s.registers["rdi"] for s in ring.take()] == list(range(n))
    produce(ring, sample(0x401000, 0, 100) + lost(5) + sample(0x401000, 0, 101) + sample(0x499999, 0, 9))
    assert [s.registers["rdi"] for s in ring.take()] == [100, 101]    # 0x499999: no breakpoint there now
    assert ring.lost == 5


def test_rings_shrink_as_threads_add_up_then_threads_stop_at_their_hits():
    # Ring memory is locked kernel memory: a process gets PROCESS_RING_BUDGET in all.
    sampler = perfbp.Sampler()
    sizes = []
    while (pages := sampler._pages_left()) >= perfbp.MIN_RING_PAGES:
        ring = perfbp.Ring(len(sizes), min(perfbp.RING_PAGES, pages))
        sampler.rings[len(sizes)] = ring
        sizes.append(ring.size)
    assert sizes[0] == perfbp.RING_PAGES * PAGE and sizes == sorted(sizes, reverse=True)
    assert sum(sizes) <= perfbp.PROCESS_RING_BUDGET
    assert all(s & (s - 1) == 0 for s in sizes)                  # powers of two, as perf requires
    assert sampler.apply(999, {0: 0x401000}) == frozenset()      # no room: a debug register then


# -- sampled soft breakpoints (uprobes) ---------------------------------------------------

@pytest.mark.parametrize("body, expected", [
    ("    actions:\n      - log: {registers: [rdi]}\n", {"rip", "rdi"}),
    ("    when: arg1 > 3\n    limit: 5\n    actions:\n      - log: \"{arg0:#x} {hits}\"\n", {"rip", "rdi", "rsi"}),
    ("    actions:\n      - log: \"{u64[rsp]:#x}\"\n", None),        # memory: must be read at the hit
    ("    actions:\n      - set: {rax: 1}\n", None),
    ("    on_return:\n      - log: \"{retval}\"\n", None),
])
def test_soft_breakpoints_are_sampled_by_the_same_rule_where_the_backend_can(body, expected):
    plan = plan_of(body)
    assert plan.type == "soft"
    assert sampled_registers(plan, "sysv", soft=True) == (None if expected is None else frozenset(expected))
    assert sampled_registers(plan, "sysv") is None          # a backend without sampled soft breakpoints
    assert can_sample(plan, "sysv", REGS, soft=True) == (expected is not None)


@pytest.mark.parametrize("watch, sampled", [
    ("    type: memory\n    size: 8\n", False),
    ("    type: hardware\n    access: write\n    size: 8\n", False),
    ("    type: hardware\n    access: readwrite\n    size: 8\n", False),
    ("    type: hardware\n", True),                 # execute: no data watch
])
def test_soft_breakpoints_stop_in_a_recipe_that_watches_data(watch, sampled):
    # The instruction a uprobe runs out of line would escape the watch (compiler/sampling.py).
    from instrument.compiler.sampling import choose_sampled
    from instrument.report.explain import explain

    text = HEADER + "breakpoints:\n  - id: soft\n    at: 0x401000\n  - id: watch\n    at: 0x404000\n" + watch
    plan = compile_plan(load_recipe(text, file="t.yaml"))
    chosen = choose_sampled(plan, "sysv", REGS, soft=True)
    assert chosen.breakpoints[0].sampled == sampled
    soft = explain(plan, REGS, "sysv", sampled_soft=True).split("  soft:")[1].split("  watch:")[0]
    assert ("perf event" in soft) == sampled and ("watches data" in soft) == (not sampled)


def test_explain_says_how_each_sampled_breakpoint_is_sampled():
    from instrument.report.explain import explain

    text = HEADER + ("breakpoints:\n  - id: soft\n    at: 0x401000\n"
                     "  - id: hw\n    at: 0x402000\n    type: hardware\n")
    plan = compile_plan(load_recipe(text, file="t.yaml"))
    out = explain(plan, REGS, "sysv", sampled_soft=True)
    soft, hw = out.split("  soft:")[1].split("  hw:")
    assert "uprobe" in soft and "perf breakpoint event" in hw
    assert "sampled" not in explain(plan, REGS, "sysv").split("  soft:")[1].split("  hw:")[0]


def probe_sample(ip: int, tid: int, ns: int, rdi: int) -> bytes:
    regs = [0] * len(perfbp._SAMPLE_ORDER)
    regs[perfbp._SAMPLE_ORDER.index("rdi")] = rdi
    regs[perfbp._SAMPLE_ORDER.index("rip")] = ip
    return cpurings._SAMPLE.pack(cpurings._RECORD_SAMPLE, 0, cpurings._SAMPLE.size, ip, 100, tid, ns, 2, *regs)


def fake_cpu_ring(cpu: int) -> cpurings.CpuRing:
    ring = object.__new__(cpurings.CpuRing)
    ring.cpu, ring.fd, ring._tail, ring._size = cpu, -1, 0, PAGE
    ring._buf = mmap.mmap(-1, PAGE + ring._size)
    return ring


def test_the_hits_of_every_cpu_come_out_in_the_order_they_happened_with_their_thread():
    probes = uprobes.CodeProbes()
    a, b = fake_cpu_ring(0), fake_cpu_ring(1)
    probes._rings = [a, b]
    produce(a, probe_sample(0x401000, 101, 10, 1) + probe_sample(0x401000, 101, 30, 3))
    produce(b, probe_sample(0x401000, 102, 20, 2) + probe_sample(0x402000, 102, 40, 4))
    assert probes.waiting() == 4
    hits = [uprobes.describe(s) for s in probes.take()]
    assert [(pid, tid, address, regs["rdi"]) for pid, tid, address, _, regs in hits] == [
        (100, 101, 0x401000, 1), (100, 102, 0x401000, 2), (100, 101, 0x401000, 3), (100, 102, 0x402000, 4)]
    assert hits[0][3] == 10e-9 and hits[0][4]["rip"] == 0x401000 and dict(hits[0][4])["rdi"] == 1
    assert probes.take() == [] and probes.waiting() == 0
    # For the lost count, by the samples' pid | tid << 32:
    assert probes._taken[(100 | 101 << 32, 0x401000)] == 2 and probes._taken[(100 | 102 << 32, 0x402000)] == 1


def test_a_ring_with_a_lost_record_among_its_samples_still_gives_every_sample():
    lost = cpurings._HEADER.pack(2, 0, 24) + struct.pack("<QQ", 7, 3)      # PERF_RECORD_LOST: id, lost
    data = probe_sample(0x401000, 101, 10, 1) + lost + probe_sample(0x401000, 102, 20, 2)
    got = [uprobes.describe(s) for s in cpurings.samples_of(data)]
    assert [(tid, t, regs["rdi"], regs["rip"]) for _, tid, _, t, regs in got] == [
        (101, 10e-9, 1, 0x401000), (102, 20e-9, 2, 0x401000)]


def test_sampled_soft_breakpoints_stop_first_and_hardware_ones_never():
    # A uprobe costs more to close than SAMPLE_AFTER stops save (compiler/sampling.py): soft
    # ones stop that many times first; a perf hardware breakpoint closes at once.
    from instrument.compiler.sampling import SAMPLE_AFTER, choose_sampled
    from instrument.report.explain import explain

    text = HEADER + ("breakpoints:\n  - id: soft\n    at: 0x401000\n"
                     "  - id: hw\n    at: 0x402000\n    type: hardware\n"
                     "  - id: deep\n    at: 0x403000\n    actions:\n      - backtrace: {depth: 2}\n")
    plan = compile_plan(load_recipe(text, file="t.yaml"))
    chosen = choose_sampled(plan, "sysv", REGS, soft=True)
    assert [(b.sampled, b.sample_after) for b in chosen.breakpoints] == [(True, SAMPLE_AFTER), (True, 0), (False, 0)]
    assert [b.sample_after for b in choose_sampled(plan, "sysv", REGS, soft=True, after=0).breakpoints] == [0, 0, 0]
    assert [b.sample_after for b in choose_sampled(plan, "sysv", REGS, soft=True, enabled=False).breakpoints] == \
        [0, 0, 0]
    soft = explain(chosen).split("  soft:")[1].split("  hw:")[0]
    assert f"sampled after {SAMPLE_AFTER} hits" in soft and "uprobe" in soft
    assert "sampled after" not in explain(choose_sampled(plan, "sysv", REGS, soft=True, after=0))


def test_run_help_names_the_stops_before_a_uprobe_that_the_compiler_uses():
    # cli.py writes the number out (importing the compiler would slow --help): kept equal here.
    from click.testing import CliRunner

    from instrument.cli import main
    from instrument.compiler.sampling import SAMPLE_AFTER

    out = CliRunner().invoke(main, ["run", "--help"]).output
    assert f"{SAMPLE_AFTER:,} stops" in " ".join(out.split())
