"""What a node logs about its peers joining, falling silent and leaving."""

from __future__ import annotations

import datetime

from runtime.cluster import NodeInfo, PeerWatch

START = datetime.datetime(2026, 3, 8, 10, 0, tzinfo=datetime.UTC)


def node(number: int) -> NodeInfo:
    return NodeInfo(f"node-{number}", f"127.0.0.1:900{number}", START, START)


def test_first_look_logs_nothing() -> None:
    watch = PeerWatch("node-1")
    assert watch.update([node(1), node(2)], []) == []


def test_peer_changes_are_logged_once() -> None:
    watch = PeerWatch("node-1")
    watch.update([node(1), node(2), node(3)], [])
    assert watch.update([node(1), node(3), node(4)], [node(2)]) == [
        "node joined: node_id=node-4 listen=127.0.0.1:9004",
        "node silent past the lease time: node_id=node-2 listen=127.0.0.1:9002; "
        "its runbook runs and messages being sent are taken over",
    ]
    # Node 3 stopped cleanly, so its row is gone rather than silent.
    assert watch.update([node(1), node(4)], [node(2)]) == ["node left: node_id=node-3 listen=127.0.0.1:9003"]
    assert watch.update([node(1), node(4)], [node(2)]) == []


def test_own_node_is_never_reported() -> None:
    watch = PeerWatch("node-1")
    watch.update([node(1)], [])
    assert watch.update([], [node(1)]) == []
