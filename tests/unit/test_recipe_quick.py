"""Recipes without ceremony and every error in one pass (issue 17): the smallest recipe is two lines,
and a file with several mistakes gets them all, sorted, with their lines and columns."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from instrument.cli import main
from instrument.compiler.collect import compile_recipe
from instrument.errors import RecipeErrors
from instrument.recipe.globs import is_pattern, parse_pattern
from instrument.recipe.load import default_name, load_recipe_text


def errors_of(text: str, file: str = "r.yaml") -> list[str]:
    with pytest.raises(RecipeErrors) as info:
        compile_recipe(text, file=file)
    return [str(e) for e in info.value.errors]


def test_version_and_one_breakpoint_are_a_whole_recipe() -> None:
    r = load_recipe_text("version: 1\nbreakpoints: [{at: malloc}]\n", "heap.yaml")
    assert (r.name, r.description) == ("heap", None)
    (bp,) = r.breakpoints
    assert (bp.id, bp.at, bp.id_given) == ("malloc", "malloc", False)
    assert compile_recipe("version: 1\nbreakpoints: [{at: malloc}]\n", file="heap.yaml").recipe.name == "heap"


def test_the_name_defaults_to_the_file_stem() -> None:
    assert default_name("/x/y/trace-hits.yaml") == "trace-hits"
    assert default_name("<recipe>") == "recipe"
    assert load_recipe_text("version: 1\nname: given\n", "other.yaml").name == "given"


def test_ids_default_to_the_at_text_and_repeats_are_numbered() -> None:
    r = load_recipe_text("version: 1\nbreakpoints:\n  - at: hit\n  - at: hit\n    when: arg0\n"
                         "  - at: 0x401000\n  - at: 'libc.so.6!str*'\n  - {id: hit, at: main}\n", "r.yaml")
    assert [b.id for b in r.breakpoints] == ["hit#2", "hit#3", "0x401000", "libc.so.6!str*", "hit"]
    assert [b.id_given for b in r.breakpoints] == [False, False, False, False, True]


def test_five_mistakes_give_five_sorted_errors_with_lines_and_columns() -> None:
    text = ("version: 1\n"
            "breakpoints:\n"
            "  - at: hit\n"
            "    limit: ten\n"                       # 4: schema (a type)
            "    when: \"arg0 >\"\n"                 # 5: expression
            "    actions:\n"
            "      - frob: 1\n"                      # 7: schema (an unknown action)
            "      - log: \"x={arg0:#q}\"\n"         # 8: a format
            "      - enable: nobody\n")              # 9: semantic (a dangling id)
    assert errors_of(text) == [
        "r.yaml:4:12: error: 'limit': expected an integer, got string 'ten'",
        "r.yaml:5:18: error: when: unexpected end of expression",
        "r.yaml:7:9: error: unknown action 'frob' (expected one of log, dump, set, write, backtrace, disassemble, "
        "return, enable, disable, detach, kill, stop)",
        errors_of(text)[3],
        "r.yaml:9:17: error: enable: no breakpoint has id 'nobody' (ids: hit)",
    ]
    assert errors_of(text)[3].startswith("r.yaml:8:") and ": error: log: " in errors_of(text)[3]


def test_a_cut_list_item_keeps_the_positions_of_the_items_after_it() -> None:
    # The first action is refused by the schema; the second's error still points at line 6.
    text = "version: 1\nbreakpoints:\n  - at: hit\n    actions:\n      - 5\n      - log: '{1 +}'\n"
    assert errors_of(text) == ["r.yaml:5:9: error: 'actions[0]': expected a string or a mapping, got integer 5",
                               "r.yaml:6:19: error: log: unexpected end of expression"]


def test_a_breakpoint_without_at_still_has_its_actions_checked() -> None:
    text = "version: 1\nbreakpoints:\n  - id: a\n    when: 'arg0 +'\n"
    assert errors_of(text) == ["r.yaml:3:5: error: missing required key 'at' in breakpoint 1",
                               "r.yaml:4:18: error: when: unexpected end of expression"]


def test_a_bad_address_does_not_hide_the_condition_and_actions() -> None:
    text = "version: 1\nbreakpoints:\n  - at: 'hit +'\n    when: 'arg0 +'\n    actions: [{log: '{('}]\n"
    lines = errors_of(text)
    assert [line.split(": error: ")[1].split(":")[0] for line in lines] == ["at", "when", "log"]
    assert [int(line.split(":")[1]) for line in lines] == [3, 4, 5]


def test_an_unclosed_flow_sequence_points_at_where_it_opened() -> None:
    assert errors_of("version: 1\nbreakpoints: [\n  {at: hit}\n\n") == [
        "r.yaml:5:1: error: YAML syntax: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence started at line 2)",
        "r.yaml:2:14: note: the flow sequence starts here"]


def test_pattern_rules_of_the_recipe() -> None:
    assert errors_of("version: 1\nbreakpoints:\n  - at: hit\n    max_matches: 5\n"
                     "  - {at: 'buf*', type: memory}\n") == [
        "r.yaml:4:5: error: 'max_matches' applies to a symbol pattern (an `at:` with * or ?), not to 'hit'",
        "r.yaml:5:11: error: a symbol pattern ('buf*') names functions, to break where they start: it cannot "
        "be a memory breakpoint, which watches data"]


@pytest.mark.parametrize(("at", "module", "function"), [
    ("hit*", None, "hit*"), ("libc.so.6!str*", "libc.so.6", "str*"), ("*!malloc", "*", "malloc"),
    ("libz.so*!inflate*", "libz.so*", "inflate*"), ("ns::K::*", None, "ns::K::*"), ("f?o", None, "f?o"),
])
def test_what_a_pattern_is(at: str, module: str | None, function: str) -> None:
    pattern = parse_pattern(at)
    assert pattern is not None and (pattern.module, pattern.function) == (module, function)


@pytest.mark.parametrize("at", ["hit", "hit+4", "hit * 2", "u64[rsp]", "{function}", "loop.c:42", 0x401000,
                                "libc.so.6!malloc", "{lib}!str*"])
def test_what_a_pattern_is_not(at: object) -> None:
    assert not is_pattern(at)


def test_validate_cli_reports_them_all(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nbreakpoints:\n  - at: x\n    limit: 0\n  - at: y\n    when: '('\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert [line.split(": error: ")[0] for line in result.output.strip().splitlines()] == [
        f"{path}:4:12", f"{path}:6:13"]
