"""Training seeds: where each seed's run lives, and one set of metrics from several seeds.

A variant trains once per seed in `train.seeds`. The top-level `seed` still draws the data (the
synthesized triplets and the seeded row sample), so every seed of a variant trains on the same rows;
only the training randomness (initialisation of a fresh head, data order, dropout) moves with it,
unless `train.seed_draws_rows` has each seed draw the row sample too (`syncse.train.rows_by_seed`).
A variant's metrics keep the single-run keys, now the mean over seeds, and add the spread:

    {"avg": 54.93, ..., "std": {"avg": 0.12, ...}, "n_seeds": 3, "seeds": {"42": {"avg": 54.81, ...}, ...}}

so `dvc metrics diff` and readers of one run see the same keys.

A run's random streams belong to its seed alone: `keeps_global_rng` puts back the global RNGs that
mteb seeds whenever it is imported or builds a task, around the dev scoring between training steps.
"""

from __future__ import annotations

import logging
import random
import re
import statistics
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

SEED_KEYS = ("std", "n_seeds", "seeds")  # what `aggregate` adds beside the mean
_SEED_DIR = re.compile(r"^seed-(\d+)$")


def seed_dir(root: str | Path, seed: int) -> Path:
    """`root/seed-<seed>`: one seed's model, checkpoints or log under a variant's folder."""
    return Path(root) / f"seed-{seed}"


def seed_dirs(root: str | Path) -> dict[int, Path]:
    """The `seed-<s>` folders under `root`, by seed in ascending order; an error if there are none."""
    root = Path(root)
    found = {int(m.group(1)): path for path in root.iterdir() if path.is_dir() and (m := _SEED_DIR.match(path.name))} if root.is_dir() else {}
    if not found:
        raise FileNotFoundError(f"{root}: no seed-<s> folder (a trained variant holds one per seed in train.seeds)")
    return dict(sorted(found.items()))


def aggregate(per_seed: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """Mean over seeds of every number (nested mappings too), with `std` (sample std, ddof=1;
    0.0 for one seed), `n_seeds` and the per-seed values under `seeds`.

    Non-numeric values must agree across seeds and are kept as they are. Seeds that all wrote
    `{}` (a step that did not run, e.g. reranking offline) give `{}`.
    """
    if not per_seed:
        raise ValueError("aggregate: no seeds given")
    runs = list(per_seed.values())
    if not any(runs):
        return {}
    mean, std = _mean_std(runs, "metrics")
    return {**mean, "std": std, "n_seeds": len(runs), "seeds": {str(s): dict(m) for s, m in per_seed.items()}}


def _mean_std(runs: list[Mapping[str, Any]], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    keys = list(runs[0])
    for run in runs[1:]:
        if list(run) != keys:
            raise ValueError(f"{where}: seeds disagree on keys: {keys} vs {list(run)}")
    mean: dict[str, Any] = {}
    std: dict[str, Any] = {}
    for key in keys:
        values = [run[key] for run in runs]
        if all(isinstance(v, Mapping) for v in values):
            mean[key], std[key] = _mean_std(values, f"{where}.{key}")
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            average = statistics.fmean(values)  # a count that every seed shares stays an int
            whole = all(isinstance(v, int) for v in values) and average.is_integer()
            mean[key] = int(average) if whole else round(average, 4)
            std[key] = round(statistics.stdev(values), 4) if len(values) > 1 else 0.0
        elif all(v == values[0] for v in values):
            mean[key] = values[0]
        else:
            raise ValueError(f"{where}.{key}: differs across seeds and is not a number: {values}")
    return mean, std


def scores(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A metrics mapping without the keys `aggregate` adds: the mean scores (or one run's)."""
    return {k: v for k, v in metrics.items() if k not in SEED_KEYS}


@contextmanager
def keeps_global_rng() -> Iterator[None]:
    """Python's, NumPy's and torch's global RNG states (and CUDA's) as they were before, on exit.

    mteb seeds all of them with 42 on import and each time it builds a task or an evaluator. Between
    training steps (dev scoring) that restarted every training seed's dropout and MLM-masking stream
    at seed 42's, so an evaluation changed the model trained after it (README "Training").
    """
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
