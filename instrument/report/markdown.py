"""The triage report as Markdown: a summary table of buckets fit for a CI job summary."""

from __future__ import annotations

from typing import Any, Mapping

from .attribution import attribution

TOP_FRAMES = 3
MAX_TIMEOUTS_LISTED = 20


def _cell(text: str) -> str:
    # A pipe ends a table cell and a newline ends the row, even inside backticks.
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    safe = _cell(text).replace("`", "'")
    return f"`{safe}`"


def _top_frames(crash: Mapping[str, Any]) -> str:
    from ..analysis.signature import frame_key, significant_frames

    keys = [frame_key(f) for f in significant_frames(crash.get("frames") or [])[:TOP_FRAMES]]
    return " ← ".join(_code(k) for k in keys) if keys else "(no frames)"


def _provenance(report: Mapping[str, Any]) -> str:
    tool = report.get("tool") or {}
    parts = [_code(" ".join(report.get("command") or [])), f"{tool.get('name', 'instrument')} {tool.get('version', '')}"]
    recipe = report.get("recipe")
    if recipe:
        parts.append(f"recipe {recipe['name']} (sha256 {recipe['sha256'][:12]})")
    build_id = (report.get("target") or {}).get("build_id")
    parts.append(f"build id {build_id}" if build_id else "no build id")
    shard = report.get("shard")
    if shard:
        parts.append(f"shard {shard['index']}/{shard['count']}")
    return " · ".join(parts)


def format_markdown(report: Mapping[str, Any]) -> str:
    """The report as a Markdown summary: counts, one table row per bucket, the timeouts."""
    counts = report["counts"]
    lines = [f"## Crash triage: {counts['unique']} unique crash{'es' if counts['unique'] != 1 else ''} "
             f"in {counts['inputs']} input{'s' if counts['inputs'] != 1 else ''}", "", _provenance(report), "",
             "| Inputs | Crashes | Unique | Timeouts | Clean |", "|---:|---:|---:|---:|---:|",
             f"| {counts['inputs']} | {counts['crashes']} | {counts['unique']} | {counts['timeouts']} | {counts['clean']} |",
             ""]
    if report["buckets"]:
        lines += ["| Class | Rule | Count | Top frames | Crashed in | Example input |", "|---|---|---:|---|---|---|"]
        for b in report["buckets"]:
            lines.append(f"| {b['class']} | {_cell(b['rule'])} | {b['count']} | {_top_frames(b['crash'])} "
                         f"| {_cell(attribution(b['crash']) or '')} | {_code(b['inputs'][0])} |")
        lines.append("")
    else:
        lines += ["No crashes.", ""]
    timeouts = report.get("timeouts") or []
    if timeouts:
        listed = ", ".join(_code(t) for t in timeouts[:MAX_TIMEOUTS_LISTED])
        more = f" and {len(timeouts) - MAX_TIMEOUTS_LISTED} more" if len(timeouts) > MAX_TIMEOUTS_LISTED else ""
        lines += [f"Timed out: {listed}{more}", ""]
    return "\n".join(lines)
