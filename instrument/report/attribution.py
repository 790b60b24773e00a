"""Which thread and process a crash record says crashed, as one line for the report formats.

Built from the record's `thread` and `process` objects only (no pid or tid), so the
line is the same across runs and shards, and a merged report's Markdown and SARIF
say what the JSON says.
"""

from __future__ import annotations

from typing import Any, Mapping


def _name(path: Any) -> str:
    return str(path).replace("\\", "/").rsplit("/", 1)[-1] if path else "?"


def thread_text(thread: Mapping[str, Any]) -> str:
    """'main thread', 'thread 2 (crasher)', 'thread 3 ("worker-io")'."""
    if thread.get("main"):
        return "main thread"
    index = thread.get("index")
    text = f"thread {index}" if index is not None else "a thread"
    routine, name = thread.get("start_routine"), thread.get("name")
    if routine:
        text += f" ({routine})"
    elif name:
        text += f' ("{name}")'
    return text


def process_text(process: Mapping[str, Any]) -> str:
    """'the started process', 'child 1 crash_null_write', 'forked child 1 of fork_crash'."""
    depth = process.get("depth") or 0
    if depth == 0:
        return "the started process"
    if process.get("forked_without_exec"):
        return f"forked child {depth} of {_name(process.get('parent_exe') or process.get('exe'))}"
    argv = process.get("argv") or []
    args = " ".join(str(a) for a in argv[1:])
    return f"child {depth} {_name(process.get('exe'))}" + (f" {args}" if args else "")


def attribution(crash: Mapping[str, Any]) -> str | None:
    """'thread 2 (crasher) of the started process', or None when the record has neither."""
    thread, process = crash.get("thread"), crash.get("process")
    parts = []
    if isinstance(thread, Mapping):
        parts.append(thread_text(thread))
    if isinstance(process, Mapping):
        parts.append(process_text(process))
    return " of ".join(parts) if parts else None
