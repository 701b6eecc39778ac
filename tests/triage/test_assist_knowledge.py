"""The knowledge base: runbooks, the rules folder's Markdown and post-mortems, retrieved by TF-IDF with stable ids."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from compiler import ir
from compiler.api import compile_rules
from runtime.triage.assist import knowledge
from runtime.triage.assist.knowledge import Document, KnowledgeBase

RULES = """
receiver ops {
  webhook "http://127.0.0.1:9/ops"
}

route {
  receiver ops
}

runbook disk-full "Free disk space" {
  description "Deletes rotated log files when a volume runs out of disk space."
  when label.alertname == "DiskFull"
  manual
  step clean {
    run ["find", "/var/log", "-name", "*.gz", "-delete"]
    mutating
  }
}

runbook cert-renew "Renew a TLS certificate" {
  description "Renews an expiring TLS certificate with the ACME client."
  when label.alertname == "CertificateExpiring"
  manual
  step renew {
    run ["certbot", "renew"]
    mutating
  }
}
"""

README = """Text before any heading, about the project.

# Database failover

When the primary database stops answering, promote the replica and repoint the connection pool.

```sh
# Not a heading: a comment in a code fence
pg_ctl promote
```

## Database failover

A second section with the same title.
"""

POSTMORTEM = """# 2025-11-02 payment outage

## Root cause

An expired TLS certificate on the payment gateway made every checkout fail.

## Follow-up

Alert thirty days before a certificate expires.
"""


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory: pytest.TempPathFactory) -> ir.Ruleset:
    folder = tmp_path_factory.mktemp("rules")
    (folder / "rules.irules").write_text(RULES, encoding="utf-8")
    return compile_rules(folder)


@pytest.fixture
def base(tmp_path: Path, ruleset: ir.Ruleset) -> KnowledgeBase:
    rules = tmp_path / "rules"
    (rules / "docs").mkdir(parents=True)
    (rules / "README.md").write_text(README, encoding="utf-8")
    (rules / "docs" / "network.md").write_text("# DNS\n\nResolver timeouts show up as 503 errors.\n", encoding="utf-8")
    posts = tmp_path / "postmortems"
    posts.mkdir()
    (posts / "2025-11-02.md").write_text(POSTMORTEM, encoding="utf-8")
    return KnowledgeBase.build(ruleset, rules, posts)


def test_documents_have_stable_ids(base: KnowledgeBase) -> None:
    assert [item.id for item in base.documents] == [
        "runbook:cert-renew",
        "runbook:disk-full",
        "doc:README.md",
        "doc:README.md#database-failover",
        "doc:README.md#database-failover-2",
        "doc:docs/network.md#dns",
        "postmortem:2025-11-02.md#2025-11-02-payment-outage",
        "postmortem:2025-11-02.md#root-cause",
        "postmortem:2025-11-02.md#follow-up",
    ]


def test_runbook_document_holds_title_description_and_steps(base: KnowledgeBase) -> None:
    document = base.get("runbook:disk-full")
    assert document is not None
    assert document.title == "Free disk space"
    assert "rotated log files" in document.text
    assert "clean (run)" in document.text
    assert document.kind == "runbook"


def test_fenced_heading_starts_no_section(base: KnowledgeBase) -> None:
    document = base.get("doc:README.md#database-failover")
    assert document is not None
    assert "pg_ctl promote" in document.text
    assert "# Not a heading" in document.text


def test_search_finds_the_runbook_for_the_incident(base: KnowledgeBase) -> None:
    hits = base.search("DiskFull: volume /data out of disk space")
    assert hits[0].document.id == "runbook:disk-full"
    assert hits[0].score > 0.2


def test_search_finds_the_postmortem_section(base: KnowledgeBase) -> None:
    hits = base.search("checkout fails: TLS certificate expired on the payment gateway")
    assert hits[0].document.id == "postmortem:2025-11-02.md#root-cause"


def test_search_ranks_best_first(base: KnowledgeBase) -> None:
    scores = [hit.score for hit in base.search("database replica promote failover certificate")]
    assert scores == sorted(scores, reverse=True)


def test_search_respects_limit_and_minimum(base: KnowledgeBase) -> None:
    assert len(base.search("database failover certificate disk", limit=2)) == 2
    assert base.search("zebra giraffe") == []


def test_search_with_empty_query_finds_nothing(base: KnowledgeBase) -> None:
    assert base.search("   ") == []


def test_empty_knowledge_base_finds_nothing() -> None:
    assert KnowledgeBase([]).search("database") == []


def test_stop_words_only_find_nothing() -> None:
    empty = KnowledgeBase([Document("doc:a.md", "the", "and of the", "doc")])
    assert empty.search("the and") == []


def test_hidden_folders_and_other_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "notes.md").write_text("# Secret\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("# Text\n", encoding="utf-8")
    (tmp_path / "kept.md").write_text("# Kept\nbody\n", encoding="utf-8")
    assert [item.id for item in knowledge.markdown_documents(tmp_path, "doc")] == ["doc:kept.md#kept"]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="symbolic links are not available")
def test_symbolic_links_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "private.md").write_text("# Private\n", encoding="utf-8")
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "linked.md").symlink_to(outside / "private.md")
    (folder / "linked-folder").symlink_to(outside, target_is_directory=True)
    assert knowledge.markdown_documents(folder, "doc") == []


def test_large_file_is_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(knowledge, "MAX_FILE_BYTES", 10)
    (tmp_path / "big.md").write_text("# Big\n" + "x" * 20, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="irules.assist.knowledge"):
        assert knowledge.markdown_documents(tmp_path, "doc") == []
    assert "larger than 10 bytes" in caplog.text


def test_invalid_utf8_is_read_with_replacements(tmp_path: Path) -> None:
    (tmp_path / "broken.md").write_bytes(b"# Broken \xff heading\nbody\n")
    documents = knowledge.markdown_documents(tmp_path, "doc")
    assert [item.title for item in documents] == ["Broken \ufffd heading"]


def test_excerpt_is_cut() -> None:
    document = Document("doc:a.md", "a", "word " * 1000, "doc")
    assert document.excerpt(20).endswith(" [...]")
    assert len(document.excerpt(20)) == 26
