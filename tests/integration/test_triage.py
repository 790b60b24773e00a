"""`instrument triage` and `instrument merge` end to end: a program that crashes by input content."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest

from instrument.report.json import report_schema
from instrument.triage.report_model import comparable
from instrument.triage.runner import TriageConfig, collect_inputs, select_shard, triage
from tests.conftest import run_cli

SARIF_SCHEMA = Path(__file__).parents[1] / "unit" / "data" / "sarif-schema-2.1.0.json"
CORPUS = {
    "a1": "null-read", "a2": "null-read trailing words", "sub/a3": "null-read",
    "b": "null-write", "g": "fork", "k": "wild-write", "c": "div", "d": "abort", "e": "double-free",
    "h": "thread", "f": "hang", "i": "hello", "j": "", "l": "ok",
    # not inputs: a fuzzer's README, dot files, dot folders
    "README.txt": "null-read", ".hidden": "null-read", ".state/x": "null-read",
}
# (class, rule, count, top frame symbols) of every bucket, in report order.
EXPECTED = [
    ("EXPLOITABLE", "DestAv", 1, ["triage_input!store", "triage_input!run"]),
    ("EXPLOITABLE", "HeapError", 1, ["libc.so.6!free", "triage_input!release"]),
    ("PROBABLY_EXPLOITABLE", "DestAvNearNull", 1, ["triage_input!store", "triage_input!child_work"]),
    ("PROBABLY_EXPLOITABLE", "DestAvNearNull", 1, ["triage_input!store", "triage_input!run"]),
    ("PROBABLY_NOT_EXPLOITABLE", "SourceAvNearNull", 3, ["triage_input!read_field", "triage_input!run"]),
    ("PROBABLY_NOT_EXPLOITABLE", "FloatingPointException", 1, ["triage_input!divide", "triage_input!run"]),
    ("PROBABLY_NOT_EXPLOITABLE", "SourceAvNearNull", 1, ["triage_input!read_field", "triage_input!thread_work"]),
    ("UNKNOWN", "AbortSignal", 1, ["triage_input!give_up", "triage_input!run"]),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for name, text in CORPUS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n" if text else "")
    return root


def summary(report: dict) -> list[tuple]:
    from instrument.analysis.signature import frame_key, significant_frames
    return [(b["class"], b["rule"], b["count"],
             [frame_key(f) for f in significant_frames(b["crash"]["frames"])[:2]]) for b in report["buckets"]]


@pytest.fixture(scope="module")
def one_job(targets, corpus) -> dict:
    return triage(TriageConfig(command=(targets["triage_input"], "@@"), inputs=str(corpus), jobs=1, timeout=1))


def test_inputs_are_found_sorted_and_sharded(corpus):
    names = [os.path.relpath(p, corpus) for p in collect_inputs(str(corpus))]
    assert names == ["a1", "a2", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "sub/a3"]
    shards = [select_shard(names, (k, 3)) for k in (1, 2, 3)]
    assert sorted(sum(shards, [])) == names and shards[0] == ["a1", "c", "f", "i", "l"]


def test_buckets_counts_clean_runs_and_timeouts(one_job, corpus):
    assert one_job["counts"] == {"inputs": 14, "crashes": 10, "unique": 8, "timeouts": 1, "clean": 3}
    assert summary(one_job) == EXPECTED
    assert one_job["timeouts"] == [str(corpus / "f")]
    read_bucket = one_job["buckets"][4]
    assert read_bucket["inputs"] == [str(corpus / n) for n in ("a1", "a2", "sub/a3")]
    assert read_bucket["crash"]["frames"][0]["line"] == 15      # read_field's body
    jsonschema.Draft7Validator(report_schema()).validate(one_job)
    assert one_job["recipe"]["name"] == "crash-triage" and len(one_job["target"]["build_id"]) == 40


def test_two_jobs_give_the_same_report(one_job, targets, corpus):
    two = triage(TriageConfig(command=(targets["triage_input"], "@@"), inputs=str(corpus), jobs=2, timeout=1))
    assert comparable(two) == comparable(one_job)


def test_merged_shards_give_the_one_job_report(one_job, targets, corpus, tmp_path):
    paths = []
    for k in (1, 2):
        out = tmp_path / f"shard{k}.json"
        proc = run_cli("triage", "--inputs", str(corpus), "--timeout", "1", "--jobs", "1", "--shard", f"{k}/2",
                       "-o", str(out), "--", targets["triage_input"], "@@")
        assert proc.returncode == 1, proc.stderr
        assert json.loads(out.read_text())["shard"] == {"index": k, "count": 2}
        paths.append(str(out))
    merged = tmp_path / "merged.json"
    proc = run_cli("merge", *paths, "-o", str(merged))
    assert proc.returncode == 1, proc.stderr
    assert comparable(json.loads(merged.read_text())) == comparable(one_job)


def test_input_on_stdin_without_placeholder(targets, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "x").write_text("div\n")
    (folder / "y").write_text("fine\n")
    proc = run_cli("triage", "--inputs", str(folder), "--quiet", "--", targets["triage_input"])
    report = json.loads(proc.stdout)
    assert proc.returncode == 1 and report["counts"]["crashes"] == 1 and report["counts"]["clean"] == 1
    assert report["buckets"][0]["rule"] == "FloatingPointException"


def test_the_targets_own_stdout_stays_out_of_the_report(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "x").write_text("the target prints this\n")
    for fmt in ("json", "markdown"):
        proc = run_cli("triage", "--format", fmt, "--inputs", str(folder), "--quiet", "--", "/bin/cat", "@@")
        assert proc.returncode == 0, proc.stderr
        assert "the target prints this" not in proc.stdout
        if fmt == "json":
            assert json.loads(proc.stdout)["counts"]["clean"] == 1


def test_single_run_and_fail_on(targets):
    proc = run_cli("triage", "--", targets["crash_null_read"])
    report = json.loads(proc.stdout)
    assert proc.returncode == 1 and report["buckets"][0]["inputs"] == ["-"]
    relaxed = run_cli("triage", "--fail-on", "PROBABLY_EXPLOITABLE", "--", targets["crash_null_read"])
    assert relaxed.returncode == 0, relaxed.stderr
    clean = run_cli("triage", "--", "/bin/true")
    assert clean.returncode == 0 and json.loads(clean.stdout)["counts"]["clean"] == 1


def test_sarif_and_markdown_from_the_cli(targets, tmp_path):
    out = tmp_path / "r.sarif"
    root = Path(__file__).parents[2]
    proc = run_cli("triage", "--format", "sarif", "-o", str(out), "--", targets["crash_wild_write"], cwd=str(root))
    assert proc.returncode == 1, proc.stderr
    sarif = json.loads(out.read_text())
    jsonschema.Draft4Validator(json.loads(SARIF_SCHEMA.read_text())).validate(sarif)
    result = sarif["runs"][0]["results"][0]
    assert result["ruleId"] == "DestAv" and result["level"] == "error"
    physical = result["locations"][0]["physicalLocation"]
    assert physical["region"]["startLine"] == 4
    assert physical["artifactLocation"] == {"uri": "tests/targets/crash_wild_write.c", "uriBaseId": "%SRCROOT%"}
    md = run_cli("triage", "--format", "markdown", "--", targets["crash_wild_write"])
    assert "| EXPLOITABLE | DestAv | 1 | `crash_wild_write!poke`" in md.stdout


def test_a_recipe_extends_the_crash_record(targets, tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("version: 1\nname: mine\ndescription: triage plus the top of the stack\n"
                      "crash:\n  - dump: {at: rsp, size: 32}\n  - log: 'crashed in {symbol}'\n")
    proc = run_cli("triage", "--recipe", str(recipe), "--", targets["crash_null_write"])
    crash = json.loads(proc.stdout)["buckets"][0]["crash"]
    assert crash["dump"][0]["size"] == 32 and len(crash["dump"][0]["hex"]) == 64
    assert crash["message"].startswith("crashed in store")
    assert json.loads(proc.stdout)["recipe"]["name"] == "mine"


def test_usage_and_target_errors(tmp_path):
    assert run_cli("triage", "--shard", "3/2", "--", "/bin/true").returncode == 2
    missing = run_cli("triage", "--", str(tmp_path / "no-such-program"))
    assert missing.returncode == 3, missing.stderr
    schema = run_cli("schema", "report")
    assert schema.returncode == 0 and json.loads(schema.stdout)["title"] == "instrument triage report"


def test_readme_ci_job_runs(targets, corpus, tmp_path):
    """The README's GitHub Actions step, run as CI would run it (bash, with the runner's PATH)."""
    import re
    import subprocess
    import sys

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Crash triage in CI", 1)[1]
    step = re.search(r"name: Triage crashes\n\s+run: \|\n((?:\s{10}.+\n)+)", section)
    assert step is not None
    script = step.group(1).replace("./parser", targets["triage_input"]).replace("fuzz/crashes", str(corpus))
    script = script.replace("instrument triage", "instrument triage --timeout 1")
    summary_file = tmp_path / "summary.md"
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary_file),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    sarif = json.loads((tmp_path / "triage.sarif").read_text())
    jsonschema.Draft4Validator(json.loads(SARIF_SCHEMA.read_text())).validate(sarif)
    assert len(sarif["runs"][0]["results"]) == 8
    assert "| EXPLOITABLE | DestAv | 1 |" in summary_file.read_text()
