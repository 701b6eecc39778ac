"""Alert sources: turning webhook requests into `Alert` values, recognising their format, authenticating them.

    authenticate(source, inbound, ruleset, secrets, now=now)   # raises Rejected
    outcome = normalise(source, inbound, ruleset)                # raises Rejected

Built-in sources are `alertmanager`, `grafana`, `cloudwatch` and `azure`; any
other name is a custom source declared in the rules. Every failure caused by
the request is a `Rejected` carrying the HTTP status to respond with.
"""

from runtime.sources.auth import authenticate
from runtime.sources.base import (
    ALERTS,
    EVENT,
    SUBSCRIPTION_CONFIRMATION,
    UNSUBSCRIBE_CONFIRMATION,
    Inbound,
    Outcome,
    Rejected,
)
from runtime.sources.detect import detect
from runtime.sources.fields import MAX_NAME_BYTES, MAX_VALUE_BYTES
from runtime.sources.names import BUILTIN_SOURCES, declared_source
from runtime.sources.normalise import normalise
from runtime.sources.sns import CertificateFetcher, CertificateUnavailable, HttpCertificateFetcher, is_sns_url

__all__ = [
    "ALERTS",
    "BUILTIN_SOURCES",
    "EVENT",
    "MAX_NAME_BYTES",
    "MAX_VALUE_BYTES",
    "SUBSCRIPTION_CONFIRMATION",
    "UNSUBSCRIBE_CONFIRMATION",
    "CertificateFetcher",
    "CertificateUnavailable",
    "HttpCertificateFetcher",
    "Inbound",
    "Outcome",
    "Rejected",
    "authenticate",
    "declared_source",
    "detect",
    "is_sns_url",
    "normalise",
]
