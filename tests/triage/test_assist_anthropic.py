"""The anthropic provider against a real local server that speaks the Messages API: shapes, retries, cost, bad answers."""

from __future__ import annotations

import datetime
import email.utils
import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from runtime.triage.assist.anthropic import AnthropicProvider, AnthropicSettings
from runtime.triage.assist.context import IncidentContext, Prompt
from runtime.triage.assist.provider import (
    CostLimitReached,
    MalformedReply,
    ProviderError,
    ProviderUnavailable,
    Request,
)
from tests.triage.fake_anthropic import API_KEY, FakeAnthropic, error, message, raw, slow

ANSWER = {
    "summary": "the database is overloaded",
    "hypotheses": [{"title": "connection pool exhausted", "evidence": ["503 from api"], "confidence": 0.6}],
    "recommendations": [{"kind": "runbook", "name": "collect", "confidence": 0.9, "reason": "gathers logs"}],
    "citations": ["runbook:collect"],
}


@pytest.fixture
def server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(ANSWER) as running:
        yield running


def request() -> Request:
    context = IncidentContext(incident_id=1, key="INC-1", incident={}, values={}, data={}, catalog={})
    return Request(focus="root-cause", context=context, prompt=Prompt("the instructions", "the material", []))


def provider(url: str, sleeps: list[float] | None = None, **settings: Any) -> AnthropicProvider:
    chosen = {"api_key": API_KEY, "model": "claude-test", "base_url": url, "backoff_s": 1.0, **settings}
    return AnthropicProvider(
        AnthropicSettings(**chosen),
        sleep=(sleeps if sleeps is not None else []).append,
        jitter=lambda: 1.0,
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---------------------------------------------------------------- the request and the answer


def test_request_has_the_messages_api_shape(server: FakeAnthropic) -> None:
    provider(server.url, max_tokens=2048).diagnose(request())
    [sent] = server.requests
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["content-type"] == "application/json"
    assert sent.body == {
        "model": "claude-test",
        "max_tokens": 2048,
        "system": "the instructions",
        "messages": [{"role": "user", "content": "the material"}],
    }


def test_answer_is_parsed(server: FakeAnthropic) -> None:
    reply = provider(server.url).diagnose(request())
    assert reply.answer.summary == "the database is overloaded"
    assert reply.answer.recommendations[0].name == "collect"
    assert reply.provider == "anthropic"
    assert reply.model == "claude-test"
    assert reply.session_id is None


def test_usage_is_priced(server: FakeAnthropic) -> None:
    server.enqueue(message(json.dumps(ANSWER), input_tokens=2000, output_tokens=500))
    reply = provider(server.url, input_price=3.0, output_price=15.0).diagnose(request())
    assert reply.usage == {"input_tokens": 2000, "output_tokens": 500, "cost_usd": 0.0135}


# ---------------------------------------------------------------- failures that are not retried


def test_wrong_api_key_is_unavailable_without_retry(server: FakeAnthropic) -> None:
    chosen = provider(server.url, api_key="sk-wrong")
    with pytest.raises(ProviderUnavailable) as raised:
        chosen.diagnose(request())
    assert "authentication_error" in str(raised.value)
    assert len(server.requests) == 1


def test_bad_request_fails_without_retry(server: FakeAnthropic) -> None:
    server.enqueue(error(400, "invalid_request_error", "prompt is too long"))
    with pytest.raises(ProviderError) as raised:
        provider(server.url).diagnose(request())
    assert str(raised.value) == "the Anthropic API request failed: returned 400 (invalid_request_error: prompt is too long)"
    assert len(server.requests) == 1


def test_spend_limit_is_not_retried(server: FakeAnthropic) -> None:
    server.enqueue(error(429, "rate_limit_error", "spend limit", details={"error_code": "enforced_spend_limit_reached"}))
    sleeps: list[float] = []
    with pytest.raises(ProviderError):
        provider(server.url, sleeps).diagnose(request())
    assert len(server.requests) == 1
    assert sleeps == []


def test_refusal_is_an_error(server: FakeAnthropic) -> None:
    server.enqueue(message("", stop_reason="refusal"))
    with pytest.raises(ProviderError) as raised:
        provider(server.url).diagnose(request())
    assert str(raised.value) == "the model refused to answer"


# ---------------------------------------------------------------- retries


def test_rate_limit_waits_for_retry_after(server: FakeAnthropic) -> None:
    server.enqueue(error(429, "rate_limit_error", headers={"retry-after": "3"}))
    sleeps: list[float] = []
    reply = provider(server.url, sleeps).diagnose(request())
    assert reply.answer.summary == ANSWER["summary"]
    assert sleeps == [3.0]
    assert len(server.requests) == 2


def test_retry_after_as_http_date(server: FakeAnthropic) -> None:
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=30)
    server.enqueue(error(429, "rate_limit_error", headers={"retry-after": email.utils.format_datetime(later, usegmt=True)}))
    sleeps: list[float] = []
    provider(server.url, sleeps).diagnose(request())
    assert len(sleeps) == 1
    assert 20.0 < sleeps[0] <= 30.0


