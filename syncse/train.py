"""Contrastive training of the variants on sentence-transformers' trainer.

`train` builds the encoder (`syncse.encoders`), the SimCSE loss (`syncse.losses`), evaluates on
the development sets every `eval_steps` (mean of STS-B dev and SICK-R trial Spearman, the paper's
rule; test sets are never read here), keeps the best model, checkpoints for resumption and
writes a CSV log (one row per evaluation: step, mean training loss, dev scores).

Resumption survives `dvc repro`: DVC deletes a stage's outputs before running it, so everything a
resumed run needs (checkpoints, the best model so far, the log of record) lives in the persistent
`checkpoint_dir`, and the stage's log is a copy of it. Every file and directory is written beside
its target and renamed into place, so a kill -9 leaves the old version or the new one. A run that
finished leaves `train_result.json` there: run again on the same config and rows, it costs a copy.
The key of both (reuse and resume) is the resolved config, the seed, the rows' sha256, the dev
settings and the code (`syncse.provenance.code_fingerprint`): a run under changed code trains afresh.

Seeds: a stage trains its variant once per seed in `train.seeds`, each in its own
`<models>/<variant>/seed-<s>` and `<checkpoints>/<variant>/seed-<s>` (`syncse.seeds`), on the same
rows (drawn with the top-level `seed`); an interrupted stage resumes the seed it was in.

Multi-GPU: the same code under `accelerate launch` or `torchrun` runs DDP; with
`gather_across_devices` the embeddings are all-gathered so the negatives grow with the GPU count.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
from sentence_transformers.base.sampler import BatchSamplers
from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss
from sentence_transformers.sentence_transformer.modules import Dense
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from syncse import encoders
from syncse.config import PRECISIONS, SELECTIONS, TrainConfig
from syncse.data import Triplet, atomic_writer, load_nli_triplets, read_triplets, wiki_sentences, write_json
from syncse.losses import CachedSimCSELoss, MLMAuxiliaryLoss, ReferenceEmbeddings, SimCSELoss, contrastive_loss
from syncse.provenance import code_fingerprint

logger = logging.getLogger(__name__)

OWN_DATA = ("unsup", "sup", "partial", "scratch")  # variants with a corpus of their own (`variant_rows`)
DATA_SOURCES = (*OWN_DATA, "mixed")  # every variant train.variants may declare: mixed draws from partial and scratch
BATCH_SAMPLERS = {"random": BatchSamplers.BATCH_SAMPLER,  # SimCSE's: shuffled, duplicates allowed
                  "no_duplicates": BatchSamplers.NO_DUPLICATES}  # a repeated text in a batch is a false negative
LOG_FIELDS = ("step", "epoch", "loss", "stsb_dev", "sickr_dev", "avg", "learning_rate", "elapsed_s")
CONFIG_FILE = "syncse_train_config.json"  # the resolved config, beside every model and checkpoint
DEV_FILE = "dev_scores.json"
LOSS_STATE_FILE = "loss_state.pt"  # parameters owned by the loss (the MLM head), for resumption
LOG_FILE = "train_log.csv"  # the log of record, kept with the checkpoints; the stage's log is its copy
COMPLETE_MARKER = "trainer_state.json"  # written last into a checkpoint: without it the checkpoint is torn
RESULT_FILE = "train_result.json"  # written into checkpoint_dir when a run has finished: a rerun reuses it


# --------------------------------------------------------------------------- data


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


def select_rows(rows: list[Triplet], num_examples: int, seed: int) -> list[Triplet]:
    """A seeded sample of `num_examples` rows (0 = all), so every variant trains on as many."""
    if num_examples < 0:
        raise ValueError(f"num_examples must be >= 0 (0 = all), got {num_examples}")
    if num_examples == 0 or num_examples >= len(rows):
        if num_examples > len(rows):
            logger.warning("asked for %d training rows, only %d available: using all", num_examples, len(rows))
        return list(rows)
    return random.Random(seed).sample(rows, num_examples)


def to_dataset(rows: list[Triplet], row_labels: bool = False) -> Dataset:
    """Columns `anchor, positive[, negative]`; all rows must agree on having a negative. With
    `row_labels`, a `label` column holds each row's index (false-negative masking looks it up)."""
    if not rows:
        raise ValueError("no training rows: the variant's data is empty")
    with_negative = sum(r.negative is not None for r in rows)
    if 0 < with_negative < len(rows):
        raise ValueError(
            f"mismatched columns: {with_negative} of {len(rows)} rows have a negative; "
            "expected all (triplets) or none (pairs)"
        )
    columns: dict[str, list[Any]] = {"anchor": [r.anchor for r in rows], "positive": [r.positive for r in rows]}
    if with_negative:
        columns["negative"] = [r.negative for r in rows]
    if row_labels:
        columns["label"] = list(range(len(rows)))
    return Dataset.from_dict(columns)


