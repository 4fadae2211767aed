"""The study report: tables, figures and the written reading, built from the metric files the stages wrote.

Everything here reads the files it is given and returns Markdown, DataFrames or matplotlib figures;
the report notebook decides what to show. `render_html` turns the executed notebook into one
self-contained HTML page (`python -m syncse.report NOTEBOOK HTML`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import logging
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from syncse.config import EvaluateConfig, Params
from syncse.data import Triplet, atomic_writer
from syncse.evaluate import TEST_TASKS, unit_rows
from syncse.seeds import scores as mean_scores

logger = logging.getLogger(__name__)

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

# LLM settings worth printing (the rest are paths, URLs and runtime plumbing).
LLM_SHOWN = ("backend", "model", "aids", "usd_per_1m_input", "usd_per_1m_output", "max_budget_usd", "max_budget_tokens")


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


def _cell(table: pd.DataFrame, spread: pd.DataFrame | None, row: Any, column: str) -> str:
    """`54.93 ± 0.12` for a row trained with several seeds (mean ± std), else `54.93`."""
    value = f"{table.loc[row, column]:.2f}"
    if spread is None or row not in spread.index or not spread.loc[row, "n_seeds"] > 1:
        return value
    return f"{value} \u00b1 {spread.loc[row, column]:.2f}"


def markdown_table(table: pd.DataFrame, spread: pd.DataFrame | None = None) -> str:
    """A GitHub Markdown table with two decimals (no extra dependency); mean ± std where `spread` has several seeds."""
    header = "| " + " | ".join([table.index.name or "", *table.columns]) + " |"
    rule = "|" + "---|" * (len(table.columns) + 1)
    body = ["| " + " | ".join([str(i), *(_cell(table, spread, i, c) for c in table.columns)]) + " |" for i in table.index]
    return "\n".join([header, rule, *body]) + "\n"


def _md(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> str:
    """A Markdown table from ready-formatted cells; `align` gives one of l/r per column (default: l, then r)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(str(c) for c in line) + " |" for line in lines) + "\n"


def _signed(value: float) -> str:
    return f"{value:+.2f}".replace("-", "\u2212")


def _cosine(value: float) -> str:
    return f"{value:.2f}".replace("-0.00", "0.00").replace("-", "\u2212")


def _int(value: float) -> str:
    return f"{int(round(value)):,}"


def git_revision(root: str | Path) -> str:
    """The short commit of the checkout at `root`, with `+changes` when tracked files differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short=10", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        logger.warning("%s is not a git checkout: the report names no revision", root)
        return "unknown (not a git checkout)"
    return commit + (" +changes" if dirty else "")


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


def header_markdown(title: str, revision: str, built: dt.datetime, params: Params, summary: pd.DataFrame) -> str:
    """The report's title block: when and from what it was built, and the training scale it shows."""
    rows = sorted(set(summary["rows"]))
    steps = sorted(set(summary["steps"]))
    scale = (f"**{_int(rows[0])} training rows per variant**" if len(rows) == 1
             else "training rows per variant: " + ", ".join(f"{v} {_int(n)}" for v, n in summary["rows"].items()))
    step_text = f"{_int(steps[0])} steps each" if len(steps) == 1 else "steps: " + ", ".join(f"{v} {_int(n)}" for v, n in summary["steps"].items())
    seeds = params.train.seeds
    return (f"# {title}\n\n"
            f"Built {built:%Y-%m-%d %H:%M} UTC from revision `{revision}`; profile `{params.profile}`, data seed {params.seed}, "
            f"training seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}.  \n"
            f"Training base `{params.train.base}`; {scale}, batch {params.train.batch_size}, {step_text}; "
            f"{len(summary)} trained variants.\n")


