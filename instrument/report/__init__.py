"""Reporters, the only place that formats output for people (and machines): one registry per kind of output.

A new format is a module here plus one line in RECORD_FORMATS (what `instrument
run --format` writes, record by record) or REPORT_FORMATS (what `instrument
triage --format` and `merge` write, a whole report at once). The command line
offers exactly the names registered here.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Iterator, Mapping, Protocol, TextIO

from ..errors import UsageError
from .stream import Flushing, check_output, open_output

__all__ = ["RECORD_FORMATS", "REPORT_FORMATS", "Flushing", "RecordWriter", "check_output", "format_report",
           "open_output", "open_reporter"]


class RecordWriter(Protocol):
    """Writes session records, one `emit` per record, as they come; `close` flushes."""

    def emit(self, record: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


# Each format's module is imported when that format is used, not with this package: the
# command line imports these registries for its --format choices, and `instrument
# --help` must not pay for json, the text escapes' regex and the report writers.
def _text(stream: TextIO) -> RecordWriter:
    from .text import TextReporter
    return TextReporter(stream)


def _jsonl(stream: TextIO) -> RecordWriter:
    from .jsonl import JsonlReporter
    return JsonlReporter(stream)


def _json(report: Mapping[str, Any]) -> str:
    from .json import format_json
    return format_json(report)


def _sarif(report: Mapping[str, Any]) -> str:
    from .sarif import format_sarif
    return format_sarif(report)


def _markdown(report: Mapping[str, Any]) -> str:
    from .markdown import format_markdown
    return format_markdown(report)


RECORD_FORMATS: dict[str, Callable[[TextIO], RecordWriter]] = {
    "text": _text,
    "jsonl": _jsonl,
}

REPORT_FORMATS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "json": _json,
    "sarif": _sarif,
    "markdown": _markdown,
}


def _unknown(kind: str, fmt: str, known: Mapping[str, object]) -> UsageError:
    return UsageError(f"unknown {kind} format '{fmt}' (expected one of {', '.join(known)})")


@contextlib.contextmanager
def open_reporter(fmt: str, output: str | None) -> Iterator[RecordWriter]:
    """A reporter writing `fmt` records to `output` (a path) or stdout; flushed on every exit."""
    make = RECORD_FORMATS.get(fmt)
    if make is None:
        raise _unknown("record", fmt, RECORD_FORMATS)
    stream = open_output(output, "w", buffering=1 << 16) if output else sys.stdout
    reporter = make(stream)
    try:
        yield reporter
    finally:
        reporter.close()
        if output:
            stream.close()


def format_report(report: Mapping[str, Any], fmt: str) -> str:
    """The triage report as text in `fmt` (a name of REPORT_FORMATS)."""
    write = REPORT_FORMATS.get(fmt)
    if write is None:
        raise _unknown("report", fmt, REPORT_FORMATS)
    return write(report)
