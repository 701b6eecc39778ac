"""Logging setup for the daemon and the incident commands: plain lines or JSON lines."""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys

_STANDARD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, message, extra fields, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({key: value for key, value in vars(record).items() if key not in _STANDARD_FIELDS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


# C0 and C1 control characters and DEL. Messages carry alert data, which is hostile: a
# newline would forge a log line of its own, and an escape sequence would drive the terminal.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _escape_control(match: re.Match[str]) -> str:
    character = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(character, f"\\x{ord(character):02x}")


class OneLine(logging.Formatter):
    """Plain text, one line per message: control characters in the message are written as escapes.

    A traceback, which only irules' own code produces, keeps its lines.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        if _CONTROL.search(record.message):
            record.message = _CONTROL.sub(_escape_control, record.message)
        return super().formatMessage(record)


def configure(level: str = "info", json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(OneLine("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Alembic reports every migration step at INFO; the store logs the outcome itself.
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))
    # httpx logs every request's URL at INFO, and webhook URLs carry tokens: keep its warnings only.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(root.level, logging.WARNING))
    # uvicorn's own error log joins ours; its access log stays off (one line per webhook is noise).
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
