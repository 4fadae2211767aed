"""What a variant trains on: its rows, a seeded sample of them, and their digest.

Each variant with a corpus of its own (`OWN_DATA`) reads it here: unsup the wiki sentences, sup
the NLI triplets, partial and scratch the synthesized triplet JSONL; `mixed` draws from both
synthesized sets. Every seed of a stage trains on the same rows, drawn with the top-level `seed`,
unless `train.seed_draws_rows` has each seed draw its own (`rows_by_seed`); `rows_digest` puts
them in the training key, so checkpoints of other data are never resumed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset

from syncse.config import TrainConfig
from syncse.data import Triplet, load_nli_triplets, read_triplets, wiki_sentences

logger = logging.getLogger(__name__)

OWN_DATA = ("unsup", "sup", "partial", "scratch")  # variants with a corpus of their own (`variant_rows`)
DATA_SOURCES = (*OWN_DATA, "mixed")  # every variant train.variants may declare: mixed draws from partial and scratch


def variant_rows(variant: str, data_root: str | Path, synth_dir: str | Path | None = None) -> list[Triplet]:
    """Training rows of `variant`: unsup = wiki sentences (own positive), sup = NLI triplets,
    partial/scratch = synthesized triplets read from `synth_dir/<variant>.jsonl`. (`mixed` draws
    from both synthesized sets: see `training_rows`.)"""
    if variant not in OWN_DATA:
        raise ValueError(f"unknown variant {variant!r}; allowed: {OWN_DATA}")
    if variant == "unsup":
        return [Triplet(s, s, None, "wiki") for s in wiki_sentences(data_root)]
    if variant == "sup":
        return [Triplet(t.premise, t.entailment, t.contradiction, "nli") for t in load_nli_triplets(data_root)]
    if synth_dir is None:
        raise ValueError(f"variant {variant!r} needs synth_dir (where its synthesized triplet JSONL is)")
    return read_triplets(Path(synth_dir) / f"{variant}.jsonl")


def training_rows(
    variant: str, cfg: TrainConfig, data_root: str | Path, synth_dir: str | Path, seed: int
) -> list[Triplet]:
    """The rows `variant` trains on: a seeded sample of `cfg.num_examples` of its data, capped,
    when `cfg.equal_rows`, at the smallest variant's row count so that all train on as many.

    `mixed` takes `cfg.scratch_share` of its rows from scratch and the rest from partial; it has
    as many rows as the smaller synthesized set, so its ratio never changes the others' cap.
    """
    if variant not in DATA_SOURCES:
        raise ValueError(f"unknown variant {variant!r}; allowed (a data source in syncse.train): {DATA_SOURCES}")
    synthesized = ("partial", "scratch")
    if cfg.equal_rows:
        needed = list(OWN_DATA)
    else:
        needed = list(synthesized) if variant == "mixed" else [variant]
    sources = {name: variant_rows(name, data_root, synth_dir) for name in needed}
    available = {name: len(rows) for name, rows in sources.items()}
    if all(name in sources for name in synthesized):
        available["mixed"] = min(available[name] for name in synthesized)
    target = cfg.num_examples or available[variant]
    if cfg.equal_rows:
        smallest = min(available, key=available.__getitem__)
        if available[smallest] < target:
            logger.warning("equal_rows: %s has only %d rows, every variant trains on %d (asked: %d)",
                           smallest, available[smallest], available[smallest], target)
            target = available[smallest]
    if variant != "mixed":
        return select_rows(sources[variant], target, seed)
    target = min(target, available["mixed"])
    n_scratch = round(cfg.scratch_share * target)
    rows = select_rows(sources["scratch"], n_scratch, seed) if n_scratch else []
    rows += select_rows(sources["partial"], target - n_scratch, seed) if target > n_scratch else []
    random.Random(seed).shuffle(rows)
    return rows


def rows_by_seed(
    variant: str, cfg: TrainConfig, data_root: str | Path, synth_dir: str | Path, seed: int
) -> dict[int, list[Triplet]]:
    """The rows each training seed in `cfg.seeds` trains on (`training_rows`): drawn with that seed
    when `cfg.seed_draws_rows`, else the same rows for all, drawn with `seed` (the top-level one)."""
    if cfg.seed_draws_rows:
        return {s: training_rows(variant, cfg, data_root, synth_dir, s) for s in cfg.seeds}
    rows = training_rows(variant, cfg, data_root, synth_dir, seed)
    return dict.fromkeys(cfg.seeds, rows)


def pool_size(variant: str, cfg: TrainConfig, data_root: str | Path, synth_dir: str | Path) -> int:
    """The most rows `variant` can train on under `cfg`: all of its data (`mixed`: as many as the smaller
    synthesized set; with `equal_rows`, the smallest variant's), whatever `cfg.num_examples` asks."""
    return len(training_rows(variant, dataclasses.replace(cfg, num_examples=0), data_root, synth_dir, seed=0))


def select_rows(rows: list[Triplet], num_examples: int, seed: int) -> list[Triplet]:
    """A seeded sample of `num_examples` rows (0 = all), so every variant trains on as many: the first
    `num_examples` of one seeded shuffle, so that a seed's smaller sample lies inside its larger one whatever
    the pool's size (the scale study's sizes are nested; `random.sample` switches method with the sizes)."""
    if num_examples < 0:
        raise ValueError(f"num_examples must be >= 0 (0 = all), got {num_examples}")
    if num_examples == 0 or num_examples >= len(rows):
        if num_examples > len(rows):
            logger.warning("asked for %d training rows, only %d available: using all", num_examples, len(rows))
        return list(rows)
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    return shuffled[:num_examples]


def missing_negatives(rows: Sequence[Triplet]) -> list[bool] | None:
    """Which rows lack a hard negative, where some rows have one (pairs kept by
    `synth.on_bad_negative: pair` beside triplets); None where all rows agree."""
    missing = [r.negative is None for r in rows]
    return missing if 0 < sum(missing) < len(rows) else None


def negative_column(rows: Sequence[Triplet]) -> list[str] | None:
    """The `negative` column (None: no row has one); a row without one holds its own positive as a
    stand-in, which the loss leaves out of the softmax (`missing_negatives`)."""
    if all(r.negative is None for r in rows):
        return None
    return [r.positive if r.negative is None else r.negative for r in rows]


def to_dataset(rows: list[Triplet], row_labels: bool = False) -> Dataset:
    """Columns `anchor, positive[, negative]` (`negative_column`). A `label` column holds each row's
    index with `row_labels` (false-negative masking looks it up) and wherever some rows lack a
    negative (the loss looks up which)."""
    if not rows:
        raise ValueError("no training rows: the variant's data is empty")
    columns: dict[str, list[Any]] = {"anchor": [r.anchor for r in rows], "positive": [r.positive for r in rows]}
    negatives = negative_column(rows)
    if negatives is not None:
        columns["negative"] = negatives
    if row_labels or missing_negatives(rows) is not None:
        columns["label"] = list(range(len(rows)))
    return Dataset.from_dict(columns)


def rows_digest(rows: list[Triplet]) -> str:
    """sha256 of the training rows (anchor, positive, negative, in order): part of the training key,
    so checkpoints of other data are never resumed."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps([row.anchor, row.positive, row.negative]).encode("utf-8"))
    return digest.hexdigest()
