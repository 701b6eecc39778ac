"""Print the figures of the shipped severity model, and how fast it loads and predicts.

Two data sets:

- the held-out split of irules' own corpus (`runtime/triage/corpus`), whose
  definitions the model never saw in any variant;
- the alert rules of samber/awesome-prometheus-alerts (CC BY 4.0), read from
  ../shared/data/awesome-prometheus-alerts/rules.yml and never copied. Its
  rules grade critical, warning and info; `runtime/triage/evaluation.py`
  explains how predictions map onto that scale.

For each it prints precision, recall and F1 per level, macro F1, the confusion
matrix, and writes the matrix as an SVG picture to bench/out/. The timings are
the best of `--repeat` runs of `classifier.load()` (with scikit-learn already
imported) and of predicting the collection's alerts one by one.

Usage:
    python bench/evaluate_classifier.py
    python bench/evaluate_classifier.py --model path/to/model.skops --repeat 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from check_bench import machine  # noqa: E402

from runtime.triage import build_corpus, classifier  # noqa: E402
from runtime.triage.evaluation import LabelledSet, evaluate, format_text, load_labelled, render_svg  # noqa: E402

COLLECTION = REPO.parent / "shared" / "data" / "awesome-prometheus-alerts" / "rules.yml"
OUT = REPO / "bench" / "out"


def best_of(repeat: int, action) -> float:  # type: ignore[no-untyped-def]
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        timings.append(time.perf_counter() - start)
    return min(timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="Model file; the shipped model by default.")
    parser.add_argument("--repeat", type=int, default=3, help="Runs per timing; the best is printed.")
    options = parser.parse_args()

    import sklearn.pipeline  # noqa: F401  (import once, so the load timing leaves it out)

    model = classifier.load(options.model)
    print(f"model: {model.version} ({model.path}, {model.path.stat().st_size} bytes)" if model.path else model.version)
    print("machine: " + ", ".join(f"{key} {value}" for key, value in machine().items()))
    print()
    OUT.mkdir(parents=True, exist_ok=True)

    corpus = build_corpus.build()
    data_sets = [("held-out", LabelledSet(corpus.split("held-out"), "irules", "irules corpus, held-out split"))]
    if COLLECTION.exists():
        data_sets.append(("collection", load_labelled(COLLECTION)))
    else:
        print(f"skipping the collection: {COLLECTION} not found\n")
    for name, labelled in data_sets:
        report = evaluate(model, labelled)
        print(f"== {name}")
        sys.stdout.write(format_text(report))
        picture = OUT / f"classifier-{name}.svg"
        picture.write_text(render_svg(report, title=f"Severity model {model.version}: {name}"), encoding="utf-8")
        print(f"picture: {picture.relative_to(REPO)}\n")

    load_s = best_of(options.repeat, lambda: classifier.load(options.model))
    alerts = [example.alert for example in data_sets[-1][1].examples]
    predict_s = best_of(options.repeat, lambda: [model.predict(alert) for alert in alerts])
    batch_s = best_of(options.repeat, lambda: model.predict_many(alerts))
    print(f"load: {load_s:.2f} s (best of {options.repeat})")
    print(f"predict one at a time: {predict_s / len(alerts) * 1000:.2f} ms per alert over {len(alerts)} alerts")
    print(f"predict in one batch: {batch_s / len(alerts) * 1000:.3f} ms per alert")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
