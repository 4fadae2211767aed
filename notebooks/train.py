# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Train one variant
# SimCSE loss (temperature 0.05) on the variant's rows: `unsup` wiki sentences (each its own
# positive through dropout), `sup` NLI triplets (entailment positive, contradiction hard
# negative), `partial`/`scratch` LLM-synthesized triplets, `mixed` both (`scratch_share` of
# its rows from scratch). Every variant trains on the same
# number of rows (`train.num_examples`, capped at the smallest variant's data when
# `train.equal_rows`). The model kept is the best on the development sets
# (mean of STS-B dev and SICK-R trial Spearman), evaluated every `train.eval_steps` steps.

# %% tags=["parameters"]
variant = "sup"  # unsup | sup | partial | scratch | mixed
params_file = "params.yaml"

# %%
import logging
from dataclasses import asdict

import pandas as pd

from syncse.config import load_params
from syncse.data import write_json
from syncse.progress import log_summary, setup_logging
from syncse.train import DevSettings, train, training_rows

setup_logging()  # in a log (papermill, DVC): no per-batch bars
for noisy in ("httpx", "sentence_transformers.base.model_card"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
params = load_params(params_file)
cfg = params.train.for_variant(variant)
cfg

# %%
rows = training_rows(variant, cfg, params.data.root, "artifacts/synth", params.seed)
print(f"{variant}: {len(rows)} training rows, e.g. {rows[:1]}")

# %%
result = train(
    cfg,
    rows,
    f"artifacts/models/{variant}",
    data_root=params.data.root,
    checkpoint_dir=f"artifacts/checkpoints/{variant}",
    log_path=f"metrics/train/{variant}.csv",
    seed=params.seed,
    dev=DevSettings(params.evaluate.max_seq_length, params.evaluate.precision),  # dev scored as the evaluation stage does
)
if result.main_process:  # under torchrun / accelerate launch, rank 0 writes the metrics
    write_json(f"metrics/train/{variant}.json", asdict(result))
    log_summary(f"train {variant}", [
        f"artifacts/models/{variant} (step {result.best['step']} of {result.steps}, dev {cfg.select_on} "
        f"{result.best['stsb_dev' if cfg.select_on == 'stsb' else 'avg']:.2f})",
        f"{result.examples} rows at {result.examples_per_second} examples/s", f"metrics/train/{variant}.json",
    ])
result

# %%
pd.read_csv(f"metrics/train/{variant}.csv")
