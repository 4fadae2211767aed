# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
params_file = "params.yaml"
metrics_dir = "metrics"  # what the stages wrote; the banked study: results/study/metrics
synth_dir = "artifacts/synth"  # the synthesized triplets; the banked study: results/study/artifacts/synth
out_dir = "artifacts/report"
title = "SynCSE: partial vs scratch vs unsupervised vs supervised SimCSE"

# %%
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # before tqdm.auto loads: no widgets in a static page

import datetime as dt
import logging
from pathlib import Path

from IPython.display import Markdown, display

from syncse import report
from syncse.config import load_params
from syncse.data import Triplet, atomic_writer, load_nli_triplets, read_triplets, write_json
from syncse.encoders import judge_encoder
from syncse.progress import LOG_FORMAT, log_summary

logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
revision = report.git_revision(".")  # before this notebook writes anything
params = load_params(params_file)
cfg = params.report
variants = list(params.train.variants)  # the one declaration of the variants: a row each
rows = report.model_rows(variants, [*params.evaluate.anchors, *cfg.shipped_rows])
trained = [report.label(v) for v in variants]
table = report.sts_table(metrics_dir, rows)
spread = report.spread_table(metrics_dir, rows)  # std over training seeds of each trained row
summary = report.training_summary(metrics_dir, variants)
dev = {name: report.read_json(f"{metrics_dir}/dev/{name}.json") for name in ["base", *variants]}
Path(out_dir).mkdir(parents=True, exist_ok=True)
table.to_csv(f"{out_dir}/table.csv", float_format="%.2f")
with atomic_writer(f"{out_dir}/table.md") as out:
    out.write(report.markdown_table(table, spread))
reranked = report.rerank_table(metrics_dir, rows)
transferred = report.transfer_table(metrics_dir, rows)
write_json(f"{metrics_dir}/table.json", report.metrics_table(table.loc[list(rows)], reranked, spread, transferred))
display(Markdown(report.header_markdown(title, revision, dt.datetime.now(dt.UTC), params, summary)))

# %% [markdown]
# ## STS test scores
# SentEval's "all" setting, as SimCSE and SynCSE report it: Spearman correlation of cosine
# similarity with the gold scores, x100, on STS12-16, STS-B test and SICK-R test.

# %%
display(Markdown(report.results_markdown(table, report.label("base"), trained, spread)))
display(Markdown(report.reranking_markdown(params.evaluate, reranked)))
display(Markdown(report.transfer_markdown(params.evaluate, transferred)))

# %% [markdown]
# ## Which of the paper's orderings hold

# %%
display(Markdown(report.reading_markdown(table, cfg.tie_margin, params.train.seeds, spread)))

# %% [markdown]
# ### Per task: difference to the base zero-shot

# %%
display(Markdown(report.delta_markdown(table, report.label("base"), trained)))

# %%
report.plot_scores(table.loc[list(rows)]).savefig(f"{out_dir}/scores.png", dpi=110, bbox_inches="tight")

# %% [markdown]
# ## Model selection on development data
# Test sets are never looked at in training: each variant keeps its best checkpoint on STS-B dev + SICK-R trial.

# %%
display(Markdown(report.selection_markdown(summary, dev, dev["base"]["avg"])))

# %%
curves = report.training_curves(metrics_dir, variants)
report.plot_curves(curves, dev["base"]["avg"]).savefig(f"{out_dir}/dev_curves.png", dpi=110, bbox_inches="tight")

# %% [markdown]
# ## Settings
# The resolved parameters that produced these numbers (`params.yaml` with the profile applied).

# %%
display(Markdown(report.settings_markdown(params)))

# %% [markdown]
# ## Synthesis yield
# Rows requested from the generator, kept, and dropped by reason (percentages of the requested rows).

# %%
display(Markdown(report.yield_markdown(metrics_dir, ["partial", "scratch"])))

# %%
report.plot_drops(report.synth_drops(metrics_dir, ["partial", "scratch"])).savefig(f"{out_dir}/synth_yield.png", dpi=110, bbox_inches="tight")

# %% [markdown]
# ## How hard are the hard negatives?
# Cosine similarity of anchor-positive and anchor-negative pairs under an independent encoder, the
# judge (`report.judge`): a good positive sits near 1, a good hard negative lower but not far off.

# %%
triplets = {
    "partial": read_triplets(f"{synth_dir}/partial.jsonl")[: cfg.max_pairs],
    "scratch": read_triplets(f"{synth_dir}/scratch.jsonl")[: cfg.max_pairs],
    "nli (human)": [Triplet(t.premise, t.entailment, t.contradiction, "nli") for t in load_nli_triplets(params.data.root)[: cfg.max_pairs]],
}
similarities = report.triplet_similarities(judge_encoder(cfg.judge), triplets)
display(Markdown(report.similarity_markdown(similarities)))

# %%
report.plot_similarities(similarities).savefig(f"{out_dir}/similarities.png", dpi=110, bbox_inches="tight")

# %% [markdown]
# ## Sample triplets
# Anchor, then its positive and hard negative, each with the judge's cosine to the anchor.

# %%
display(Markdown(report.samples_markdown(similarities, cfg.samples)))

# %%
logging.getLogger("syncse.progress").setLevel(logging.INFO)  # the stage's closing line (stderr: not in the HTML page)
log_summary("report", [f"{out_dir}/", f"{metrics_dir}/table.json"]);
