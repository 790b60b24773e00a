"""Triage output for people and CI: the report in the chosen format, and the progress bar."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Mapping, Sequence, TextIO

from . import REPORT_FORMATS, format_report
from .stream import open_output

BAR_WIDTH = 30


def write_report(report: Mapping[str, Any], fmt: str, output: str | None) -> None:
    """Write the report to `output` (a path) or stdout."""
    text = format_report(report, fmt)
    if output:
        with open_output(output) as f:
            f.write(text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def check_outputs(outputs: Sequence[tuple[str, str | None]]) -> None:
    """Refuse, before any work, a set of (format, path) outputs that cannot all be written:
    an unknown format, two reports into one file or onto stdout, a file we cannot open."""
    from ..errors import UsageError
    from . import check_output

    seen: dict[str, str] = {}
    for fmt, path in outputs:
        if fmt not in REPORT_FORMATS:
            raise UsageError(f"unknown report format {fmt!r}: expected one of {', '.join(REPORT_FORMATS)}")
        key = os.path.abspath(path) if path else "-"
        if key in seen:
            where = "stdout" if key == "-" else path
            raise UsageError(f"the {seen[key]} and {fmt} reports would both go to {where}: give each its own file")
        seen[key] = fmt
    for _, path in outputs:
        check_output(path)


def write_reports(report: Mapping[str, Any], outputs: Sequence[tuple[str, str | None]]) -> None:
    """Write one report in every (format, path) of `outputs`, from the same data: the
    JSON, SARIF and Markdown of one run agree bucket for bucket. A None path is stdout."""
    for fmt, path in outputs:
        write_report(report, fmt, path)


class ProgressBar:
    """`[#####.....] 12/40  crashes 5  timeouts 1  3.2 s` redrawn in place on a terminal;
    silent when the stream is not a TTY (CI logs) or when quiet."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = not quiet and self.stream.isatty()
        self.start = time.monotonic()
        self.crashes = self.timeouts = 0
        self._last_draw = 0.0

    def __call__(self, done: int, total: int, outcome: Mapping[str, Any]) -> None:
        self.crashes += outcome.get("status") == "crash"
        self.timeouts += outcome.get("status") == "timeout"
        now = time.monotonic()
        # Redraw at most 20 times a second: a fast corpus must not be slowed by the bar.
        if not self.enabled or (now - self._last_draw < 0.05 and done < total):
            return
        self._last_draw = now
        filled = BAR_WIDTH * done // max(total, 1)
        self.stream.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total}  "
                          f"crashes {self.crashes}  timeouts {self.timeouts}  {now - self.start:.1f} s")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()
