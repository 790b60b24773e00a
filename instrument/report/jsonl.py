"""JSON Lines: one record per line, buffered, flushed on close (and by the caller on any exit)."""

from __future__ import annotations

import json
from typing import Any, TextIO


class JsonlReporter:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def emit(self, record: dict[str, Any]) -> None:
        self.stream.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self.stream.flush()
