"""The engine's dispatch, breakpoint state machines and cleanup, on the scripted fake backend."""

from __future__ import annotations

from typing import Any


from instrument.backend.base import Module
from instrument.backend.fake import FakeBackend
from instrument.compiler.plan import compile_plan
from instrument.engine.session import run
from instrument.events import DebugEvent, EventCode, ExceptionCode, ExceptionInfo, LoadDllInfo
from instrument.recipe.load import load_recipe

HIT, LEAF, RET_SITE = 0x1000, 0x2000, 0x1500
ORIGINAL = 0xE8   # call rel32: not emulated, so every hit is single-stepped


class FakeModules:
    """A module map with a fixed symbol table (the fake program is not an ELF file)."""

    symbols = {"hit": HIT, "leaf": LEAF}

    def __init__(self) -> None:
        self.loaded: list[Module] = []

    def add(self, module: Module) -> None:
        self.loaded.append(module)

    def remove(self, base: int) -> None:
        self.loaded = [m for m in self.loaded if m.base != base]

    def extent(self, base: int) -> tuple[int, int] | None:
        return (base, base + 0x1000) if any(m.base == base for m in self.loaded) else None

    def resolve(self, name: str) -> int:
        if name.startswith("lib.so!") and any(m.name == "lib.so" for m in self.loaded):
            return 0x9000
        return self.symbols[name]

    def find(self, address: int) -> None:
        return None

    def is_ifunc(self, address: int) -> bool:
        return False

    def describe(self, address: int, **options: Any) -> dict[str, Any]:
        return {"module": "fake", "offset": address, "symbol": None}

    def image_of(self, module: Module) -> None:
        return None

    def symbol_text(self, address: int) -> str:
        for name, addr in self.symbols.items():
            if addr == address:
                return name
        return hex(address)


def session(recipe_text: str, script: list, *, attach: bool = False, **kw: Any):
    recipe = load_recipe(recipe_text if "\n" in recipe_text else recipe_text, file="t.yaml")
    plan = compile_plan(recipe, pid=100 if attach else None, command=None if attach else ["fake"])
    memory = {a: ORIGINAL for a in (HIT, LEAF, RET_SITE, 0x9000)}
    memory.update({0x7000 + i: b for i, b in enumerate(RET_SITE.to_bytes(8, "little"))})
    backend = FakeBackend(script, memory=memory)
    records: list[dict[str, Any]] = []
    result = run(plan, emit=records.append, backend=backend, module_map_factory=FakeModules, **kw)
    return result, records, backend


def reach(address: int, tid: int = 100, **regs: int):
    base = {"rsp": 0x7000, "rdi": 0, "rax": 0}
    base.update(regs)
    return ("reach", tid, address, base)


HEADER = "version: 1\nname: t\ndescription: test\n"


def test_every_hit_is_recorded_and_stepped_over():
    text = HEADER + "breakpoints:\n  - id: h\n    at: hit\n    actions:\n      - log: 'arg0={arg0}'\n"
    result, records, backend = session(text, [reach(HIT, rdi=i) for i in range(5)])
    hits = [r for r in records if r["event"] == "breakpoint"]
    assert [r["message"] for r in hits] == [f"arg0={i}" for i in range(5)]
    assert [r["hits"] for r in hits] == [1, 2, 3, 4, 5]
    # Each step runs the ORIGINAL byte at the breakpoint, with rip rewound to it.
    steps = [entry for entry in backend.log if entry[0] == "step"]
    assert steps == [("step", 100, HIT, ORIGINAL)] * 5
    assert result.exit_status == 0
    assert records[-1]["event"] == "summary" and records[-1]["breakpoints"] == {"h": 5}
    # A spawned target ends killed or exited; the int3 is in memory only while armed.
    assert backend.closed