def results_markdown(table: pd.DataFrame, base: str, trained: Sequence[str], spread: pd.DataFrame | None = None) -> str:
    """The STS table with each trained row's delta to the base's average; the best trained row in bold;
    mean ± std over seeds where `spread` has several."""
    best = table.loc[list(trained), "avg"].idxmax()
    body = []
    for row_label, row in table.iterrows():
        cells = [_cell(table, spread, row_label, c) for c in table.columns]
        delta = _signed(row["avg"] - table.loc[base, "avg"]) if row_label in trained else ""
        name = str(row_label)
        if row_label == best:
            name, cells, delta = f"**{name} (best)**", [f"**{c}**" for c in cells], f"**{delta}**"
        body.append([name, *cells, delta])
    seeded = spread is not None and (spread["n_seeds"] > 1).any()
    return (_md(["model", *COLUMNS, "\u0394 avg"], body)
            + f"\nSpearman x100 on the test sets{'; a ± b: mean ± standard deviation over training seeds' if seeded else ''}. "
            f"\u0394 avg: difference to the {base} average "
            f"({table.loc[base, 'avg']:.2f}); bold: the best trained variant. The paper's rows are a different base "
            "model and data scale, for orientation only.\n")


def delta_markdown(table: pd.DataFrame, base: str, trained: Sequence[str]) -> str:
    """Per-task differences of each trained variant to the base zero-shot."""
    deltas = table.loc[list(trained)] - table.loc[base]
    return _md(["variant", *COLUMNS], [[label, *(_signed(v) for v in row)] for label, row in deltas.iterrows()])


def selection_markdown(summary: pd.DataFrame, dev: Mapping[str, Mapping[str, float]], base_dev: float) -> str:
    """Dev scores of each selected checkpoint (`metrics/train`) and of the saved model re-scored (`metrics/dev`)."""
    body = [[label(v), f"{_int(r.best_step)} of {_int(r.steps)}", f"{r.stsb_dev:.2f}", f"{r.sickr_dev:.2f}",
             f"{r.dev_avg:.2f}", _signed(r.dev_avg - base_dev), f"{dev[v]['avg']:.2f}", _int(r.rows),
             f"{r.examples_per_second:.1f}", f"{r.train_seconds / 60:.1f} min"]
            for v, r in summary.iterrows()]
    header = ["variant", "selected step", "STS-B dev", "SICK-R trial", "dev avg", "\u0394 zero-shot", "dev avg (evaluation)",
              "rows", "examples/s", "training time"]
    return (_md(header, body) + f"\nThe checkpoint kept is the one with the best dev avg (mean of STS-B dev and SICK-R trial), "
            f"scored during training; \u0394 zero-shot: against the base's {base_dev:.2f}. "
            "*dev avg (evaluation)*: the saved model re-scored by the evaluation stage (longer inputs).\n")


def _value(value: Any) -> str:
    if is_dataclass(value):
        return ", ".join(f"{f.name} {_value(getattr(value, f.name))}" for f in fields(value))
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "none"}[value]
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return _int(value)
    return f"`{value}`" if isinstance(value, str) else str(value)


def settings_markdown(params: Params) -> str:
    """The resolved training, synthesis and evaluation settings (profile applied) as three tables."""
    train = [[f.name, _value(getattr(params.train, f.name))] for f in fields(params.train) if f.name not in ("variants", "scratch_share")]
    train += [[f"variants.{v}", ", ".join(f"{k} {_value(x)}" for k, x in overlay.items()) or "defaults"]
              for v, overlay in params.train.variants.items()]
    synth = [[f"llm.{k}", _value(getattr(params.llm, k))] for k in LLM_SHOWN]
    synth += [[f.name, _value(getattr(params.synth, f.name))] for f in fields(params.synth)]
    evaluate = [[f.name, _value(getattr(params.evaluate, f.name))] for f in fields(params.evaluate) if f.name != "anchors"]
    return "\n".join([
        "**Training** (`train`)", "", _md(["setting", "value"], train, "ll"),
        "**Synthesis** (`llm`, `synth`)", "", _md(["setting", "value"], synth, "ll"),
        "**Evaluation** (`evaluate`)", "", _md(["setting", "value"], evaluate, "ll"),
    ])


