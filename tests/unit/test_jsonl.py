"""The JSON Lines reporter's encoder is json's, made once: same text for every record shape."""

from __future__ import annotations

import io
import json

from hypothesis import given, strategies as st

from instrument.report.jsonl import JsonlReporter, encode

_scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text()
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@given(st.dictionaries(st.text(max_size=8), _values, max_size=6))
def test_encode_matches_json_dumps(record: dict) -> None:
    assert encode(record) == json.dumps(record, separators=(",", ":"))


def test_reporter_writes_one_line_per_record() -> None:
    out = io.StringIO()
    reporter = JsonlReporter(out)
    reporter.emit({"event": "breakpoint", "registers": {"rdi": "0x1"}, "symbol": "ns::f\u00e9"})
    reporter.emit({"event": "summary", "time": 0.5})
    reporter.close()
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["breakpoint", "summary"]
    assert "\\u00e9" in lines[0]           # ASCII output, as json.dumps gives


def test_unserializable_value_is_a_type_error_every_time() -> None:
    import pytest
    for _ in range(2):      # no state left behind by a failed encode
        with pytest.raises(TypeError):
            encode({"x": object()})
    assert encode({"x": [1]}) == '{"x":[1]}'
