"""Classification rules and stack hashes on hand-made crash records."""

from __future__ import annotations

import pytest

from instrument.errors import UsageError
from instrument.analysis.classify import CLASSES, annotate, classify, default_rules, load_rules, mnemonic_of
from instrument.analysis.signature import frame_key, significant_frames, stack_hash


def crash(**fields):
    base = {"event": "crash", "signal": "SIGSEGV", "exception": "ACCESS_VIOLATION", "address": "0x401000",
            "fault_address": "0x0", "access": "read", "instruction": "mov rax, qword ptr [rax]",
            "module": "app", "symbol": "f+0x4", "registers": {"rsp": "0x7ffc00000000"},
            "frames": [{"pc": "0x401000", "module": "/bin/app", "offset": "0x1000", "symbol": "f+0x4"},
                       {"pc": "0x401100", "module": "/bin/app", "offset": "0x1100", "symbol": "main+0x9"}]}
    base.update(fields)
    return base


def test_shipped_rules_cover_both_vocabularies_and_every_class():
    ids = {r.id for r in default_rules()}
    jfoote = {"ReturnAv", "SegFaultOnPc", "BranchAv", "StackCodeExecution", "StackBufferOverflow",
              "PossibleStackCorruption", "DestAv", "BadInstruction", "HeapError", "StackOverflow",
              "SegFaultOnPcNearNull", "BranchAvNearNull", "BlockMoveAv", "DestAvNearNull", "SourceAvNearNull",
              "FloatingPointException", "BenignSignal", "SourceAv", "AbortSignal", "AccessViolation",
              "UncategorizedSignal"}
    casr = {"CallAv", "CallAvNearNull", "StackGuard", "SafeFunctionCheck", "TrapSignal"}
    assert jfoote | casr <= ids
    assert {r.cls for r in default_rules()} == set(CLASSES)
    assert default_rules()[-1].when == {}            # the catch-all is last


def test_shipped_rules_pass_the_rules_schema():
    # default_rules() skips the schema at run time (jsonschema's import is start-up cost): here it is checked.
    from importlib import resources

    import yaml

    from instrument.analysis.classify import parse_rules

    text = (resources.files("instrument.analysis") / "rules.yaml").read_text(encoding="utf-8")
    assert tuple(parse_rules(yaml.safe_load(text), "rules.yaml", validate=True)) == default_rules()


@pytest.mark.parametrize("fields, cls, rule", [
    ({}, "PROBABLY_NOT_EXPLOITABLE", "SourceAvNearNull"),
    ({"fault_address": "0x10000"}, "UNKNOWN", "SourceAv"),                      # 64 KiB is no longer near NULL
    ({"access": "write", "fault_address": "0xffff"}, "PROBABLY_EXPLOITABLE", "DestAvNearNull"),
    ({"access": "write", "fault_address": "0x7f0000001000"}, "EXPLOITABLE", "DestAv"),
    ({"instruction": "ret", "access": "execute", "fault_address": "0x4141414141414141"}, "EXPLOITABLE", "ReturnAv"),
    ({"instruction": "notrack jmp rax", "fault_address": "0x4141414141414141"}, "EXPLOITABLE", "BranchAv"),
    ({"instruction": "call qword ptr [rax + 8]", "fault_address": "0x8"}, "PROBABLY_EXPLOITABLE", "CallAvNearNull"),
    ({"address": "0x10", "fault_address": "0x10", "access": "execute", "module": None, "instruction": None},
     "PROBABLY_EXPLOITABLE", "SegFaultOnPcNearNull"),
    ({"signal": "SIGABRT", "exception": "HEAP_CORRUPTION", "check": "heap", "access": None}, "EXPLOITABLE", "HeapError"),
    ({"signal": "SIGFPE", "exception": "INT_DIVIDE_BY_ZERO", "access": None}, "PROBABLY_NOT_EXPLOITABLE",
     "FloatingPointException"),
    ({"signal": "SIGXCPU", "exception": "SIGNAL", "access": None}, "PROBABLY_NOT_EXPLOITABLE", "BenignSignal"),
    ({"signal": "SIGSYS", "exception": "SIGNAL", "access": None}, "UNKNOWN", "UncategorizedSignal"),
])
def test_classify_hand_made_records(fields, cls, rule):
    result = classify(crash(**fields))
    assert (result["class"], result["rule"]) == (cls, rule)
    assert result["matches"][0] == rule and result["matches"][-1] == "UncategorizedSignal"
    assert result["description"]


def test_sanitizer_bug_type_decides_before_the_signal():
    rec = crash(signal="SIGABRT", exception="SIGNAL", access=None,
                sanitizer={"tool": "AddressSanitizer", "bug_type": "heap-buffer-overflow", "access": "write"})
    result = classify(rec)
    assert (result["class"], result["rule"]) == ("EXPLOITABLE", "SanitizerOverflowWrite")
    assert result["description"] == "AddressSanitizer: heap-buffer-overflow (write)"
    assert "AbortSignal" in result["matches"]


