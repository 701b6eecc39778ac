"""Similar incidents: the past incidents nearest to an incident, by TF-IDF over their words, and how each one ended.

Each incident becomes a bag of tokens. They are the words of its title, the
names of its alerts (whole and split into words), its services, and its
correlation and alert labels as `key=value` pairs and as the words of each
value. Names are split at case changes and digits too, so `APIHighLatency`
yields `apihighlatency`, `api`, `high` and `latency`. A TF-IDF model with
sublinear term frequency is fitted on the incident and the candidates, and
candidates rank by cosine similarity, best first. Ties go to the more recent
incident.

The search is bounded so that it stays fast on a large store. It considers the
`max_candidates` most recent ended (resolved or closed) incidents by number,
and reads at most `MAX_ALERTS_PER_INCIDENT` alerts of each, the first seen
first. Label values longer than `MAX_LABEL_VALUE` characters are left out.
The tokens of ended incidents are kept in memory, up to `MAX_CACHED` per
database, so a later search reads only the incidents that ended since.
bench/similar_incidents.py measures the search on 10,000 incidents.

Alert data is hostile. Tokens come from two fixed regular expressions without
nested repetition, run on text cut to `MAX_TEXT` characters, and no value
reaches a template or a shell.
"""

from __future__ import annotations

import datetime
import functools
import re
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

from runtime.incidents import ENDED, _iso, get_row
from runtime.store.schema import alerts, incidents, runbook_runs, timeline

TOP_K = 3
# NOTE: a chosen default, not fitted to data. In the tests' history, repeats of one alert on one service score
# 0.86 to 0.93, and incidents that share only a cluster label score below 0.07.
MIN_SCORE = 0.3
MAX_CANDIDATES = 1000
MAX_ALERTS_PER_INCIDENT = 20
MAX_LABEL_VALUE = 200
MAX_TEXT = 2000
# Texts up to this length have their words cached; longer ones are mostly unique titles.
MAX_CACHED_WORD_TEXT = 100
# Incidents whose tokens are kept in memory per database, and how many are read from the store per query.
MAX_CACHED = 20_000
READ_CHUNK = 500

# A run of letters and digits, then its parts at case changes and digits: `HTTP5xxErrors` is `HTTP`, `5`, `xx`, `Errors`.
_RUN = re.compile(r"[^\W_]+")
_PART = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

# Tokens of ended incidents by database, least recently used first; see `candidate_tokens`.
_CACHE_LOCK = threading.Lock()
_TOKEN_CACHE: weakref.WeakKeyDictionary[sa.Engine, OrderedDict[tuple[int, datetime.datetime | None], tuple[str, ...]]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True, slots=True)
class SimilarIncident:
    """A past incident like the one searched for, with its score and how it was resolved.

    `resolved_by` is the actor of the status change to resolved (or closed):
    a person, or `irules` when every alert resolved. `resolution` is the note
    that person gave with the change, and `runbooks` lists the runbooks with a
    succeeded run on the incident, first finished first.
    """

    id: str
    number: int
    title: str
    score: float
    status: str
    severity: str | None
    team: str | None
    services: tuple[str, ...]
    created_at: datetime.datetime
    resolved_at: datetime.datetime | None
    duration_s: float | None
    resolved_by: str | None
    resolution: str | None
    runbooks: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """Return the entry as JSON-compatible values, with times as ISO 8601 text in UTC."""
        return {
            "id": self.id,
            "number": self.number,
            "title": self.title,
            "score": self.score,
            "status": self.status,
            "severity": self.severity,
            "team": self.team,
            "services": list(self.services),
            "created_at": _iso(self.created_at),
            "resolved_at": _iso(self.resolved_at),
            "duration_s": self.duration_s,
            "resolved_by": self.resolved_by,
            "resolution": self.resolution,
            "runbooks": list(self.runbooks),
        }


# ---------------------------------------------------------------- tokens


def words(text: str) -> list[str]:
    """Return the lowercase words of `text`: each run of letters and digits, and its parts when it has several."""
    text = text[:MAX_TEXT]
    return list(_cached_words(text) if len(text) <= MAX_CACHED_WORD_TEXT else _split_words(text))


def _split_words(text: str) -> tuple[str, ...]:
    found = []
    for run in _RUN.findall(text):
        parts = _PART.findall(run) if run.isascii() else []
        if len(parts) > 1:
            found.extend(part.lower() for part in parts if len(part) > 1)
        if len(run) > 1:
            found.append(run.lower())
    return tuple(found)


# Label values, service and alert names repeat across incidents, so the words of short texts are cached.
_cached_words = functools.lru_cache(maxsize=16_384)(_split_words)


