"""Log lines: alert data in a message cannot forge a line or drive the terminal."""

from __future__ import annotations

import io
import json
import logging

from runtime.logs import JsonLines, OneLine

HOSTILE = "DiskFull\n2026-12-05 10:00:00,000 ERROR irules.daemon: forged\r\x1b[2J\tand\x85more"


def formatted(formatter: logging.Formatter, *args: object, exc_info: bool = False) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("irules.test.logs")
    logger.handlers[:] = [handler]
    logger.propagate = False
    try:
        if exc_info:
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("alert %s failed", *args)
        else:
            logger.warning("alert %s fired", *args)
    finally:
        logger.handlers[:] = []
    return stream.getvalue()


def test_text_line_escapes_control_characters() -> None:
    text = formatted(OneLine("%(levelname)s %(message)s"), HOSTILE)

    assert text == (
        "WARNING alert DiskFull\\n2026-12-05 10:00:00,000 ERROR irules.daemon: forged\\r\\x1b[2J\\tand\\x85more fired\n"
    )


def test_text_traceback_keeps_its_lines() -> None:
    text = formatted(OneLine("%(levelname)s %(message)s"), "a\nb", exc_info=True)
    lines = text.splitlines()

    assert lines[0] == "ERROR alert a\\nb failed"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: boom"


def test_json_line_keeps_the_message_whole() -> None:
    text = formatted(JsonLines(), HOSTILE)

    assert text.count("\n") == 1
    assert json.loads(text)["message"] == f"alert {HOSTILE} fired"
