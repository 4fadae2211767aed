"""The four-way study's tables and figures, built from the metric files the stages wrote.

Everything here reads files it is given and returns DataFrames or matplotlib figures; the report
notebook decides what to show and where to write it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from syncse.data import Triplet
from syncse.evaluate import TEST_TASKS

logger = logging.getLogger(__name__)

COLUMNS = [*TEST_TASKS, "avg"]

# The paper's Table 2 (RoBERTa-base, 276k training rows, GPT-3.5 data): a different base model and
# data scale from ours, shown beside our rows for orientation only.
PAPER_ROWS: dict[str, list[float]] = {
    "paper: unsup-SimCSE (RoBERTa-base)": [70.16, 81.77, 73.24, 81.36, 80.65, 80.22, 68.56, 76.57],
    "paper: SynCSE-partial (RoBERTa-base)": [76.11, 84.49, 79.61, 85.26, 82.60, 83.94, 81.57, 81.94],
    "paper: SynCSE-scratch (RoBERTa-base)": [74.61, 83.76, 77.89, 85.09, 82.28, 82.71, 78.88, 80.75],
    "paper: sup-SimCSE (RoBERTa-base)": [76.53, 85.21, 80.95, 86.03, 82.57, 85.83, 80.50, 82.52],
}


def read_json(path: str | Path) -> dict[str, Any]:
    """A metrics JSON; a missing file is an error naming the stage output it should have been."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: metrics file missing (run `dvc repro` for the stage that writes it)")
    return json.loads(path.read_text())


def sts_table(metrics_dir: str | Path, rows: Mapping[str, str], paper: bool = True) -> pd.DataFrame:
    """STS scores, one row per `label -> metrics/sts/<name>.json`, plus the paper's rows."""
    ours = {label: [read_json(Path(metrics_dir) / "sts" / f"{name}.json")[c] for c in COLUMNS] for label, name in rows.items()}
    table = pd.DataFrame.from_dict(ours, orient="index", columns=COLUMNS)
    if paper:
        table = pd.concat([table, pd.DataFrame.from_dict(PAPER_ROWS, orient="index", columns=COLUMNS)])
    table.index.name = "model"
    return table


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub Markdown table with two decimals (no extra dependency)."""
    header = "| " + " | ".join([table.index.name or "", *table.columns]) + " |"
    rule = "|" + "---|" * (len(table.columns) + 1)
    body = ["| " + " | ".join([str(i), *(f"{v:.2f}" for v in row)]) + " |" for i, row in table.iterrows()]
    return "\n".join([header, rule, *body]) + "\n"


def training_curves(metrics_dir: str | Path, variants: Sequence[str]) -> pd.DataFrame:
    """The training logs (`metrics/train/<variant>.csv`) stacked, with a `variant` column."""
    frames = []
    for variant in variants:
        path = Path(metrics_dir) / "train" / f"{variant}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: training log missing (run `dvc repro train@{variant}`)")
        frames.append(pd.read_csv(path).assign(variant=variant))
    return pd.concat(frames, ignore_index=True)


def synth_drops(metrics_dir: str | Path, names: Sequence[str]) -> pd.DataFrame:
    """Synthesis yield as long data: `name, outcome, count` (kept and each drop reason)."""
    rows = []
    for name in names:
        metrics = read_json(Path(metrics_dir) / "synth" / f"{name}.json")
        rows.append({"name": name, "outcome": "kept", "count": metrics["kept"]})
        rows += [{"name": name, "outcome": k.removeprefix("dropped_"), "count": v}
                 for k, v in metrics.items() if k.startswith("dropped_") and v]
    return pd.DataFrame(rows)


def pair_similarities(encode: Any, triplets: Mapping[str, Sequence[Triplet]]) -> pd.DataFrame:
    """Cosine(anchor, positive) and cosine(anchor, hard negative) per source, under `encode`."""
    rows = []
    for source, items in triplets.items():
        with_negative = [t for t in items if t.negative]
        anchors = _unit(encode([t.anchor for t in with_negative]))  # (n, dim)
        for kind in ("positive", "negative"):
            other = _unit(encode([getattr(t, kind) for t in with_negative]))  # (n, dim)
            rows += [{"source": source, "pair": kind, "cosine": float(c)} for c in (anchors * other).sum(1)]
    return pd.DataFrame(rows)


def _unit(vectors: Any) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)


def plot_scores(table: pd.DataFrame) -> plt.Figure:
    """Grouped bars: per-task Spearman x100 by model."""
    long = table.reset_index().melt(id_vars="model", var_name="task", value_name="spearman")
    fig, ax = plt.subplots(figsize=(11, 4.5))
    sns.barplot(long, x="task", y="spearman", hue="model", ax=ax)
    ax.set(ylabel="Spearman x100", xlabel="", ylim=(max(0, long.spearman.min() - 10), 100))
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    return fig


def plot_curves(curves: pd.DataFrame, y: str = "avg") -> plt.Figure:
    """Dev score (or any logged column `y`) against training step, one line per variant."""
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(curves.dropna(subset=[y]), x="step", y=y, hue="variant", marker="o", ax=ax)
    ax.set(ylabel=f"{y} (dev)" if y == "avg" else y)
    fig.tight_layout()
    return fig


def plot_drops(drops: pd.DataFrame) -> plt.Figure:
    """Horizontal bars: kept and dropped-by-reason counts per synthesis run."""
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.barplot(drops, y="outcome", x="count", hue="name", ax=ax)
    fig.tight_layout()
    return fig


def plot_similarities(similarities: pd.DataFrame) -> plt.Figure:
    """Histograms of anchor-positive vs anchor-negative cosine, one panel per source."""
    grid = sns.displot(similarities, x="cosine", hue="pair", col="source", kind="hist",
                       stat="density", common_norm=False, element="step", height=3.2)
    return grid.figure
