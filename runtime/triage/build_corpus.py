"""Build the labelled corpus and train the shipped severity model.

    python -m runtime.triage.build_corpus [--seed N] [--jsonl FILE] [--model FILE] [--no-train]

The corpus is `runtime/triage/corpus/*.yaml`: alert definitions written for
irules, one file per family of exporters or platforms. A file reads:

    labels: {job: node}              # labels of every alert in the file
    variants:                        # label values the variants of an alert draw from
      instance: [web-01:9100, db-03:9100]
    environments: true               # false: no env label and no staging variant
    alerts:
      - name: HostFilesystemFull
        level: critical              # what an operator would assign
        summary: File system {mountpoint} on {instance} is full
        description: ...
        labels: {mountpoint: /var}   # extra labels, overriding the above
        values: ["96%", "98%"]       # optional, fills {value}

Each definition becomes `VARIANTS` examples with label values drawn by a random
generator seeded from the seed, the file and the alert name, so the output is
the same on every run and machine. `{key}` in the summary and description is
replaced by the label `key` (`{value}` by one of `values`). With environments,
the first variants carry `env=production`, `env=prod` or no env label, and the
last one is a staging or dev alert whose level is lowered by `STAGING_LEVELS`.

A fifth of the definitions of each level (`HELD_OUT_SHARE`), chosen by a hash
of the seed and the definition, form the held-out split with all their
variants. The held-out figures are therefore about alerts the model never saw
in any variant. The model trains on the rest and records its held-out figures in its
metadata.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.triage.classifier import DEFAULT_MODEL, DEFAULT_SEED, LEVELS, Example
from runtime.triage.features import AlertText

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
VARIANTS = 4
HELD_OUT_SHARE = 0.2
# A staging or dev alert needs a person within a day at most, never a page.
STAGING_LEVELS = {"critical": "medium", "high": "medium", "medium": "low", "low": "low"}
PRODUCTION_ENVIRONMENTS = ("production", "prod", None)
STAGING_ENVIRONMENTS = ("staging", "dev")

_FILE_KEYS = {"labels", "variants", "environments", "alerts"}
_ALERT_KEYS = {"name", "level", "summary", "description", "labels", "values"}


class CorpusError(Exception):
    """A corpus file that breaks the layout above; the message names the file and the alert."""


@dataclass(frozen=True, slots=True)
class Definition:
    """One alert as written in a corpus file."""

    source: str
    name: str
    level: str
    summary: str
    description: str
    labels: dict[str, str]
    values: tuple[str, ...]
    file_labels: dict[str, str]
    variants: dict[str, tuple[str, ...]]
    environments: bool

    @property
    def group(self) -> str:
        return f"{self.source}/{self.name}"


@dataclass(frozen=True, slots=True)
class CorpusExample:
    """An expanded example with its split and the corpus file it came from."""

    example: Example
    split: str
    source: str

    def to_json(self) -> dict[str, Any]:
        return {**self.example.to_json(), "split": self.split, "source": self.source}


@dataclass(slots=True)
class Corpus:
    definitions: list[Definition]
    examples: list[CorpusExample] = field(default_factory=list)

    def split(self, name: str) -> list[Example]:
        return [item.example for item in self.examples if item.split == name]


# ---------------------------------------------------------------- reading the definitions


def load_definitions(folder: Path = CORPUS_DIR) -> list[Definition]:
    """Read and check every `*.yaml` in `folder`, in file name order."""
    import yaml

    definitions: list[Definition] = []
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise CorpusError(f"no corpus files (*.yaml) in {folder}")
    for path in files:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise CorpusError(f"{path}: invalid YAML: {error}") from error
        definitions.extend(_file_definitions(path, document))
    return definitions


def _file_definitions(path: Path, document: Any) -> list[Definition]:
    if not isinstance(document, dict):
        raise CorpusError(f"{path}: expected a mapping with `alerts`")
    unknown = set(document) - _FILE_KEYS
    if unknown:
        raise CorpusError(f"{path}: unknown keys {', '.join(sorted(unknown))}; known: {', '.join(sorted(_FILE_KEYS))}")
    file_labels = _strings(document.get("labels") or {}, f"{path}: labels")
    variants = {
        str(key): tuple(str(value) for value in values)
        for key, values in (document.get("variants") or {}).items()
        if isinstance(values, list) and values
    }
    environments = bool(document.get("environments", True))
    seen: set[str] = set()
    definitions = []
    for item in document.get("alerts") or []:
        definition = _definition(path, item, file_labels, variants, environments)
        if definition.name in seen:
            raise CorpusError(f"{path}: alert {definition.name} is defined twice")
        seen.add(definition.name)
        definitions.append(definition)
    return definitions


def _definition(
    path: Path, item: Any, file_labels: dict[str, str], variants: dict[str, tuple[str, ...]], environments: bool
) -> Definition:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise CorpusError(f"{path}: every alert needs a `name`")
    where = f"{path}: alert {item['name']}"
    unknown = set(item) - _ALERT_KEYS
    if unknown:
        raise CorpusError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    if item.get("level") not in LEVELS:
        raise CorpusError(f"{where}: `level` must be one of {', '.join(LEVELS)}, not {item.get('level')!r}")
    if not item.get("summary"):
        raise CorpusError(f"{where}: `summary` is missing")
    definition = Definition(
        source=path.stem,
        name=item["name"],
        level=item["level"],
        summary=str(item["summary"]),
        description=str(item.get("description") or ""),
        labels=_strings(item.get("labels") or {}, f"{where}: labels"),
        values=tuple(str(value) for value in item.get("values") or ()),
        file_labels=file_labels,
        variants=variants,
        environments=environments,
    )
    known = set(file_labels) | set(variants) | set(definition.labels) | ({"value"} if definition.values else set())
    for text in (definition.summary, definition.description):
        missing = sorted(set(_placeholders(text)) - known)
        if missing:
            raise CorpusError(f"{where}: placeholder {{{missing[0]}}} has no label or value to fill it")
    return definition


def _strings(mapping: Any, where: str) -> dict[str, str]:
    if not isinstance(mapping, dict):
        raise CorpusError(f"{where} must be a mapping")
    return {str(key): str(value) for key, value in mapping.items()}


def _placeholders(text: str) -> list[str]:
    """Return the names in `{name}` placeholders of a corpus text."""
    names = []
    start = text.find("{")
    while start != -1:
        end = text.find("}", start)
        if end == -1:
            break
        names.append(text[start + 1 : end])
        start = text.find("{", end)
    return names


# ---------------------------------------------------------------- expanding


def expand(definition: Definition, seed: int) -> list[Example]:
    """Return the variants of one definition; the same for the same seed on every run."""
    examples = []
    for index in range(VARIANTS):
        chooser = random.Random(f"{seed}:{definition.group}:{index}")
        labels = dict(definition.file_labels)
        for key in sorted(definition.variants):
            labels[key] = chooser.choice(definition.variants[key])
        labels.update(definition.labels)
        level = definition.level
        if definition.environments:
            if index == VARIANTS - 1:
                labels[chooser.choice(("env", "environment"))] = chooser.choice(STAGING_ENVIRONMENTS)
                level = STAGING_LEVELS[level]
            else:
                environment = chooser.choice(PRODUCTION_ENVIRONMENTS)
                if environment is not None:
                    labels["env"] = environment
        fill = dict(labels)
        if definition.values:
            fill["value"] = chooser.choice(definition.values)
        labels["alertname"] = definition.name
        alert = AlertText(
            name=definition.name,
            summary=_fill(definition.summary, fill),
            description=_fill(definition.description, fill),
            labels=labels,
        )
        examples.append(Example(alert, level, definition.group))
    return examples


def _fill(text: str, values: Mapping[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def held_out_groups(definitions: Iterable[Definition], seed: int, share: float = HELD_OUT_SHARE) -> set[str]:
    """Choose `share` of the definitions of each level for the held-out split, by a hash of seed and name."""
    by_level: dict[str, list[str]] = {}
    for definition in definitions:
        by_level.setdefault(definition.level, []).append(definition.group)
    chosen: set[str] = set()
    for groups in by_level.values():
        ranked = sorted(groups, key=lambda group: hashlib.sha256(f"{seed}:{group}".encode()).hexdigest())
        chosen.update(ranked[: round(len(ranked) * share)])
    return chosen


def build(folder: Path = CORPUS_DIR, seed: int = DEFAULT_SEED) -> Corpus:
    """Read the definitions, expand them and assign the split."""
    definitions = load_definitions(folder)
    held_out = held_out_groups(definitions, seed)
    corpus = Corpus(definitions)
    for definition in definitions:
        split = "held-out" if definition.group in held_out else "train"
        corpus.examples.extend(CorpusExample(example, split, definition.source) for example in expand(definition, seed))
    return corpus


def write_jsonl(corpus: Corpus, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as output:
        for item in corpus.examples:
            output.write(json.dumps(item.to_json(), ensure_ascii=False, sort_keys=True) + "\n")


# ---------------------------------------------------------------- training the shipped model


def train_model(corpus: Corpus, path: Path, seed: int) -> dict[str, Any]:
    """Train on the corpus' train split, evaluate on its held-out split, save, and return the metadata."""
    from runtime.triage import classifier
    from runtime.triage.evaluation import LabelledSet, evaluate

    training = corpus.split("train")
    pipeline = classifier.train(training, seed)
    model = classifier.Classifier(pipeline, {"version": "unsaved"})
    report = evaluate(model, LabelledSet(corpus.split("held-out"), "irules", "corpus held-out split"))
    return classifier.save(
        pipeline,
        path,
        data_sha256=classifier.data_digest(training),
        seed=seed,
        examples=len(training),
        metrics={"held_out": report.summary()},
        extra={"training_data": "irules corpus (runtime/triage/corpus), train split"},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.triage.build_corpus", description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS_DIR, help="Folder of corpus *.yaml files.")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="Seed of the variants, the split and the model.")
    parser.add_argument("--jsonl", type=Path, default=Path("bench/out/triage-corpus.jsonl"), help="Where to write the examples.")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="Where to write the model; metadata goes beside it.")
    parser.add_argument("--no-train", action="store_true", help="Write the JSONL only.")
    options = parser.parse_args(argv)

    try:
        corpus = build(options.corpus, options.seed)
    except CorpusError as error:
        print(f"build_corpus: {error}", file=sys.stderr)
        return 1
    write_jsonl(corpus, options.jsonl)
    counts = {level: sum(1 for item in corpus.definitions if item.level == level) for level in LEVELS}
    print(f"{len(corpus.definitions)} definitions ({', '.join(f'{count} {level}' for level, count in counts.items())})")
    print(f"{len(corpus.examples)} examples: {len(corpus.split('train'))} train, {len(corpus.split('held-out'))} held-out")
    print(f"wrote {options.jsonl}")
    if options.no_train:
        return 0
    metadata = train_model(corpus, options.model, options.seed)
    print(f"wrote {options.model} ({metadata['model_bytes']} bytes, version {metadata['version']})")
    print("held-out: " + ", ".join(f"{key} {value}" for key, value in metadata["metrics"]["held_out"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