def test_prologue_instructions_are_emulated_not_stepped():
    text = HEADER + "breakpoints:\n  - id: h\n    at: hit\n"
    recipe = load_recipe(text, file="t.yaml")
    plan = compile_plan(recipe, command=["fake"])
    memory = {HIT + i: b for i, b in enumerate(b"\x55\x48\x89\xe5")}      # push rbp; mov rbp, rsp
    memory.update({0x6ff8 + i: 0 for i in range(8)})
    backend = FakeBackend([reach(HIT, rbp=0x1234), reach(HIT, rbp=0x5678)], memory=memory)
    records: list[dict[str, Any]] = []
    run(plan, emit=records.append, backend=backend, module_map_factory=FakeModules)
    assert records[-1]["breakpoints"] == {"h": 2}
    assert not [e for e in backend.log if e[0] == "step"]
    # The push happened: rsp moved down one slot and rbp is on the stack.
    assert backend.regs[100]["rsp"] == 0x6ff8 and backend.regs[100]["rip"] == HIT + 1
    assert bytes(backend.memory[0x6ff8 + i] for i in range(8)) == (0x5678).to_bytes(8, "little")


def test_condition_and_limit_select_exact_hits():
    text = HEADER + ("breakpoints:\n  - id: h\n    at: hit\n    when: 'arg0 % 2 == 0'\n    limit: 2\n"
                     "    actions:\n      - log: '{arg0}'\n")
    _, records, backend = session(text, [reach(HIT, rdi=i) for i in range(10)])
    assert [r["message"] for r in records if r["event"] == "breakpoint"] == ["0", "2"]
    # Spent: the original byte is back for good.
    assert backend.memory[HIT] == ORIGINAL


def test_on_return_pairs_recursive_calls_by_stack_depth():
    text = HEADER + ("breakpoints:\n  - id: h\n    at: hit\n    on_return:\n      - log: 'ret {retval} for {arg0}'\n")
    # Two nested calls: entry rsp 0x7000 (outer) then 0x6ff0 (inner); inner returns first.
    mem_inner = {0x6ff0 + i: b for i, b in enumerate(RET_SITE.to_bytes(8, "little"))}
    script = [reach(HIT, rdi=1, rsp=0x7000), reach(HIT, rdi=2, rsp=0x6ff0),
              reach(RET_SITE, rsp=0x6ff8, rax=20), reach(RET_SITE, rsp=0x7008, rax=10)]
    recipe = load_recipe(text, file="t.yaml")
    plan = compile_plan(recipe, command=["fake"])
    memory = {HIT: ORIGINAL, RET_SITE: ORIGINAL}
    memory.update({0x7000 + i: b for i, b in enumerate(RET_SITE.to_bytes(8, "little"))})
    memory.update(mem_inner)
    backend = FakeBackend(script, memory=memory)
    records: list[dict[str, Any]] = []
    from instrument.engine.loop import Session
    s = Session(plan, backend, records.append, module_map_factory=FakeModules)
    backend.spawn(None)  # type: ignore[arg-type]
    s.run_loop(None)
    returns = [r["message"] for r in records if r["event"] == "return"]
    assert returns == ["ret 20 for 2", "ret 10 for 1"]
    assert RET_SITE not in [a for p in s.processes.values() for a in p.sites]


def test_return_action_skips_the_function():
    text = HEADER + "breakpoints:\n  - id: h\n    at: hit\n    actions:\n      - return: 7\n"
    _, records, backend = session(text, [reach(HIT, rdi=1)])
    resumed = [e for e in backend.log if e[0] == "resume"]
    # rip is the return address, rax the forced value, and no step-over happened.
    assert backend.regs[100]["rip"] == RET_SITE and backend.regs[100]["rax"] == 7
    assert not [e for e in backend.log if e[0] == "step"]
    assert resumed


def test_enable_and_disable_arm_other_breakpoints():
    text = HEADER + ("breakpoints:\n  - id: first\n    at: hit\n    once: true\n    actions:\n      - enable: second\n"
                     "  - id: second\n    at: leaf\n    enabled: false\n")
    _, records, backend = session(text, [reach(LEAF), reach(HIT), reach(LEAF), reach(LEAF)])
    assert records[-1]["breakpoints"] == {"first": 1, "second": 2}


def test_event_handlers_dispatch_through_the_table():
    text = HEADER + ("events:\n  load_dll:\n    - log: 'loaded {module}'\n"
                     "  access_violation:\n    - log: 'av at {address:#x}'\n  any:\n    - log: 'any {event}'\n")
    av = DebugEvent(EventCode.EXCEPTION_DEBUG_EVENT, 100, 100,
                    ExceptionInfo(ExceptionCode.ACCESS_VIOLATION, 0x1234, first_chance=True, fault_address=0))
    dll = DebugEvent(EventCode.LOAD_DLL_DEBUG_EVENT, 100, 100, LoadDllInfo("/lib/lib.so", 0x9000))
    _, records, _ = session(text, [("event", dll), ("event", av)])
    by_event = {r["event"]: r for r in records}
    assert by_event["load_dll"]["message"] == "loaded /lib/lib.so\nany load_dll"
    # Specific exception first, then the catch-all.
    assert by_event["exception"]["message"] == "av at 0x1234\nany exception"
    assert by_event["create_process"]["message"] == "any create_process"