def test_rules_file_overrides_in_place_and_adds_in_front(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("version: 1\nrules:\n"
                    "  - {id: SourceAvNearNull, class: NOT_EXPLOITABLE, description: fine here, when: {access: [read], near_null: true}}\n"
                    "  - {id: ParserBug, class: EXPLOITABLE, description: 'in {mnemonic}', when: {in_frames: [parse_header]}}\n")
    rules = load_rules([str(path)])
    assert rules[0].id == "ParserBug"
    assert [r.id for r in rules].count("SourceAvNearNull") == 1
    assert classify(crash(), rules)["class"] == "NOT_EXPLOITABLE"
    frames = [{"pc": "0x1", "module": "app", "offset": "0x1", "symbol": "parse_header+0x3"}]
    parsed = classify(crash(frames=frames), rules)
    assert (parsed["rule"], parsed["description"]) == ("ParserBug", "in mov")


@pytest.mark.parametrize("text, message", [
    ("version: 1\nrules:\n  - {id: X, class: SEVERE, when: {}}\n", "rules/0/class"),
    ("version: 1\nrules:\n  - {id: X, class: UNKNOWN, when: {colour: [red]}}\n", "rules/0/when"),
    ("version: 1\nrules:\n  - {id: X, class: UNKNOWN, when: {instruction: '('}}\n", "bad instruction pattern"),
    ("version: 1\nrules: [\n", "not valid YAML"),
])
def test_bad_rules_files_are_usage_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message.replace("/", "/")):
        load_rules([str(path)])


def test_mnemonic_skips_prefixes():
    assert mnemonic_of("rep movsb byte ptr [rdi], byte ptr [rsi]") == "movsb"
    assert mnemonic_of("bnd jmp qword ptr [rax]") == "jmp"
    assert mnemonic_of(None) is None


# -- stack hashes ------------------------------------------------------------------------

def frames_at(base: int, prefix: str) -> list[dict]:
    return [{"pc": hex(base + 0x1135), "module": f"{prefix}/app", "offset": "0x1135", "symbol": "read_value+0xc"},
            {"pc": hex(base + 0x1157), "module": f"{prefix}/app", "offset": "0x1157", "symbol": "main+0x1c"},
            {"pc": "0x7f0000027305", "module": "/lib/x86_64-linux-gnu/libc.so.6", "offset": "0x27305",
             "symbol": None}]


def test_hash_ignores_addresses_paths_and_symbol_offsets():
    a = stack_hash(frames_at(0x555555554000, "/work/build"))
    b = stack_hash(frames_at(0x400000, "/tmp/elsewhere"))
    assert a == b and len(a["major"]) == 16
    moved = frames_at(0x400000, "/x")
    moved[0]["symbol"] = "read_value+0x10"
    assert stack_hash(moved) == a
    other = frames_at(0x400000, "/x")
    other[0]["symbol"] = "write_value+0xc"
    assert stack_hash(other)["major"] != a["major"]


def test_major_covers_five_frames_and_minor_twenty():
    frames = [{"module": "app", "offset": hex(i), "symbol": f"f{i}"} for i in range(30)]
    deeper = [dict(f) for f in frames]
    deeper[10]["symbol"] = "changed"
    assert stack_hash(frames)["major"] == stack_hash(deeper)["major"]
    assert stack_hash(frames)["minor"] != stack_hash(deeper)["minor"]
    deeper[25]["symbol"] = "beyond"
    deeper[10]["symbol"] = "f10"
    assert stack_hash(frames) == stack_hash(deeper)


def test_abort_machinery_is_skipped():
    libc = "/lib/x86_64-linux-gnu/libc.so.6"
    frames = [{"module": libc, "offset": "0x8aeec", "symbol": None},
              {"module": libc, "offset": "0x3bfb2", "symbol": "raise+0x12"},
              {"module": libc, "offset": "0x26472", "symbol": "abort+0xd3"},
              {"module": libc, "offset": "0x7f42f", "symbol": None},
              {"module": libc, "offset": "0x98f5f", "symbol": "free+0x6f"},
              {"module": "/b/app", "offset": "0x1161", "symbol": "release+0x18"}]
    assert [frame_key(f) for f in significant_frames(frames)] == ["libc.so.6!free", "app!release"]
    assert frame_key({"module": None, "offset": None, "symbol": None}) == "?"
    assert frame_key({"module": "/lib/libc.so.6", "offset": "0x2724a", "symbol": None}) == "libc.so.6+0x2724a"


def test_annotate_adds_classification_and_hash():
    rec = annotate(crash())
    assert set(rec["classification"]) >= {"class", "rule", "description"}
    assert set(rec["hash"]) == {"major", "minor"}
    bare = annotate(crash(frames=[], signal="SIGTRAP", exception="SIGNAL"))
    assert bare["classification"]["rule"] == "TrapSignal" and bare["hash"]["major"]
