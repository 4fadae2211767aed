"""GPU training throughput with mixed precision, through syncse's trainer (under 5 minutes).

Trains `--steps` steps of the SimCSE loss on NLI triplets and prints examples/s (anchors per
second) and the achieved fraction of the GPU's dense bf16 peak. Model FLOPs per step are the
usual estimate for a transformer: 6 x (non-embedding parameters) x tokens for the dense layers
plus 12 x layers x hidden x padded length x tokens for attention, counted over every padded token
of the three columns (what the GPU actually computes; the padded length is estimated on random
batches).

    python benchmarks/gpu_train.py                                  # whole SmolLM2-135M, batch 256, bf16
    python benchmarks/gpu_train.py --device cpu --steps 3 --warmup 0 --base gguf:smollm2-135m:1 --batch-size 8
    accelerate launch --num_processes 2 benchmarks/gpu_train.py    # DDP, negatives gathered
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer
from transformers import TrainerCallback

from syncse.config import TrainConfig
from syncse.data import Triplet
from syncse.train import resolve_precision, select_rows, train, variant_rows

# Dense bf16 peak (TFLOP/s, no sparsity) by device-name fragment; --peak-tflops overrides.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0, "4090": 165.0}


class StepTimer(TrainerCallback):
    """Timestamps of optimizer steps, synchronized with the device."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201 - transformers' signature
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())


def flops_per_token(model: SentenceTransformer, length: float) -> float:
    """Training FLOPs per token: 6 N (dense) + 12 L H T (attention scores and values)."""
    transformer = model[0].model
    embedding = transformer.get_input_embeddings().weight.numel()
    dense = sum(p.numel() for p in model.parameters()) - embedding
    config = transformer.config
    return 6.0 * dense + 12.0 * config.num_hidden_layers * config.hidden_size * length


def padded_length(model: SentenceTransformer, rows: list[Triplet], batch_size: int, samples: int = 20) -> float:
    """Mean padded length of a column in a random batch (the collator pads to the batch's longest)."""
    rng = random.Random(0)
    lengths = []
    for _ in range(samples):
        batch = rng.sample(rows, min(batch_size, len(rows)))
        for column in ("anchor", "positive", "negative"):
            features = model.preprocess([getattr(r, column) for r in batch])
            lengths.append(features["input_ids"].shape[1])
    return statistics.mean(lengths)


def peak_tflops(device: str, override: float | None) -> float | None:
    if override:
        return override
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in name), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="gguf:smollm2-135m")
    parser.add_argument("--batch-size", type=int, default=256, help="anchors per step per device")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"))
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense peak of the device, TFLOP/s")
    parser.add_argument("--data-root", default="data", help="training rows (NLI) and, by default, dev sets")
    parser.add_argument("--dev-root", default=None, help="folder with the dev sets (default: --data-root)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = TrainConfig(base=args.base, batch_size=args.batch_size, max_steps=args.steps, eval_steps=args.steps,
                      precision=args.precision, attention_dropout=0.1 if args.base.startswith("gguf") else None)
    world = int(os.environ.get("WORLD_SIZE", 1))
    rows = variant_rows("sup", args.data_root)
    needed = args.batch_size * world * args.steps
    rows = [rows[i % len(rows)] for i in range(needed)] if needed > len(rows) else select_rows(rows, needed, 0)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, rows, Path(tmp) / "model", data_root=args.dev_root or args.data_root, checkpoint_dir=Path(tmp) / "ckpt",
              log_path=Path(tmp) / "log.csv", seed=42, resume=False, device=args.device, callbacks=[timer])
        if int(os.environ.get("RANK", 0)) != 0:
            return
        model = SentenceTransformer(str(Path(tmp) / "model"), device="cpu")
    warm = timer.times[min(args.warmup, len(timer.times) - 2):]
    step_s = statistics.median(b - a for a, b in zip(warm, warm[1:]))
    examples_s = args.batch_size / step_s  # per process
    length = padded_length(model, rows, args.batch_size)
    achieved = flops_per_token(model, length) * 3 * args.batch_size * length / step_s / 1e12
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device {args.device} ({name}), precision {resolve_precision(args.precision, args.device)}, "
          f"base {args.base}, batch {args.batch_size} x {world} devices, {len(warm) - 1} timed steps")
    print(f"examples/s per device: {examples_s:.1f} (all devices: {examples_s * world:.1f}); "
          f"median step {step_s * 1000:.1f} ms; mean padded length {length:.1f}; ~{achieved:.2f} TFLOP/s per device")
    peak = peak_tflops(args.device, args.peak_tflops)
    if peak:
        print(f"fraction of bf16 dense peak ({peak:.0f} TFLOP/s): {achieved / peak:.3f}")


if __name__ == "__main__":
    main()