# --------------------------------------------------------------------------- model and loss


def build_model(cfg: TrainConfig) -> tuple[SentenceTransformer, SentenceTransformer]:
    """(model trained, model evaluated and saved): the same modules, minus a train-only head."""
    model = encoders.build_trainable(
        cfg.base, cfg.pooler, max_seq_length=cfg.max_seq_length, attention_dropout=cfg.attention_dropout,
        hidden_dropout=cfg.hidden_dropout,
    )
    if not cfg.mlp_only_train:
        return model, model
    if not isinstance(model[-1], Dense):
        raise ValueError(f"mlp_only_train needs the cls pooler (a Linear+Tanh head); pooler is {cfg.pooler!r}")
    return model, SentenceTransformer(modules=list(model)[:-1], device=str(model.device))


def build_loss(model: SentenceTransformer, cfg: TrainConfig, world_size: int = 1, rows: Sequence[Triplet] = ()) -> nn.Module:
    """SimCSE loss (MNRL, weighted or masking false negatives; cached for large batches), plus the MLM auxiliary.

    Embeddings are gathered across devices only when there are several (`cfg.gather_across_devices`).
    With `cfg.false_negative_threshold`, `rows` (the training rows, in the dataset's order: its
    `label` column indexes them) are embedded once by `cfg.false_negative_judge`.
    """
    gather = cfg.gather_across_devices and world_size > 1
    if cfg.temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {cfg.temperature}")
    reference = None
    if cfg.false_negative_threshold is not None:
        reference = reference_embeddings(rows, encoders.judge_encoder(cfg.false_negative_judge))
    simcse = {"temperature": cfg.temperature, "hard_negative_weight": cfg.hard_negative_weight,
              "gather_across_devices": gather, "reference": reference,
              "false_negative_threshold": cfg.false_negative_threshold}
    if cfg.mini_batch_size > 0:
        if cfg.mlm_weight > 0:
            raise ValueError("mini_batch_size > 0 (cached loss) does not support mlm_weight > 0")
        if cfg.hard_negative_weight == 0.0 and reference is None:
            return CachedMultipleNegativesRankingLoss(
                model, scale=1.0 / cfg.temperature, mini_batch_size=cfg.mini_batch_size,
                gather_across_devices=gather,
            )
        return CachedSimCSELoss(model, cfg.mini_batch_size, **simcse)
    loss = contrastive_loss(model, **simcse)
    if cfg.mlm_weight <= 0:
        return loss
    tokenizer = model.tokenizer
    if tokenizer.mask_token_id is None:
        raise ValueError(f"mlm_weight > 0 needs a tokenizer with a mask token; {cfg.base!r} has none")
    head = encoders.masked_lm_head(cfg.base, model)
    return MLMAuxiliaryLoss(
        loss, head, tokenizer.mask_token_id, list(tokenizer.all_special_ids), len(tokenizer),
        cfg.mlm_weight, cfg.mlm_probability,
    )


