"""Recognising the format of a payload for `irules handle` without `--source`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.sources import Inbound, Rejected, detect, normalise

FIXTURES = Path(__file__).parent / "fixtures"
# Alert formats only; the folders of outbound formats (Slack, PagerDuty, ...) hold what irules sends.
SOURCES = ("alertmanager", "azure", "cloudwatch", "grafana")
ALL_FIXTURES = sorted(path.relative_to(FIXTURES).as_posix() for source in SOURCES for path in (FIXTURES / source).glob("*.json"))


def test_every_fixture_copied() -> None:
    assert len(ALL_FIXTURES) == 17


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_fixture_detected_as_its_folder(name: str) -> None:
    inbound = Inbound(body=(FIXTURES / name).read_bytes())
    found = detect(inbound)
    assert found == name.split("/")[0]
    assert normalise(found, inbound, None).source == found


def test_sns_header_means_cloudwatch() -> None:
    assert detect(Inbound(body=b"plain text", headers={"x-amz-sns-message-type": "Notification"})) == "cloudwatch"


def test_grafana_by_org_id_alone() -> None:
    assert detect(Inbound(body=json.dumps({"orgId": 1, "alerts": []}).encode())) == "grafana"


def test_legacy_azure_detected() -> None:
    assert detect(Inbound(body=b'{"schemaId": "AzureMonitorMetricAlert", "data": {}}')) == "azure"


@pytest.mark.parametrize("body", [b'{"version": "3"}', b"[1, 2]", b'"text"', b'{"hello": "world"}'])
def test_unknown_is_unprocessable(body: bytes) -> None:
    with pytest.raises(Rejected) as caught:
        detect(Inbound(body=body))
    assert caught.value.status == 422


def test_not_json_is_bad_request() -> None:
    with pytest.raises(Rejected) as caught:
        detect(Inbound(body=b"\xff\xfe"))
    assert caught.value.status == 400
