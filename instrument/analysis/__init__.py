"""Crash analysis on plain inputs: disassembly around a pc and exception refinement."""

from __future__ import annotations

from .disasm import around, disassemble
from .fault import analyze

__all__ = ["analyze", "around", "disassemble"]
