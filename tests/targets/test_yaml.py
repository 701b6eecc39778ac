"""The YAML emitter writes the same bytes as PyYAML with libyaml, and leaves what it does not cover to PyYAML."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from targets import _yaml

# Characters that libyaml writes as they are, escapes in the common way, or escapes in
# its own ways (NEL, line separators, BOM, C0 and C1 controls, astral characters).
TRICKY = "\"\\\n\t\r '#:-{}[],&*!|>%@`?~ \x00\x07\x1b\x7f\x85\xa0é\u2028\u2029\ufeff\ufffe😀"
text = st.text(alphabet=st.sampled_from(list("abc xyz019_.=~/") + list(TRICKY)), max_size=30)
keys = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True),
    st.sampled_from(["yes", "No", "on", "OFF", "y", "null", "true", "receiver", "group_by"]),
    text,
    st.text(alphabet="ab", min_size=120, max_size=140),
)
scalars = st.one_of(text, st.booleans(), st.integers(-(10**12), 10**12))
documents = st.recursive(
    st.dictionaries(keys, scalars, min_size=1, max_size=4),
    lambda inner: st.dictionaries(
        keys,
        st.one_of(scalars, inner, st.lists(st.one_of(scalars, inner), max_size=4), st.just([]), st.just({})),
        min_size=1,
        max_size=4,
    ),
    max_leaves=30,
)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(documents)
def test_emitter_matches_pyyaml(document: dict[str, Any]) -> None:
    assert _yaml.dump(document) == _yaml.dump_with_pyyaml(document)


ROUTE_DOCUMENT = {
    "global": {"resolve_timeout": "5m", "smtp_require_tls": True},
    "route": {
        "receiver": "default",
        "group_by": [],
        "routes": [
            {"receiver": "ops", "matchers": ['team="ops"', 'path=~"/a\\\\b"'], "continue": True},
            {"receiver": "dev", "routes": [{"receiver": "dev-é", "mute_time_intervals": ["night"]}]},
        ],
    },
    "receivers": [{"name": "ops", "webhook_configs": [{"url": "http://127.0.0.1/x", "max_alerts": 0}]}],
    "templates": {},
    "details": {"yes": "{{ .CommonLabels.yes }}", "team.name": 'index .CommonLabels "team.name"'},
}


def test_typical_document_skips_pyyaml(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _yaml.dump_with_pyyaml(ROUTE_DOCUMENT)

    def fail(document: Any) -> str:
        raise AssertionError("the emitter handed a supported document to PyYAML")

    monkeypatch.setattr(_yaml, "dump_with_pyyaml", fail)
    assert _yaml.dump(ROUTE_DOCUMENT) == expected


def test_emitter_output_reads_back() -> None:
    assert yaml.safe_load(_yaml.dump(ROUTE_DOCUMENT)) == ROUTE_DOCUMENT


@pytest.mark.parametrize(
    "document",
    [
        {"float": 1.5},
        {"none": None},
        {"nested": [["a", "b"]]},
        {"astral": "😀"},
        {"separator": "a\u2028b"},
        {"long_line": "word " * 300},
        {"k" * 200: "long plain key"},
        {"long quoted key " * 10: "x"},
    ],
)
def test_unsupported_documents_go_to_pyyaml(document: dict[str, Any]) -> None:
    assert _yaml.dump(document) == _yaml.dump_with_pyyaml(document)


def test_key_with_trailing_newline_is_quoted() -> None:
    # `$` in a regex also matches before a final newline, which once let this key through unquoted.
    assert _yaml.dump({"_\n": ""}) == _yaml.dump_with_pyyaml({"_\n": ""})
    assert _yaml.dump({"_\n": ""}) == '? "_\\n"\n: ""\n'
