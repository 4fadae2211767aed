"""Why SentEval and ours part on a decoder: SentEval's classifier on a task's features, raw and with the
columns of largest mean centred, beside ours.

    PYTHONPATH=$PWD:~/senteval-ref/SentEval python scripts/senteval_offsets.py \\
        --model partial=artifacts/models/partial/seed-42 --task mrpc --centre 0 1 3 all

TREC and MRPC only (SentEval's KFoldClassifier: the penalty by 10-fold CV on train, then test), on the
features `syncse.transfer` builds from the cached embeddings (SentEval's rows and order: `senteval_compare`
found them alike). `--centre k` subtracts the training mean from the k columns of largest absolute mean
(`all`: every column, as our classifier does); the rest stay raw, as SentEval feeds them. Prints a
markdown table and writes `results/transfer/<name>-offsets-<task>.json` (README "Transfer tasks").
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from senteval_compare import SIMCSE_TEST_PARAMS, cached_encoder, parse_and_start

from syncse.data import write_json
from syncse.transfer import SEED, TASKS, features, train_cv

logger = logging.getLogger("senteval_offsets")


def centred(x: np.ndarray, mean: np.ndarray, k: int | None) -> np.ndarray:
    """`x` with the training `mean` taken from its k columns of largest absolute mean (None: from all), as float32
    (SentEval's input type)."""
    shift = mean.copy()
    if k is not None:
        shift[np.argsort(-np.abs(mean))[k:]] = 0.0
    return (x - shift).astype(np.float32)


def senteval_kfold(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], classes: int) -> tuple[float, float]:
    """SentEval's KFoldClassifier with SimCSE's test-mode params: its CV accuracy on train and its test accuracy."""
    from senteval.tools.validation import KFoldClassifier

    config = {**SIMCSE_TEST_PARAMS, "nclasses": classes, "seed": SEED, "nhid": 0}
    cv, test_accuracy, _ = KFoldClassifier({"X": train[0], "y": train[1]}, {"X": test[0], "y": test[1]}, config).run()
    return float(cv), float(test_accuracy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, metavar="NAME=MODEL", help="as senteval_compare's --model")
    parser.add_argument("--task", default="mrpc", choices=["mrpc", "trec"])
    parser.add_argument("--centre", nargs="+", default=["0", "1", "3", "all"], help="column counts to centre, or all")
    args, params = parse_and_start(parser)
    name, _, model = args.model.partition("=")
    encoder = cached_encoder(name, model, "auto", params)
    splits = TASKS[args.task].load(params.data.root)
    train = (features(splits["train"], encoder.embed), splits["train"].labels)
    test = (features(splits["test"], encoder.embed), splits["test"].labels)
    mean = train[0].mean(axis=0)
    top = np.argsort(-np.abs(mean))[:5]
    record = {"model": model, "task": args.task, "largest_column_means": {int(c): round(float(mean[c]), 2) for c in top},
              "median_abs_column_mean": round(float(np.median(np.abs(mean))), 3),
              "ours": train_cv(train, test), "senteval": {}}
    classes = len(np.unique(train[1]))
    for spec in args.centre:
        k = None if spec == "all" else int(spec)
        started = time.perf_counter()
        cv, accuracy = senteval_kfold((centred(train[0], mean, k), train[1]), (centred(test[0], mean, k), test[1]), classes)
        record["senteval"][spec] = {"cv": cv, "test": accuracy, "seconds": round(time.perf_counter() - started, 1)}
        logger.info("%s, %s column(s) centred: SentEval CV %.2f, test %.2f", args.task, spec, cv, accuracy)
    write_json(Path(args.out) / f"{name}-offsets-{args.task}.json", record)
    print("| columns centred | SentEval CV on train | SentEval test | ours (all centred, L-BFGS) |\n|---|---|---|---|")
    for spec, row in record["senteval"].items():
        print(f"| {spec} | {row['cv']:.2f} | {row['test']:.2f} | {record['ours']:.2f} |")
    print(json.dumps({k: record[k] for k in ("largest_column_means", "median_abs_column_mean")}))


if __name__ == "__main__":
    main()
