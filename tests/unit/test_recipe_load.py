"""Good recipes: the model built, positions, defaults, provenance, --set params and output paths."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from instrument.errors import Location, RecipeError, RecipeErrors
from instrument.recipe import checks
from instrument.recipe.checks import apply_params, resolve_output_path, substitute, template_fields
from instrument.recipe.load import load_recipe, load_recipe_text
from instrument.recipe.source import parse_source

RECIPES = Path(__file__).resolve().parents[2] / "instrument" / "recipes"

SPEC_EXAMPLE = (Path(__file__).parent / "data" / "spec_example.yaml").read_text()  # SPEC section 3, verbatim

H = "version: 1\nname: t\ndescription: d\n"


def _load(body: str):
    return load_recipe_text(H + body, "t.yaml")


def test_spec_example_builds_the_model() -> None:
    r = load_recipe_text(SPEC_EXAMPLE, "spec.yaml")
    assert (r.version, r.name, r.file) == (1, "trace-hits", "spec.yaml")
    (n,) = r.params
    assert (n.name, n.type, n.default, n.required) == ("n", "int", 1000, False)
    assert r.target is not None
    assert r.target.run == ("./target_loop", "{n}")
    assert r.target.env == {"LC_ALL": "C"}
    assert (r.target.stdin, r.target.timeout, r.target.follow_forks) == (None, 30.0, False)
    (bp,) = r.breakpoints
    assert (bp.id, bp.at, bp.type, bp.when, bp.limit, bp.enabled) == ("on-hit", "hit", "soft", "arg0 % 2 == 0", 100, True)
    assert [(a.kind, a.args) for a in bp.actions] == [
        ("log", "hit {hits}: arg0={arg0:#x}"), ("log", {"registers": ["rip", "rdi", "rsi"]})]
    assert bp.on_return is not None and bp.on_return[0].args == "returned {retval:#x}"
    assert bp.on_return[0].path == ("breakpoints", 0, "on_return", 0)
    assert list(r.events) == ["load_dll"] and r.events_paths["load_dll"] == ("events", "load_dll")
    assert [(a.kind, a.args) for a in r.crash] == [
        ("log", {"registers": "all"}), ("backtrace", {"depth": 32}), ("disassemble", {"count": 8})]


def test_positions_of_values_and_keys() -> None:
    r = load_recipe_text(SPEC_EXAMPLE, "spec.yaml")
    assert r.positions[("name",)] == Location("spec.yaml", 3, 7)
    assert r.key_positions[("name",)] == Location("spec.yaml", 3, 1)
    assert r.positions[("breakpoints", 0)] == Location("spec.yaml", 14, 5)
    assert r.key_positions[("breakpoints", 0, "when")] == Location("spec.yaml", 17, 5)
    # A quoted scalar's position is the first character inside the quote.
    assert r.positions[("breakpoints", 0, "when")] == Location("spec.yaml", 17, 12)
    assert r.where(("breakpoints", 0, "nonexistent")) == r.positions[("breakpoints", 0)]


def test_every_single_line_string_position_points_at_its_text() -> None:
    r = load_recipe_text(SPEC_EXAMPLE, "spec.yaml")
    lines = SPEC_EXAMPLE.splitlines()
    data = parse_source(SPEC_EXAMPLE).data
    checked = 0
    for path, loc in r.positions.items():
        value = data
        for part in path:
            value = value[part]
        if isinstance(value, str):
            assert lines[loc.line - 1][loc.col - 1:].startswith(value), (path, loc)
            checked += 1
    assert checked >= 15


def test_expression_column_adds_to_a_quoted_position() -> None:
    r = load_recipe_text(SPEC_EXAMPLE, "spec.yaml")
    loc = r.positions[("breakpoints", 0, "when")].shifted("arg0 % 2 == 0".index("%"))
    assert SPEC_EXAMPLE.splitlines()[loc.line - 1][loc.col - 1] == "%"


def test_unknown_param_error_points_at_the_field_inside_the_string() -> None:
    text = H + 'target:\n  run: ["./a", "--x={nope}"]\n'
    with pytest.raises(RecipeErrors) as info:
        load_recipe_text(text, "t.yaml")
    (err,) = info.value.errors
    assert text.splitlines()[err.location.line - 1][err.location.col - 1:].startswith("{nope}")


def test_defaults_are_applied() -> None:
    r = _load("breakpoints:\n  - at: main\n  - at: 0x401000\n    once: true\n    enabled: false\n"
              "  - id: w\n    at: 0x1000\n    type: hardware\n    access: write\n"
              "  - at: buf\n    type: memory\n")
    a, b, w, m = r.breakpoints
    assert (a.id, a.type, a.limit, a.enabled, a.actions, a.on_return) == ("main", "soft", None, True, (), None)
    assert (b.id, b.at, b.limit, b.enabled) == ("0x401000", 0x401000, 1, False)
    assert (w.effective_access, w.effective_size) == ("write", 8)
    assert (m.id, m.effective_access, m.effective_size) == ("buf", "any", 1)
    assert r.target is None and r.crash == () and dict(r.events) == {}


def test_bare_and_null_actions() -> None:
    r = _load("crash:\n  - backtrace\n  - disassemble\n  - {detach: null}\n  - kill\n  - stop\n"
              "  - disassemble: {at: main}\n")
    assert [(a.kind, a.args) for a in r.crash] == [
        ("backtrace", {"depth": 32}), ("disassemble", {"count": 8}), ("detach", None), ("kill", None),
        ("stop", None), ("disassemble", {"count": 8, "at": "main"})]
    r = _load("crash:\n  - backtrace: {depth: 4}\n")
    assert [(a.kind, a.args) for a in r.crash] == [("backtrace", {"depth": 4})]


def test_every_action_kind_loads() -> None:
    r = _load("breakpoints:\n  - id: a\n    at: f\n  - at: g\n    actions:\n"
              "      - log: {message: m, registers: [eax, r8d]}\n"
              "      - dump: {at: rdi, size: arg1, file: out/buf.bin}\n"
              "      - set: {rax: 0, arg0: 'arg0+1', retval: 1}\n"
              "      - write: {at: rsi, bytes: 'de ad be ef'}\n"
              "      - write: {at: rsi, string: hi}\n"
              "      - write: {at: rsi, i64: -1}\n"
              "      - return: 0\n      - enable: a\n      - disable: a\n")
    kinds = [a.kind for a in r.breakpoints[1].actions]
    assert kinds == ["log", "dump", "set", "write", "write", "write", "return", "enable", "disable"]


def test_events_accept_event_and_exception_names_and_any() -> None:
    r = _load("events:\n  exit_process: [stop]\n  access_violation: [backtrace]\n  signal: []\n  any: [kill]\n")
    assert list(r.events) == ["exit_process", "access_violation", "signal", "any"]


def test_anchors_are_plain_reuse() -> None:
    r = _load("events:\n  load_dll: &acts\n    - log: hi\n  unload_dll: *acts\n")
    assert r.events["unload_dll"][0].args == "hi"
    assert r.events["unload_dll"][0].path == ("events", "unload_dll", 0)
    # An alias has no text of its own: errors in it point at the anchored original.
    assert r.positions[("events", "unload_dll", 0)] == r.positions[("events", "load_dll", 0)]


def test_billion_laughs_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7)]
    with pytest.raises(RecipeErrors) as info:
        parse_source("\n".join(lines) + "\n", "bomb.yaml")
    assert "more than" in str(info.value)


def test_keys_keep_their_text() -> None:
    # YAML 1.1 reads `on`/`no` as booleans; keys are names, so they stay text.
    r = _load("target:\n  env: {on: 1, no: true, N: 1.5}\n")
    assert r.target is not None and r.target.env == {"on": "1", "no": "true", "N": "1.5"}


def test_run_numbers_become_strings() -> None:
    r = _load("target:\n  run: [./a, 10, 2.5, '{n}']\nparams: {n: 3}\n")
    assert r.target is not None and r.target.run == ("./a", "10", "2.5", "{n}")


def test_params_types() -> None:
    r = _load("params:\n  i: 1\n  f: 1.5\n  b: true\n  s: hi\n  pid: {type: int, description: who}\n"
              "  ratio: {type: float, default: 2}\n  flag: {default: false}\n")
    got = {p.name: (p.type, p.default, p.required) for p in r.params}
    assert got == {"i": ("int", 1, False), "f": ("float", 1.5, False), "b": ("bool", True, False),
                   "s": ("str", "hi", False), "pid": ("int", None, True), "ratio": ("float", 2.0, False),
                   "flag": ("bool", False, False)}
    assert r.params[4].description == "who"


def test_sha256_and_file_from_path(tmp_path: Path) -> None:
    text = SPEC_EXAMPLE.replace("\n", "\r\n")     # newlines must not be translated
    path = tmp_path / "r.yaml"
    path.write_bytes(text.encode())
    r = load_recipe(str(path))
    assert r.file == str(path)
    assert r.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert r.text == text
    assert load_recipe(path, file="shown.yaml").file == "shown.yaml"


def test_load_recipe_accepts_text() -> None:
    r = load_recipe(H)
    assert r.name == "t" and r.file == "<recipe>"
    assert r.sha256 == hashlib.sha256(H.encode()).hexdigest()


def test_missing_file_is_a_recipe_error_without_line(tmp_path: Path) -> None:
    with pytest.raises(RecipeErrors) as info:
        load_recipe(tmp_path / "nope.yaml")
    (err,) = info.value.errors
    assert err.location is None and "cannot read recipe" in err.message and "nope.yaml" in err.message


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes(H.encode() + b"author: \xe9\n")
    with pytest.raises(RecipeErrors) as info:
        load_recipe(path)
    assert "not UTF-8" in info.value.errors[0].message


def test_aligned_hardware_watch_is_fine() -> None:
    r = _load("breakpoints:\n  - at: 0x1008\n    type: hardware\n    access: write\n"
              "  - at: '4100'\n    type: hardware\n    access: readwrite\n    size: 4\n"
              "  - at: counter+2\n    type: hardware\n    access: write\n    size: 8\n")
    assert [bp.effective_size for bp in r.breakpoints] == [8, 4, 8]


def test_four_hardware_breakpoints_fit() -> None:
    r = _load("breakpoints:\n" + "".join(f"  - at: f{i}\n    type: hardware\n" for i in range(4)))
    assert len(r.breakpoints) == 4


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_load(path: Path) -> None:
    r = load_recipe(path)
    assert r.name == path.stem
    assert r.description
    assert path.read_text().startswith("# yaml-language-server: $schema=../schemas/recipe.schema.json")


def test_three_starter_recipes_are_shipped() -> None:
    assert {"event-log", "trace-calls", "crash-report"} <= {p.stem for p in RECIPES.glob("*.yaml")}
    events = load_recipe(RECIPES / "event-log.yaml").events
    assert set(events) == {"create_process", "create_thread", "exit_thread", "exit_process", "load_dll",
                           "unload_dll", "debug_string", "rip", "exception"}


# -- --set, {param} substitution ---------------------------------------------

PARAMS = H + "params:\n  n: 10\n  rate: 0.5\n  verbose: false\n  label: x\n  pid: {type: int}\n"


def test_apply_params_types_overrides() -> None:
    r = load_recipe_text(PARAMS, "p.yaml")
    values = apply_params(r, {"n": "0x10", "rate": "2", "verbose": "Yes", "pid": "0042"})
    assert values == {"n": 16, "rate": 2.0, "verbose": True, "label": "x", "pid": 42}
    assert apply_params(r, {"pid": "-1", "verbose": "0"})["verbose"] is False


def test_apply_params_errors_all_at_once() -> None:
    r = load_recipe_text(PARAMS, "p.yaml")
    with pytest.raises(RecipeErrors) as info:
        apply_params(r, {"n": "abc", "verbose": "maybe", "nope": "1"})
    messages = [str(e) for e in info.value.errors]
    assert "error: --set n=abc: param 'n' is an int" in messages
    assert any("--set verbose=maybe: param 'verbose' is a bool" in m for m in messages)
    assert any("no param 'nope'" in m for m in messages)
    assert any(m.startswith("p.yaml:9:3: error: param 'pid' has no default: pass --set pid=VALUE") for m in messages)


def test_substitute() -> None:
    values = {"n": 5, "flag": True, "name": "x y"}
    assert substitute("--n={n} {{literal}} {flag} {name}", values) == "--n=5 {literal} true x y"
    assert substitute("plain", {}) == "plain"
    with pytest.raises(RecipeError, match="unknown param 'm'"):
        substitute("{m}", values)
    with pytest.raises(RecipeError, match="single '}'"):
        substitute("a}b", values)


def test_template_fields_columns() -> None:
    assert template_fields("a{x}b{{c}}{y_2}") == [("x", 1), ("y_2", 10)]
    with pytest.raises(checks.TemplateError) as info:
        template_fields("ab{c d}")
    assert info.value.column == 2


# -- output paths -------------------------------------------------------------

def test_resolve_output_path_inside(tmp_path: Path) -> None:
    assert resolve_output_path(tmp_path, "a/b.bin") == (tmp_path / "a" / "b.bin").resolve()


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../b", "..", "a\\..\\b", "C:/x", "a\0b", "", "d/"])
def test_resolve_output_path_refuses(tmp_path: Path, name: str) -> None:
    with pytest.raises(RecipeError):
        resolve_output_path(tmp_path, name)


def test_resolve_output_path_refuses_symlink_escape(tmp_path: Path) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    os.symlink(outside, out / "link")
    os.symlink(out, out / "self")
    with pytest.raises(RecipeError, match="outside the output folder"):
        resolve_output_path(out, "link/x.bin")
    assert resolve_output_path(out, "self/x.bin") == (out / "x.bin").resolve()