def test_retry_after_beyond_the_limit_gives_up(server: FakeAnthropic) -> None:
    server.enqueue(error(429, "rate_limit_error", headers={"retry-after": "3600"}))
    sleeps: list[float] = []
    with pytest.raises(ProviderError) as raised:
        provider(server.url, sleeps, max_retry_after_s=60).diagnose(request())
    assert "asks to wait 3600 s, longer than the 60 s limit" in str(raised.value)
    assert sleeps == []


def test_overloaded_backs_off_exponentially(server: FakeAnthropic) -> None:
    server.enqueue(error(529, "overloaded_error", "Overloaded"), error(529, "overloaded_error", "Overloaded"))
    sleeps: list[float] = []
    reply = provider(server.url, sleeps).diagnose(request())
    assert reply.answer.summary == ANSWER["summary"]
    assert sleeps == [1.0, 2.0]
    assert len(server.requests) == 3


def test_backoff_has_a_ceiling(server: FakeAnthropic) -> None:
    server.enqueue(*[error(503, "api_error")] * 3)
    sleeps: list[float] = []
    provider(server.url, sleeps, max_backoff_s=1.5, max_attempts=4).diagnose(request())
    assert sleeps == [1.0, 1.5, 1.5]


def test_jitter_shortens_the_wait(server: FakeAnthropic) -> None:
    server.enqueue(error(500, "api_error"))
    sleeps: list[float] = []
    chosen = AnthropicProvider(
        AnthropicSettings(api_key=API_KEY, model="m", base_url=server.url, backoff_s=2.0), sleep=sleeps.append, jitter=lambda: 0.0
    )
    chosen.diagnose(request())
    assert sleeps == [1.0]


def test_server_errors_give_up_after_max_attempts(server: FakeAnthropic) -> None:
    server.enqueue(*[error(500, "api_error", "Internal server error")] * 5)
    with pytest.raises(ProviderError) as raised:
        provider(server.url, max_attempts=3).diagnose(request())
    assert str(raised.value) == (
        "the Anthropic API request returned 500 (api_error: Internal server error); gave up after 3 attempts"
    )
    assert len(server.requests) == 3


@pytest.mark.slow
def test_timeout_is_retried_then_fails(server: FakeAnthropic) -> None:
    server.enqueue(slow(3.0, message("late")), slow(3.0, message("late")))
    sleeps: list[float] = []
    with pytest.raises(ProviderError) as raised:
        provider(server.url, sleeps, timeout_s=0.3, max_attempts=2).diagnose(request())
    assert str(raised.value) == "the Anthropic API request timed out after 0.3 s; gave up after 2 attempts"
    assert sleeps == [1.0]


@pytest.mark.slow
def test_timeout_then_success(server: FakeAnthropic) -> None:
    server.enqueue(slow(3.0, message("late")))
    reply = provider(server.url, timeout_s=0.3).diagnose(request())
    assert reply.answer.summary == ANSWER["summary"]


def test_refused_connection_is_retried_then_fails() -> None:
    sleeps: list[float] = []
    with pytest.raises(ProviderError) as raised:
        provider(f"http://127.0.0.1:{closed_port()}", sleeps, max_attempts=2).diagnose(request())
    assert str(raised.value) == "the Anthropic API request failed: ConnectError; gave up after 2 attempts"
    assert sleeps == [1.0]


# ---------------------------------------------------------------- malformed replies


def test_body_that_is_not_json_is_malformed(server: FakeAnthropic) -> None:
    server.enqueue(raw(200, b"<html>gateway</html>", "text/html"))
    with pytest.raises(MalformedReply) as raised:
        provider(server.url).diagnose(request())
    assert "not JSON" in str(raised.value)


def test_json_that_is_not_a_message_is_malformed(server: FakeAnthropic) -> None:
    server.enqueue(raw(200, b'{"completion": "hi"}', "application/json"))
    with pytest.raises(MalformedReply) as raised:
        provider(server.url).diagnose(request())
    assert "not a message" in str(raised.value)


def test_text_answer_is_asked_again_for_json(server: FakeAnthropic) -> None:
    server.enqueue(message("The database looks overloaded."))
    reply = provider(server.url).diagnose(request())
    assert reply.answer.summary == ANSWER["summary"]
    assert len(server.requests) == 2
    follow_up = server.requests[1].body["messages"]
    assert [item["role"] for item in follow_up] == ["user", "assistant", "user"]
    assert follow_up[1]["content"] == "The database looks overloaded."
    assert "Reply with the JSON object only" in follow_up[2]["content"]


