"""`instrument recipes`: the shipped recipe library as a person reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def format_library(entries: list[tuple[Path, Any]]) -> str:
    lines = []
    for path, r in entries:
        lines.append(f"{r.name}  ({path.name})")
        if r.description:
            lines.append("    " + " ".join(r.description.split()))
        if r.requires:
            lines.append("    requires: " + ", ".join(f"{k} {v}" for k, v in r.requires.items()))
        for p in r.params:
            default = "required" if p.required else f"default {p.default!r}"
            desc = f" — {p.description}" if p.description else ""
            lines.append(f"    --set {p.name}=<{p.type}>  ({default}){desc}")
        if r.tags:
            lines.append("    tags: " + ", ".join(r.tags))
        lines.append("")
    lines.append(f"{len(entries)} recipes. Run one by name: instrument run NAME -- COMMAND")
    return "\n".join(lines) + "\n"
