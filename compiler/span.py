"""Source files and spans: where in the user's text a node or diagnostic sits."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import NamedTuple


class Span(NamedTuple):
    """A half-open character range of one source file, with 1-based line and column.

    `end_column` is exclusive, like `end`. A named tuple because the parser
    makes one for nearly every token.
    """

    path: str
    start: int
    end: int
    line: int
    column: int
    end_line: int
    end_column: int

    def to(self, other: Span) -> Span:
        """Return the span from the start of this one to the end of `other`."""
        return Span(self.path, self.start, other.end, self.line, self.column, other.end_line, other.end_column)

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
        }


@dataclass(slots=True)
class SourceFile:
    """The text of one .irules file and a fast offset-to-line index."""

    path: str
    text: str
    _line_starts: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        starts = [0]
        find = self.text.find
        position = find("\n")
        while position != -1:
            starts.append(position + 1)
            position = find("\n", position + 1)
        self._line_starts = starts

    def position(self, offset: int) -> tuple[int, int]:
        """Return the 1-based line and column of a character offset."""
        index = bisect.bisect_right(self._line_starts, offset) - 1
        return index + 1, offset - self._line_starts[index] + 1

    def span(self, start: int, end: int) -> Span:
        line, column = self.position(start)
        end_line, end_column = self.position(end)
        return Span(self.path, start, end, line, column, end_line, end_column)

    def line_text(self, line: int) -> str:
        """Return one line of the file without its newline; empty past the end."""
        if line < 1 or line > len(self._line_starts):
            return ""
        start = self._line_starts[line - 1]
        end = self.text.find("\n", start)
        return self.text[start:] if end == -1 else self.text[start:end]
