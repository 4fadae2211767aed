"""What the metric files hold, as DataFrames: STS, spread over seeds, reranking, transfer, training
curves and synthesis drops, one row per model (`model_rows`), with the paper's numbers beside ours."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from syncse.data import Triplet
from syncse.evaluate import TEST_TASKS, unit_rows
from syncse.seeds import scores as mean_scores


COLUMNS = [*TEST_TASKS, "avg"]


# Display names of the models the paper names, by metrics name (metrics/sts/<name>.json); which
# variants are rows comes from train.variants, and one not named here is shown by its own name (`label`).
LABELS = {
    "base": "base zero-shot",
    "unsup": "unsup-SimCSE",
    "sup": "sup-SimCSE",
    "partial": "SynCSE-partial",
    "scratch": "SynCSE-scratch",
    "mixed": "SynCSE-mixed",
}


# The paper's Table 2 (RoBERTa-base, 276k training rows, GPT-3.5 data): a different base model and
# data scale from ours, shown beside our rows for orientation only.
PAPER: dict[str, list[float]] = {
    "unsup": [70.16, 81.77, 73.24, 81.36, 80.65, 80.22, 68.56, 76.57],
    "partial": [76.11, 84.49, 79.61, 85.26, 82.60, 83.94, 81.57, 81.94],
    "scratch": [74.61, 83.76, 77.89, 85.09, 82.28, 82.71, 78.88, 80.75],
    "sup": [76.53, 85.21, 80.95, 86.03, 82.57, 85.83, 80.50, 82.52],
}


PAPER_ROWS = {f"paper: {LABELS[v]} (RoBERTa-base)": scores for v, scores in PAPER.items()}


PAPER_RERANK = {"unsup": 46.95, "partial": 46.74, "scratch": 47.63, "sup": 47.09}  # MAP avg of its 4 reranking tasks


PAPER_ORDER = ("sup", "partial", "scratch", "unsup")  # the paper's ranking by STS avg, best first


def read_json(path: str | Path) -> dict[str, Any]:
    """A metrics JSON; a missing file is an error naming the stage output it should have been."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: metrics file missing (run `dvc repro` for the stage that writes it)")
    return json.loads(path.read_text())


def label(name: str) -> str:
    """The row label of metrics name `name`: the paper's name for it, else the name itself."""
    return LABELS.get(name, name)


def model_rows(variants: Sequence[str], shipped: Iterable[str]) -> dict[str, str]:
    """`label -> metrics name` for the base, the trained variants (`train.variants`) and the shipped models, in table order."""
    return {label("base"): "base", **{label(v): v for v in variants}, **{f"{n} (shipped)": n for n in shipped}}


def sts_table(metrics_dir: str | Path, rows: Mapping[str, str], paper: bool = True) -> pd.DataFrame:
    """STS scores, one row per `label -> metrics/sts/<name>.json`, plus the paper's rows."""
    ours = {label: [read_json(Path(metrics_dir) / "sts" / f"{name}.json")[c] for c in COLUMNS] for label, name in rows.items()}
    table = pd.DataFrame.from_dict(ours, orient="index", columns=COLUMNS)
    if paper:
        table = pd.concat([table, pd.DataFrame.from_dict(PAPER_ROWS, orient="index", columns=COLUMNS)])
    table.index.name = "model"
    return table


def spread_table(metrics_dir: str | Path, rows: Mapping[str, str]) -> pd.DataFrame:
    """Per row, the standard deviation over training seeds of each STS column and `n_seeds`, from
    `metrics/sts/<name>.json` (`syncse.seeds.aggregate`); NaN for a model scored once, untrained."""
    metrics = {lab: read_json(Path(metrics_dir) / "sts" / f"{name}.json") for lab, name in rows.items()}
    spread = {lab: {**m["std"], "n_seeds": m["n_seeds"]} for lab, m in metrics.items() if "n_seeds" in m}
    table = pd.DataFrame.from_dict(spread, orient="index").reindex(index=list(rows), columns=[*COLUMNS, "n_seeds"])
    table.index.name = "model"
    return table


def training_summary(metrics_dir: str | Path, variants: Sequence[str]) -> pd.DataFrame:
    """One row per variant from `metrics/train/<variant>.json`: rows, steps, selected step and its dev scores."""
    rows = {}
    for variant in variants:
        m = read_json(Path(metrics_dir) / "train" / f"{variant}.json")
        rows[variant] = {"rows": m["examples"], "steps": m["steps"], "best_step": m["best"]["step"],
                         "stsb_dev": m["best"]["stsb_dev"], "sickr_dev": m["best"]["sickr_dev"],
                         "dev_avg": m["best"]["avg"], "examples_per_second": m["examples_per_second"],
                         "train_seconds": m["train_seconds"]}
    return pd.DataFrame.from_dict(rows, orient="index")


