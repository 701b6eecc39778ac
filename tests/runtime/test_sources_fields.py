"""Shared parts of every source: JSON reading, string cleaning, label text, size caps and timestamps."""

from __future__ import annotations

import datetime

import pytest

from runtime.sources import MAX_NAME_BYTES, Inbound, Rejected
from runtime.sources.fields import AlertText, cap, parse_time, stringify
from runtime.sources.payload import check_content, clean_strings, parse_json

UTC = datetime.UTC


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "body is empty"),
        (b"   \n", "body is empty"),
        (b"\xc3\x28", "not valid UTF-8: invalid byte at offset 0"),
        (b'{"a": }', "body is not valid JSON: Expecting value at line 1 column 7"),
        (b'{"a": NaN}', "NaN is not a JSON number"),
        (b'{"a": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"a": 1e999}', "number 1e999 is out of range"),
        (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
        (b'{"a": ' + b"9" * 5000 + b"}", "body is not valid JSON"),
    ],
)
def test_bad_json_is_bad_request(body: bytes, fragment: str) -> None:
    with pytest.raises(Rejected) as caught:
        parse_json(body)
    assert caught.value.status == 400
    assert fragment in caught.value.reason


def test_byte_order_mark_is_skipped() -> None:
    assert parse_json(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"content-type": "multipart/form-data; boundary=x"}, 415),
        ({"content-encoding": "gzip"}, 415),
        ({"content-type": "text/plain"}, None),
        ({"content-type": "application/json; charset=utf-8"}, None),
        ({}, None),
    ],
)
def test_content_headers(headers: dict[str, str], status: int | None) -> None:
    inbound = Inbound(body=b"{}", headers=headers)
    if status is None:
        check_content(inbound)
        return
    with pytest.raises(Rejected) as caught:
        check_content(inbound)
    assert caught.value.status == status


def test_clean_strings_replaces_nul_and_surrogates() -> None:
    document, replaced = clean_strings({"a\x00": ["x\ud800", {"y": "\udfff\x00z"}], "n": 1})
    assert document == {"a\ufffd": ["x\ufffd", {"y": "\ufffd\ufffdz"}], "n": 1}
    assert replaced == 4


def test_clean_strings_survives_deep_nesting() -> None:
    document: object = "\x00"
    for _ in range(50000):
        document = [document]
    cleaned, replaced = clean_strings(document)
    assert replaced == 1
    for _ in range(50000):
        cleaned = cleaned[0]
    assert cleaned == "\ufffd"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("x", "x"),
        (True, "true"),
        (False, "false"),
        (3, "3"),
        (2.0, "2.0"),
        (1e20, "1e+20"),
        ([1, "a"], '[1,"a"]'),
        ({"k": None}, '{"k":null}'),
        (None, None),
    ],
)
def test_stringify(value: object, expected: str | None) -> None:
    assert stringify(value) == expected


def test_cap_cuts_at_character_boundary() -> None:
    text, original = cap("ab€€", 6)
    assert text == "ab…"
    assert original == 8
    assert cap("short", 6) == ("short", None)


def test_alert_text_drops_empty_and_caps_names() -> None:
    text = AlertText()
    text.add_labels({"a": "", "b": None, "": "x", "n" * (MAX_NAME_BYTES + 10): "v"}, "labels")
    (name,) = text.labels
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert text.truncated == {f"label_name.{name}": MAX_NAME_BYTES + 10}


def test_alert_text_keeps_existing_when_asked() -> None:
    text = AlertText()
    text.label("team", "db")
    text.label("team", "web", replace=False)
    assert text.labels == {"team": "db"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-08T10:00:00.123456789Z", datetime.datetime(2024, 3, 8, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2019-03-22T13:58:24.3713213Z", datetime.datetime(2019, 3, 22, 13, 58, 24, 371321, tzinfo=UTC)),
        ("2024-05-14T23:59:59.9999999Z", datetime.datetime(2024, 5, 14, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2024-03-08T10:00:00.306+0000", datetime.datetime(2024, 3, 8, 10, 0, 0, 306000, tzinfo=UTC)),
        ("2024-05-14T09:21:03.157076+02:00", datetime.datetime(2024, 5, 14, 7, 21, 3, 157076, tzinfo=UTC)),
        ("2024-05-14T09:00:00", datetime.datetime(2024, 5, 14, 9, 0, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_time(value: str | None, expected: datetime.datetime | None) -> None:
    assert parse_time(value, "t") == expected


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "x" * 1000, "2024-13-01T00:00:00Z"])
def test_parse_time_out_of_range_is_bad_request(value: str) -> None:
    with pytest.raises(Rejected) as caught:
        parse_time(value, "alerts[0].startsAt")
    assert caught.value.status == 400
    assert "`alerts[0].startsAt` is not an RFC 3339 timestamp" in caught.value.reason