def test_answer_malformed_twice_is_an_error(server: FakeAnthropic) -> None:
    server.enqueue(message("no json"), message('{"hypotheses": "many"}'))
    with pytest.raises(MalformedReply) as raised:
        provider(server.url).diagnose(request())
    assert str(raised.value).startswith("the model's answer is malformed twice: the answer does not match the schema")


def test_answer_cut_at_max_tokens_is_malformed(server: FakeAnthropic) -> None:
    server.enqueue(message('{"summary": "the datab', stop_reason="max_tokens"))
    with pytest.raises(MalformedReply) as raised:
        provider(server.url, max_tokens=10).diagnose(request())
    assert "max_tokens=10" in str(raised.value)
    assert "IRULES_ASSIST_MAX_TOKENS" in str(raised.value)


def test_complete_answer_at_max_tokens_is_accepted(server: FakeAnthropic) -> None:
    server.enqueue(message(json.dumps(ANSWER), stop_reason="max_tokens"))
    assert provider(server.url).diagnose(request()).answer.summary == ANSWER["summary"]


# ---------------------------------------------------------------- cost limit


def test_cost_limit_stops_the_follow_up_request(server: FakeAnthropic) -> None:
    server.enqueue(message("not json", input_tokens=100_000, output_tokens=10_000))
    chosen = provider(server.url, input_price=3.0, output_price=15.0, max_cost_usd=0.2)
    with pytest.raises(CostLimitReached) as raised:
        chosen.diagnose(request())
    assert "the cost limit is spent: $0.4500 of $0.2000" in str(raised.value)
    assert len(server.requests) == 1


def test_cost_within_the_limit_allows_the_follow_up(server: FakeAnthropic) -> None:
    server.enqueue(message("not json", input_tokens=1000, output_tokens=100))
    chosen = provider(server.url, input_price=3.0, output_price=15.0, max_cost_usd=0.2)
    reply = chosen.diagnose(request())
    assert len(server.requests) == 2
    assert reply.usage["input_tokens"] == 1100


def test_cost_is_counted_per_diagnosis(server: FakeAnthropic) -> None:
    server.enqueue(message(json.dumps(ANSWER), input_tokens=1000), message(json.dumps(ANSWER), input_tokens=1000))
    chosen = provider(server.url, input_price=3.0)
    chosen.diagnose(request())
    second = chosen.diagnose(request())
    assert second.usage == {"input_tokens": 1000, "output_tokens": 50, "cost_usd": 0.003}


# ---------------------------------------------------------------- settings and secrets


def test_settings_from_environment() -> None:
    settings = AnthropicSettings.from_env(
        {
            "IRULES_ANTHROPIC_API_KEY": "sk-env",
            "IRULES_ASSIST_MODEL": "claude-env",
            "IRULES_ANTHROPIC_URL": "http://127.0.0.1:1",
            "IRULES_ASSIST_MAX_TOKENS": "1000",
            "IRULES_ASSIST_MAX_COST_USD": "0.5",
        }
    )
    assert settings.api_key.get_secret_value() == "sk-env"
    assert settings.model == "claude-env"
    assert settings.base_url == "http://127.0.0.1:1"
    assert settings.max_tokens == 1000
    assert settings.max_cost_usd == 0.5


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"IRULES_ASSIST_MODEL": "m"}, "the anthropic provider needs IRULES_ANTHROPIC_API_KEY"),
        ({"IRULES_ANTHROPIC_API_KEY": "k"}, "the anthropic provider needs IRULES_ASSIST_MODEL"),
        (
            {"IRULES_ANTHROPIC_API_KEY": "k", "IRULES_ASSIST_MODEL": "m", "IRULES_ASSIST_MAX_TOKENS": "lots"},
            "IRULES_ASSIST_MAX_TOKENS",
        ),
        (
            {"IRULES_ANTHROPIC_API_KEY": "k", "IRULES_ASSIST_MODEL": "m", "IRULES_ANTHROPIC_URL": "ftp://x"},
            "IRULES_ANTHROPIC_URL",
        ),
    ],
)
def test_settings_problems_name_the_variable(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(ProviderUnavailable) as raised:
        AnthropicSettings.from_env(environ)
    assert expected in str(raised.value)


def test_api_key_never_appears_in_logs_or_errors(server: FakeAnthropic, caplog: pytest.LogCaptureFixture) -> None:
    server.enqueue(*[error(503, "api_error")] * 4)
    chosen = provider(server.url, max_attempts=3)
    with caplog.at_level(logging.DEBUG), pytest.raises(ProviderError) as raised:
        chosen.diagnose(request())
    assert "retrying" in caplog.text
    assert API_KEY not in caplog.text
    assert API_KEY not in str(raised.value)
    assert API_KEY not in repr(chosen.settings)
