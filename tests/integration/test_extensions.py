"""Each kind of extension goes in one place (README "How it works"): a new action through the
registry alone, run on a real program; the format and backend registries are what is offered."""

from __future__ import annotations

import io
from typing import Any, Iterator

import pytest

from instrument import compile_plan, load_recipe, run
from instrument.actions import ACTIONS, ActionContext, CompileContext, CompiledAction, register, unregister
from instrument.backend import BACKENDS, get_backend, native_backend_name
from instrument.backend.fake import FakeBackend
from instrument.cli import main
from instrument.errors import RecipeErrors, TargetError, UsageError
from instrument.recipe.model import Action
from instrument.recipe.schema import action_kinds, add_action, schema_json
from instrument.report import RECORD_FORMATS, REPORT_FORMATS, format_report, open_reporter

HEADER = "version: 1\nname: t\ndescription: test recipe\n"


def compile_note(action: Action, ctx: CompileContext) -> CompiledAction:
    """A trivial action: `note: TEXT` puts the constant TEXT into the record."""
    text = "noted" if action.args is None else str(action.args)

    def run_note(ac: ActionContext) -> None:
        ac.record["note"] = text

    return CompiledAction("note", f"note {text!r}", run_note)


@pytest.fixture
def note_action() -> Iterator[None]:
    # The whole extension: one registration, with the schema of the action's value.
    register("note", compile_note, schema={"description": "Put a constant into the record.", "type": "string"},
             bare=True)
    try:
        yield
    finally:
        unregister("note")


def test_an_action_added_through_the_registry_alone_runs_on_a_real_program(note_action, targets):
    recipe = load_recipe(HEADER + (
        "breakpoints:\n"
        "  - id: h\n    at: hit\n"
        "    actions:\n      - note: every call\n      - log: 'i={arg0}'\n"
        "  - id: d\n    at: decide\n    actions: [note]\n"), file="note.yaml")
    plan = compile_plan(recipe, command=[targets["loop"], "4"])
    records: list[dict[str, Any]] = []
    result = run(plan, emit=records.append)
    assert result.exit_status == 0
    hits = [r for r in records if r["event"] == "breakpoint"]
    assert [(r["id"], r.get("note"), r.get("message")) for r in hits] == [
        ("h", "every call", f"i={i}") for i in range(4)] + [("d", "noted", None)]


def test_an_added_action_is_in_the_schema_until_removed(note_action):
    assert "note" in ACTIONS and "note" in action_kinds()
    action = schema_json()["$defs"]["action"]
    assert "note" in action["else"]["properties"] and "note" in action["then"]["enum"]
    with pytest.raises(RecipeErrors, match="'note': expected a string"):
        load_recipe(HEADER + "breakpoints:\n  - id: h\n    at: hit\n    actions:\n      - note: {a: 1}\n")
    unregister("note")
    assert "note" not in action_kinds() and "note" not in schema_json()["$defs"]["action"]["else"]["properties"]
    with pytest.raises(RecipeErrors, match="unknown action 'note'"):
        load_recipe(HEADER + "breakpoints:\n  - id: h\n    at: hit\n    actions:\n      - note: x\n")


def test_an_action_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="already registered"):
        register("log", compile_note)
    with pytest.raises(ValueError, match="already in the recipe schema"):
        add_action("log", {"type": "string"})
    assert ACTIONS["log"] is not compile_note


def test_every_registered_action_is_in_the_schema_and_back():
    assert set(ACTIONS) == set(action_kinds())
    assert set(schema_json()["$defs"]["action"]["else"]["properties"]) == set(ACTIONS)


# -- formats ---------------------------------------------------------------------

def test_an_unregistered_record_format_is_an_error_not_text(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UsageError, match="unknown record format 'xml' \\(expected one of text, jsonl\\)"):
        with open_reporter("xml", str(out)):
            pass
    assert not out.exists()                 # refused before anything was opened


def test_an_unregistered_report_format_is_an_error_not_json():
    with pytest.raises(UsageError, match="unknown report format 'html'"):
        format_report({}, "html")


def test_a_registered_record_format_is_used(monkeypatch, tmp_path):
    class Upper:
        def __init__(self, stream: io.TextIOBase) -> None:
            self.stream = stream

        def emit(self, record: dict[str, Any]) -> None:
            self.stream.write(str(record["event"]).upper() + "\n")

        def close(self) -> None:
            self.stream.flush()

    monkeypatch.setitem(RECORD_FORMATS, "upper", Upper)
    out = tmp_path / "records.txt"
    with open_reporter("upper", str(out)) as reporter:
        reporter.emit({"event": "breakpoint"})
    assert out.read_text() == "BREAKPOINT\n"


def test_the_command_line_offers_exactly_the_registered_formats():
    choices = {name: {p.name: p for p in command.params} for name, command in main.commands.items()}
    assert list(choices["run"]["fmt"].type.choices) == list(RECORD_FORMATS)
    assert list(choices["triage"]["fmt"].type.choices) == list(REPORT_FORMATS)
    assert list(choices["merge"]["fmt"].type.choices) == list(REPORT_FORMATS)


# -- backends --------------------------------------------------------------------

def test_backends_by_name():
    assert {"linux", "windows", "fake"} <= set(BACKENDS)
    assert native_backend_name() == "linux"
    assert type(get_backend()).__name__ == "LinuxBackend"
    fake = get_backend("fake", script=[])
    assert isinstance(fake, FakeBackend) and fake.script == []
    with pytest.raises(TargetError, match="unknown debug backend 'vms'"):
        get_backend("vms")
