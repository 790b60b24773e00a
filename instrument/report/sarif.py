"""The triage report as SARIF 2.1.0: one result per bucket, for GitHub code scanning uploads."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any, Mapping

from .attribution import attribution

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {"EXPLOITABLE": "error", "PROBABLY_EXPLOITABLE": "error", "PROBABLY_NOT_EXPLOITABLE": "warning",
          "NOT_EXPLOITABLE": "note", "UNKNOWN": "warning"}
# GitHub code scanning ranks security alerts by this rule property (0.0-10.0).
SECURITY_SEVERITY = {"EXPLOITABLE": "9.0", "PROBABLY_EXPLOITABLE": "7.5", "PROBABLY_NOT_EXPLOITABLE": "4.0",
                     "NOT_EXPLOITABLE": "2.0", "UNKNOWN": "5.0"}
FINGERPRINT = "instrumentStackHash/v1"


def _location(crash: Mapping[str, Any], root: Path) -> dict[str, Any]:
    """The top frame with a source file (else the top frame's module), as a SARIF location."""
    from ..analysis.signature import frame_key, significant_frames

    frames = significant_frames(crash.get("frames") or [])
    with_file = next((f for f in frames if f.get("file")), None)
    top = with_file or (frames[0] if frames else {"module": crash.get("module"), "symbol": crash.get("symbol")})
    location: dict[str, Any] = {"logicalLocations": [{"fullyQualifiedName": frame_key(top), "kind": "function"}]}
    if with_file is not None:
        physical: dict[str, Any] = {"artifactLocation": _artifact(str(with_file["file"]), root)}
        if with_file.get("line"):
            physical["region"] = {"startLine": int(with_file["line"])}
        location["physicalLocation"] = physical
    elif top.get("module"):
        location["physicalLocation"] = {"artifactLocation": {"uri": Path(str(top["module"])).name}}
    return location


def _artifact(path: str, root: Path) -> dict[str, Any]:
    # Code scanning matches results to files by paths relative to the checkout.
    try:
        relative = Path(os.path.abspath(path)).relative_to(root)
    except ValueError:
        return {"uri": Path(path).as_uri() if os.path.isabs(path) else path}
    return {"uri": relative.as_posix(), "uriBaseId": "%SRCROOT%"}


def _rule(bucket: Mapping[str, Any]) -> dict[str, Any]:
    cls = bucket["class"]
    description = bucket["crash"].get("classification", {}).get("description") or bucket["rule"]
    return {
        "id": bucket["rule"],
        "name": bucket["rule"],
        "shortDescription": {"text": description},
        "defaultConfiguration": {"level": LEVELS.get(cls, "warning")},
        "properties": {"class": cls, "tags": ["security", "crash"],
                       "security-severity": SECURITY_SEVERITY.get(cls, "5.0")},
    }


def _result(bucket: Mapping[str, Any], rule_index: int, root: Path) -> dict[str, Any]:
    crash = bucket["crash"]
    where = crash.get("symbol") or crash.get("module") or "an unknown location"
    description = crash.get("classification", {}).get("description") or bucket["rule"]
    inputs = bucket["inputs"]
    who = attribution(crash)
    result = {
        "ruleId": bucket["rule"],
        "ruleIndex": rule_index,
        "level": LEVELS.get(bucket["class"], "warning"),
        "message": {"text": f"{bucket['class']}: {description} in {where}" + (f", {who}" if who else "")
                            + f" ({bucket['count']} input{'s' if bucket['count'] != 1 else ''}, e.g. {inputs[0]})"},
        "locations": [_location(crash, root)],
        "partialFingerprints": {FINGERPRINT: bucket["hash"]["major"]},
        "properties": {"class": bucket["class"], "count": bucket["count"], "hash": bucket["hash"],
                       "inputs": inputs, "crash": crash},
    }
    if who:
        # The same words as the Markdown summary; the objects themselves are in `crash`.
        result["properties"]["attribution"] = who
        result["properties"]["thread"] = crash.get("thread")
        result["properties"]["process"] = crash.get("process")
    return result


def to_sarif(report: Mapping[str, Any], root: str | None = None) -> dict[str, Any]:
    """The SARIF log of a triage report; source paths made relative to `root` (default: cwd)."""
    base = Path(os.path.abspath(root or os.getcwd()))
    rules: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    results = []
    for bucket in report["buckets"]:
        if bucket["rule"] not in index:
            index[bucket["rule"]] = len(rules)
            rules.append(_rule(bucket))
        results.append(_result(bucket, index[bucket["rule"]], base))
    tool = report.get("tool") or {}
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": tool.get("name", "instrument"), "version": tool.get("version", ""),
                                "rules": rules}},
            "invocations": [{"executionSuccessful": True,
                             "commandLine": " ".join(shlex.quote(a) for a in report.get("command") or [])}],
            "originalUriBaseIds": {"%SRCROOT%": {"uri": base.as_uri() + "/"}},
            "results": results,
            "properties": {k: report.get(k) for k in ("recipe", "rules", "target", "shard", "counts", "timeouts")},
        }],
    }


def format_sarif(report: Mapping[str, Any], root: str | None = None) -> str:
    return json.dumps(to_sarif(report, root), indent=2, ensure_ascii=False) + "\n"