def reading_markdown(table: pd.DataFrame, tie_margin: float, seeds: Sequence[int], spread: pd.DataFrame | None = None) -> str:
    """Which of the paper's orderings hold in `table` (rows labelled by `label`). A gap is a win only
    when it exceeds both rows' standard deviation over training seeds (`spread`); where a row has one
    seed, so no measured spread, only when it exceeds `tie_margin`."""
    avg = {name: float(table.loc[label(name), "avg"]) for name in LABELS if label(name) in table.index}
    sd = {name: _seed_std(spread, name) for name in avg}
    trained = [v for v in avg if v != "base"]

    def margin(*names: str) -> float:
        return spread_margin([sd[n] for n in names], tie_margin)

    def shown(name: str) -> str:
        return f"{avg[name]:.2f}" + (f" \u00b1 {sd[name]:.2f}" if sd[name] else "")

    if all(sd[v] is not None for v in trained):
        lines = [f"{len(seeds)} training seeds per variant ({', '.join(map(str, seeds))}; the same rows): a difference reads "
                 "as a win only when it exceeds the standard deviation over seeds of both rows (shown as \u00b1); "
                 "smaller ones are ties.", ""]
    elif not any(sd[v] is not None for v in trained):
        lines = [f"One seed per variant (seed {seeds[0]}), so the run-to-run spread is not measured here: differences "
                 f"within {tie_margin:.2f} points (`report.tie_margin`) are read as ties.", ""]
    else:
        lines = ["Rows trained with several seeds are compared by their standard deviation over seeds; a comparison with a "
                 f"row of one seed (no measured spread) reads gaps within {tie_margin:.2f} points (`report.tie_margin`) as ties.", ""]
    ranked = [v for v in PAPER_ORDER if v in avg]
    for i, high in enumerate(ranked):
        for low in ranked[i + 1:]:
            gap, paper_gap, tie = avg[high] - avg[low], PAPER[high][-1] - PAPER[low][-1], margin(high, low)
            lines.append(f"- {label(high)} > {label(low)}: **{verdict(gap, tie)}** ({shown(high)} vs {shown(low)}, "
                         f"{_signed(gap)}; paper {_signed(paper_gap)}).")
    above = [v for v in trained if avg[v] - avg["base"] > margin(v, "base")]
    below = [v for v in trained if avg[v] - avg["base"] < -margin(v, "base")]

    def names(vs: Sequence[str]) -> str:
        return ", ".join(f"{label(v)} ({_signed(avg[v] - avg['base'])})" for v in vs) or "none"
    lines += ["", f"Against the base zero-shot ({avg['base']:.2f}): above it by more than the margin: {names(above)}; "
              f"below it: {names(below)}; the rest within the margin."]
    if {"mixed", "partial", "scratch"} <= set(avg):
        low, high = sorted((avg["partial"], avg["scratch"]))
        tie = margin("mixed", "partial", "scratch")
        where = "between" if low - tie <= avg["mixed"] <= high + tie else "outside"
        lines.append(f"SynCSE-mixed ({shown('mixed')}) lands {where} partial ({shown('partial')}) and scratch ({shown('scratch')}).")
    return "\n".join(lines) + "\n"


def spread_margin(stds: Iterable[float | None], tie_margin: float) -> float:
    """The gap rows must exceed to differ (the spread rule): the largest of their standard deviations
    over seeds, or `tie_margin` where one has none measured (None: one seed)."""
    known = list(stds)
    return tie_margin if None in known else max(known)  # type: ignore[type-var]


def verdict(gap: float, tie: float) -> str:
    """How `high - low = gap` reads under the spread rule: `holds` above `tie`, `reversed` below `-tie`, else `a tie`."""
    return "holds" if gap > tie else "reversed" if gap < -tie else "a tie"


