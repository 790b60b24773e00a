"""JSON Lines: one record per line, buffered, flushed on close (and by the caller on any exit)."""

from __future__ import annotations

import json
from json import encoder as _encoder_mod
from typing import Any, Callable

from .stream import Flushing


def _make_chunks() -> Callable[[Any, int], Any]:
    """json's C encoder made once: value -> its text in chunks. JSONEncoder.encode builds a
    new one for every record, which is a third of the cost of a breakpoint hit's record
    (HOUSE rule 11). (A template per record shape, in Python, was measured slower than
    this; orjson formats small floats differently, 1e-6 for 1e-06, and writes non-ASCII
    text unescaped: other bytes than these.)"""
    compact = json.JSONEncoder(separators=(",", ":"))
    make = getattr(_encoder_mod, "c_make_encoder", None)     # None without the _json C module
    if make is None:
        return lambda value, _indent: (compact.encode(value),)
    # No circular check (markers None): records are trees we build ourselves.
    return make(None, compact.default, _encoder_mod.encode_basestring_ascii, None,  # type: ignore[no-any-return]
                compact.key_separator, compact.item_separator, False, False, True)


_chunks = _make_chunks()


def encode(value: Any) -> str:
    """One record (or any JSON value) as compact JSON text, ASCII only."""
    return "".join(_chunks(value, 0))


class JsonlReporter(Flushing):
    def emit(self, record: dict[str, Any]) -> None:
        self.write("".join(_chunks(record, 0)) + "\n")      # (encode, inline: every hit)