def reference_embeddings(rows: Sequence[Triplet], encode: Callable[[list[str]], Any]) -> ReferenceEmbeddings:
    """Unit embeddings under `encode` (the judge) of each row's anchor, positive[, negative],
    every distinct text encoded once."""
    if not rows:
        raise ValueError("false-negative masking needs the training rows to embed; got none")
    columns = [[r.anchor for r in rows], [r.positive for r in rows]]
    if rows[0].negative is not None:
        columns.append([r.negative for r in rows])  # type: ignore[misc]
    texts = list(dict.fromkeys(text for column in columns for text in column))  # distinct, first-seen order
    index = {text: i for i, text in enumerate(texts)}
    vectors = torch.nn.functional.normalize(torch.as_tensor(encode(texts), dtype=torch.float32), dim=-1)  # (distinct, d)
    ids = torch.tensor([[index[text] for text in column] for column in columns]).T  # (rows, columns)
    logger.info("false-negative judge: %d distinct texts of %d rows embedded", len(texts), len(rows))
    return ReferenceEmbeddings(vectors, ids)


def masked_share(loss: nn.Module) -> float | None:
    """Share of other rows' candidates the loss masked as false negatives (None: masking off)."""
    contrastive = loss.contrastive if isinstance(loss, MLMAuxiliaryLoss) else loss
    return contrastive.masked_share() if isinstance(contrastive, SimCSELoss) else None


def resolve_precision(precision: str, device: str) -> str:
    """`auto` -> bf16 where the device computes it natively (CUDA Ampere+, AVX512-BF16/AMX CPUs),
    fp16 on older GPUs, fp32 otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {PRECISIONS}")
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if encoders.cpu_has_native_bf16() else "fp32"  # emulated bf16 is slower than fp32


# --------------------------------------------------------------------------- selection and logging


@dataclass(frozen=True)
class DevSettings:
    """How dev scores are computed, during training as in the evaluation stage (so they agree):
    sentences cut at `max_seq_length` tokens (SimCSE: never cut; 128 covers the dev sets'
    sentences) and encoded at `precision` (`syncse.evaluate.resolve_precision`)."""

    max_seq_length: int = 128
    precision: str = "fp32"
    batch_size: int = 64


class DevEvaluator(BaseEvaluator):
    """STS-B dev and SICK-R trial Spearman x100 and their mean; `select_on` names the one selected on.

    Uses `syncse.evaluate.dev_scores`; evaluates `eval_model` (the model without a train-only
    head) when given, at the evaluation length, not the training one.
    """

    def __init__(self, data_root: str | Path, eval_model: SentenceTransformer | None = None,
                 settings: DevSettings = DevSettings(), select_on: str = "stsb+sickr"):
        super().__init__()
        self.data_root = str(data_root)
        self.eval_model = eval_model
        self.settings = settings
        self.primary_metric = SELECTIONS[select_on]

    def __call__(self, model: Any, output_path: str | None = None, epoch: float = -1, steps: int = -1) -> dict[str, float]:
        """Dev scores `{stsb_dev, sickr_dev, avg}` of the model being trained."""
        from syncse.evaluate import dev_scores  # mteb is heavy: import when first needed

        started = time.perf_counter()
        scored = self.eval_model or model
        with at_length(scored, self.settings.max_seq_length):
            scores = dev_scores(scored, self.data_root, self.settings.batch_size, self.settings.precision)
        logger.info("step %s dev %s (%.1f s)", steps, scores, time.perf_counter() - started)
        return scores


@contextlib.contextmanager
def at_length(model: SentenceTransformer, max_seq_length: int) -> Iterator[None]:
    """Temporarily encode at `max_seq_length` tokens (training runs at its own, shorter length)."""
    trained = model.max_seq_length
    model.max_seq_length = max_seq_length
    try:
        yield
    finally:
        model.max_seq_length = trained


class SelectionCallback(TrainerCallback):
    """After each evaluation: log a row, save the model if its dev score (`select`: `avg` or
    `stsb_dev`) is the best so far, at the evaluation length `eval_length`.

    The log is kept in `checkpoint_dir` (it survives DVC's clean-up) and copied to `log_path`;
    `rows` are the rows of the run being resumed, up to its checkpoint.
    """

    def __init__(self, export_model: SentenceTransformer, checkpoint_dir: Path, log_path: Path | None,
                 config: dict[str, Any], rows: list[dict[str, Any]], select: str, eval_length: int,
                 eval_last_step: bool = True):
        self.export_model = export_model
        self.eval_last_step = eval_last_step
        self.select = select
        self.eval_length = eval_length
        self.best_dir = checkpoint_dir / "best"
        self.log_paths = (checkpoint_dir / LOG_FILE, *([log_path] if log_path else []))
        self.config = config
        self.rows = rows
        self.best = _read_json(self.best_dir / DEV_FILE).get(select, -math.inf)
        self.window_loss: float | None = None
        self.started = time.perf_counter()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        """Evaluate and checkpoint at the last step too (`eval_last_step`), or at multiples of `eval_steps`
        only, as SimCSE's trainer (transformers >= 5 adds a last evaluation of its own: undone here)."""
        if state.global_step < state.max_steps:
            return
        if self.eval_last_step:
            control.should_log = control.should_evaluate = control.should_save = True
        elif state.global_step % args.eval_steps:
            control.should_evaluate = False

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: dict | None = None, **kwargs: Any) -> None:
        """Remember the mean training loss of the last window."""
        if logs and "loss" in logs:
            self.window_loss = float(logs["loss"])

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, metrics: dict | None = None, **kwargs: Any) -> None:
        """Log the row; keep the model if it beats the best dev average."""
        if not state.is_world_process_zero or not metrics:
            return
        scores = {k: float(metrics[f"eval_{k}"]) for k in ("stsb_dev", "sickr_dev", "avg")}
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "loss": self.window_loss, **scores,
               "learning_rate": _last(state, "learning_rate"), "elapsed_s": round(time.perf_counter() - self.started, 1)}
        self.rows.append(row)
        for path in self.log_paths:
            write_log(path, self.rows)
        if scores[self.select] > self.best:
            self.best = scores[self.select]
            with at_length(self.export_model, self.eval_length):  # the saved model encodes as it was scored
                save_model(self.export_model, self.best_dir, self.config, {**scores, "step": state.global_step})
            logger.info("new best dev %s %.2f at step %d", self.select, self.best, state.global_step)