def _seed_std(spread: pd.DataFrame | None, name: str) -> float | None:
    """The standard deviation over seeds of `name`'s STS avg; 0 for the base (one fixed model, scored
    deterministically); None for a trained row with one seed (not measured)."""
    if name == "base":
        return 0.0
    row = label(name)
    if spread is None or row not in spread.index or not spread.loc[row, "n_seeds"] > 1:
        return None
    return float(spread.loc[row, "avg"])


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


def _scores_markdown(title: str, table: pd.DataFrame) -> str:
    """`title`, then `table` with two decimals (an empty cell where a row lacks a column)."""
    cells = table.apply(lambda column: column.map(lambda v: "" if pd.isna(v) else f"{v:.2f}"))
    return f"{title}\n\n" + _md(["model", *table.columns], ([label, *row] for label, row in zip(cells.index, cells.values)))


def reranking_markdown(cfg: EvaluateConfig, reranked: pd.DataFrame) -> str:
    """The reranking scores (MTEB v1 MAP, the paper's), or why there are none."""
    if not reranked.empty:
        return _scores_markdown("**Reranking** (MAP x100, MTEB v1's definition, as the paper):", reranked)
    if cfg.reranking:
        return "**Reranking**: `evaluate.reranking` is true, but no evaluation stage wrote scores.\n"
    return ("**Reranking** (AskUbuntuDupQuestions, MindSmallReranking, SciDocsRR, StackOverflowDupQuestions): **not run**. "
            "`evaluate.reranking` is false: the tasks' data come from the MTEB hub and need a network. "
            "This report is STS only.\n")


def transfer_markdown(cfg: EvaluateConfig, transferred: pd.DataFrame) -> str:
    """The transfer-task accuracies (SentEval's protocol in SimCSE's test mode), or why there are none."""
    if not transferred.empty:
        return _scores_markdown("**Transfer tasks** (SentEval, SimCSE's test mode: accuracy x100 of a logistic regression "
                                "on the frozen embeddings; README \"Transfer tasks\"; the paper's summary gives no scores "
                                "to set beside them):", transferred)
    if cfg.transfer:
        return "**Transfer tasks**: `evaluate.transfer` is true, but no evaluation stage wrote scores.\n"
    return ("**Transfer tasks** (MR, CR, SUBJ, MPQA, SST-2, TREC, MRPC): **not run**. `evaluate.transfer` is false "
            "(true in the `paper` profile).\n")


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


def yield_markdown(metrics_dir: str | Path, names: Sequence[str]) -> str:
    """Synthesis yield as integer counts with percentages of the requested rows, then tokens, cost, throughput."""
    metrics = {n: read_json(Path(metrics_dir) / "synth" / f"{n}.json") for n in names}
    outcomes = ["requested", "kept", *sorted({k for m in metrics.values() for k, v in m.items() if k.startswith("dropped_") and v})]
    def cell(m: Mapping[str, Any], key: str) -> str:
        return f"{_int(m.get(key, 0))} ({m.get(key, 0) / m['requested']:.1%})" if m["requested"] else _int(m.get(key, 0))
    counts = [[key.replace("dropped_", "dropped: ").replace("_", " "), *(cell(m, key) for m in metrics.values())]
              for key in outcomes]
    usage_keys = [("requests", "LLM requests", _int), ("cache_hits", "of them cache hits", _int),
                  ("prompt_tokens", "prompt tokens", _int), ("completion_tokens", "completion tokens", _int),
                  ("total_tokens", "total tokens", _int), ("cost_usd", "estimated cost", lambda v: f"${v:,.2f}"),
                  ("wall_s", "wall time", lambda v: f"{v:,.1f} s"), ("triplets_per_s", "triplets / s", lambda v: f"{v:,.2f}"),
                  ("tokens_per_s", "tokens / s", lambda v: f"{v:,.0f}")]
    usage = [[label, *(fmt(m[key]) if key in m else "" for m in metrics.values())] for key, label, fmt in usage_keys]
    text = _md(["outcome", *names], counts) + "\n" + _md(["usage", *names], usage)
    replayed = [n for n, m in metrics.items() if m.get("requests") and m.get("cache_hits") == m["requests"]]
    if replayed:
        text += (f"\n{' and '.join(replayed)}: every request was answered from the LLM response cache, so wall time "
                 "and throughput are those of the replay, not of the generation.\n")
    return text


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


