"""JSON Lines: one record per line, buffered, flushed on close (and by the caller on any exit)."""

from __future__ import annotations

import json
from json import encoder as _encoder_mod
from typing import Any, Callable

from .stream import Flushing


def _make_encode() -> Callable[[Any], str]:
    """json's C encoder made once. JSONEncoder.encode builds a new one for every
    record, which is a third of the cost of a breakpoint hit's record (HOUSE rule 11)."""
    compact = json.JSONEncoder(separators=(",", ":"))
    make = getattr(_encoder_mod, "c_make_encoder", None)     # None without the _json C module
    if make is None:
        return compact.encode
    # No circular check (markers None): records are trees we build ourselves.
    chunks = make(None, compact.default, _encoder_mod.encode_basestring_ascii, None,
                  compact.key_separator, compact.item_separator, False, False, True)
    return lambda value: "".join(chunks(value, 0))


encode = _make_encode()


class JsonlReporter(Flushing):
    def emit(self, record: dict[str, Any]) -> None:
        self.write(encode(record) + "\n")
