"""Crash analysis on plain inputs: disassembly, exception refinement, classification, stack hashes.

`disasm` and `fault` need capstone; `classify`, `signature` and `sanitizer` do not.
The names below are imported on first use, so that importing one of the latter
(a report merge, a SARIF writer) does not load capstone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .disasm import around, disassemble
    from .fault import analyze

__all__ = ["analyze", "around", "disassemble"]


def __getattr__(name: str) -> Any:
    # Lazy for start-up speed (capstone), not to dodge a circle.
    if name in ("around", "disassemble"):
        from . import disasm
        return getattr(disasm, name)
    if name == "analyze":
        from .fault import analyze
        return analyze
    raise AttributeError(name)