def _family_table(metrics_dir: str | Path, kind: str, rows: Mapping[str, str]) -> pd.DataFrame:
    """The scores of every model of `rows` that ran a task family (`metrics/<kind>/<name>.json`; `{}`: not
    run), a trained row's as the mean over seeds."""
    scores = {lab: mean_scores(read_json(Path(metrics_dir) / kind / f"{name}.json")) for lab, name in rows.items()}
    table = pd.DataFrame.from_dict({lab: s for lab, s in scores.items() if s}, orient="index")
    table.index.name = "model"
    return table


def rerank_table(metrics_dir: str | Path, rows: Mapping[str, str]) -> pd.DataFrame:
    """Reranking MAP x100 of every model that ran it (`metrics/rerank/<name>.json`), with the paper's
    averages beside them when any did."""
    table = _family_table(metrics_dir, "rerank", rows)
    if not table.empty:
        paper = {f"paper: {LABELS[v]} (RoBERTa-base)": {"avg": avg} for v, avg in PAPER_RERANK.items()}
        table = pd.concat([table, pd.DataFrame.from_dict(paper, orient="index")])
        table.index.name = "model"
    return table


def transfer_table(metrics_dir: str | Path, rows: Mapping[str, str]) -> pd.DataFrame:
    """Transfer-task accuracy x100 of every model that ran them (`metrics/transfer/<name>.json`). No paper
    rows: the paper's summary (PAPER.md) names the seven tasks but gives no scores."""
    return _family_table(metrics_dir, "transfer", rows)


def metrics_table(sts: pd.DataFrame, reranked: pd.DataFrame, spread: pd.DataFrame | None = None,
                  transferred: pd.DataFrame | None = None) -> dict[str, dict[str, Any]]:
    """`metrics/table.json`: each of our rows' STS scores (a trained row: the mean over seeds, with
    `std` and `n_seeds` from `spread`), and its reranking MAP avg and transfer accuracy avg where they ran."""
    families = {"rerank_avg": reranked, "transfer_avg": transferred if transferred is not None else pd.DataFrame()}
    averages = {key: table["avg"].dropna().to_dict() if "avg" in table else {} for key, table in families.items()}
    seeded = spread.dropna(subset=["n_seeds"]) if spread is not None else pd.DataFrame()
    return {lab: {**scores, **{key: avg[lab] for key, avg in averages.items() if lab in avg},
                  **({"std": seeded.loc[lab, COLUMNS].to_dict(), "n_seeds": int(seeded.loc[lab, "n_seeds"])} if lab in seeded.index else {})}
            for lab, scores in sts.to_dict(orient="index").items()}


def synth_drops(metrics_dir: str | Path, names: Sequence[str]) -> pd.DataFrame:
    """Synthesis yield as long data: `name, outcome, count` (kept and each drop reason)."""
    rows = []
    for name in names:
        metrics = read_json(Path(metrics_dir) / "synth" / f"{name}.json")
        rows.append({"name": name, "outcome": "kept", "count": metrics["kept"]})
        rows += [{"name": name, "outcome": k.removeprefix("dropped_"), "count": v}
                 for k, v in metrics.items() if k.startswith("dropped_") and v]
    return pd.DataFrame(rows)


def training_curves(metrics_dir: str | Path, variants: Sequence[str]) -> pd.DataFrame:
    """The training logs (`metrics/train/<variant>.csv`, a row per evaluation and seed) stacked, with a `variant` column."""
    frames = []
    for variant in variants:
        path = Path(metrics_dir) / "train" / f"{variant}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: training log missing (run `dvc repro train@{variant}`)")
        frames.append(pd.read_csv(path).assign(variant=variant))
    return pd.concat(frames, ignore_index=True)


def triplet_similarities(encode: Callable[[list[str]], Any], triplets: Mapping[str, Sequence[Triplet]]) -> pd.DataFrame:
    """One row per triplet with a negative: its texts and cosine(anchor, positive), cosine(anchor, negative) under `encode`."""
    frames = []
    for source, items in triplets.items():
        rows = [t for t in items if t.negative]
        anchors = unit_rows(encode([t.anchor for t in rows]))  # (n, dim)
        positives = unit_rows(encode([t.positive for t in rows]))  # (n, dim)
        negatives = unit_rows(encode([t.negative for t in rows]))  # (n, dim)
        frames.append(pd.DataFrame({
            "source": source, "anchor": [t.anchor for t in rows], "positive": [t.positive for t in rows],
            "negative": [t.negative for t in rows], "positive_cosine": (anchors * positives).sum(1),
            "negative_cosine": (anchors * negatives).sum(1)}))
    return pd.concat(frames, ignore_index=True)
