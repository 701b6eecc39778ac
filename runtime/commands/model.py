"""`irules model`: train and evaluate the severity classifier."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from runtime.commands.common import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, OutputFormat, require_path, write_atomically

StateOption = Annotated[Path | None, typer.Option("--state", envvar="IRULES_STATE", help="Folder of the embedded SQLite store.")]
DatabaseOption = Annotated[str | None, typer.Option("--database", envvar="IRULES_DATABASE", help="SQLAlchemy URL of the store.")]
SeedOption = Annotated[
    int | None, typer.Option("--seed", help="Seed of the calibration folds; the same data and seed give the same model.")
]

DEFAULT_OUTPUT = Path("severity-model.skops")


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="The severity classifier: train it and measure it.", no_args_is_help=True)
    group.command(name="train")(train_command)
    group.command(name="evaluate")(evaluate_command)
    app.add_typer(group, name="model")


def train_command(
    data: Annotated[
        Path | None, typer.Option("--data", help="JSONL of labelled alerts; rows with split 'held-out' are only measured.")
    ] = None,
    from_store: Annotated[
        bool, typer.Option("--from-store", help="Learn from ended incidents whose severity a person set.")
    ] = False,
    state: StateOption = None,
    database: DatabaseOption = None,
    corpus: Annotated[
        bool,
        typer.Option("--corpus/--no-corpus", help="With --from-store, also train on the shipped corpus (the default)."),
    ] = True,
    output: Annotated[
        Path, typer.Option("--output", help="Model file to write; its metadata goes beside it as .json.")
    ] = DEFAULT_OUTPUT,
    seed: SeedOption = None,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="Text or JSON.")] = OutputFormat.TEXT,
) -> None:
    """Train a severity model and write it with its metadata.

    Exit 1 when the data cannot train a model, 2 on usage errors.
    """
    from runtime.triage.classifier import DEFAULT_SEED, TrainingError
    from runtime.triage.evaluation import DataError

    if (data is None) == (not from_store):
        _usage("pass exactly one of --data FILE or --from-store")
    if from_store and (state is None) == (database is None):
        _usage("--from-store needs exactly one of --state DIR or --database URL")
    if data is not None and (state is not None or database is not None):
        _usage("--state and --database go with --from-store, not with --data")
    if output.suffix != ".skops":
        _usage(f"--output must end in .skops, not {output.name!r}")
    seed = DEFAULT_SEED if seed is None else seed

    try:
        if data is not None:
            require_path(data)
            training, held_out, description = _from_file(data)
        else:
            training, held_out, description = _from_store(state, database, corpus)
        metadata = _train_and_save(training, held_out, output, seed, description)
    except (DataError, TrainingError) as error:
        print(f"irules: {error}", file=sys.stderr)
        raise typer.Exit(EXIT_PROBLEMS) from error
    if output_format is OutputFormat.JSON:
        print(json.dumps(metadata, indent=2, sort_keys=True))
    else:
        print(f"trained on {metadata['training_examples']} examples ({description})")
        print(f"wrote {output} ({metadata['model_bytes']} bytes, version {metadata['version']})")
        for name, figures in metadata["metrics"].items():
            print(f"{name}: " + ", ".join(f"{key} {value}" for key, value in figures.items()))
    raise typer.Exit(EXIT_OK)


def _from_file(path: Path) -> tuple[list[Any], list[Any], str]:
    from runtime.triage.evaluation import HELD_OUT, DataError, read_jsonl

    if path.suffix not in (".jsonl", ".json"):
        raise DataError(f"{path}: training reads JSONL (one labelled alert per line); evaluate also reads Prometheus rule files")
    rows = read_jsonl(path)
    training = [example for example, split in rows if split != HELD_OUT]
    held_out = [example for example, split in rows if split == HELD_OUT]
    if not training:
        raise DataError(f"{path} has no training rows (every row has split {HELD_OUT!r})")
    return training, held_out, str(path)


def _from_store(state: Path | None, database: str | None, corpus: bool) -> tuple[list[Any], list[Any], str]:
    from runtime.store import Store, StoreError, database_url
    from runtime.triage import build_corpus
    from runtime.triage.evaluation import DataError
    from runtime.triage.learning import examples_from_store

    try:
        store = Store.open(database_url(state, database))
    except StoreError as error:
        print(f"irules: {error}", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE) from error
    try:
        found = examples_from_store(store)
    finally:
        store.close()
    if not found.examples:
        raise DataError(
            f"the store has no resolved or closed incident with alerts whose severity a person set "
            f"({found.incidents} such incidents, {found.without_alerts} of them without alerts)"
        )
    description = f"{len(found.examples)} incidents from the store"
    training, held_out = list(found.examples), []
    if corpus:
        shipped = build_corpus.build()
        training += shipped.split("train")
        held_out = shipped.split("held-out")
        description += " and the shipped corpus"
    return training, held_out, description


def _train_and_save(training: list[Any], held_out: list[Any], output: Path, seed: int, description: str) -> dict[str, Any]:
    from runtime.triage import classifier
    from runtime.triage.evaluation import LabelledSet, evaluate

    pipeline = classifier.train(training, seed)
    metrics = {}
    if held_out:
        model = classifier.Classifier(pipeline, {"version": "unsaved"})
        metrics["held_out"] = evaluate(model, LabelledSet(held_out, "irules", "held-out split")).summary()
    return classifier.save(
        pipeline,
        output,
        data_sha256=classifier.data_digest(training),
        seed=seed,
        examples=len(training),
        metrics=metrics,
        extra={"training_data": description},
    )


def evaluate_command(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="Labelled alerts: JSONL (rows with split 'train' are left out), a Prometheus rule file, "
            "or the awesome-prometheus-alerts rules.yml.",
        ),
    ],
    model: Annotated[Path | None, typer.Option("--model", help="Model file; the shipped model by default.")] = None,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="Text or JSON.")] = OutputFormat.TEXT,
    picture: Annotated[Path | None, typer.Option("--picture", help="Also write the confusion matrix as an SVG file.")] = None,
    threshold: Annotated[
        float,
        typer.Option("--threshold", min=0.01, max=1.0, help="Confidence threshold, as a fraction, for the confident share."),
    ] = 0.8,
) -> None:
    """Measure a model on labelled alerts: precision, recall and F1 per level, macro F1, confusion matrix.

    Exit 1 when the model is rejected or the data has no usable alert, 2 on usage errors.
    """
    from runtime.triage import classifier
    from runtime.triage.evaluation import DataError, evaluate, format_text, load_labelled, render_svg

    require_path(data)
    if picture is not None and picture.suffix != ".svg":
        _usage(f"--picture writes SVG, so its name must end in .svg, not {picture.name!r}")
    try:
        loaded = classifier.load(model)
        labelled = load_labelled(data)
    except (classifier.ModelError, DataError) as error:
        print(f"irules: {error}", file=sys.stderr)
        raise typer.Exit(EXIT_PROBLEMS) from error
    report = evaluate(loaded, labelled, threshold)
    if output_format is OutputFormat.JSON:
        print(json.dumps(report.to_json(), indent=2))
    else:
        sys.stdout.write(format_text(report))
    if picture is not None:
        write_atomically(picture, render_svg(report))
    raise typer.Exit(EXIT_OK)


def _usage(message: str) -> None:
    print(f"irules: {message}", file=sys.stderr)
    raise typer.Exit(EXIT_USAGE)
