"""Symbol patterns without a process (issue 17): matching an image's functions, the per-session expander
the engine asks as modules load, and the recipe `instrument trace` writes from its flags."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from click.testing import CliRunner

from instrument.backend.base import Module
from instrument.cli import main
from instrument.compiler import patterns as patterns_mod
from instrument.compiler.functions import function_table, matching, module_glob_matches
from instrument.compiler.patterns import PatternPlan, PatternSet
from instrument.recipe.globs import parse_pattern
from instrument.recipe.load import load_recipe_text
from instrument.recipe.trace import TraceOptions, split_spec, trace_recipe


@dataclass
class FakeSymbols:
    by_name: dict[str, int]


@dataclass(eq=False)
class FakeImage:
    """What function_table reads of an ElfImage: `symbols.by_name` and `is_code`."""

    names: dict[str, int]
    code: tuple[int, int] = (0x1000, 0x9000)
    symbols: FakeSymbols = field(init=False)

    def __post_init__(self) -> None:
        self.symbols = FakeSymbols(self.names)

    def is_code(self, address: int) -> bool:
        return self.code[0] <= address < self.code[1]


LIBC = FakeImage({"malloc": 0x1000, "__libc_malloc": 0x1000, "strlen": 0x2000, "strchr": 0x2100, "index": 0x2100,
                  "puts@plt": 0x3000, "environ": 0xA000, "strcpy": 0x2200})


def test_functions_are_one_per_address_without_plt_stubs_or_data() -> None:
    table = function_table(LIBC)
    assert [(f.address, [a.linkage for a in f.aliases]) for f in table] == [
        (0x1000, ["malloc", "__libc_malloc"]), (0x2000, ["strlen"]), (0x2100, ["index", "strchr"]),
        (0x2200, ["strcpy"])]


def test_a_match_is_named_by_the_alias_that_matched() -> None:
    assert [(m.name, m.address) for m in matching(function_table(LIBC), "str*")] == [
        ("strchr", 0x2100), ("strcpy", 0x2200), ("strlen", 0x2000)]
    assert [m.name for m in matching(function_table(LIBC), "*index")] == ["index"]
    assert [m.name for m in matching(function_table(LIBC), "*malloc")] == ["malloc"]     # not twice


def test_cpp_names_match_demangled_with_or_without_parameters() -> None:
    image = FakeImage({"_ZN2ns1K1fEi": 0x1000, "_ZN2ns1K1fEd": 0x1100, "_ZN2ns1K1gEv": 0x1200, "_ZN2ns3barEv": 0x1300})
    names = [m.name for m in matching(function_table(image), "ns::K::*")]
    # Two overloads of f keep their signatures; g needs none.
    assert names == ["ns::K::f(double)", "ns::K::f(int)", "ns::K::g"]
    assert [m.linkage for m in matching(function_table(image), "ns::bar")] == ["_ZN2ns3barEv"]


def test_module_globs() -> None:
    assert module_glob_matches("libz.so*", "/usr/lib/x86_64-linux-gnu/libz.so.1")
    assert module_glob_matches("*", "/bin/ls")
    assert not module_glob_matches("libz.so*", "/lib/libc.so.6")
    assert module_glob_matches("/usr/lib/*/libz*", "/usr/lib/x86_64-linux-gnu/libz.so.1")
    assert module_glob_matches("KERNEL32.*", "C:\\Windows\\System32\\kernel32.dll")


def _pattern_set(recipe_text: str) -> PatternSet:
    """PatternPlans straight from a recipe, with a stand-in template (what compile_plan makes)."""
    recipe = load_recipe_text(recipe_text, "r.yaml")
    plans = []
    for bp in recipe.breakpoints:
        template = Template(bp.id, "hardware" if bp.type == "hardware" else "soft", bp.enabled)
        plans.append(PatternPlan(parse_pattern(bp.at), template, bp.id_given, bp.max_matches or 1000, "r.yaml:3"))
    return PatternSet(tuple(plans), 4)


@dataclass(frozen=True)
class Template:
    id: str
    type: str = "soft"
    enabled: bool = True
    at: object = None
    module: object = None
    static_address: object = None


@pytest.fixture
def images(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeImage]:
    table = {"/lib/libc.so.6": LIBC, "/bin/app": FakeImage({"hit": 0x1100, "hit_two": 0x1200, "main": 0x1300})}

    def open_image(path: str) -> FakeImage:
        return table[path]

    monkeypatch.setattr(patterns_mod, "open_module_image", open_image)
    return table


def test_the_expander_arms_each_module_once_and_names_each_function(images: dict[str, FakeImage]) -> None:
    expander = _pattern_set("version: 1\nbreakpoints:\n  - at: 'libc.so.6!str*'\n  - {id: h, at: 'hit*'}\n").expander()
    app, libc = Module("/bin/app", 0x555000), Module("/lib/libc.so.6", 0x7F0000)
    made = expander.expand(app, True, set())
    assert [(b.id, b.at.text, b.static_address) for b in made] == [
        ("h[hit]", "app!hit", 0x1100), ("h[hit_two]", "app!hit_two", 0x1200)]
    made = expander.expand(libc, False, {"h[hit]", "h[hit_two]"})
    assert [b.id for b in made] == ["libc.so.6!strchr", "libc.so.6!strcpy", "libc.so.6!strlen"]
    # A fork child reports the same modules: nothing new.
    assert expander.expand(libc, False, set()) == [] and expander.expand(app, True, set()) == []
    assert expander.set_enabled("h", False) == ["h[hit]", "h[hit_two]"]
    assert expander.set_enabled("libc.so.6!strlen", False) is None        # not a pattern's id
    assert expander.final_warnings() == []


def test_an_expansion_never_reuses_an_id(images: dict[str, FakeImage]) -> None:
    expander = _pattern_set("version: 1\nbreakpoints:\n  - at: 'hit*'\n").expander()
    assert [b.id for b in expander.expand(Module("/bin/app", 0), True, {"hit"})] == ["hit#2", "hit_two"]


def test_caps_and_debug_registers_hold_at_run_time(images: dict[str, FakeImage]) -> None:
    expander = _pattern_set("version: 1\nbreakpoints:\n  - {at: 'libc.so.6!*', max_matches: 3}\n"
                            "  - {at: 'hit*', type: hardware}\n").expander()
    assert expander.expand(Module("/lib/libc.so.6", 0), False, set()) == []
    (warning,) = expander.take_warnings()
    assert "matches 4 functions in libc.so.6, more than its max_matches of 3 allow" in warning
    assert len(expander.expand(Module("/bin/app", 0), True, set())) == 2
    assert expander.hardware_used == 2


def test_patterns_that_armed_nothing_are_reported_at_the_end(images: dict[str, FakeImage]) -> None:
    expander = _pattern_set("version: 1\nbreakpoints:\n  - at: 'libz*!inflate*'\n  - at: 'libc.so.6!zz*'\n").expander()
    expander.expand(Module("/lib/libc.so.6", 0), False, set())
    assert expander.final_warnings() == [
        "pattern 'libz*!inflate*' (r.yaml:3): no module matching 'libz*' was loaded; nothing traced",
        "pattern 'libc.so.6!zz*' (r.yaml:3) matched no function in libc.so.6; nothing traced"]


def test_twins_of_one_pattern_arm_once(images: dict[str, FakeImage]) -> None:
    expander = _pattern_set("version: 1\nbreakpoints:\n  - at: 'libc.so.6!str*'\n").expander()
    expander.expand(Module("/lib/libc.so.6", 0), False, set())
    placed = {"libc.so.6!strchr": 0x7000}
    assert expander.twin("libc.so.6!strcpy", 0x7000, placed)
    assert not expander.twin("libc.so.6!strlen", 0x8000, placed)
    assert expander.set_enabled("libc.so.6!str*", True) == ["libc.so.6!strchr", "libc.so.6!strlen"]


# -- the recipe of a trace command --------------------------------------------------------------

def test_split_spec() -> None:
    assert split_spec("openat: {str(arg1)} flags={arg2:#x}") == ("openat", "{str(arg1)} flags={arg2:#x}")
    assert split_spec("ns::K::*") == ("ns::K::*", None)
    assert split_spec("loop.c:12") == ("loop.c:12", None)
    assert split_spec("loop.c:12: here") == ("loop.c:12", "here")


def test_the_trace_recipe_says_what_the_flags_said() -> None:
    options = TraceOptions(specs=("libc.so.6!open*", "malloc: n={arg0}"), command=("./app", "x y"), args=2,
                           ret=True, backtrace=8, limit=5, hardware=True, follow_forks=True, max_matches=50,
                           timeout=10.0)
    recipe = load_recipe_text(trace_recipe(options).text, "<trace>")
    assert recipe.name == "trace"
    assert recipe.description == ("Written by: instrument trace -i 'libc.so.6!open*' -i 'malloc: n={arg0}' "
                                  "--args 2 --ret --hardware --follow-forks --backtrace 8 --limit 5 "
                                  "--max-matches 50 --timeout 10 -- ./app 'x y'")
    assert recipe.target is not None and recipe.target.run == ("./app", "x y")
    assert (recipe.target.timeout, recipe.target.follow_forks) == (10.0, True)
    first, second = recipe.breakpoints
    assert (first.at, first.type, first.limit, first.max_matches) == ("libc.so.6!open*", "hardware", 5, 50)
    assert [(a.kind, a.args) for a in first.actions] == [
        ("log", "arg0={arg0:#x} arg1={arg1:#x}"), ("backtrace", {"depth": 8})]
    assert first.on_return == ()
    assert second.actions[0].args == "n={arg0}" and second.max_matches is None    # not a pattern


def test_print_recipe_from_the_cli() -> None:
    result = CliRunner().invoke(main, ["trace", "-i", "hit", "--args", "0", "--pid", "1234", "--print-recipe"])
    assert result.exit_code == 0, result.output
    recipe = load_recipe_text(result.output, "t.yaml")
    assert recipe.target is not None and recipe.target.attach == 1234
    assert [(b.at, b.actions) for b in recipe.breakpoints] == [("hit", ())]


def test_trace_help_teaches_with_examples() -> None:
    result = CliRunner().invoke(main, ["trace", "--help"])
    assert result.exit_code == 0
    for piece in ("instrument trace -i 'libc.so.6!open*' -i malloc -- ./app", "--pid 1234", "--ret", "--save",
                  "--backtrace [DEPTH]", "symbol pattern"):
        assert piece in result.output, piece