def _last(state: TrainerState, key: str) -> float | None:
    values = [entry[key] for entry in state.log_history if key in entry]
    return values[-1] if values else None


def write_log(path: Path, rows: list[dict[str, Any]], fields: tuple[str, ...] = LOG_FIELDS) -> None:
    """Write the whole CSV log atomically (a few hundred rows at most: rewriting is cheap)."""
    with atomic_writer(path) as out:
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def read_log(path: Path, until_step: float = math.inf) -> list[dict[str, Any]]:
    """Rows of the log at `path` up to `until_step` (a resumed run writes the later ones again; default: all)."""
    if not path.is_file():
        return []
    with path.open(newline="") as lines:
        return [r for r in csv.DictReader(lines) if int(r["step"]) <= until_step]


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def save_model(model: SentenceTransformer, path: Path, config: dict[str, Any], scores: dict[str, Any]) -> None:
    """A SentenceTransformer directory plus the resolved config and dev scores, written atomically."""

    def write(where: Path) -> None:
        model.save(str(where))
        write_json(where / CONFIG_FILE, config)
        write_json(where / DEV_FILE, scores)

    replace_dir(path, write)


def replace_dir(path: Path, write: Callable[[Path], None]) -> None:
    """Have `write` fill a new directory beside `path`, then swap it in: a kill at any point leaves
    the old directory or the new one (`recover_dir` puts the old one back after a kill mid-swap)."""
    new, old = _sibling(path, "new"), _sibling(path, "old")
    shutil.rmtree(new, ignore_errors=True)
    recover_dir(path)
    write(new)
    if path.exists():
        path.rename(old)
    new.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def recover_dir(path: Path) -> None:
    """Undo a swap that a kill interrupted between its two renames (the old directory returns)."""
    old = _sibling(path, "old")
    if old.exists() and not path.exists():
        old.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def _sibling(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{kind}")


# --------------------------------------------------------------------------- trainer


class _Trainer(SentenceTransformerTrainer):
    """Also checkpoints parameters owned by the loss (the MLM head), so resumption is exact, and
    gives the warm-up as a whole number of steps (`transformers` reads 0 < x < 1 as a share in v5
    but as steps in v4, and 1.0 as one step in both)."""

    warmup_ratio: float = 0.0

    def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
        self.args.warmup_steps = math.ceil(self.warmup_ratio * num_training_steps)
        return super().create_scheduler(num_training_steps, optimizer)

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        super()._save(output_dir, state_dict)
        extra = _loss_state(self.loss, self.model)
        if extra:
            torch.save(extra, Path(output_dir or self.args.output_dir) / LOSS_STATE_FILE)

    def _load_from_checkpoint(self, checkpoint_path: str, model: Any = None) -> None:
        super()._load_from_checkpoint(checkpoint_path)
        state_file = Path(checkpoint_path) / LOSS_STATE_FILE
        if state_file.is_file():
            self.loss.load_state_dict(torch.load(state_file, weights_only=True), strict=False)


def _loss_state(loss: nn.Module, model: nn.Module) -> dict[str, torch.Tensor]:
    shared = {id(t) for t in (*model.parameters(), *model.buffers())}
    return {k: v.detach() for k, v in loss.state_dict(keep_vars=True).items() if id(v) not in shared}


@dataclass
class TrainResult:
    """What a training run produced."""

    best: dict[str, float]  # dev scores (and step) of the kept model
    steps: int
    examples: int  # training rows used
    train_seconds: float  # wall time of training, dev evaluations and checkpoints included
    examples_per_second: float  # anchors per second over that wall time (all devices)
    main_process: bool = True  # False on the other ranks of a multi-GPU run: they write nothing
    false_negatives_masked: float | None = None  # share of other rows' in-batch candidates masked
    #                            (train.false_negative_threshold; this rank, steps since a resume); None: off


def train(
    cfg: TrainConfig,
    rows: list[Triplet],
    output_dir: str | Path,
    *,
    data_root: str | Path,
    checkpoint_dir: str | Path,
    log_path: str | Path | None = None,
    seed: int = 42,
    resume: bool = True,
    device: str | None = None,
    callbacks: list[TrainerCallback] | None = None,
    dev: DevSettings = DevSettings(),
) -> TrainResult:
    """Train on `rows`, select on dev every `cfg.eval_steps`, write the best model to `output_dir`.

    Args:
        cfg: resolved training config (`TrainConfig.for_variant`).
        rows: training rows (already sampled with `select_rows`).
        output_dir: final SentenceTransformer directory (+ config and dev scores JSON).
        data_root: data folder holding STS-B dev and SICK trial.
        checkpoint_dir: checkpoints, the best-so-far model and the log of record; resumed from
            when its config and rows match (keep it out of DVC's deleted outputs: `persist: true`);
            a run that finished there is not trained again: its model and result are reused.
        log_path: CSV log, one row per evaluation (a copy of the one in `checkpoint_dir`); None: that one only.
        seed: seeds data order, dropout and head initialization.
        resume: continue from the last checkpoint in `checkpoint_dir` if its config matches.
        device: "cpu", "cuda", ...; None picks CUDA when available.
        callbacks: extra `transformers` callbacks (progress reporting, early stopping, ...).
        dev: how dev scores are computed (the evaluation stage's length and precision); the saved
            model carries that length, so `SentenceTransformer(output_dir)` encodes as it was scored.
    """
    dataset = to_dataset(rows, row_labels=cfg.false_negative_threshold is not None)
    config = {**asdict(cfg), "seed": seed, "examples": len(rows), "rows_sha256": _rows_digest(rows), "dev": asdict(dev),
              "code": code_fingerprint(__name__)}
    checkpoint_dir, log_path = Path(checkpoint_dir), Path(log_path) if log_path else None
    finished = _finished_run(checkpoint_dir, config) if resume else None
    if finished is not None:
        logger.info("%s: this config and rows finished training already (%s): reusing its model", checkpoint_dir, RESULT_FILE)
        _publish(checkpoint_dir, Path(output_dir), log_path)
        return finished
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    args = training_args(cfg, checkpoint_dir, seed, device, len(dataset))
    last = _resumable_checkpoint(checkpoint_dir, config) if resume else None
    log_rows = read_log(checkpoint_dir / LOG_FILE, _step_of(last)) if last else []
    with args.main_process_first(local=False):  # under DDP only rank 0 touches shared files
        if args.process_index == 0:
            _prepare_checkpoint_dir(checkpoint_dir, config, fresh=last is None)
            if log_path:
                write_log(log_path, log_rows)
    torch.manual_seed(seed)  # the fresh cls head
    model, export_model = build_model(cfg)
    callback = SelectionCallback(export_model, checkpoint_dir, log_path, config, log_rows,
                                 SELECTIONS[cfg.select_on], dev.max_seq_length, cfg.eval_last_step)
    trainer = _Trainer(
        model=model, args=args, train_dataset=dataset, loss=build_loss(model, cfg, args.world_size, rows),
        evaluator=DevEvaluator(data_root, None if export_model is model else export_model, dev, cfg.select_on),
        callbacks=[callback, *(callbacks or [])],
    )
    trainer.warmup_ratio = cfg.warmup_ratio
    if last is not None:
        logger.info("resuming from %s (step %d of the same config and rows)", last, _step_of(last))
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - started
    best = _read_json(checkpoint_dir / "best" / DEV_FILE)
    steps = trainer.state.global_step
    throughput = round(steps * args.train_batch_size * args.world_size / seconds, 2)
    result = TrainResult(best, steps, len(rows), round(seconds, 1), throughput, args.process_index == 0,
                         masked_share(trainer.loss))
    if args.process_index == 0:
        _publish(checkpoint_dir, Path(output_dir), None)
        if steps >= trainer.state.max_steps:  # not stopped early (an interruption): the run is finished
            write_json(checkpoint_dir / RESULT_FILE, asdict(result))
    return result


def _finished_run(checkpoint_dir: Path, config: dict[str, Any]) -> TrainResult | None:
    """The result of a run of this very config, rows and code that finished in `checkpoint_dir`, or None."""
    recover_dir(checkpoint_dir / "best")
    stored = _read_json(checkpoint_dir / RESULT_FILE)
    if not stored or _changed_keys(checkpoint_dir, config):
        return None
    if not (checkpoint_dir / "best" / DEV_FILE).is_file() or not (checkpoint_dir / LOG_FILE).is_file():
        return None
    return TrainResult(**stored)


def _publish(checkpoint_dir: Path, output_dir: Path, log_path: Path | None) -> None:
    """Copy the best model to `output_dir` and the log of record to `log_path` (when given)."""
    replace_dir(output_dir, lambda where: shutil.copytree(checkpoint_dir / "best", where))
    if log_path:
        write_log(log_path, read_log(checkpoint_dir / LOG_FILE))


def write_seed_logs(path: str | Path, logs: dict[int, Path]) -> None:
    """The logs of record of a variant's seeds (`seed -> train_log.csv`) as one CSV with a `seed` column."""
    rows = [{"seed": seed, **row} for seed, log in logs.items() for row in read_log(log)]
    write_log(Path(path), rows, ("seed", *LOG_FIELDS))


def training_args(cfg: TrainConfig, output_dir: Path, seed: int, device: str, num_rows: int) -> SentenceTransformerTrainingArguments:
    """HF/sentence-transformers arguments for `cfg`: AdamW, linear decay, eval + save every `eval_steps`."""
    precision = resolve_precision(cfg.precision, device)
    if device == "cpu" and precision == "fp16":
        raise ValueError("precision 'fp16' needs a GPU; on CPU use 'bf16' or 'fp32'")
    batch_size = min(cfg.batch_size, num_rows)
    if batch_size < cfg.batch_size:
        logger.warning("batch_size %d is larger than the %d training rows: using %d", cfg.batch_size, num_rows, num_rows)
    logger.info("precision %s on %s", precision, device)
    return SentenceTransformerTrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=batch_size,
        learning_rate=cfg.lr,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        weight_decay=cfg.weight_decay,
        lr_scheduler_type="linear",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",
        seed=seed,
        data_seed=seed,
        eval_strategy="steps",
        eval_steps=cfg.eval_steps,
        save_strategy="steps",
        save_steps=cfg.eval_steps,
        save_total_limit=1,
        logging_steps=cfg.eval_steps,
        batch_sampler=BATCH_SAMPLERS[cfg.batch_sampler],
        dataloader_drop_last=cfg.drop_last,
        report_to="none",
        disable_tqdm=True,
        ddp_find_unused_parameters=False,
    )


