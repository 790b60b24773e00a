"""Reporters: the only place that formats output for people (and for machines)."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator


@contextlib.contextmanager
def open_reporter(fmt: str, output: str | None) -> Iterator[Any]:
    """A reporter writing `fmt` records to `output` (a path) or stdout; flushed on every exit."""
    from .jsonl import JsonlReporter
    from .text import TextReporter

    stream = open(output, "w", encoding="utf-8", buffering=1 << 16) if output else sys.stdout
    reporter = JsonlReporter(stream) if fmt == "jsonl" else TextReporter(stream)
    try:
        yield reporter
    finally:
        reporter.close()
        if output:
            stream.close()
