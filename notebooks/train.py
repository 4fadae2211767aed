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
# The variant trains once per seed in `train.seeds`, on the same rows (drawn with the top-level
# `seed`): only initialisation, data order and dropout change; with `train.seed_draws_rows` each
# seed also draws its own rows. Its metrics are the mean over seeds,
# with `std` and each seed's scores (`syncse.seeds.aggregate`). A point of the scale study (`size`)
# trains on exactly `size` rows with that size's recipe; a size past the variant's pool is recorded
# as absent in every output, never trained on fewer rows (`syncse.scale`).

# %% tags=["parameters"]
variant = "sup"  # unsup | sup | partial | scratch | mixed
params_file = "params.yaml"
profile = None  # a profile of params_file to use instead of its own `profile` (a study's pipeline)
out = "."  # the folder that receives artifacts/ and metrics/ (a study keeps its own: studies/<name>); synthesized rows come from its artifacts/synth
size = 0  # a scale-study point (studies/scale): exactly this many rows, with the size's recipe (scale.sizes); 0: train.num_examples

# %%
import logging
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from syncse.config import load_params
from syncse.data import check_corpora, write_json
from syncse.progress import log_summary, setup_logging
from syncse.scale import absence, point_config, point_name, record_absent
from syncse.seeds import aggregate, seed_dir
from syncse.train import LOG_FILE, DevSettings, pool_size, rows_by_seed, train, write_seed_logs

setup_logging()  # in a log (papermill, DVC): no per-batch bars
for noisy in ("httpx", "sentence_transformers.base.model_card"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
params = load_params(params_file, profile)
cfg = params.train.for_variant(variant)
name, synth_dir = variant, Path(out) / "artifacts/synth"
if size:  # a point of the scale study: its size's recipe on exactly `size` rows, named <variant>-<size>
    cfg, name = point_config(cfg, params.scale, size), point_name(variant, size)
models, checkpoints_root, log_csv, metrics_json = (Path(out) / where for where in (
    f"artifacts/models/{name}", f"artifacts/checkpoints/{name}", f"metrics/train/{name}.csv", f"metrics/train/{name}.json"))
cfg

# %%
corpora = check_corpora(params.data.root, params.data.require_full)  # samples standing in for SimCSE's files: said, or an error
absent = size and absence(variant, size, pool_size(variant, cfg, params.data.root, synth_dir))  # a point past its pool
rows = {} if absent else rows_by_seed(variant, cfg, params.data.root, synth_dir, params.seed)  # the same rows for every seed unless seed_draws_rows
print(absent["reason"] if absent else f"{variant}: training rows by seed {({s: len(r) for s, r in rows.items()})}, e.g. {next(iter(rows.values()))[:1]}")

# %%
results = {}
for seed in rows:  # each of cfg.seeds (none for an absent point); an interrupted stage resumes the seed it was in; a finished seed is reused
    model_dir, checkpoints = seed_dir(models, seed), seed_dir(checkpoints_root, seed)
    results[seed] = result = train(
        cfg, rows[seed], model_dir, data_root=params.data.root, checkpoint_dir=checkpoints, seed=seed,
        dev=DevSettings(params.evaluate.max_seq_length, params.evaluate.precision),  # dev scored as the evaluation stage does
    )
    if result.main_process:  # under torchrun / accelerate launch, rank 0 writes the metrics
        write_seed_logs(log_csv, {s: seed_dir(checkpoints_root, s) / LOG_FILE for s in results})
        log_summary(f"train {name} seed {seed}", [
            f"{model_dir} (step {result.best['step']} of {result.steps}, dev {cfg.select_on} "
            f"{result.best['stsb_dev' if cfg.select_on == 'stsb' else 'avg']:.2f})",
            f"{result.examples} rows at {result.examples_per_second} examples/s",
        ], seconds=result.train_seconds)
if absent:  # every output of the stage says why nothing was trained (syncse.scale)
    metrics = absent
    record_absent(absent, [models, checkpoints_root])
    write_seed_logs(log_csv, {})
    write_json(metrics_json, metrics)
else:
    metrics = {**aggregate({seed: asdict(r) for seed, r in results.items()}), "corpora": corpora}  # the mean over seeds, std, each seed's
    if result.main_process:
        write_json(metrics_json, metrics)
        log_summary(f"train {name}", [f"dev avg {metrics['best']['avg']:.2f}" + (f" \u00b1 {metrics['std']['best']['avg']:.2f} over {len(results)} seeds" if len(results) > 1 else f" (seed {seed})"),
                                      str(metrics_json), str(log_csv)])
metrics

# %%
pd.read_csv(log_csv)
