"""The triage report as JSON (SPEC section 6): writing, reading back (for merge) and its schema."""

from __future__ import annotations

import functools
import json
from typing import Any, Mapping

from ..errors import UsageError


@functools.lru_cache(maxsize=1)
def _schema_text() -> str:
    # Imported here, not at the top: importlib.resources costs 7 ms, and the command
    # line imports this module (for its format names) on every start.
    from importlib import resources
    return (resources.files("instrument") / "schemas" / "report.schema.json").read_text(encoding="utf-8")


def report_schema() -> dict[str, Any]:
    """The report JSON Schema (a fresh copy: callers may modify it)."""
    schema: dict[str, Any] = json.loads(_schema_text())
    return schema


def format_json(report: Mapping[str, Any]) -> str:
    """The report as stable, diff-friendly JSON text (two-space indent, trailing newline)."""
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def load_report(path: str) -> dict[str, Any]:
    """A report written by `instrument triage --format json`, checked against the schema."""
    import jsonschema

    try:
        with open(path, encoding="utf-8") as f:
            data: dict[str, Any] = json.load(f)
    except OSError as e:
        raise UsageError(f"{path}: cannot read ({e.strerror or e})") from e
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not JSON ({e})") from e
    error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(report_schema()).iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        raise UsageError(f"{path}: not a triage report: {where}: {error.message}")
    return data
