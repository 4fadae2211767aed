"""The report's figures (matplotlib, seaborn): scores, training curves, synthesis drops, judge cosines."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


def plot_scores(table: pd.DataFrame) -> plt.Figure:
    """Grouped bars: per-task Spearman x100 by model, legend beside the axes."""
    long = table.reset_index().melt(id_vars="model", var_name="task", value_name="spearman")
    fig, ax = plt.subplots(figsize=(11, 4.5))
    sns.barplot(long, x="task", y="spearman", hue="model", ax=ax)
    ax.set(ylabel="Spearman x100", xlabel="", ylim=(max(0, long.spearman.min() - 10), 100))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    return fig


def plot_curves(curves: pd.DataFrame, zero_shot: float, y: str = "avg") -> plt.Figure:
    """Dev score against training step, one line per variant (the mean over seeds, a band of ± one
    standard deviation where there are several), the zero-shot base as a dashed line, legend outside."""
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    sns.lineplot(curves.dropna(subset=[y]), x="step", y=y, hue="variant", marker="o", errorbar="sd", ax=ax)
    ax.axhline(zero_shot, color="0.3", linestyle="--", linewidth=1, label=f"base zero-shot ({zero_shot:.2f})")
    ax.set(ylabel="dev avg (STS-B dev, SICK-R trial)" if y == "avg" else y, xlabel="training step")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    return fig


def plot_drops(drops: pd.DataFrame) -> plt.Figure:
    """Horizontal bars: kept and dropped-by-reason counts per synthesis run."""
    fig, ax = plt.subplots(figsize=(8, 4))
    sns.barplot(drops.assign(outcome=drops.outcome.str.replace("_", " ")), y="outcome", x="count", hue="name", ax=ax)
    ax.set(xlabel="triplets", ylabel="")
    ax.legend(title="", frameon=False)
    fig.tight_layout()
    return fig


def plot_similarities(sims: pd.DataFrame) -> plt.Figure:
    """Histograms of anchor-positive vs anchor-negative cosine, one panel per source."""
    long = sims.melt(id_vars="source", value_vars=["positive_cosine", "negative_cosine"], var_name="pair", value_name="cosine")
    long["pair"] = long.pair.str.removesuffix("_cosine")
    grid = sns.displot(long, x="cosine", hue="pair", col="source", kind="hist",
                       stat="density", common_norm=False, element="step", height=3.2)
    return grid.figure