def incident_tokens(
    title: str,
    services: Iterable[str],
    alert_names: Iterable[str],
    labels: Iterable[Mapping[str, Any]],
) -> list[str]:
    """Return the tokens of an incident as the module docstring describes; repeated names and labels count once."""
    tokens = words(title)
    for name in sorted(set(services)):
        tokens.append(f"service={name[:MAX_LABEL_VALUE].lower()}")
        tokens.extend(words(name))
    for name in sorted(set(alert_names)):
        tokens.append(f"alert={name[:MAX_LABEL_VALUE].lower()}")
        tokens.extend(words(name))
    pairs = {
        (str(key).lower(), str(value).lower())
        for label_set in labels
        for key, value in label_set.items()
        if key != "alertname" and not str(key).startswith("__") and len(str(value)) <= MAX_LABEL_VALUE
    }
    for key, value in sorted(pairs):
        tokens.append(f"label:{key[:MAX_LABEL_VALUE]}={value}")
        tokens.extend(words(value))
    return tokens


def _tokens_of(row: Mapping[str, Any], alert_rows: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """Return the tokens of a stored incident, interned because most of them recur in other incidents' tokens."""
    labels = [row["labels"] or {}, *(alert["labels"] or {} for alert in alert_rows)]
    tokens = incident_tokens(row["title"], row["services"] or [], [alert["name"] for alert in alert_rows], labels)
    return tuple(sys.intern(token) for token in tokens)


# ---------------------------------------------------------------- search


def find_similar(
    connection: sa.Connection,
    incident: int | str,
    *,
    k: int = TOP_K,
    min_score: float = MIN_SCORE,
    max_candidates: int = MAX_CANDIDATES,
) -> list[SimilarIncident]:
    """Return up to `k` ended incidents like `incident` (its number or key) with a score of at least `min_score`.

    The incident itself is never returned, ended or not. Raises `IncidentError`
    (404) when no incident has that number or key.

    Example:
        >>> with store.read() as connection:
        ...     [entry.to_json() for entry in find_similar(connection, "INC-2026-0042")]
        [{'id': 'INC-2026-0017', 'score': 0.8123, 'resolved_by': 'alice', 'runbooks': ['rb-001'], ...}]
    """
    row = get_row(connection, str(incident))
    own_alerts = _alerts_where(connection, alerts.c.incident_id == row["id"])
    query_tokens = _tokens_of(row, own_alerts.get(row["id"], []))
    if not query_tokens or k <= 0:
        return []
    candidates = connection.execute(_candidate_keys(row["id"], max_candidates)).all()
    if not candidates:
        return []
    scores = _scores([query_tokens, *candidate_tokens(connection, candidates)])
    # Candidates come newest first, so the stable sort gives ties to the more recent incident.
    ranked = sorted((index for index, score in enumerate(scores) if score >= min_score), key=lambda index: -scores[index])[:k]
    chosen = [candidates[index].id for index in ranked]
    rows = {found["id"]: found for found in connection.execute(_result_rows(chosen)).mappings()}
    endings = _endings(connection, chosen)
    succeeded = _succeeded_runbooks(connection, chosen)
    return [
        _similar(rows[number], float(scores[index]), endings.get(number), succeeded.get(number, []))
        for index, number in zip(ranked, chosen, strict=True)
    ]


def candidate_tokens(
    connection: sa.Connection, candidates: Sequence[tuple[int, datetime.datetime | None]]
) -> list[tuple[str, ...]]:
    """Return the tokens of each (number, resolved_at) candidate, from the cache or read from the store.

    An ended incident's tokens change only when it is reopened, takes new alerts
    and ends again, which changes its `resolved_at`, so that pair is the cache key.
    """
    cache = _cache_of(connection.engine)
    keys = [(number, resolved_at) for number, resolved_at in candidates]
    with _CACHE_LOCK:
        known = {key: cache[key] for key in keys if key in cache}
        for key in known:
            cache.move_to_end(key)
    missing = [number for number, resolved_at in keys if (number, resolved_at) not in known]
    for start in range(0, len(missing), READ_CHUNK):
        chunk = missing[start : start + READ_CHUNK]
        found = _alerts_where(connection, alerts.c.incident_id.in_(chunk))
        for row in connection.execute(_token_rows(chunk)).mappings():
            known[(row["id"], row["resolved_at"])] = _tokens_of(row, found.get(row["id"], []))
    with _CACHE_LOCK:
        for key in keys:
            if key in known and key not in cache:
                cache[key] = known[key]
        while len(cache) > MAX_CACHED:
            cache.popitem(last=False)
    # A candidate reopened since its key was read has no tokens under that key, and counts as empty.
    return [known.get(key, ()) for key in keys]


def _cache_of(engine: sa.Engine) -> OrderedDict[tuple[int, datetime.datetime | None], tuple[str, ...]]:
    with _CACHE_LOCK:
        cache = _TOKEN_CACHE.get(engine)
        if cache is None:
            cache = _TOKEN_CACHE[engine] = OrderedDict()
        return cache


def _scores(documents: list[tuple[str, ...]]) -> list[float]:
    """Return the cosine similarity of the first document to each of the others, in TF-IDF space."""
    vectorizer = TfidfVectorizer(analyzer=_as_is, lowercase=False, token_pattern=None, sublinear_tf=True)
    matrix = vectorizer.fit_transform(documents)
    return cosine_similarity(matrix[0], matrix[1:])[0].tolist()


def _as_is(tokens: tuple[str, ...]) -> tuple[str, ...]:
    return tokens


def _candidate_keys(exclude: int, limit: int) -> sa.Select:
    """Return a query of (number, resolved_at) of the `limit` most recent ended incidents other than `exclude`."""
    return (
        sa.select(incidents.c.id, incidents.c.resolved_at)
        .where(incidents.c.status.in_(ENDED), incidents.c.id != exclude)
        .order_by(incidents.c.id.desc())
        .limit(limit)
    )


def _token_rows(numbers: list[int]) -> sa.Select:
    names = ("id", "title", "services", "labels", "resolved_at")
    return sa.select(*(incidents.c[name] for name in names)).where(incidents.c.id.in_(numbers))


def _result_rows(numbers: list[int]) -> sa.Select:
    names = ("id", "key", "title", "status", "severity", "team", "services", "created_at", "resolved_at", "closed_at")
    return sa.select(*(incidents.c[name] for name in names)).where(incidents.c.id.in_(numbers))


def _alerts_where(connection: sa.Connection, condition: sa.ColumnElement[bool]) -> dict[int, list[Mapping[str, Any]]]:
    """Return, by incident, the first `MAX_ALERTS_PER_INCIDENT` alerts that match `condition`, first seen first."""
    number = (
        sa.func.row_number().over(partition_by=alerts.c.incident_id, order_by=(alerts.c.first_seen, alerts.c.key)).label("number")
    )
    ranked = sa.select(alerts.c.incident_id, alerts.c.name, alerts.c.labels, number).where(condition).subquery()
    query = sa.select(ranked.c.incident_id, ranked.c.name, ranked.c.labels).where(ranked.c.number <= MAX_ALERTS_PER_INCIDENT)
    found: dict[int, list[Mapping[str, Any]]] = {}
    for alert in connection.execute(query).mappings():
        found.setdefault(alert["incident_id"], []).append(alert)
    return found


# ---------------------------------------------------------------- how they ended


@dataclass(frozen=True, slots=True)
class _Ending:
    resolved_by: str | None
    note: str | None


def _endings(connection: sa.Connection, ids: list[int]) -> dict[int, _Ending]:
    """Return who resolved each incident and the note they gave, from the status changes on its timeline."""
    if not ids:
        return {}
    query = (
        sa.select(timeline.c.incident_id, timeline.c.actor, timeline.c.message, timeline.c.data)
        .where(timeline.c.incident_id.in_(ids), timeline.c.kind == "incident.status")
        .order_by(timeline.c.id)
    )
    resolved: dict[int, str] = {}
    closed: dict[int, str] = {}
    notes: dict[int, str] = {}
    for entry in connection.execute(query).mappings():
        data = entry["data"] or {}
        target = data.get("to")
        if target not in ENDED:
            continue
        (resolved if target == "resolved" else closed)[entry["incident_id"]] = entry["actor"]
        note = _status_note(entry["message"], data)
        if note:
            notes[entry["incident_id"]] = note
    return {
        incident_id: _Ending(resolved.get(incident_id) or closed.get(incident_id), notes.get(incident_id)) for incident_id in ids
    }


def _status_note(message: str, data: Mapping[str, Any]) -> str | None:
    """Return the note a person gave with a status change, from the entry that `runtime.incidents.update` writes.

    That message is `Status changed from A to B: NOTE`, followed by ` (N of its
    alerts still firing)` when alerts still fired.
    """
    prefix = f"Status changed from {data.get('from')} to {data.get('to')}: "
    if not message.startswith(prefix):
        return None
    note = message.removeprefix(prefix)
    if data.get("firing"):
        note = note.removesuffix(f" ({data['firing']} of its alerts still firing)")
    return note.strip() or None


def _succeeded_runbooks(connection: sa.Connection, ids: list[int]) -> dict[int, list[str]]:
    """Return, per incident, the runbooks with a succeeded run, first finished first and each once."""
    if not ids:
        return {}
    query = (
        sa.select(runbook_runs.c.incident_id, runbook_runs.c.runbook_id)
        .where(runbook_runs.c.incident_id.in_(ids), runbook_runs.c.status == "succeeded")
        .order_by(runbook_runs.c.finished_at, runbook_runs.c.id)
    )
    found: dict[int, list[str]] = {}
    for incident_id, runbook_id in connection.execute(query):
        names = found.setdefault(incident_id, [])
        if runbook_id not in names:
            names.append(runbook_id)
    return found


def _similar(row: Mapping[str, Any], score: float, ending: _Ending | None, runbooks: list[str]) -> SimilarIncident:
    ended_at = row["resolved_at"] or row["closed_at"]
    return SimilarIncident(
        id=row["key"],
        number=row["id"],
        title=row["title"],
        score=round(score, 4),
        status=row["status"],
        severity=row["severity"],
        team=row["team"],
        services=tuple(row["services"] or ()),
        created_at=row["created_at"],
        resolved_at=ended_at,
        duration_s=None if ended_at is None else (ended_at - row["created_at"]).total_seconds(),
        resolved_by=None if ending is None else ending.resolved_by,
        resolution=None if ending is None else ending.note,
        runbooks=tuple(runbooks),
    )
