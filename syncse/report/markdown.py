"""The report's written parts: tables as Markdown (mean ± std where several seeds ran), the run's
header and settings, and the reading generated from the numbers (orderings under the spread rule)."""

from __future__ import annotations

import datetime as dt
import html
import logging
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from syncse.config import EvaluateConfig, Params
from syncse.report.tables import COLUMNS, LABELS, PAPER, PAPER_ORDER, label, read_json
from syncse.transfer import TASKS

logger = logging.getLogger(__name__)


# LLM settings worth printing (the rest are paths, URLs and runtime plumbing).
LLM_SHOWN = ("backend", "model", "aids", "usd_per_1m_input", "usd_per_1m_output", "max_budget_usd", "max_budget_tokens")


def _cell(table: pd.DataFrame, spread: pd.DataFrame | None, row: Any, column: str) -> str:
    """`54.93 ± 0.12` for a row trained with several seeds (mean ± std), else `54.93`."""
    value = f"{table.loc[row, column]:.2f}"
    if spread is None or row not in spread.index or not spread.loc[row, "n_seeds"] > 1:
        return value
    return f"{value} \u00b1 {spread.loc[row, column]:.2f}"


def markdown_table(table: pd.DataFrame, spread: pd.DataFrame | None = None) -> str:
    """A GitHub Markdown table with two decimals (no extra dependency); mean ± std where `spread` has several seeds."""
    body = [[str(i), *(_cell(table, spread, i, c) for c in table.columns)] for i in table.index]
    return md_table([table.index.name or "", *table.columns], body, "l" * (len(table.columns) + 1))


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> str:
    """A Markdown table from ready-formatted cells; `align` gives one of l/r per column (default: l, then r).
    Every table of the reports is written by it."""
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
    return (md_table(["model", *COLUMNS, "\u0394 avg"], body)
            + f"\nSpearman x100 on the test sets{'; a ± b: mean ± standard deviation over training seeds' if seeded else ''}. "
            f"\u0394 avg: difference to the {base} average "
            f"({table.loc[base, 'avg']:.2f}); bold: the best trained variant. The paper's rows are a different base "
            "model and data scale, for orientation only.\n")


def delta_markdown(table: pd.DataFrame, base: str, trained: Sequence[str]) -> str:
    """Per-task differences of each trained variant to the base zero-shot."""
    deltas = table.loc[list(trained)] - table.loc[base]
    return md_table(["variant", *COLUMNS], [[label, *(_signed(v) for v in row)] for label, row in deltas.iterrows()])


def selection_markdown(summary: pd.DataFrame, dev: Mapping[str, Mapping[str, float]], base_dev: float) -> str:
    """Dev scores of each selected checkpoint (`metrics/train`) and of the saved model re-scored (`metrics/dev`)."""
    body = [[label(v), f"{_int(r.best_step)} of {_int(r.steps)}", f"{r.stsb_dev:.2f}", f"{r.sickr_dev:.2f}",
             f"{r.dev_avg:.2f}", _signed(r.dev_avg - base_dev), f"{dev[v]['avg']:.2f}", _int(r.rows),
             f"{r.examples_per_second:.1f}", f"{r.train_seconds / 60:.1f} min"]
            for v, r in summary.iterrows()]
    header = ["variant", "selected step", "STS-B dev", "SICK-R trial", "dev avg", "\u0394 zero-shot", "dev avg (evaluation)",
              "rows", "examples/s", "training time"]
    return (md_table(header, body) + f"\nThe checkpoint kept is the one with the best dev avg (mean of STS-B dev and SICK-R trial), "
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
        "**Training** (`train`)", "", md_table(["setting", "value"], train, "ll"),
        "**Synthesis** (`llm`, `synth`)", "", md_table(["setting", "value"], synth, "ll"),
        "**Evaluation** (`evaluate`)", "", md_table(["setting", "value"], evaluate, "ll"),
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


def _scores_markdown(title: str, table: pd.DataFrame) -> str:
    """`title`, then `table` with two decimals (an empty cell where a row lacks a column)."""
    cells = table.apply(lambda column: column.map(lambda v: "" if pd.isna(v) else f"{v:.2f}"))
    return f"{title}\n\n" + md_table(["model", *table.columns], ([label, *row] for label, row in zip(cells.index, cells.values)))


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
                                "to set beside them):", transferred.rename(columns=lambda key: TASKS[key].name if key in TASKS else key))
    if cfg.transfer:
        return "**Transfer tasks**: `evaluate.transfer` is true, but no evaluation stage wrote scores.\n"
    return ("**Transfer tasks** (MR, CR, SUBJ, MPQA, SST-2, TREC, MRPC): **not run**. `evaluate.transfer` is false "
            "(true in the `paper` profile).\n")


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
    text = md_table(["outcome", *names], counts) + "\n" + md_table(["usage", *names], usage)
    replayed = [n for n, m in metrics.items() if m.get("requests") and m.get("cache_hits") == m["requests"]]
    if replayed:
        text += (f"\n{' and '.join(replayed)}: every request was answered from the LLM response cache, so wall time "
                 "and throughput are those of the replay, not of the generation.\n")
    return text


def similarity_markdown(sims: pd.DataFrame) -> str:
    """Per source: mean and median cosines of the two pairs, and how often the negative is the closer one."""
    body = []
    for source, g in sims.groupby("source", sort=False):
        closer = int((g.negative_cosine >= g.positive_cosine).sum())
        body.append([source, _int(len(g)), f"{g.positive_cosine.mean():.2f}", f"{g.positive_cosine.median():.2f}",
                     f"{g.negative_cosine.mean():.2f}", f"{g.negative_cosine.median():.2f}",
                     f"{_int(closer)} ({closer / len(g):.0%})"])
    return md_table(["source", "triplets", "anchor-positive mean", "median", "anchor-negative mean", "median",
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
