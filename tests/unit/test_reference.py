"""docs/recipe-reference.md is generated from the recipe JSON Schema and must never drift from it."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from instrument.cli import main
from instrument.recipe.reference import REGENERATE, markdown_reference
from instrument.recipe.schema import schema_json

PAGE = Path(__file__).parents[2] / "docs" / "recipe-reference.md"


def test_reference_page_is_up_to_date():
    expected = markdown_reference(schema_json())
    assert PAGE.read_text() == expected, (
        f"docs/recipe-reference.md is stale: the recipe schema changed. Regenerate it with\n    {REGENERATE}")


def test_cli_prints_the_reference():
    result = CliRunner().invoke(main, ["schema", "recipe", "--markdown"], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.output == markdown_reference(schema_json())


def test_every_key_and_definition_of_the_schema_is_documented():
    schema = schema_json()
    page = markdown_reference(schema)
    for key in schema["properties"]:
        assert f"| `{key}` |" in page, key
    for key in schema["properties"]["events"]["properties"]:
        assert f"| `{key}` | " in page, key
    for name, node in schema["$defs"].items():
        assert f"\n## {name}\n" in page, name
        for key in node.get("properties", {}):
            assert f"| `{key}` |" in page, (name, key)
    assert "Required keys: `version`." in page
    assert "## Symbol patterns" in page and "## Recipes from the command line: `instrument trace`" in page


def test_a_schema_change_changes_the_page():
    schema = schema_json()
    schema["$defs"]["breakpoint"]["properties"]["priority"] = {
        "description": "Which of two | breakpoints wins.", "type": "integer", "default": 0}
    page = markdown_reference(schema)
    # The `|` is escaped so the table keeps its columns.
    assert "| `priority` | integer | Which of two \\| breakpoints wins. Default: `0`. |" in page
    assert page != markdown_reference(schema_json())


def test_breakpoint_type_rules_read_as_sentences():
    page = markdown_reference(schema_json())
    assert "- Applies to hardware breakpoints: `access` is one of `execute`, `write`, `readwrite`;" in page
    assert "- Applies to soft breakpoints: `access` is not allowed; `size` is not allowed." in page


def test_markdown_is_only_for_the_recipe_schema():
    result = CliRunner().invoke(main, ["schema", "report", "--markdown"])
    assert result.exit_code == 2
    assert "--markdown documents the recipe schema only" in result.output
