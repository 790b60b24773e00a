"""The triage report as data: buckets from run outcomes, shard merging, and the exit status."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from ..errors import EXIT_CRASH, EXIT_OK, UsageError
from ..analysis.classify import CLASSES, severity

REPORT_FORMAT = "instrument-triage"
REPORT_VERSION = 1
# Fields of the engine's crash record that belong to one execution, not to the bug.
RUN_FIELDS = ("pid", "tid", "time")
# Fields that must agree for shard reports to be merged.
MERGE_KEYS = ("command", "tool", "recipe", "rules", "target")


def normalize_crash(crash: Mapping[str, Any]) -> dict[str, Any]:
    """The crash record as a report keeps it: without pid, tid and time."""
    return {k: v for k, v in crash.items() if k not in RUN_FIELDS}


def _bucket_order(bucket: Mapping[str, Any]) -> tuple[Any, ...]:
    return (severity(bucket["class"]), -bucket["count"], bucket["rule"], bucket["hash"]["major"],
            bucket["inputs"][0])


def _buckets(crashes: Iterable[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One bucket per (major hash, rule); its example is the crash of its first input."""
    groups: dict[tuple[str, str], list[tuple[str, Mapping[str, Any]]]] = {}
    for name, crash in crashes:
        key = (crash["hash"]["major"], crash["classification"]["rule"])
        groups.setdefault(key, []).append((name, crash))
    buckets = []
    for members in groups.values():
        members.sort(key=lambda m: m[0])
        example = members[0][1]
        buckets.append({
            "hash": dict(example["hash"]),
            "class": example["classification"]["class"],
            "rule": example["classification"]["rule"],
            "count": len(members),
            "inputs": [name for name, _ in members],
            "crash": dict(example),
        })
    return sorted(buckets, key=_bucket_order)


def build_report(meta: Mapping[str, Any], outcomes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The JSON report (SPEC section 6) of these run outcomes: {input, status, crash}."""
    crashes = [(o["input"], o["crash"]) for o in outcomes if o["status"] == "crash"]
    timeouts = sorted(o["input"] for o in outcomes if o["status"] == "timeout")
    buckets = _buckets(crashes)
    return {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        **{k: meta.get(k) for k in (*MERGE_KEYS, "shard")},
        "counts": {
            "inputs": len(outcomes),
            "crashes": len(crashes),
            "unique": len(buckets),
            "timeouts": len(timeouts),
            "clean": sum(1 for o in outcomes if o["status"] == "clean"),
        },
        "timeouts": timeouts,
        "buckets": buckets,
    }


def _check_mergeable(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The shard of the merged report (None: complete); raises UsageError on a mismatch."""
    first = reports[0]
    for other in reports[1:]:
        for key in MERGE_KEYS:
            if other.get(key) != first.get(key):
                raise UsageError(f"cannot merge: the reports differ in `{key}` "
                                 f"({first.get(key)!r} vs {other.get(key)!r})")
    shards: list[Any] = [r.get("shard") for r in reports]
    if all(s is None for s in shards):
        return None
    if any(s is None for s in shards) or len({s["count"] for s in shards}) != 1:
        raise UsageError("cannot merge: mix of shards of different splits (or unsharded reports)")
    count = shards[0]["count"]
    indexes = sorted(s["index"] for s in shards)
    if len(set(indexes)) != len(indexes):
        raise UsageError(f"cannot merge: shard {indexes} given twice")
    if indexes != list(range(1, count + 1)):
        missing = sorted(set(range(1, count + 1)) - set(indexes))
        raise UsageError(f"cannot merge: shards {missing} of {count} are missing")
    return None


def merge_reports(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Combine shard reports into the report one job over all their inputs would have written."""
    if not reports:
        raise UsageError("merge needs at least one report")
    shard = _check_mergeable(reports)
    crashes: list[tuple[str, Mapping[str, Any]]] = []
    seen: set[str] = set()
    outcomes: list[dict[str, Any]] = []
    for report in reports:
        for bucket in report["buckets"]:
            # Each bucket kept one crash record: the one of its first input. The
            # other inputs only need to land in the same bucket again.
            for name in bucket["inputs"]:
                crashes.append((name, bucket["crash"]))
        names = [n for b in report["buckets"] for n in b["inputs"]] + list(report["timeouts"])
        duplicated = seen.intersection(names)
        if duplicated:
            raise UsageError(f"cannot merge: input {sorted(duplicated)[0]} is in two reports")
        seen.update(names)
        outcomes += [{"input": n, "status": "timeout", "crash": None} for n in report["timeouts"]]
        outcomes += [{"input": f"\0clean{id(report)}-{i}", "status": "clean", "crash": None}
                     for i in range(report["counts"]["clean"])]
    outcomes += [{"input": n, "status": "crash", "crash": c} for n, c in crashes]
    merged = build_report({**{k: reports[0].get(k) for k in MERGE_KEYS}, "shard": shard}, outcomes)
    # A shard's example crash is its own first input's; across shards the first input
    # overall wins, which is the record `_buckets` picks from the sorted members.
    return merged


def exit_status(report: Mapping[str, Any], fail_on: str = CLASSES[-1]) -> int:
    """SPEC section 4: 1 when a bucket's class is at or above `fail_on`, else 0."""
    if fail_on not in CLASSES:
        raise UsageError(f"--fail-on {fail_on}: expected one of {', '.join(CLASSES)}")
    limit = severity(fail_on)
    return EXIT_CRASH if any(severity(b["class"]) <= limit for b in report["buckets"]) else EXIT_OK


def comparable(report: Mapping[str, Any]) -> dict[str, Any]:
    """The report without what differs between two executions of the same input (addresses
    under ASLR, registers): what `--jobs` and `--shard` must not change."""
    volatile = {"registers", "address", "fault_address", "disassembly", "dump", "message"}
    out = dict(report)
    out["buckets"] = []
    for bucket in report["buckets"]:
        crash = {k: v for k, v in bucket["crash"].items() if k not in volatile}
        crash["frames"] = [{k: v for k, v in f.items() if k != "pc"} for f in crash.get("frames") or []]
        out["buckets"].append({**bucket, "crash": crash})
    return out
