"""The Anthropic provider: one Messages API request over httpx, with retries, a cost limit and a strict answer check.

The request is `POST {base}/v1/messages` with the headers `x-api-key` and
`anthropic-version`, the model, `max_tokens`, the instructions as `system` and
the material as one user message. The reply's text blocks must form the JSON
answer. When they do not, one follow-up request shows the model its reply
and the problem and asks again for JSON only; a second bad reply is a
`MalformedReply`.

Retries: a timeout, a connection failure, 429, 529 and any other 5xx are
tried again, at most `max_attempts` times in all. The wait before the next
attempt is the `retry-after` header when the response has one, else an
exponential backoff with jitter. A 429 that reports the organisation's spend
limit (`error.details.error_code` is `enforced_spend_limit_reached`) is not
retried, and neither is a `retry-after` longer than `max_retry_after_s`.
Other 4xx statuses fail at once; 401 and 403 raise `ProviderUnavailable`.

Cost: each response's `usage` (input tokens, including cache reads and
writes, and output tokens) is priced with the configured USD prices per
million tokens. Once the total passes `max_cost_usd`, no further request is
sent. The limit counts one `assist` call, and only when prices are set.

Configuration comes from `AnthropicSettings.from_env`. The API key is a
`SecretStr`, sent only in the `x-api-key` header and never logged or put
into a message.
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from runtime.triage.assist.model import MalformedAnswer, parse_answer
from runtime.triage.assist.provider import CostLimitReached, MalformedReply, ProviderError, ProviderUnavailable, Reply, Request

log = logging.getLogger("irules.assist.anthropic")

API_VERSION = "2023-06-01"
DEFAULT_URL = "https://api.anthropic.com"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 529})
_ERROR_CHARS = 300


class AnthropicSettings(BaseModel):
    """How to reach the Messages API and how much one diagnosis may cost."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: SecretStr = Field(description="The API key, from IRULES_ANTHROPIC_API_KEY.")
    model: str = Field(min_length=1, description="The model, from IRULES_ASSIST_MODEL.")
    base_url: str = Field(DEFAULT_URL, pattern=r"^https?://", description="The API's base URL, from IRULES_ANTHROPIC_URL.")
    max_tokens: int = Field(4096, ge=1, le=200_000, description="Maximum tokens of one answer (IRULES_ASSIST_MAX_TOKENS).")
    timeout_s: float = Field(120.0, gt=0, description="Seconds to wait for a response (IRULES_ASSIST_TIMEOUT_S).")
    connect_timeout_s: float = Field(10.0, gt=0, description="Seconds to wait for a connection.")
    max_attempts: int = Field(4, ge=1, le=10, description="Attempts of one request, the first included.")
    backoff_s: float = Field(1.0, ge=0, description="Wait before the second attempt, doubled for each further one.")
    max_backoff_s: float = Field(30.0, ge=0, description="Longest computed wait between attempts.")
    max_retry_after_s: float = Field(120.0, ge=0, description="Longest `retry-after` honoured. A longer one ends the call.")
    input_price: float = Field(0.0, ge=0, description="USD per million input tokens (IRULES_ASSIST_INPUT_PRICE).")
    output_price: float = Field(0.0, ge=0, description="USD per million output tokens (IRULES_ASSIST_OUTPUT_PRICE).")
    max_cost_usd: float = Field(
        1.0, ge=0, description="Cost after which no further request is sent (IRULES_ASSIST_MAX_COST_USD)."
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> AnthropicSettings:
        """Read the settings from environment variables, with `overrides` taking precedence.

        Raises:
            ProviderUnavailable: the API key or the model is missing, or a
                value is invalid. The message names the variable.
        """
        names = {
            "api_key": "IRULES_ANTHROPIC_API_KEY",
            "model": "IRULES_ASSIST_MODEL",
            "base_url": "IRULES_ANTHROPIC_URL",
            "max_tokens": "IRULES_ASSIST_MAX_TOKENS",
            "timeout_s": "IRULES_ASSIST_TIMEOUT_S",
            "input_price": "IRULES_ASSIST_INPUT_PRICE",
            "output_price": "IRULES_ASSIST_OUTPUT_PRICE",
            "max_cost_usd": "IRULES_ASSIST_MAX_COST_USD",
        }
        given = {field: environ[name] for field, name in names.items() if environ.get(name)}
        given.update({field: value for field, value in overrides.items() if value is not None})
        for field, name in (("api_key", "IRULES_ANTHROPIC_API_KEY"), ("model", "IRULES_ASSIST_MODEL")):
            if field not in given:
                raise ProviderUnavailable(f"the anthropic provider needs {name}; set it in the environment")
        try:
            return cls.model_validate(given)
        except ValidationError as error:
            first = error.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else ""
            raise ProviderUnavailable(f"invalid {names.get(field, field)}: {first['msg']}") from None


class AnthropicProvider:
    """Ask a model through the Messages API."""

    name = "anthropic"

    def __init__(
        self,
        settings: AnthropicSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self._transport = transport
        self._sleep = sleep
        self._jitter = jitter
        self.cost_usd = 0.0
        self.usage = {"input_tokens": 0, "output_tokens": 0}

    def diagnose(self, request: Request) -> Reply:
        # The cost limit applies to each diagnosis, so a provider used twice starts from zero.
        self.cost_usd = 0.0
        self.usage = {"input_tokens": 0, "output_tokens": 0}
        messages: list[dict[str, Any]] = [{"role": "user", "content": request.prompt.user}]
        timeout = httpx.Timeout(self.settings.timeout_s, connect=self.settings.connect_timeout_s)
        with httpx.Client(timeout=timeout, transport=self._transport) as client:
            text = self._ask(client, request.prompt.system, messages)
            try:
                answer = parse_answer(text)
            except MalformedAnswer as first:
                self._check_budget(f"the answer was malformed ({first}), and ")
                log.info("anthropic answer malformed; asking again for JSON only: %s", first)
                messages += [
                    {"role": "assistant", "content": text or "(empty)"},
                    {"role": "user", "content": f"That reply is invalid: {first}. Reply with the JSON object only."},
                ]
                try:
                    answer = parse_answer(self._ask(client, request.prompt.system, messages))
                except MalformedAnswer as second:
                    raise MalformedReply(f"the model's answer is malformed twice: {second}") from None
        usage = {**self.usage, "cost_usd": round(self.cost_usd, 6)}
        return Reply(answer=answer, provider=self.name, model=self.settings.model, usage=usage)

    # ------------------------------------------------------------ one request with retries

    def _ask(self, client: httpx.Client, system: str, messages: list[dict[str, Any]]) -> str:
        body = {"model": self.settings.model, "max_tokens": self.settings.max_tokens, "system": system, "messages": messages}
        data = self._post(client, body)
        self._count(data.get("usage"))
        return _reply_text(data, self.settings.max_tokens)

    def _post(self, client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
        url = self.settings.base_url.rstrip("/") + "/v1/messages"
        headers = {
            "x-api-key": self.settings.api_key.get_secret_value(),
            "anthropic-version": API_VERSION,
            "content-type": "application/json",
        }
        for attempt in range(1, self.settings.max_attempts + 1):
            try:
                response = client.post(url, json=body, headers=headers)
            except httpx.TimeoutException:
                problem, wait = f"timed out after {self.settings.timeout_s:g} s", None
            except httpx.TransportError as error:
                problem, wait = f"failed: {type(error).__name__}", None
            else:
                if response.status_code == 200:
                    return _json_body(response)
                problem, wait = _failure(response)
                if response.status_code in (401, 403):
                    raise ProviderUnavailable(f"the Anthropic API rejected the API key: {problem}")
                if response.status_code not in RETRY_STATUSES or _spend_limit(response):
                    raise ProviderError(f"the Anthropic API request failed: {problem}")
            if attempt == self.settings.max_attempts:
                raise ProviderError(f"the Anthropic API request {problem}; gave up after {attempt} attempts")
            delay = self._delay(attempt, wait, problem)
            log.warning(
                "anthropic request %s; retrying in %.1f s (attempt %d of %d)", problem, delay, attempt, self.settings.max_attempts
            )
            self._sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _delay(self, attempt: int, retry_after: float | None, problem: str) -> float:
        if retry_after is not None:
            if retry_after > self.settings.max_retry_after_s:
                raise ProviderError(
                    f"the Anthropic API request {problem} and asks to wait {retry_after:g} s, "
                    f"longer than the {self.settings.max_retry_after_s:g} s limit; try again later"
                )
            return retry_after
        computed = min(self.settings.max_backoff_s, self.settings.backoff_s * 2 ** (attempt - 1))
        # Half fixed, half random, so that many clients do not retry in step.
        return computed * (0.5 + 0.5 * self._jitter())

    # ------------------------------------------------------------ cost

    def _count(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        inputs = sum(
            _tokens(usage.get(name)) for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        outputs = _tokens(usage.get("output_tokens"))
        self.usage["input_tokens"] += inputs
        self.usage["output_tokens"] += outputs
        # NOTE: cache reads and writes have prices of their own, so counting them at the input price is an estimate.
        self.cost_usd += (inputs * self.settings.input_price + outputs * self.settings.output_price) / 1_000_000

    def _check_budget(self, before: str) -> None:
        if self.cost_usd > self.settings.max_cost_usd:
            raise CostLimitReached(
                f"{before}the cost limit is spent: ${self.cost_usd:.4f} of ${self.settings.max_cost_usd:.4f} "
                "(IRULES_ASSIST_MAX_COST_USD), so no further request was sent"
            )


def _json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        raise MalformedReply(f"the Anthropic API sent a response that is not JSON: {_excerpt(response.text)!r}") from None
    if not isinstance(data, dict) or data.get("type") != "message" or not isinstance(data.get("content"), list):
        raise MalformedReply(f"the Anthropic API sent JSON that is not a message: {_excerpt(response.text)!r}")
    return data


def _reply_text(data: dict[str, Any], max_tokens: int) -> str:
    stop = data.get("stop_reason")
    if stop == "refusal":
        raise ProviderError("the model refused to answer")
    text = "".join(block.get("text", "") for block in data["content"] if isinstance(block, dict) and block.get("type") == "text")
    if stop == "max_tokens":
        try:
            parse_answer(text)
        except MalformedAnswer:
            raise MalformedReply(
                f"the answer was cut at max_tokens={max_tokens} before it was complete; raise IRULES_ASSIST_MAX_TOKENS"
            ) from None
    return text


def _failure(response: httpx.Response) -> tuple[str, float | None]:
    """Return a description of a failed response, and its `retry-after` in seconds when it has one."""
    try:
        error = response.json().get("error") or {}
        detail = f"{error.get('type', 'error')}: {error.get('message', '')}".rstrip(": ")
    except (ValueError, AttributeError):
        detail = _excerpt(response.text) or response.reason_phrase
    return f"returned {response.status_code} ({_excerpt(detail)})", _retry_after(response.headers.get("retry-after"))


def _spend_limit(response: httpx.Response) -> bool:
    try:
        details = response.json()["error"].get("details") or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    return isinstance(details, dict) and details.get("error_code") == "enforced_spend_limit_reached"


def _retry_after(value: str | None) -> float | None:
    """Return the seconds a `retry-after` header asks for: a number of seconds, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return max(0.0, (moment - datetime.datetime.now(datetime.UTC)).total_seconds())


def _tokens(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _ERROR_CHARS else text[:_ERROR_CHARS] + "..."
