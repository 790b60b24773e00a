"""The text reporter: what a person reads in a terminal."""

from __future__ import annotations

from instrument.report.text import format_record


def test_a_targets_control_characters_cannot_drive_the_terminal() -> None:
    rec = {"event": "breakpoint", "id": "a", "hits": 1, "symbol": "f", "pid": 1, "tid": 1, "time": 0.1,
           "message": "red \x1b[31mX\x1b[0m\tbell\x07"}
    line = format_record(rec)
    assert "\x1b" not in line and "\x07" not in line and "\t" not in line
    assert line.endswith(r"red \x1b[31mX\x1b[0m\x09bell\x07")


def test_log_lines_keep_their_own_lines() -> None:
    rec = {"event": "breakpoint", "id": "a", "hits": 1, "symbol": "f", "pid": 1, "tid": 1, "time": 0.1,
           "message": "one\ntwo"}
    assert format_record(rec).splitlines()[1:] == ["    one", "    two"]
