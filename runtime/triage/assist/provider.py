"""What every assistant provider takes and returns, and how it fails.

A provider turns a `Request` (the incident's context, the prompt and the
retrieved documents) into a `Reply` holding a parsed `Answer`. The answer is
unchecked: the service validates it against the rules and gates it.

Errors form a small tree under `model.AssistError`:

    AssistError
    └── ProviderError                 the provider gave no usable answer
        ├── ProviderUnavailable       not configured, not installed, or the credentials were rejected
        ├── CostLimitReached          the configured cost limit was spent before a usable answer came
        └── (MalformedAnswer)         see below

`model.MalformedAnswer` is raised by parsing; providers re-raise it as
`MalformedReply`, which is both a `ProviderError` and a `MalformedAnswer`.
A `ProviderError` may carry the session id of an investigation that ended
badly, so that a person can still resume it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from runtime.triage.assist.context import IncidentContext, Prompt
from runtime.triage.assist.knowledge import Hit
from runtime.triage.assist.model import Answer, AssistError, MalformedAnswer

PROVIDERS = ("local", "anthropic", "claude-code")
# Session ids go into commands that people copy and run, so only plain characters are accepted.
SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")


class ProviderError(AssistError):
    """A provider gave no usable answer. `session_id` names a session to resume, when one was started."""

    def __init__(self, message: str, *, session_id: str | None = None) -> None:
        super().__init__(message)
        self.session_id = session_id


class ProviderUnavailable(ProviderError):
    """A provider that is not configured or installed, or whose credentials were rejected."""


class CostLimitReached(ProviderError):
    """The cost limit was spent before a usable answer came, so no further request is sent."""


class MalformedReply(ProviderError, MalformedAnswer):
    """A reply that is not the JSON answer the prompt requests."""


@dataclass(frozen=True, slots=True)
class Request:
    focus: str
    context: IncidentContext
    prompt: Prompt
    documents: list[Hit] = field(default_factory=list)


@dataclass(slots=True)
class Reply:
    """A provider's answer and what it cost.

    `usage` has `input_tokens`, `output_tokens` and `cost_usd` where the
    provider reports them. `resume` is the argv that resumes the session,
    run in `workdir`.
    """

    answer: Answer
    provider: str
    model: str | None = None
    session_id: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    resume: list[str] | None = None
    workdir: str | None = None


class Provider(Protocol):
    name: str

    def diagnose(self, request: Request) -> Reply:
        """Return the provider's answer for `request`, or raise `ProviderError`."""
        ...
