"""Every report format from one triage run (and one merge): JSON, SARIF 2.1.0 and Markdown agree bucket for bucket."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from instrument.report.json import report_schema
from instrument.triage.report_model import comparable
from tests.conftest import run_cli
from tests.integration.test_triage import EXPECTED, corpus  # noqa: F401 (the corpus fixture, shared)

SARIF_SCHEMA = Path(__file__).parents[1] / "unit" / "data" / "sarif-schema-2.1.0.json"
_ROW = re.compile(r"^\| (?P<cls>[A-Z_]+) \| (?P<rule>[^|]+) \| (?P<count>\d+) \| .* \| `(?P<input>[^`]+)` \|$", re.M)


def read_all(folder: Path, stem: str) -> tuple[dict, dict, str]:
    report = json.loads((folder / f"{stem}.json").read_text())
    sarif = json.loads((folder / f"{stem}.sarif").read_text())
    markdown = (folder / f"{stem}.md").read_text()
    return report, sarif, markdown


def assert_agree(report: dict, sarif: dict, markdown: str) -> None:
    """The three formats of one report: valid, and the same buckets in the same order."""
    jsonschema.Draft7Validator(report_schema()).validate(report)
    jsonschema.Draft4Validator(json.loads(SARIF_SCHEMA.read_text())).validate(sarif)
    buckets = report["buckets"]
    results = sarif["runs"][0]["results"]
    rows = [m.groupdict() for m in _ROW.finditer(markdown)]
    assert len(buckets) == len(results) == len(rows) == report["counts"]["unique"]
    for bucket, result, row in zip(buckets, results, rows):
        assert (result["ruleId"], result["properties"]["class"], result["properties"]["count"]) == \
            (bucket["rule"], bucket["class"], bucket["count"])
        assert result["partialFingerprints"]["instrumentStackHash/v1"] == bucket["hash"]["major"]
        assert result["properties"]["inputs"] == bucket["inputs"]
        assert (row["cls"], row["rule"].strip(), int(row["count"]), row["input"]) == \
            (bucket["class"], bucket["rule"], bucket["count"], bucket["inputs"][0])
    counts = report["counts"]
    assert sarif["runs"][0]["properties"]["counts"] == counts
    assert f"| {counts['inputs']} | {counts['crashes']} | {counts['unique']} | {counts['timeouts']} | " \
           f"{counts['clean']} |" in markdown


@pytest.fixture(scope="module")
def one_run(targets, corpus, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("reports")
    proc = run_cli("triage", "--quiet", "--timeout", "1", "--inputs", str(corpus), "-o", str(out / "r.json"),
                   "--sarif", str(out / "r.sarif"), "--markdown", str(out / "r.md"),
                   "--", targets["triage_input"], "@@", timeout=300)
    assert proc.returncode == 1, proc.stderr
    return out, proc.stdout


def test_one_run_writes_every_format_and_they_agree(one_run):
    out, stdout = one_run
    assert stdout == ""                  # every report went to its file
    report, sarif, markdown = read_all(out, "r")
    assert [(b["class"], b["rule"], b["count"]) for b in report["buckets"]] == [e[:3] for e in EXPECTED]
    assert_agree(report, sarif, markdown)


def test_merge_takes_the_same_flags(targets, corpus, one_run, tmp_path):
    out, _ = one_run
    shards = []
    for k in (1, 2):
        shard = tmp_path / f"s{k}.json"
        proc = run_cli("triage", "--quiet", "--timeout", "1", "--shard", f"{k}/2", "--inputs", str(corpus),
                       "--json", str(shard), "--", targets["triage_input"], "@@", timeout=300)
        assert proc.returncode == 1 and proc.stdout == "", proc.stderr
        shards.append(str(shard))
    merged = run_cli("merge", *shards, "-o", str(tmp_path / "m.json"), "--sarif", str(tmp_path / "m.sarif"),
                     "--markdown", str(tmp_path / "m.md"))
    assert merged.returncode == 1 and merged.stdout == "", merged.stderr
    report, sarif, markdown = read_all(tmp_path, "m")
    assert_agree(report, sarif, markdown)
    assert comparable(report) == comparable(json.loads((out / "r.json").read_text()))


def test_format_and_output_work_as_before(targets, tmp_path):
    """`--format X -o FILE` still writes X; --format alone still prints; the default is one JSON report."""
    program = targets["crash_wild_write"]
    default = run_cli("triage", "--quiet", "--", program)
    assert default.returncode == 1 and json.loads(default.stdout)["counts"]["crashes"] == 1
    md = run_cli("triage", "--quiet", "--format", "markdown", "--sarif", str(tmp_path / "x.sarif"), "--", program)
    assert md.stdout.startswith("## Crash triage") and json.loads((tmp_path / "x.sarif").read_text())["runs"]
    sarif = run_cli("triage", "--quiet", "--format", "sarif", "-o", str(tmp_path / "y.sarif"), "--", program)
    assert sarif.returncode == 1 and sarif.stdout == ""
    assert json.loads((tmp_path / "y.sarif").read_text())["version"] == "2.1.0"


def test_two_reports_in_one_place_are_refused_before_any_run(targets, tmp_path):
    program = targets["crash_wild_write"]
    same = tmp_path / "same"
    for args in (("--sarif", str(same), "--markdown", str(same)), ("-o", str(same), "--json", str(same)),
                 ("--sarif", "-", "--markdown", "-"), ("--json", "-")):
        proc = run_cli("triage", "--quiet", *args, "--", program)
        if args == ("--json", "-"):
            assert proc.returncode == 1 and json.loads(proc.stdout)["counts"]["crashes"] == 1
            continue
        assert proc.returncode == 2 and "would both go to" in proc.stderr, (args, proc.stderr)
    assert not same.exists()
    bad_dir = run_cli("triage", "--quiet", "--sarif", str(tmp_path / "no" / "such" / "x.sarif"), "--", program)
    assert bad_dir.returncode == 2 and "cannot write" in bad_dir.stderr
