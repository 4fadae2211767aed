"""One set of metrics from several training seeds: the mean keeps the single-run keys, beside std,
n_seeds and every seed's values; and a variant's seed folders are found in order."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from syncse.seeds import aggregate, scores, seed_dir, seed_dirs

TRAIN = {  # metrics/train/<variant>.json of three seeds, as syncse.train.TrainResult writes it
    42: {"best": {"avg": 62.48, "step": 6}, "steps": 6, "examples": 36, "main_process": True},
    43: {"best": {"avg": 61.90, "step": 4}, "steps": 6, "examples": 36, "main_process": True},
    44: {"best": {"avg": 62.95, "step": 6}, "steps": 6, "examples": 36, "main_process": True},
}


def test_mean_keeps_the_keys_and_std_is_the_sample_std() -> None:
    metrics = aggregate(TRAIN)
    avgs = [m["best"]["avg"] for m in TRAIN.values()]
    assert metrics["best"]["avg"] == pytest.approx(statistics.fmean(avgs), abs=1e-4)
    assert metrics["std"]["best"]["avg"] == pytest.approx(statistics.stdev(avgs), abs=1e-4)  # ddof=1
    assert metrics["best"]["step"] == pytest.approx(16 / 3, abs=1e-4)
    assert metrics["steps"] == 6 and isinstance(metrics["steps"], int)  # a count every seed shares stays a count
    assert metrics["main_process"] is True and "main_process" not in metrics["std"]
    assert metrics["n_seeds"] == 3 and metrics["seeds"]["43"] == TRAIN[43]
    assert scores(metrics) == {k: metrics[k] for k in ("best", "steps", "examples", "main_process")}


def test_one_seed_has_zero_std_and_its_own_values() -> None:
    metrics = aggregate({42: {"avg": 54.93, "stsb": 52.85}})
    assert scores(metrics) == {"avg": 54.93, "stsb": 52.85}
    assert metrics["std"] == {"avg": 0.0, "stsb": 0.0} and metrics["n_seeds"] == 1


def test_steps_that_did_not_run_stay_empty() -> None:
    assert aggregate({42: {}, 43: {}}) == {}  # reranking offline: `{}` means "not run" to every reader


def test_seeds_that_disagree_fail_clearly() -> None:
    with pytest.raises(ValueError, match="seeds disagree on keys"):
        aggregate({42: {"avg": 1.0}, 43: {"stsb": 1.0}})
    with pytest.raises(ValueError, match=r"metrics\.base: differs across seeds and is not a number"):
        aggregate({42: {"base": "a"}, 43: {"base": "b"}})
    with pytest.raises(ValueError, match="no seeds"):
        aggregate({})


def test_seed_folders_are_found_in_seed_order(tmp_path: Path) -> None:
    for seed in (44, 42, 43):
        seed_dir(tmp_path / "partial", seed).mkdir(parents=True)
    (tmp_path / "partial" / "seed-x").mkdir()  # not a seed folder
    (tmp_path / "partial" / ".seed-45.new").mkdir()  # a swap in progress
    assert seed_dirs(tmp_path / "partial") == {s: tmp_path / "partial" / f"seed-{s}" for s in (42, 43, 44)}
    assert list(seed_dirs(tmp_path / "partial")) == [42, 43, 44]
    with pytest.raises(FileNotFoundError, match="no seed-<s> folder"):
        seed_dirs(tmp_path / "sup")
