"""Report building, merging, exit status, sanitizer parsing, and the JSON/SARIF/Markdown formats."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from instrument.errors import UsageError
from instrument.report.json import format_json, load_report, report_schema
from instrument.report.markdown import format_markdown
from instrument.report.sarif import to_sarif
from instrument.analysis.classify import annotate
from instrument.triage.report_model import build_report, exit_status, merge_reports
from instrument.analysis.sanitizer import parse_report, sanitizer_env

SARIF_SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"
META = {"command": ["./app", "@@"], "tool": {"name": "instrument", "version": "0.1.0"},
        "recipe": {"name": "crash-triage", "sha256": "a" * 64}, "rules": {"sha256": "b" * 64},
        "target": {"path": "./app", "build_id": "c0ffee"}, "shard": None}


def crash(symbol: str, access: str = "read", fault: str = "0x0", file: str | None = None) -> dict:
    top = {"pc": "0x401000", "module": "/b/app", "offset": "0x1000", "symbol": f"{symbol}+0x4"}
    if file:
        top.update(file=file, line=12)
    rec = {"event": "crash", "code": 1, "signal": "SIGSEGV", "exception": "ACCESS_VIOLATION",
           "exception_code": "0xc0000005", "address": "0x401000", "fault_address": fault, "access": access,
           "instruction": "mov eax, dword ptr [rax]", "module": "app", "symbol": f"{symbol}+0x4",
           "frames": [top, {"pc": "0x401100", "module": "/b/app", "offset": "0x1100", "symbol": "main+0x9"}],
           "registers": {"rsp": "0x7ffc0000"}, "disassembly": []}
    return annotate(rec)


def outcomes() -> list[dict]:
    return [
        {"input": "in/a", "status": "crash", "crash": crash("parse", file="/src/proj/parse.c")},
        {"input": "in/b", "status": "crash", "crash": crash("parse", file="/src/proj/parse.c")},
        {"input": "in/c", "status": "crash", "crash": crash("emit", "write", "0xdead0000")},
        {"input": "in/d", "status": "timeout", "crash": None},
        {"input": "in/e", "status": "clean", "crash": None},
    ]


def test_build_report_buckets_counts_and_order():
    report = build_report(META, outcomes())
    assert report["counts"] == {"inputs": 5, "crashes": 3, "unique": 2, "timeouts": 1, "clean": 1}
    assert report["timeouts"] == ["in/d"]
    assert [(b["class"], b["rule"], b["count"], b["inputs"]) for b in report["buckets"]] == [
        ("EXPLOITABLE", "DestAv", 1, ["in/c"]),
        ("PROBABLY_NOT_EXPLOITABLE", "SourceAvNearNull", 2, ["in/a", "in/b"]),
    ]
    jsonschema.Draft7Validator(report_schema()).validate(report)


def test_merging_shards_gives_the_one_job_report(tmp_path):
    all_runs = outcomes()
    whole = build_report(META, all_runs)
    shards = [build_report({**META, "shard": {"index": k + 1, "count": 2}}, all_runs[k::2]) for k in range(2)]
    paths = []
    for i, shard in enumerate(shards):
        paths.append(tmp_path / f"s{i}.json")
        paths[-1].write_text(format_json(shard))
    assert merge_reports([load_report(str(p)) for p in reversed(paths)]) == whole
    with pytest.raises(UsageError, match="missing"):
        merge_reports(shards[:1])
    with pytest.raises(UsageError, match="given twice"):
        merge_reports([shards[0], shards[0], shards[1]])
    with pytest.raises(UsageError, match="differ in `command`"):
        merge_reports([shards[0], {**shards[1], "command": ["./other"]}])


def test_load_report_rejects_what_is_not_a_report(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"format": "instrument-triage"}))
    with pytest.raises(UsageError, match="not a triage report"):
        load_report(str(path))


def test_exit_status_follows_fail_on():
    report = build_report(META, outcomes())
    assert exit_status(report) == 1
    assert exit_status(report, "EXPLOITABLE") == 1
    only_read = build_report(META, outcomes()[:2])
    assert exit_status(only_read, "PROBABLY_EXPLOITABLE") == 0
    assert exit_status(build_report(META, outcomes()[3:])) == 0     # timeouts and clean runs do not fail


def test_sarif_validates_and_points_at_source(tmp_path):
    sarif = to_sarif(build_report(META, outcomes()), root="/src/proj")
    schema = json.loads(SARIF_SCHEMA.read_text())
    jsonschema.Draft4Validator(schema).validate(sarif)
    run = sarif["runs"][0]
    assert [r["ruleId"] for r in run["results"]] == ["DestAv", "SourceAvNearNull"]
    located = run["results"][1]["locations"][0]["physicalLocation"]
    assert located["artifactLocation"] == {"uri": "parse.c", "uriBaseId": "%SRCROOT%"}
    assert located["region"] == {"startLine": 12}
    assert run["results"][1]["properties"]["crash"]["classification"]["rule"] == "SourceAvNearNull"
    assert run["results"][1]["partialFingerprints"]["instrumentStackHash/v1"] == run["results"][1]["properties"]["hash"]["major"]
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} == {"DestAv", "SourceAvNearNull"}


def test_markdown_summary_table():
    text = format_markdown(build_report(META, outcomes()))
    assert text.startswith("## Crash triage: 2 unique crashes in 5 inputs")
    # A record without thread and process (an old report) leaves "Crashed in" empty.
    assert "| EXPLOITABLE | DestAv | 1 | `app!emit` ← `app!main` |  | `in/c` |" in text
    assert "recipe crash-triage (sha256 aaaaaaaaaaaa)" in text and "build id c0ffee" in text
    assert "Timed out: `in/d`" in text


ASAN = """\
=================================================================
==4242==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x602000000020 at pc 0x55d5 bp 0x7ffd sp 0x7ffd
WRITE of size 1 at 0x602000000020 thread T0
    #0 0x55d5c2e1b2a5  (/tmp/triage_asan+0x12a5)
