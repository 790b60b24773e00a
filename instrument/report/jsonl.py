"""JSON Lines: one record per line, buffered, flushed on close (and by the caller on any exit)."""

from __future__ import annotations

import json
from typing import Any

from . import Flushing


_encode = json.JSONEncoder(separators=(",", ":")).encode


class JsonlReporter(Flushing):
    def emit(self, record: dict[str, Any]) -> None:
        self.write(_encode(record) + "\n")

