"""Contrastive training of the variants on sentence-transformers' trainer.

`train` builds the encoder (`syncse.encoders`) and the SimCSE loss (`syncse.losses`), scores the
development sets every `eval_steps` and keeps the best model (`syncse.train.selection`), and
checkpoints for resumption into the run folder, whose key it builds: the resolved config, the
seed, the rows' sha256 (`syncse.train.rows`), the dev settings and the code of the whole training
package (`syncse.provenance.code_fingerprint`). A run finished under that key is reused, one
interrupted under it resumed (`syncse.train.rundir`).

Multi-GPU: the same code under `accelerate launch` or `torchrun` runs DDP; with
`gather_across_devices` the embeddings are all-gathered so the negatives grow with the GPU count.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.base.sampler import BatchSamplers
from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss
from sentence_transformers.sentence_transformer.modules import Dense
from torch import nn
from transformers import TrainerCallback

from syncse import encoders
from syncse.config import PRECISIONS, SELECTIONS, TrainConfig
from syncse.data import Triplet
from syncse.losses import CachedSimCSELoss, MLMAuxiliaryLoss, ReferenceEmbeddings, SimCSELoss, contrastive_loss
from syncse.provenance import code_fingerprint
from syncse.seeds import keeps_global_rng
from syncse.train import rundir
from syncse.train.rows import missing_negatives, negative_column, rows_digest, to_dataset
from syncse.train.selection import DevEvaluator, DevSettings, SelectionCallback

logger = logging.getLogger(__name__)

BATCH_SAMPLERS = {"random": BatchSamplers.BATCH_SAMPLER,  # SimCSE's: shuffled, duplicates allowed
                  "no_duplicates": BatchSamplers.NO_DUPLICATES}  # a repeated text in a batch is a false negative


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
    `label` column indexes them) are embedded once by `cfg.false_negative_judge`; where some rows
    lack a hard negative, the loss leaves their stand-ins out (`missing_negatives`).
    """
    gather = cfg.gather_across_devices and world_size > 1
    if cfg.temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {cfg.temperature}")
    reference = None
    if cfg.false_negative_threshold is not None:
        reference = reference_embeddings(rows, encoders.judge_encoder(cfg.false_negative_judge))
    missing = missing_negatives(rows)
    simcse = {"temperature": cfg.temperature, "hard_negative_weight": cfg.hard_negative_weight,
              "gather_across_devices": gather, "reference": reference,
              "false_negative_threshold": cfg.false_negative_threshold,
              "missing_negatives": None if missing is None else torch.tensor(missing)}
    if cfg.mini_batch_size > 0:
        if cfg.mlm_weight > 0:
            raise ValueError("mini_batch_size > 0 (cached loss) does not support mlm_weight > 0")
        if cfg.hard_negative_weight == 0.0 and reference is None and missing is None:
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
    negatives = negative_column(rows)
    if negatives is not None:
        columns.append(negatives)
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


# --------------------------------------------------------------------------- trainer


class _Trainer(SentenceTransformerTrainer):
    """Also checkpoints parameters owned by the loss (the MLM head), so resumption is exact; gives the
    warm-up as a whole number of steps (`transformers` reads 0 < x < 1 as a share in v5 but as steps
    in v4, and 1.0 as one step in both); and evaluates without touching the run's random streams."""

    warmup_ratio: float = 0.0

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """Dev scoring between steps, the global RNGs put back after it (`syncse.seeds.keeps_global_rng`):
        mteb seeds them on import and per task, and the evaluation loop draws from torch's."""
        with keeps_global_rng():
            return super().evaluate(*args, **kwargs)

    def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
        self.args.warmup_steps = math.ceil(self.warmup_ratio * num_training_steps)
        return super().create_scheduler(num_training_steps, optimizer)

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        super()._save(output_dir, state_dict)
        extra = _loss_state(self.loss, self.model)
        if extra:
            torch.save(extra, Path(output_dir or self.args.output_dir) / rundir.LOSS_STATE_FILE)

    def _load_from_checkpoint(self, checkpoint_path: str, model: Any = None) -> None:
        super()._load_from_checkpoint(checkpoint_path)
        state_file = Path(checkpoint_path) / rundir.LOSS_STATE_FILE
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
    config = {**asdict(cfg), "seed": seed, "examples": len(rows), "rows_sha256": rows_digest(rows), "dev": asdict(dev),
              "code": code_fingerprint("syncse.train")}  # the package: its __init__ imports every module
    checkpoint_dir, log_path = Path(checkpoint_dir), Path(log_path) if log_path else None
    finished = rundir.finished_run(checkpoint_dir, config) if resume else None
    if finished is not None:
        logger.info("%s: this config and rows finished training already (%s): reusing its model",
                    checkpoint_dir, rundir.RESULT_FILE)
        rundir.publish(checkpoint_dir, Path(output_dir), log_path)
        return TrainResult(**finished)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    args = training_args(cfg, checkpoint_dir, seed, device, len(dataset))
    last = rundir.resumable_checkpoint(checkpoint_dir, config) if resume else None
    log_rows = rundir.read_log(checkpoint_dir / rundir.LOG_FILE, rundir.step_of(last)) if last else []
    with args.main_process_first(local=False):  # under DDP only rank 0 touches shared files
        if args.process_index == 0:
            rundir.prepare_checkpoint_dir(checkpoint_dir, config, fresh=last is None)
            if log_path:
                rundir.write_log(log_path, log_rows)
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
        logger.info("resuming from %s (step %d of the same config and rows)", last, rundir.step_of(last))
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - started
    best = rundir.read_json(checkpoint_dir / rundir.BEST_DIR / rundir.DEV_FILE)
    steps = trainer.state.global_step
    throughput = round(steps * args.train_batch_size * args.world_size / seconds, 2)
    result = TrainResult(best, steps, len(rows), round(seconds, 1), throughput, args.process_index == 0,
                         masked_share(trainer.loss))
    if args.process_index == 0:
        rundir.publish(checkpoint_dir, Path(output_dir), None)
        if steps >= trainer.state.max_steps:  # not stopped early (an interruption): the run is finished
            rundir.record_finished(checkpoint_dir, asdict(result))
    return result


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
