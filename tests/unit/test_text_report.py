"""The text reporter: what a person reads in a terminal."""

from __future__ import annotations

from instrument.report.text import format_record


def test_a_targets_control_characters_cannot_drive_the_terminal() -> None:
    rec = {"event": "breakpoint", "id": "a", "hits": 1, "symbol": "f", "pid": 1, "tid": 1, "time": 0.1,
           "message": "red \x1b[31mX\x1b[0m\tbell\x07"}
    line = format_record(rec)
    assert "\x1b" not in line and "\x07" not in line and "\t" not in line
    assert line.endswith(r"red \x1b[31mX\x1b[0m\x09bell\x07")


def test_a_message_stays_on_its_records_line() -> None:
    # Issue 18: a newline in a message (a target's string) would start a line that reads as
    # a record; it is escaped, as are the Unicode line separators.
    rec = {"event": "breakpoint", "id": "a", "hits": 1, "symbol": "f", "pid": 1, "tid": 1, "time": 0.1,
           "message": "one\n[   0.2000] breakpoint a #2 at f [pid=1]\u2028two"}
    assert format_record(rec) == (r"[   0.1000] breakpoint a #1 at f [pid=1]: one\n[   0.2000] breakpoint a #2 "
                                  r"at f [pid=1]\u2028two")


def test_symbols_and_fields_are_escaped_too() -> None:
    rec = {"event": "crash", "exception": "ACCESS_VIOLATION", "signal": "SIGSEGV", "pid": 1, "tid": 1,
           "time": 0.1, "address": "0x10", "frames": [{"pc": "0x10", "symbol": "f\n[   0.2000] summary"}]}
    assert len(format_record(rec).splitlines()) == 2
