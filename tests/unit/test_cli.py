"""The CLI's contract: exit statuses, one-line errors, golden `explain`, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instrument.cli import main

GOLDEN = Path(__file__).parent / "golden"
SHIPPED = sorted((Path(__file__).parents[2] / "instrument" / "recipes").glob("*.yaml"))


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_validate_accepts_every_shipped_recipe():
    result = invoke("validate", *map(str, SHIPPED))
    assert result.exit_code == 0, result.output
    assert result.output.count(": ok") == len(SHIPPED)


@pytest.mark.parametrize("body, line, words", [
    ("version: 1\nname: x\ndescription: d\nbreakpoints:\n  - at: 'hit +'\n", 5, "expected"),
    ("version: 1\nname: x\ndescription: d\nbreakpoints:\n  - at: hit\n    actions:\n      - frob: 1\n", 7, "unknown action 'frob'"),
    ("version: 1\nname: x\ndescription: d\nbreakpoints:\n  - at: hit\n    when: \"__import__('os')\"\n", 6, "__import__"),
    ("version: 1\nname: x\ndescription: d\nbreakpoints:\n  - at: hit\n    actions:\n      - log: '{arg0:zz}'\n", 7, "format"),
    ("version: 1\nname: x\ndescription: d\nbreakpoints:\n  - at: hit\n    actions:\n      - log: {registers: [rxx]}\n", 7, "rxx"),
    ("version: 1\nname: x\ndescription: d\nbreakpoints:\n  - at: hit\n    actions:\n      - set: {foo: 1}\n", 7, "foo"),
    ("version: 1\nname: x\ndescription: d\nbreakpoints:\n  - at: hit\n    actions:\n      - write: {at: rdi, bytes: 'zz'}\n", 7, "hex"),
    ("version: 1\nname: x\ndescription: d\nbreakpoints:\n  - at: '1/0'\n", 5, "'1/0': division by zero"),
    ("version: 1\nname: x\ndescription: d\nbreakpoints:\n  - at: \"'abc'\"\n", 5, "is 'abc', not an address"),
])
def test_validate_reports_compile_errors_with_line(tmp_path, body, line, words):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"{path}:{line}:") and ": error: " in lines[0]
    assert words in lines[0]


def test_expression_error_points_at_its_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nname: x\ndescription: d\nbreakpoints:\n  - at: hit\n    when: \"arg0 + * 2\"\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    # `when: "` puts the expression at column 12; the bad `*` is 7 characters in.
    assert result.output.startswith(f"{path}:6:19: error:"), result.output


def test_unknown_symbol_in_a_known_binary(tmp_path, targets):
    path = tmp_path / "bad.yaml"
    path.write_text(f"version: 1\nname: x\ndescription: d\ntarget:\n  run: [{targets['loop']}]\n"
                    "breakpoints:\n  - at: hit\n  - at: hti + 4\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}:8:9: error: unknown symbol 'hti'" in result.output


def test_a_watch_the_symbols_show_misaligned_is_a_recipe_error(tmp_path, targets):
    path = tmp_path / "bad.yaml"
    path.write_text(f"version: 1\nname: x\ndescription: d\ntarget:\n  run: [{targets['loop']}]\n"
                    "breakpoints:\n  - {at: counter, type: hardware, access: write, size: 8}\n"
                    "  - {at: message + 4, type: hardware, access: write, size: 8}\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.output.count("error:") == 1 and f"{path}:8:" in result.output and "not aligned" in result.output


def test_source_line_addresses_resolve_statically(tmp_path, targets):
    path = tmp_path / "lines.yaml"
    path.write_text(f"version: 1\nname: x\ndescription: d\ntarget:\n  run: [{targets['loop']}]\n"
                    "breakpoints:\n  - at: loop.c:10\n  - at: loop.c:9999\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert "loop.c:9999" in result.output and ":8:" in result.output and ":7:" not in result.output


def test_set_values_are_typed(tmp_path):
    result = CliRunner().invoke(main, ["validate", str(GOLDEN / "explain.yaml"), "--set", "n=abc"])
    assert result.exit_code == 2 and "n" in result.output


def test_explain_output_is_pinned():
    result = invoke("explain", str(GOLDEN / "explain.yaml"))
    expected = (GOLDEN / "explain.txt").read_text()
    assert result.output == expected


def test_schema_command_prints_the_recipe_schema():
    schema = json.loads(invoke("schema", "recipe").output)
    assert schema["$schema"].endswith("2020-12/schema")


def test_recipes_lists_the_library():
    out = invoke("recipes").output
    for path in SHIPPED:
        assert yaml.safe_load(path.read_text())["name"] in out


def test_run_without_target_is_a_usage_error(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("version: 1\nname: x\ndescription: d\n")
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 2 and "no target" in result.output


@pytest.mark.parametrize("command", ["run", "triage"])
@pytest.mark.parametrize("value", ["-1", "0"])
def test_a_timeout_must_be_positive(tmp_path, command, value):
    path = tmp_path / "r.yaml"
    path.write_text("version: 1\nname: x\ndescription: d\n")
    args = [command, str(path)] if command == "run" else [command]
    result = CliRunner().invoke(main, [*args, "--timeout", value, "--", "/bin/true"])
    assert result.exit_code == 2 and "--timeout" in result.output


def test_missing_recipe_file(tmp_path):
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "nope.yaml" in result.output and "Traceback" not in result.output


# -- never a traceback, whatever the input -------------------------------------------

BASE = yaml.safe_load((GOLDEN / "explain.yaml").read_text())
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.text(max_size=20),
                    st.sampled_from(["hit", "arg0 +", "{n}", "u64[rsp]", "libc.so.6!malloc", "../x", "hardware", "all"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=12)


def _mutate(doc, path_choice, value):
    """Replace one node of the golden recipe (chosen by path_choice) with `value`."""
    node, keys = doc, []
    while isinstance(node, (dict, list)) and node:
        items = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        key, child = items[path_choice % len(items)]
        keys.append(key)
        path_choice //= len(items) or 1
        if path_choice == 0 or not isinstance(child, (dict, list)):
            break
        node = child
    target = doc
    for k in keys[:-1]:
        target = target[k]
    if keys:
        target[keys[-1]] = value
    return doc


def _check(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(choice=st.integers(0, 10**6), value=json_values)
def test_mutated_recipes_only_exit_0_or_2(tmp_path, choice, value):
    import copy
    _check(tmp_path, yaml.safe_dump(_mutate(copy.deepcopy(BASE), choice, value), allow_unicode=True))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_random_text_only_exits_0_or_2(tmp_path, text):
    _check(tmp_path, text)