def _rows_digest(rows: list[Triplet]) -> str:
    """sha256 of the training rows: checkpoints of other data are never resumed."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps([row.anchor, row.positive, row.negative]).encode("utf-8"))
    return digest.hexdigest()


def _resumable_checkpoint(checkpoint_dir: Path, config: dict[str, Any]) -> str | None:
    """The newest complete checkpoint of this very config, rows and code, or None (start over)."""
    if not checkpoint_dir.is_dir():
        return None
    if not (checkpoint_dir / CONFIG_FILE).is_file():
        logger.warning("checkpoints in %s have no %s: starting over", checkpoint_dir, CONFIG_FILE)
        return None
    changed = _changed_keys(checkpoint_dir, config)
    if changed:
        logger.warning("checkpoints in %s come from another %s: starting over", checkpoint_dir, ", ".join(changed))
        return None
    if not (checkpoint_dir / LOG_FILE).is_file():
        logger.warning("checkpoints in %s have no %s: starting over", checkpoint_dir, LOG_FILE)
        return None
    complete = [path for path in checkpoint_dir.glob("checkpoint-*") if _is_complete(path)]
    return str(max(complete, key=_step_of)) if complete else None


def _changed_keys(checkpoint_dir: Path, config: dict[str, Any]) -> list[str]:
    """The keys (`lr`, `rows_sha256`, `code`, ...) whose value differs from the run kept in `checkpoint_dir`."""
    stored, wanted = _read_json(checkpoint_dir / CONFIG_FILE), json.loads(json.dumps(config))
    return sorted(key for key in stored.keys() | wanted.keys() if stored.get(key) != wanted.get(key))


def _is_complete(checkpoint: Path) -> bool:
    """Whether a kill left this checkpoint whole: its trainer state, written last, parses."""
    try:
        json.loads((checkpoint / COMPLETE_MARKER).read_text())
    except (OSError, ValueError):
        return False
    return True


def _step_of(checkpoint: str | Path) -> int:
    return int(Path(checkpoint).name.split("-")[-1])


def _prepare_checkpoint_dir(checkpoint_dir: Path, config: dict[str, Any], fresh: bool) -> None:
    """Start over (`fresh`) or keep the resumable state, dropping torn checkpoints and swaps."""
    if fresh:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    for torn in (path for path in checkpoint_dir.glob("checkpoint-*") if not _is_complete(path)):
        logger.warning("removing %s: a kill left it incomplete", torn.name)
        shutil.rmtree(torn)
    recover_dir(checkpoint_dir / "best")
    write_json(checkpoint_dir / CONFIG_FILE, config)