def similarity_markdown(sims: pd.DataFrame) -> str:
    """Per source: mean and median cosines of the two pairs, and how often the negative is the closer one."""
    body = []
    for source, g in sims.groupby("source", sort=False):
        closer = int((g.negative_cosine >= g.positive_cosine).sum())
        body.append([source, _int(len(g)), f"{g.positive_cosine.mean():.2f}", f"{g.positive_cosine.median():.2f}",
                     f"{g.negative_cosine.mean():.2f}", f"{g.negative_cosine.median():.2f}",
                     f"{_int(closer)} ({closer / len(g):.0%})"])
    return _md(["source", "triplets", "anchor-positive mean", "median", "anchor-negative mean", "median",
                "negative at least as close"], body)


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|$~>])")


def _text(value: str) -> str:
    """Plain text safe inside Markdown: HTML-escaped, Markdown and TeX characters backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(" ".join(value.split()), quote=False))


def samples_markdown(sims: pd.DataFrame, n: int) -> str:
    """The first `n` triplets of each source, full text, with the judge's two cosines."""
    parts = []
    for source, g in sims.groupby("source", sort=False):
        parts.append(f"**{_text(source)}** (first {min(n, len(g))} of {_int(len(g))})\n")
        for i, row in enumerate(g.head(n).itertuples(), 1):
            parts.append(f"{i}. {_text(row.anchor)}  \n"
                         f"   *positive* (cosine {_cosine(row.positive_cosine)}): {_text(row.positive)}  \n"
                         f"   *negative* (cosine {_cosine(row.negative_cosine)}): {_text(row.negative)}\n")
        parts.append("")
    return "\n".join(parts)


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


def _first_heading(notebook: Any) -> str | None:
    for cell in notebook.cells:
        texts = [cell.source] if cell.cell_type == "markdown" else [
            o.get("data", {}).get("text/markdown", "") for o in cell.get("outputs", [])]
        for text in texts:
            match = re.search(r"^# (.+)$", "".join(text), flags=re.M)
            if match:
                return match.group(1).strip()
    return None


# The lab template without its script tags: require.js, MathJax and mermaid come from a CDN, and the
# report uses none of them (its Markdown escapes TeX characters).
_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
"""


def render_html(notebook_path: str | Path, html_path: str | Path) -> Path:
    """The executed report notebook as one self-contained HTML page: no code, no stderr, no external script.

    The page title is the notebook's first level-1 heading. Stderr streams (warnings, progress bars)
    stay in the executed notebook, as its log, and are left out of the page.
    """
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    notebook = nbformat.read(str(notebook_path), as_version=4)
    dropped = 0
    for cell in notebook.cells:
        outputs = cell.get("outputs", [])
        kept = [o for o in outputs if not (o.output_type == "stream" and o.name == "stderr")]
        dropped += len(outputs) - len(kept)
        cell["outputs"] = kept if cell.cell_type == "code" else outputs
    if dropped:
        logger.info("left %d stderr output(s) out of the page", dropped)
    notebook.metadata["title"] = _first_heading(notebook) or Path(notebook_path).stem
    exporter = HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"syncse_report.html.j2": _TEMPLATE})],
                            template_file="syncse_report.html.j2", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True, embed_images=True)
    body, _ = exporter.from_notebook_node(notebook)
    with atomic_writer(html_path) as out:  # a kill leaves the old page or the new one
        out.write(body)
    return Path(html_path)


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m syncse.report NOTEBOOK HTML`: render the executed report notebook (the report stage's last step)."""
    parser = argparse.ArgumentParser(prog="python -m syncse.report", description=main.__doc__)
    parser.add_argument("notebook", type=Path)
    parser.add_argument("html", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    render_html(args.notebook, args.html)


if __name__ == "__main__":
    main()
