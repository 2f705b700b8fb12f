"""Message understanding on real complaint text: category accuracy and classification speed.

    .venv/bin/python benchmarks/parse_eval.py [--corpus ../shared/corpus] [--folds 5] [--repeats 3]

- taidi2020c_dev.jsonl (298 labelled messages, 7 categories): stratified k-fold cross-validation,
  repeated. Each fold goes through what `gridbot train` does — read_history, train (with the keyword
  table), Model.save and Model.load — and the held-out messages through `Classifier`. Printed:
  accuracy and macro-F1 per repeat and mean ± sd, with ablations (the model without/with the table's
  words, without the table at classification, plain character TF-IDF + linear SVM as the reference), the
  confusion matrix of the first repeat, and how confidence separates right from wrong.
- The keyword table alone (benchmarks/taidi2020c_categories.yaml, built from the taxonomy, not from
  the messages) on the whole dev file.
- shangluo_mailbox_dev.jsonl (831 letters): every letter through the classifier, messages/s.

Run by hand; not part of the tests. The corpus README says where the data comes from.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import confusion_matrix, f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from handlers.classify import Classifier, KeywordTable, Model, read_history, train

ROOT = Path(__file__).resolve().parents[1]
TABLE_FILE = Path(__file__).resolve().parent / "taidi2020c_categories.yaml"

Examples = list[tuple[str, str]]
# A system under test: given the training part of a fold, a function that labels a message.
System = Callable[[Examples, Path], Callable[[str], str]]


def trained(table: KeywordTable, *, table_words: bool, table_weight: float) -> System:
    """The `gridbot train` path: history file → read_history → train → save → load → Classifier."""

    def fit(examples: Examples, tmp: Path) -> Callable[[str], str]:
        history = tmp / "history.jsonl"
        history.write_text(
            "".join(json.dumps({"text": t, "category": c}, ensure_ascii=False) + "\n" for t, c in examples),
            encoding="utf-8",
        )
        model_file = tmp / "model.joblib"
        train(read_history(history), table=table if table_words else None).save(model_file)
        classifier = Classifier(table, Model.load(model_file), table_weight=table_weight)
        return lambda text: classifier.classify(text).category

    return fit


def plain_char_svm(examples: Examples, _tmp: Path) -> Callable[[str], str]:
    """The reference the brief quotes (77.7 %): character 1–3-gram TF-IDF, LinearSVC, defaults."""
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3))
    svm = LinearSVC().fit(vectorizer.fit_transform([t for t, _ in examples]), [c for _, c in examples])
    return lambda text: str(svm.predict(vectorizer.transform([text]))[0])


def cross_validate(system: System, data: Examples, folds: int, repeat: int) -> list[str]:
    """Held-out predictions for every message, folds stratified by category."""
    labels = [c for _, c in data]
    predicted = [""] * len(data)
    splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=repeat).split(data, labels)
    for train_rows, test_rows in splits:
        with tempfile.TemporaryDirectory() as tmp:
            label = system([data[i] for i in train_rows], Path(tmp))
            for i in test_rows:
                predicted[i] = label(data[i][0])
    return predicted


def report_cv(name: str, system: System, data: Examples, folds: int, repeats: int) -> list[str]:
    truth = [c for _, c in data]
    accuracies, f1s = [], []
    first: list[str] = []
    for repeat in range(repeats):
        predicted = cross_validate(system, data, folds, repeat)
        first = first or predicted
        accuracies.append(sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth))
        f1s.append(float(f1_score(truth, predicted, average="macro")))
    print(
        f"{name:44s} accuracy {_mean_sd(accuracies)}  macro-F1 {_mean_sd(f1s)}  "
        f"per repeat {' '.join(f'{a:.1%}' for a in accuracies)}"
    )
    return first


def print_confusion(truth: Sequence[str], predicted: Sequence[str]) -> None:
    """Rows: the true category; columns: the predicted one, headed by its first two characters."""
    names = sorted(set(truth))
    columns = names + sorted(set(predicted) - set(names))
    matrix = confusion_matrix(truth, predicted, labels=columns)
    width = max(map(_display_width, columns))
    print(" " * (width + 2) + "".join(f"{c[:2]:>4s}" for c in columns) + "  recall")
    for name, row in zip(names, matrix, strict=False):
        cells = "".join(f"{n:6d}" for n in row)
        pad = " " * (width - _display_width(name))
        print(f"  {name}{pad}{cells}   {row[columns.index(name)] / row.sum():.0%}")


def _display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def report_confidence(table: KeywordTable, data: Examples, folds: int) -> None:
    """Is the confidence worth asking the leader about (Services.confirm_below, 0.5)?"""
    right: list[float] = []
    wrong: list[float] = []
    labels = [c for _, c in data]
    for train_rows, test_rows in StratifiedKFold(folds, shuffle=True, random_state=0).split(data, labels):
        classifier = Classifier(table, train([data[i] for i in train_rows], table=table))
        for i in test_rows:
            prediction = classifier.classify(data[i][0])
            (right if prediction.category == data[i][1] else wrong).append(prediction.confidence)
    for low, high in ((0.0, 0.5), (0.5, 0.8), (0.8, 1.01)):
        n_right = sum(low <= c < high for c in right)
        n = n_right + sum(low <= c < high for c in wrong)
        if n:
            print(f"  confidence {low:.1f}–{min(high, 1):.1f}: {n:4d} messages, {n_right / n:.0%} right")


def understand_letters(classifier: Classifier, letters: Sequence[str]) -> Counter[str]:
    """Every letter through the classifier (nothing may crash); what it made of them.
    The place/phone extraction counts of `gridbot parse` belong here too."""
    counts: Counter[str] = Counter()
    for text in letters:
        prediction = classifier.classify(text)
        counts[prediction.category] += 1
        counts["(urgent)"] += classifier.is_urgent(text)
        counts["(confidence < 0.5)"] += prediction.confidence < 0.5
    return counts


def classification_speed(classifier: Classifier, letters: Sequence[str], rounds: int = 3) -> float:
    """Messages per second, one message per call as the bot does it; the best of a few rounds."""
    classifier.classify(letters[0])
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for text in letters:
            classifier.classify(text)
        best = min(best, time.perf_counter() - started)
    return len(letters) / best


def _mean_sd(values: Sequence[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1%} ± {sd:.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    table = KeywordTable.load(TABLE_FILE)
    data = read_history(args.corpus / "taidi2020c_dev.jsonl")
    print(
        f"taidi2020c_dev: {len(data)} messages, {len(set(c for _, c in data))} categories; "
        f"{args.repeats} × stratified {args.folds}-fold CV\n"
    )

    whole = [Classifier(table).classify(text).category for text, _ in data]
    hits = sum(p == c for p, (_, c) in zip(whole, data, strict=True))
    print(
        f"keyword table alone, whole dev file: {hits / len(data):.1%} ({hits}/{len(data)}), "
        f"macro-F1 {f1_score([c for _, c in data], whole, average='macro'):.1%}, "
        f"no keyword at all: {whole.count(table.default)}\n"
    )

    report_cv("plain char 1-3 TF-IDF + LinearSVC (reference)", plain_char_svm, data, args.folds, args.repeats)
    report_cv(
        "model, history only",
        trained(table, table_words=False, table_weight=0.0),
        data,
        args.folds,
        args.repeats,
    )
    report_cv(
        "model, history + table words",
        trained(table, table_words=True, table_weight=0.0),
        data,
        args.folds,
        args.repeats,
    )
    first = report_cv(
        "model + table (what the bot runs)",
        trained(table, table_words=True, table_weight=Classifier(table).table_weight),
        data,
        args.folds,
        args.repeats,
    )
    print("\nconfusion matrix, model + table, first repeat:")
    print_confusion([c for _, c in data], first)
    print("\nconfidence of model + table on held-out messages (one repeat):")
    report_confidence(table, data, args.folds)

    mailbox = (args.corpus / "shangluo_mailbox_dev.jsonl").read_text(encoding="utf-8")
    letters = [json.loads(line)["text"] for line in mailbox.splitlines() if line.strip()]
    started = time.perf_counter()
    model = train(data, table=table)
    print(
        f"\ntraining on all {len(data)} messages: {time.perf_counter() - started:.2f} s "
        f"(temperature {model.temperature:.3f})"
    )
    chars = sum(map(len, letters)) / len(letters)
    print(f"shangluo mailbox: {len(letters)} letters, {chars:.0f} characters on average")
    for name, classifier in [
        ("keyword table", Classifier(table)),
        ("model + table", Classifier(table, model)),
    ]:
        counts = understand_letters(classifier, letters)
        print(
            f"  {name:14s} {classification_speed(classifier, letters):7,.0f} messages/s   "
            + ", ".join(f"{k} {v}" for k, v in counts.most_common())
        )

    parse_letters(args.corpus, letters, data)


def parse_letters(corpus: Path, letters: Sequence[str], data: Examples) -> None:
    """Every letter through `gridbot parse` itself (a subprocess, the command offices run): nothing
    may fail; how many yield a place and a phone; messages per second (startup included), then the
    same `understand()` in-process for the per-message rate on one core."""
    import os
    import subprocess
    import sys
    import tempfile

    from bot.config import DEMO_GRID_FILE
    from handlers.places import GridIndex
    from handlers.understand import understand
    from storage.grids import read_grid_file

    repo = Path(__file__).resolve().parent.parent
    table_file = repo / "benchmarks" / "taidi2020c_categories.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        model_file = Path(tmp) / "taidi.joblib"
        history = Path(tmp) / "history.jsonl"
        history.write_text(
            "\n".join(json.dumps({"text": t, "category": c}, ensure_ascii=False) for t, c in data), encoding="utf-8"
        )
        gridbot = [sys.executable, "-m", "bot.cli"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDBOT_")}
        subprocess.run(
            [*gridbot, "train", str(history), "--out", str(model_file), "--categories", str(table_file)],
            check=True,
            env=env,
            cwd=repo,
            capture_output=True,
        )
        lines = "\n".join(json.dumps({"text": t}, ensure_ascii=False) for t in letters) + "\n"
        started = time.perf_counter()
        done = subprocess.run(
            [*gridbot, "parse", "--model", str(model_file), "--categories", str(table_file)],
            input=lines,
            capture_output=True,
            text=True,
            env=env,
            cwd=repo,
            check=True,
        )
        elapsed = time.perf_counter() - started
        rows = [json.loads(line) for line in done.stdout.splitlines()]
        table = KeywordTable.load(table_file)
        classifier = Classifier(table, Model.load(model_file))
    errors = sum("error" in r for r in rows)
    places = sum(bool(r.get("place")) for r in rows)
    phones = sum(bool(r.get("phone")) for r in rows)
    grids = sum(bool(r.get("grid")) for r in rows)
    print(
        f"\ngridbot parse on {len(letters)} mailbox letters: {len(rows)} lines out, {errors} errors, "
        f"place found in {places}, phone in {phones}, a demo grid in {grids}; "
        f"{len(rows) / elapsed:,.0f} messages/s including process start ({elapsed:.2f} s)"
    )
    index = GridIndex.from_file(read_grid_file(DEMO_GRID_FILE))
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        for text in letters:
            understand(text, classifier=classifier, grids=index)
        best = max(best, len(letters) / (time.perf_counter() - started))
    print(f"understand() in-process, one core: {best:,.0f} messages/s (best of 3)")


if __name__ == "__main__":
    main()
