# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Synthesize SynCSE triplets
# `partial`: each unlabeled sentence (NLI premises) gets an LLM positive and hard negative.
# `scratch`: the LLM first writes the sentences (by genre and topic), then annotates them the same
# way. The generator is `llm.backend`: the embedded llama.cpp model by default (offline, small:
# it makes the pipeline run end to end, not data of the paper's quality), or any
# OpenAI-compatible server. Responses are cached in `llm.cache_dir`: a rerun costs nothing.

# %% tags=["parameters"]
name = "partial"  # partial | scratch: the pipeline, and the name of its outputs
params_file = "params.yaml"
profile = None  # a profile of params_file to use instead of its own `profile` (a study's pipeline)
out = "."  # the folder that receives artifacts/ and metrics/ (a study keeps its own: studies/<name>)
on_bad_negative = None  # drop | pair: instead of synth.on_bad_negative (the scale study's ablation line); None: as configured

# %%
import logging
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from syncse.config import SynthConfig, build, load_params
from syncse.data import check_corpora, write_json, write_triplets
from syncse.llm import open_client
from syncse.progress import log_summary, setup_logging
from syncse.synth import config_record, sample_rows, synthesize

setup_logging()  # in a log (papermill, DVC): one progress line per 30 s
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpx2").setLevel(logging.WARNING)
pd.set_option("display.max_colwidth", None)
params = load_params(params_file, profile)
if on_bad_negative is not None:  # validated as params.yaml's value would be
    params.synth = build(SynthConfig, {**asdict(params.synth), "on_bad_negative": on_bad_negative}, "synth")

# %%
corpora = check_corpora(params.data.root, params.data.require_full)  # data.require_full: stop before a paid request
with open_client(params.llm) as client:
    result = synthesize(name, client, params.synth, params.llm, params.seed, params.data.root)
triplets_file, metrics_file, config_file = (Path(out) / where for where in (
    f"artifacts/synth/{name}.jsonl", f"metrics/synth/{name}.json", f"artifacts/synth/{name}.config.json"))
written = write_triplets(triplets_file, result.triplets)
write_json(metrics_file, {**result.metrics, "corpora": corpora})
write_json(config_file, config_record(params.synth, params.llm))
log_summary(f"synthesize {name}", [
    f"{triplets_file} ({written} triplets of {result.metrics['requested']} requested)",
    f"{result.metrics['cache_hits']} of {result.metrics['requests']} requests from the cache",
    str(metrics_file),
]);

# %% [markdown]
# ## Sample triplets

# %%
pd.DataFrame(sample_rows(result.triplets, 10))

# %% [markdown]
# ## Drop report
# Every requested anchor is either kept or dropped for exactly one reason (the first that
# applies; `positive_*` before `negative_*`). `resampled_*` in the metrics counts the
# embedded backend's resamples of rejected outputs, by their first reason.

# %%
pd.DataFrame(result.drop_report(), columns=["reason", "count", "share"])

# %%
pd.DataFrame(result.rejected[:10], columns=["anchor", "side", "output", "reason"])

# %% [markdown]
# ## Metrics (`metrics/synth/<name>.json`)

# %%
pd.Series(result.metrics, name=name).to_frame()
