# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # SynCSE offline study: partial vs scratch vs unsupervised vs supervised
# STS Spearman x100 (SentEval "all", cosine) for the training base zero-shot, the five trained
# variants and the shipped anchors, next to the paper's Table 2 rows (RoBERTa-base on 276k
# GPT-3.5 triplets: a different base model and data scale, shown for orientation only).

# %% tags=["parameters"]
params_file = "params.yaml"
out_dir = "artifacts/report"

# %%
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # before tqdm.auto loads: no widgets in a static report

import json
import logging
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from syncse import report
from syncse.config import VARIANTS, load_params
from syncse.data import Triplet, load_nli_triplets, read_triplets
from syncse.encoders import load_encoder
from syncse.evaluate import encode_fn_for

logging.basicConfig(level=logging.WARNING)
params = load_params(params_file)
cfg = params.report
variants = list(VARIANTS)
rows = {
    "base zero-shot": "base",
    "unsup-SimCSE": "unsup",
    "sup-SimCSE": "sup",
    "SynCSE-partial": "partial",
    "SynCSE-scratch": "scratch",
    "SynCSE-mixed": "mixed",
    **{f"{name} (shipped)": name for name in [*params.evaluate.anchors, *cfg.shipped_rows]},
}
Path(out_dir).mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## STS test scores

# %%
table = report.sts_table("metrics", rows)
table.to_csv(f"{out_dir}/table.csv", float_format="%.2f")
Path(f"{out_dir}/table.md").write_text(report.markdown_table(table))
Path("metrics/table.json").write_text(json.dumps(table.loc[list(rows)].to_dict(orient="index"), indent=2) + "\n")
trained_rows = {v: json.loads(Path(f"metrics/train/{v}.json").read_text())["examples"] for v in variants}
print(f"training base: {params.train.base}; rows per variant: {trained_rows}; profile: {params.profile}; "
      f"mixed: {params.train.for_variant('mixed').scratch_share:.0%} scratch rows")
display(Markdown(report.markdown_table(table)))

# %%
report.plot_scores(table.loc[list(rows)]).savefig(f"{out_dir}/scores.png", dpi=110)

# %% [markdown]
# ## Development score during training (the model-selection signal)

# %%
curves = report.training_curves("metrics", variants)
report.plot_curves(curves).savefig(f"{out_dir}/dev_curves.png", dpi=110)

# %% [markdown]
# ## Synthesis yield by drop reason

# %%
drops = report.synth_drops("metrics", ["partial", "scratch"])
report.plot_drops(drops).savefig(f"{out_dir}/synth_yield.png", dpi=110)
drops.pivot_table(index="outcome", columns="name", values="count", fill_value=0)

# %% [markdown]
# ## How hard are the hard negatives?
# Cosine similarity of anchor-positive and anchor-negative pairs under an independent encoder
# (`report.judge`): a good positive sits near 1, a good hard negative lower but not far off.

# %%
triplets = {
    "partial": read_triplets("artifacts/synth/partial.jsonl")[: cfg.max_pairs],
    "scratch": read_triplets("artifacts/synth/scratch.jsonl")[: cfg.max_pairs],
    "nli (human)": [Triplet(t.premise, t.entailment, t.contradiction, "nli") for t in load_nli_triplets(params.data.root)[: cfg.max_pairs]],
}
similarities = report.pair_similarities(encode_fn_for(load_encoder(cfg.judge)), triplets)
report.plot_similarities(similarities).savefig(f"{out_dir}/similarities.png", dpi=110)
similarities.groupby(["source", "pair"]).cosine.describe()[["count", "mean", "50%"]]

# %% [markdown]
# ## Sample triplets

# %%
for source, items in triplets.items():
    display(Markdown(f"**{source}**"))
    display(pd.DataFrame([{"anchor": t.anchor, "positive": t.positive, "negative": t.negative} for t in items[: cfg.samples]]))
