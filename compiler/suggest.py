"""Suggest a known name for a misspelt one, by edit distance."""

from __future__ import annotations

from collections.abc import Iterable

MAX_DISTANCE = 2


def edit_distance(left: str, right: str, limit: int = MAX_DISTANCE) -> int:
    """Return the Damerau-Levenshtein distance, or `limit + 1` once it is known to exceed `limit`."""
    if abs(len(left) - len(right)) > limit:
        return limit + 1
    previous_previous: list[int] = []
    previous = list(range(len(right) + 1))
    for i, left_char in enumerate(left, 1):
        current = [i] + [0] * len(right)
        for j, right_char in enumerate(right, 1):
            cost = 0 if left_char == right_char else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and left_char == right[j - 2] and left[i - 2] == right_char:
                current[j] = min(current[j], previous_previous[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous_previous, previous = previous, current
    return previous[-1]


def closest(name: str, candidates: Iterable[str], limit: int = MAX_DISTANCE) -> str | None:
    """Return the candidate nearest to `name` within `limit` edits, preferring the first on ties."""
    best: str | None = None
    best_distance = limit + 1
    lowered = name.lower()
    for candidate in candidates:
        if candidate == name:
            continue
        distance = 0 if candidate.lower() == lowered else edit_distance(lowered, candidate.lower(), limit)
        if distance < best_distance:
            best, best_distance = candidate, distance
    # Short names are too easy to match by accident: `ab` is one edit from `a`.
    if best is not None and best_distance > max(1, len(name) // 3):
        return None
    return best
