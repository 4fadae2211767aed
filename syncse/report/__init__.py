"""The study report, built from the metric files the stages wrote, one concern per module:

- `tables`: what the metric files hold, as DataFrames (one row per model, the paper's beside ours).
- `markdown`: those tables as Markdown, the run's header and settings, and the generated reading.
- `figures`: the matplotlib figures.
- `page`: the executed report notebook as one self-contained HTML page (`python -m syncse.report`).

Each reads the files it is given and returns Markdown, DataFrames or figures; the report notebook
decides what to show. Every public name is importable from `syncse.report` itself.
"""

from syncse.report.figures import plot_curves, plot_drops, plot_scores, plot_similarities
from syncse.report.markdown import (
    LLM_SHOWN,
    delta_markdown,
    git_revision,
    header_markdown,
    markdown_table,
    md_table,
    reading_markdown,
    reranking_markdown,
    results_markdown,
    samples_markdown,
    selection_markdown,
    settings_markdown,
    similarity_markdown,
    spread_margin,
    transfer_markdown,
    verdict,
    yield_markdown,
)
from syncse.report.page import main, render_html
from syncse.report.tables import (
    COLUMNS,
    LABELS,
    PAPER,
    PAPER_ORDER,
    PAPER_RERANK,
    PAPER_ROWS,
    label,
    metrics_table,
    model_rows,
    read_json,
    rerank_table,
    spread_table,
    sts_table,
    synth_drops,
    training_curves,
    training_summary,
    transfer_table,
    triplet_similarities,
)

__all__ = [
    "COLUMNS", "LABELS", "LLM_SHOWN", "PAPER", "PAPER_ORDER", "PAPER_RERANK", "PAPER_ROWS", "delta_markdown",
    "git_revision", "header_markdown", "label", "main", "markdown_table", "md_table", "metrics_table", "model_rows", "plot_curves",
    "plot_drops", "plot_scores", "plot_similarities", "read_json", "reading_markdown", "render_html", "rerank_table",
    "reranking_markdown", "results_markdown", "samples_markdown", "selection_markdown", "settings_markdown",
    "similarity_markdown", "spread_margin", "spread_table", "sts_table", "synth_drops", "training_curves", "training_summary",
    "transfer_markdown", "transfer_table", "triplet_similarities", "verdict", "yield_markdown",
]