def test_deferred_breakpoint_arms_on_load_dll():
    text = HEADER + "breakpoints:\n  - id: lib\n    at: lib.so!work\n"
    dll = DebugEvent(EventCode.LOAD_DLL_DEBUG_EVENT, 100, 100, LoadDllInfo("/x/lib.so", 0x9000))
    _, records, _ = session(text, [reach(0x9000), ("event", dll), reach(0x9000)])
    assert records[-1]["breakpoints"] == {"lib": 1}


def test_attached_target_is_detached_with_bytes_restored_on_timeout():
    text = HEADER + "breakpoints:\n  - id: h\n    at: hit\n"
    result, records, backend = session(text, [reach(HIT), ("timeout",)], attach=True)
    assert backend.detached == [100] and not backend.killed
    assert backend.memory[HIT] == ORIGINAL
    assert records[-1]["ended"] == "timeout"


def test_a_failing_action_becomes_an_error_field():
    text = HEADER + "breakpoints:\n  - id: h\n    at: hit\n    actions:\n      - log: '{u64[0]}'\n      - log: 'after'\n"
    _, records, _ = session(text, [reach(HIT)])
    hit = next(r for r in records if r["event"] == "breakpoint")
    assert hit["message"] == "after"
    assert "cannot read" in hit["errors"][0]


def test_breakpoint_state_machine():
    from instrument.engine.breakpoints import KINDS, State, make_breakpoint

    text = HEADER + ("breakpoints:\n  - id: two\n    at: hit\n    limit: 2\n"
                     "  - id: later\n    at: leaf\n    type: hardware\n    enabled: false\n")
    two, later = compile_plan(load_recipe(text, file="t.yaml"), command=["fake"]).breakpoints
    bp = make_breakpoint(two)
    assert isinstance(bp, KINDS["soft"]) and (bp.state, bp.active) == (State.ENABLED, True)
    bp.hit()
    assert bp.state is State.ONE_SHOT and bp.active          # one hit left before its limit
    bp.disable()
    assert (bp.state, bp.active) == (State.DISABLED, False)
    bp.enable()
    assert bp.state is State.ONE_SHOT
    bp.hit()
    assert (bp.state, bp.active, bp.hits) == (State.SPENT, False, 2)
    bp.enable()
    assert bp.state is State.SPENT                            # a limit reached is for good
    hw = make_breakpoint(later)
    assert isinstance(hw, KINDS["hardware"]) and hw.state is State.DISABLED
    hw.enable()
    assert hw.state is State.ENABLED and hw.executes


def test_an_int3_is_out_only_while_its_thread_steps_over_it():
    from instrument.engine.sites import SiteState

    text = HEADER + "breakpoints:\n  - id: h\n    at: hit\n"
    seen = []

    class Watching(FakeBackend):
        def single_step(self, tid: int) -> DebugEvent:
            seen.append((self.memory[HIT], [s.state for p in sess.processes.values() for s in p.sites.values()]))
            return super().single_step(tid)

    plan = compile_plan(load_recipe(text, file="t.yaml"), command=["fake"])
    backend = Watching([reach(HIT), reach(HIT)], memory={HIT: ORIGINAL})
    from instrument.engine.loop import Session
    sess = Session(plan, backend, [].append, module_map_factory=FakeModules)
    backend.spawn(None)  # type: ignore[arg-type]
    sess.run_loop(None)
    assert seen == [(ORIGINAL, [SiteState.RUNNING])] * 2
    assert backend.memory[HIT] == 0xCC          # back in after each step (the process "exited" with it)


def crash_script() -> list:
    fault = DebugEvent(EventCode.EXCEPTION_DEBUG_EVENT, 100, 100,
                       ExceptionInfo(ExceptionCode.ACCESS_VIOLATION, HIT, first_chance=False, fault_address=0,
                                     signal="SIGSEGV"))
    return [reach(0x4444), ("event", fault)]