SUMMARY: AddressSanitizer: heap-buffer-overflow (/tmp/triage_asan+0x12a5)
==4242==ABORTING
"""


def test_parse_asan_and_ubsan_reports():
    found = parse_report(ASAN.splitlines())
    assert found == {"tool": "AddressSanitizer", "bug_type": "heap-buffer-overflow", "access": "write", "size": 1,
                     "address": "0x602000000020",
                     "summary": "AddressSanitizer: heap-buffer-overflow (/tmp/triage_asan+0x12a5)"}
    double = parse_report(["==7==ERROR: AddressSanitizer: attempting double-free on 0x6020 in thread T0:"])
    assert double is not None and double["bug_type"] == "double-free"
    ub = parse_report(["/home/u/src/x.c:5:51: runtime error: signed integer overflow: 2147483647 + 1",
                       "SUMMARY: UndefinedBehaviorSanitizer: undefined-behavior /home/u/src/x.c:5:51 in"])
    assert ub is not None and ub["bug_type"] == "undefined-behavior" and ub["detail"].endswith("(x.c:5:51)")
    assert parse_report(["plain stderr", "nothing here"]) is None


def test_sanitizer_env_keeps_user_options_but_forces_abort():
    env = sanitizer_env({"ASAN_OPTIONS": "abort_on_error=0:quarantine_size_mb=8", "PATH": "/bin"})
    assert env["PATH"] == "/bin"
    opts = env["ASAN_OPTIONS"].split(":")
    assert "quarantine_size_mb=8" in opts and opts.index("abort_on_error=1") > opts.index("abort_on_error=0")
    assert "halt_on_error=1" in env["UBSAN_OPTIONS"].split(":")


def test_report_frames_are_the_first_stack_as_return_addresses():
    from instrument.analysis.sanitizer import report_frames

    text = ASAN + "\n0x602000000020 is located 0 bytes after 16-byte region\nallocated by thread T0 here:\n" \
        "    #0 0x7f00aa  (/usr/lib/x86_64-linux-gnu/libasan.so.8+0xd9aa)\n"
    frames = report_frames(text.splitlines())
    # /tmp/triage_asan is not there to name the symbol: module and offset (the pc printed plus one).
    assert frames == [{"pc": None, "module": "triage_asan", "offset": "0x12a6", "symbol": None}]
    symbolized = ["==1==ERROR: AddressSanitizer: heap-use-after-free on address 0x1 at pc 0x2 bp 0x3 sp 0x4",
                  "    #0 0x55d in use_after_free /src/triage_asan.c:10:45", "    #1 0x56e in main /src/t.c:20:3", ""]
    assert [(f["module"], f["symbol"]) for f in report_frames(symbolized)] == \
        [(None, "use_after_free"), (None, "main")]
