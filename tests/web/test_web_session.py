"""Session cookies and the run graph's DOT text: signing, expiry, forgery, CSRF comparison and quoting."""

from __future__ import annotations

import pytest

from compiler import ir
from runtime.web.graph import draw_svg, run_dot
from runtime.web.session import (
    CLOCK_SKEW_S,
    MAX_AGE_S,
    Session,
    clean_actor,
    csrf_matches,
    dump_session,
    load_session,
    session_key,
)

KEY = session_key("api-token", b"unused fallback")
NOW = 1_800_000_000


def test_session_round_trip() -> None:
    session = Session(csrf="c" * 43, issued_at=NOW, actor="alice")
    assert load_session(dump_session(session, KEY), KEY, NOW + 10) == session


def test_anonymous_session_round_trip() -> None:
    session = Session(csrf="token", issued_at=NOW)
    assert load_session(dump_session(session, KEY), KEY, NOW) == session


def test_session_signed_with_other_key_is_rejected() -> None:
    other = session_key("another-token", b"unused fallback")
    value = dump_session(Session(csrf="token", issued_at=NOW, actor="alice"), other)
    assert load_session(value, KEY, NOW) is None


def test_session_key_without_token_is_fallback() -> None:
    assert session_key(None, b"random") == b"random"
    assert session_key("", b"random") == b"random"
    assert session_key("t", b"random") != b"random"


@pytest.mark.parametrize(
    ("issued_at", "valid"),
    [
        (NOW - MAX_AGE_S, True),
        (NOW - MAX_AGE_S - 1, False),
        (NOW + CLOCK_SKEW_S, True),
        (NOW + CLOCK_SKEW_S + 1, False),
    ],
)
def test_session_age_limits(issued_at: int, valid: bool) -> None:
    value = dump_session(Session(csrf="token", issued_at=issued_at, actor="alice"), KEY)
    assert (load_session(value, KEY, NOW) is not None) is valid


def test_changed_payload_is_rejected() -> None:
    value = dump_session(Session(csrf="token", issued_at=NOW, actor="alice"), KEY)
    forged_payload = dump_session(Session(csrf="token", issued_at=NOW, actor="admin"), KEY).split(".")[0]
    assert load_session(f"{forged_payload}.{value.split('.')[1]}", KEY, NOW) is None


@pytest.mark.parametrize("value", [None, "", "no-dot", "a.b.c", "!!!.???", "é.é", "e30.AAAA"])
def test_malformed_cookie_is_rejected(value: str | None) -> None:
    assert load_session(value, KEY, NOW) is None


def test_csrf_comparison() -> None:
    session = Session(csrf="secret-token", issued_at=NOW)
    assert csrf_matches(session, "secret-token")
    assert not csrf_matches(session, "secret-tokeN")
    assert not csrf_matches(session, "")
    assert not csrf_matches(session, None)
    assert not csrf_matches(None, "secret-token")


def test_actor_name_is_cleaned() -> None:
    assert clean_actor("  alice \x07\n") == "alice"
    assert clean_actor(" \t ") is None
    assert clean_actor("b" * 300) == "b" * 100


def test_run_dot_quotes_names_and_colours_states() -> None:
    runbook = ir.Runbook(
        id='rb "x"',
        steps=[
            ir.Step(name='look"] [color=red', kind="run"),
            ir.Step(
                name="fix\\N", kind="action", action="restart", depends_on=['look"] [color=red'], on_failure="undo", risk="high"
            ),
            ir.Step(name="undo", kind="run", compensation=True, approval_team="ops"),
        ],
    )
    dot = run_dot(runbook, {'look"] [color=red': "succeeded", "fix\\N": "failed"})
    assert dot.splitlines() == [
        'digraph "rb \\"x\\"" {',
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9, color="#6b7280"];',
        '  "look\\"] [color=red" [label="look\\"] [color=red\\nrun\\n[succeeded]", style="rounded,filled", fillcolor="#dcfce7", color="#15803d"];',
        '  "fix\\\\N" [label="fix\\\\N\\naction restart\\nrisk high\\n[failed]", style="rounded,filled", fillcolor="#fee2e2", color="#b91c1c"];',
        '  "undo" [label="undo\\nrun\\napproval from ops\\n[not started]", style="rounded,filled,dashed", fillcolor="#ffffff", color="#8a8f98"];',
        '  "look\\"] [color=red" -> "fix\\\\N";',
        '  "fix\\\\N" -> "undo" [label="on_failure", style=dashed, color="#b91c1c"];',
        "}",
    ]


def test_quoted_names_reach_svg_as_text() -> None:
    runbook = ir.Runbook(
        id="rb", steps=[ir.Step(name='a"] [URL="javascript:x"', kind="run"), ir.Step(name="b\\N\\G", kind="run")]
    )
    svg = draw_svg(run_dot(runbook, {})).decode()
    assert "<text" in svg
    assert ">a&quot;] [URL=&quot;javascript:x&quot;<" in svg
    assert ">b\\N\\G<" in svg
    assert "<a " not in svg