def test_a_crash_is_classified_once_by_the_engine_unless_the_caller_does_it():
    text = HEADER + "crash:\n  - log: 'crashed in {module}'\n"
    _, records, _ = session(text, crash_script())
    crash = next(r for r in records if r["event"] == "crash")
    assert crash["classification"]["class"] and set(crash["hash"]) == {"major", "minor"}
    assert crash["message"] == "crashed in fake"
    _, records, _ = session(text, crash_script(), classify_crashes=False)
    crash = next(r for r in records if r["event"] == "crash")
    assert "classification" not in crash and "hash" not in crash and crash["message"] == "crashed in fake"


def test_a_new_handler_section_is_one_registration(monkeypatch):
    from instrument.compiler import sections
    from instrument.compiler.table import Handler

    def compile_probe(recipe: Any, ctx: Any, table: Any, errors: list) -> None:
        table.by_event[EventCode.EXIT_THREAD_DEBUG_EVENT] = Handler("probe", ())

    monkeypatch.setitem(sections.SECTIONS, "probe", compile_probe)
    plan = compile_plan(load_recipe(HEADER, file="t.yaml"), command=["fake"])
    assert plan.table.by_event[EventCode.EXIT_THREAD_DEBUG_EVENT].key == "probe"
    assert list(sections.SECTIONS)[:2] == ["events", "crash"]


class SamplingFake(FakeBackend):
    """The fake backend, taking uprobes (Backend.sample_code): where one is, a hit does not trap."""

    def __init__(self, *args: Any, refuse: bool = False, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.refuse = refuse
        self.probes: list[tuple[int, int, int | None]] = []      # (pid, address, the byte there then)

    def sample_code(self, pid: int, address: int) -> str | None:
        if self.refuse:
            return "refused for the test"
        self.probes.append((pid, address, self.memory.get(address)))
        return None


def adaptive_session(after: int, hits: int, *, refuse: bool = False):
    from instrument.compiler.sampling import choose_sampled
    from instrument.backend.linux.perfbp import SAMPLED_REGISTERS

    text = HEADER + "breakpoints:\n  - id: h\n    at: hit\n    actions:\n      - log: {registers: [rdi]}\n"
    plan = choose_sampled(compile_plan(load_recipe(text, file="t.yaml"), command=["fake"]), "sysv",
                          SAMPLED_REGISTERS, soft=True, after=after)
    backend = SamplingFake([reach(HIT, rdi=i) for i in range(hits)], memory={HIT: ORIGINAL}, refuse=refuse)
    records: list[dict[str, Any]] = []
    run(plan, emit=records.append, backend=backend, module_map_factory=FakeModules)
    return records, backend


def test_a_sampled_soft_breakpoint_stops_until_its_nth_hit_then_becomes_a_uprobe():
    records, backend = adaptive_session(3, 6)
    hits = [r for r in records if r["event"] == "breakpoint"]
    # Three stops, each stepped over; at the third, after its step, the int3 goes and the
    # uprobe comes (the original byte in memory by then); the next three hits stop nothing.
    assert [r["registers"]["rdi"] for r in hits] == ["0x0", "0x1", "0x2"]
    assert [e for e in backend.log if e[0] == "step"] == [("step", 100, HIT, ORIGINAL)] * 3
    assert backend.probes == [(backend.pid, HIT, ORIGINAL)]
    assert backend.memory[HIT] == ORIGINAL
    assert records[-1]["pinned"] is False         # let go at its first uprobe


def test_a_switch_perf_refuses_keeps_the_int3_and_every_hit_stops():
    records, backend = adaptive_session(2, 5, refuse=True)
    assert [r["hits"] for r in records if r["event"] == "breakpoint"] == [1, 2, 3, 4, 5]
    assert [e for e in backend.log if e[0] == "step"] == [("step", 100, HIT, ORIGINAL)] * 5
    assert backend.probes == [] and backend.memory[HIT] == 0xCC   # the int3, when the process exited


def test_fewer_hits_than_n_never_ask_for_a_uprobe():
    records, backend = adaptive_session(10, 9)
    assert len([r for r in records if r["event"] == "breakpoint"]) == 9 and backend.probes == []
