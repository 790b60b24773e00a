"""Crash attribution (issue 16): which thread and which process crashed, the same across
runs and shards, with no raw pid or tid in what triage keeps."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli
from tests.integration.test_crash_records import crash_of

FOLLOW = "version: 1\nname: crash\ndescription: crash records only\ntarget:\n  follow_forks: true\n"


def test_third_of_four_threads_is_named_alike_in_two_runs(targets, tmp_path):
    seen = []
    for i in range(2):
        d = tmp_path / f"run{i}"
        d.mkdir()
        crash, _, _ = crash_of(targets, d, "crash_thread3")
        assert crash["tid"] != crash["pid"]
        seen.append((crash["thread"], crash["process"]))
    assert seen[0] == seen[1]
    thread, process = seen[0]
    assert thread["index"] == 2 and thread["main"] is False
    assert thread["start_routine"] == "crasher"
    assert thread["name"] == "crash_thread3"
    assert process["depth"] == 0 and process["exe"] == targets["crash_thread3"]
    assert process["argv"] == [targets["crash_thread3"]] and process["forked_without_exec"] is False


def test_thread_attribution_survives_a_two_shard_merge(targets, tmp_path):
    corpus = tmp_path / "inputs"
    corpus.mkdir()
    for name in ("a", "b", "c", "d"):
        (corpus / name).write_text(name)
    paths = []
    for k in (1, 2):
        out = tmp_path / f"shard{k}.json"
        proc = run_cli("triage", "--quiet", "--timeout", "5", "--jobs", "1", "--shard", f"{k}/2",
                       "--inputs", str(corpus), "-o", str(out), "--", targets["crash_thread3"], "@@",
                       timeout=300)
        assert out.exists(), proc.stderr
        paths.append(str(out))
    merged = tmp_path / "merged.json"
    proc = run_cli("merge", *paths, "-o", str(merged))
    assert merged.exists(), proc.stderr
    report = json.loads(merged.read_text())
    assert len(report["buckets"]) == 1 and report["buckets"][0]["count"] == 4
    crash = report["buckets"][0]["crash"]
    assert crash["thread"] == {"index": 2, "main": False, "start_routine": "crasher", "name": "crash_thread3"}
    assert "pid" not in crash and "tid" not in crash
    for shard in paths:
        (bucket,) = json.loads(Path(shard).read_text())["buckets"]
        assert bucket["crash"]["thread"] == crash["thread"]


def test_a_crash_in_a_forked_child_names_the_child(targets, tmp_path):
    crash, records, _ = crash_of(targets, tmp_path, "fork_crash", FOLLOW)
    main_pid = records[-1]["pid"]          # the summary speaks for the started process
    assert crash["pid"] != main_pid
    assert crash["process"]["depth"] == 1 and crash["process"]["forked_without_exec"] is True
    assert crash["process"]["exe"] == targets["fork_crash"]
    assert crash["process"]["parent_exe"] == targets["fork_crash"]
    assert crash["thread"]["main"] is True and crash["thread"]["index"] == 0
    assert crash["thread"]["start_routine"] == "main"


def test_a_crash_after_exec_in_a_child_names_the_new_exe(targets, tmp_path):
    path = tmp_path / "crash.yaml"
    path.write_text(FOLLOW)
    out = tmp_path / "out.jsonl"
    run_cli("run", str(path), "--format", "jsonl", "-o", str(out), "--",
            targets["fork_exec"], targets["crash_null_write"])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    (crash,) = [r for r in records if r["event"] == "crash"]
    process = crash["process"]
    assert process["depth"] == 1 and process["forked_without_exec"] is False
    assert process["exe"] == targets["crash_null_write"]
    assert process["argv"] == [targets["crash_null_write"]]
    assert process["parent_exe"] == targets["fork_exec"]


def test_markdown_and_sarif_say_which_thread_and_process(targets, tmp_path):
    """One triage run over a worker-thread crash and a forked-child crash: the Markdown
    row and the SARIF result name the thread and the process, as the JSON does, with no
    pid or tid anywhere in the three reports."""
    import re

    reports = {}
    for program in ("crash_thread3", "fork_crash"):
        out = tmp_path / program
        out.mkdir()
        proc = run_cli("triage", "--quiet", "--timeout", "10", "-o", str(out / "r.json"),
                       "--sarif", str(out / "r.sarif"), "--markdown", str(out / "r.md"),
                       "--", targets[program], timeout=120)
        assert proc.returncode == 1, proc.stderr
        report = json.loads((out / "r.json").read_text())
        sarif = json.loads((out / "r.sarif").read_text())
        markdown = (out / "r.md").read_text()
        (bucket,) = report["buckets"]
        (result,) = sarif["runs"][0]["results"]
        assert result["properties"]["thread"] == bucket["crash"]["thread"]
        assert result["properties"]["process"] == bucket["crash"]["process"]
        for text in (json.dumps(report), json.dumps(sarif), markdown):
            assert not re.search(r'"(pid|tid)"', text)
        reports[program] = (result, markdown)
    result, markdown = reports["crash_thread3"]
    assert result["properties"]["attribution"] == "thread 2 (crasher) of the started process"
    assert "thread 2 (crasher) of the started process" in result["message"]["text"]
    assert "| thread 2 (crasher) of the started process |" in markdown
    result, markdown = reports["fork_crash"]
    assert result["properties"]["attribution"] == "main thread of forked child 1 of fork_crash"
    assert "| main thread of forked child 1 of fork_crash |" in markdown
