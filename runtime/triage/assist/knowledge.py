"""A small knowledge base for assisted diagnosis: runbooks, the rules project's Markdown and past post-mortems.

Documents are indexed with TF-IDF (scikit-learn) and retrieved by cosine
similarity to a query built from the incident. Every document has a stable
id, which answers cite:

- `runbook:ID`: a runbook's id, title, description and step names, from the
  ruleset.
- `doc:PATH#SECTION`: one section of a Markdown file in the rules folder.
  PATH is relative to the folder, SECTION the heading's slug. Text before
  the first heading is `doc:PATH`.
- `postmortem:PATH#SECTION`: the same for the post-mortems folder.

Only regular files ending in `.md` are read. Symbolic links are not
followed, hidden folders are skipped, and files larger than
`MAX_FILE_BYTES` or past the first `MAX_FILES` are left out with a log line.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from compiler import ir

log = logging.getLogger("irules.assist.knowledge")

MAX_FILE_BYTES = 1024 * 1024
MAX_FILES = 2000
# Characters of a document that a prompt quotes. The index reads the whole text.
EXCERPT_CHARS = 1500
# Characters of a query that are used, because the rest of a long incident adds little.
MAX_QUERY_CHARS = 10_000
MIN_SCORE = 0.05

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SLUG_DROP = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True, slots=True)
class Document:
    """One retrievable text: a runbook's description or one section of a Markdown file."""

    id: str
    title: str
    text: str
    kind: str  # runbook, doc or postmortem
    path: str | None = None

    def excerpt(self, limit: int = EXCERPT_CHARS) -> str:
        return self.text if len(self.text) <= limit else self.text[:limit] + " [...]"


@dataclass(frozen=True, slots=True)
class Hit:
    document: Document
    score: float


class KnowledgeBase:
    """Documents and their TF-IDF index."""

    def __init__(self, documents: Iterable[Document]) -> None:
        self.documents = list(documents)
        self._vectorizer = None
        self._matrix = None
        if not self.documents:
            return
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), stop_words="english", min_df=1)
        try:
            self._matrix = vectorizer.fit_transform([f"{item.title}\n{item.text}" for item in self.documents])
        except ValueError:  # every document is empty or only stop words: nothing can be retrieved
            log.info("knowledge base has no indexable words in %d documents", len(self.documents))
            return
        self._vectorizer = vectorizer

    @classmethod
    def build(
        cls, ruleset: ir.Ruleset | None, rules_folder: Path | None = None, postmortems: Path | None = None
    ) -> KnowledgeBase:
        """Collect the runbooks of `ruleset`, the Markdown of `rules_folder` and the post-mortems, and index them."""
        documents: list[Document] = []
        if ruleset is not None:
            documents.extend(runbook_documents(ruleset))
        if rules_folder is not None and rules_folder.is_dir():
            documents.extend(markdown_documents(rules_folder, "doc"))
        if postmortems is not None:
            documents.extend(markdown_documents(postmortems, "postmortem"))
        return cls(documents)

    def get(self, document_id: str) -> Document | None:
        return next((item for item in self.documents if item.id == document_id), None)

    def search(self, query: str, limit: int = 5, min_score: float = MIN_SCORE) -> list[Hit]:
        """Return at most `limit` documents most similar to `query`, best first, each scoring at least `min_score`."""
        if self._vectorizer is None or self._matrix is None or not query.strip():
            return []
        from sklearn.metrics.pairwise import linear_kernel

        # TF-IDF rows are L2-normalised, so the dot product is the cosine similarity.
        scores = linear_kernel(self._vectorizer.transform([query[:MAX_QUERY_CHARS]]), self._matrix)[0]
        ranked = sorted(range(len(self.documents)), key=lambda index: (-scores[index], index))
        return [Hit(self.documents[index], float(scores[index])) for index in ranked[:limit] if scores[index] >= min_score]


def runbook_documents(ruleset: ir.Ruleset) -> list[Document]:
    """Return one document per runbook: its title, description and the names of its steps and actions."""
    documents = []
    for runbook in ruleset.runbooks:
        steps = ", ".join(f"{step.name} ({step.action or step.kind})" for step in runbook.steps)
        mode = "automatic" if runbook.auto else "manual"
        text = "\n".join(
            part for part in (runbook.description or "", f"A {mode} runbook, risk {runbook.risk}.", f"Steps: {steps}.") if part
        )
        documents.append(Document(f"runbook:{runbook.id}", runbook.title or runbook.id, text, "runbook"))
    return documents


def markdown_documents(folder: Path, kind: str) -> list[Document]:
    """Return the sections of every Markdown file below `folder` as documents with ids `KIND:PATH#SECTION`."""
    documents = []
    for path in _markdown_files(folder):
        relative = path.relative_to(folder).as_posix()
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            log.warning("knowledge file %s cannot be read: %s", path, error.strerror)
            continue
        documents.extend(_sections(text, kind, relative))
    return documents


def _markdown_files(folder: Path) -> Iterator[Path]:
    count = 0
    for root, folders, files in os.walk(folder, followlinks=False):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if not name.endswith(".md") or name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            if path.stat().st_size > MAX_FILE_BYTES:
                log.warning("knowledge file %s is larger than %d bytes; left out", path, MAX_FILE_BYTES)
                continue
            count += 1
            if count > MAX_FILES:
                log.warning("knowledge folder %s has more than %d Markdown files; the rest are left out", folder, MAX_FILES)
                return
            yield path


def _sections(text: str, kind: str, relative: str) -> list[Document]:
    """Split Markdown at its headings, outside code fences, into one document per section."""
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else _HEADING.match(line)
        if heading:
            sections.append((heading.group(2), []))
        else:
            sections[-1][1].append(line)
    documents = []
    used: dict[str, int] = {}
    for title, lines in sections:
        body = "\n".join(lines).strip()
        if title is None and not body:
            continue
        anchor = "" if title is None else _slug(title)
        if anchor:
            used[anchor] = used.get(anchor, 0) + 1
            if used[anchor] > 1:
                anchor = f"{anchor}-{used[anchor]}"
        document_id = f"{kind}:{relative}" + (f"#{anchor}" if anchor else "")
        documents.append(Document(document_id, title or relative, body, kind, relative))
    return documents


def _slug(title: str) -> str:
    return _SLUG_DROP.sub("-", title.lower()).strip("-")[:80]
