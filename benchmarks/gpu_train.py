"""GPU check: the `sup` training stage on CUDA, its throughput and MFU, against plain sentence-transformers.

For each precision (fp16 and bf16 by default) it trains `sup` through `syncse.train.train` (dev
evaluation every `--eval-steps`, best model kept), reloads the model with `SentenceTransformer(path)`
and scores it with the STS harness (`syncse.evaluate`), then trains a plain sentence-transformers
`MultipleNegativesRankingLoss` trainer on the same model, rows, batch, length and precision. Every
figure goes to `<out>/gpu_train.json` (rewritten after each run, so a run cut short still reports).

Throughput is anchors per second over the median optimizer step after `--warmup` steps (steps
that hold a dev evaluation or a checkpoint are outliers the median drops); the end-to-end rate
(evaluations and checkpoints included) is recorded too. Model FLOPs per step:

    (6 N + 12 L H T) x 3 B T

N non-embedding parameters, L layers, H hidden size, B anchors per step, T the mean padded length
of a column (anchor, positive, negative; estimated on random batches). MFU is achieved FLOP/s over
the chip's dense bf16 peak (`BF16_PEAK_TFLOPS`, matched on the device name; `--peak-tflops` overrides).

The base is `--base` (default the whole SmolLM2-135M, pretrained weights from its GGUF), or
`--architecture DIR`: a config.json and tokenizer (`--export-architecture DIR` writes them from
`--base`) with random weights: the same shapes and FLOPs, for a machine the GGUF cannot reach.

    python benchmarks/gpu_train.py                                   # CUDA, SmolLM2-135M, batch 512
    python benchmarks/gpu_train.py --export-architecture .gpu/run/smollm2-135m
    python benchmarks/gpu_train.py --architecture .gpu/run/smollm2-135m  # random weights, same shapes
    python benchmarks/gpu_train.py --device cpu --tiny --architecture DIR --precisions bf16 --steps 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import sentence_transformers
import torch
import transformers
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from transformers import AutoConfig, AutoModel, AutoTokenizer, TrainerCallback

from syncse import encoders
from syncse.config import EvaluateConfig, TrainConfig, load_params
from syncse.data import Triplet
from syncse.train import build_model, resolve_precision, to_dataset, train, variant_rows

logger = logging.getLogger("gpu_train")

# Dense bf16 peak (TFLOP/s, no sparsity) by device-name fragment, first match wins (PCIe/NVL before SXM).
BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0), ("GH200", 989.0),
    ("A100", 312.0), ("L40S", 362.0), ("A10G", 70.0), ("L4", 121.0), ("4090", 165.0),
)
TINY = {"num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2,
        "num_key_value_heads": 1, "head_dim": 32}  # --tiny: a one-layer model of the same family
COLUMNS = ("anchor", "positive", "negative")


class StepTimer(TrainerCallback):
    """Timestamps of optimizer steps, taken after the device has finished the step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201 - transformers' signature
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())

    def median_step_s(self, warmup: int) -> float:
        """Median seconds between consecutive steps after the first `warmup` (at least one interval)."""
        kept = self.times[min(warmup, max(len(self.times) - 2, 0)):]
        if len(kept) < 2:
            raise ValueError(f"need at least 2 timed steps, got {len(self.times)}")
        return statistics.median(b - a for a, b in zip(kept, kept[1:]))


# --------------------------------------------------------------------------- model, FLOPs, peak


def export_architecture(spec: str, dest: Path) -> Path:
    """Write `spec`'s config.json and tokenizer (no weights) to `dest`: a few MB instead of the model."""
    base = encoders.parse_spec(spec)
    if base.kind == "st":
        raise ValueError(f"{spec!r} is a sentence-transformers directory; export needs a gguf: spec or an HF model")
    kwargs = {"gguf_file": base.gguf_file} if base.gguf_file else {}
    config = AutoConfig.from_pretrained(base.path, **kwargs)
    if base.num_layers is not None:
        config.num_hidden_layers = base.num_layers
    config.save_pretrained(dest)
    AutoTokenizer.from_pretrained(base.path, **kwargs).save_pretrained(dest)
    return dest


def random_init_base(architecture: Path, dest: Path, tiny: bool, seed: int = 0) -> Path:
    """An HF directory with `architecture`'s config and tokenizer and seeded random weights."""
    config = AutoConfig.from_pretrained(architecture)
    for key, value in (TINY if tiny else {}).items():
        setattr(config, key, value)
    torch.manual_seed(seed)
    AutoModel.from_config(config).save_pretrained(dest)
    AutoTokenizer.from_pretrained(architecture).save_pretrained(dest)
    return dest


def non_embedding_params(model: SentenceTransformer) -> int:
    """Parameters that take part in matrix products (all but the input embedding lookup)."""
    embedding = model[0].model.get_input_embeddings().weight.numel()
    return sum(p.numel() for p in model.parameters()) - embedding


def flops_per_token(model: SentenceTransformer, length: float) -> float:
    """Training FLOPs per token: 6 N (dense matmuls, forward + backward) + 12 L H T (attention)."""
    config = model[0].model.config
    return 6.0 * non_embedding_params(model) + 12.0 * config.num_hidden_layers * config.hidden_size * length


def padded_length(model: SentenceTransformer, rows: list[Triplet], batch_size: int, samples: int = 20) -> float:
    """Mean padded length of a column in a random batch (the collator pads each to its longest)."""
    rng = random.Random(0)
    lengths = []
    for _ in range(samples):
        batch = rng.sample(rows, min(batch_size, len(rows)))
        for column in COLUMNS:
            lengths.append(model.preprocess([getattr(r, column) for r in batch])["input_ids"].shape[1])
    return statistics.mean(lengths)


def peak_tflops(device_name: str) -> float | None:
    """Dense bf16 peak of a device from its name (None when the table does not know it)."""
    return next((peak for fragment, peak in BF16_PEAK_TFLOPS if fragment in device_name), None)


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu"


# --------------------------------------------------------------------------- the two trainers


def run_syncse(cfg: TrainConfig, rows: list[Triplet], workdir: Path, dev_root: Path, device: str, warmup: int) -> dict[str, Any]:
    """`syncse.train.train` as the training stage calls it; returns its timing and selection."""
    timer = StepTimer()
    result = train(cfg, rows, workdir / "model", data_root=dev_root, checkpoint_dir=workdir / "ckpt",
                   log_path=workdir / "log.csv", seed=42, resume=False, device=device, callbacks=[timer])
    return {"median_step_s": timer.median_step_s(warmup), "steps": result.steps,
            "end_to_end_examples_per_s": result.examples_per_second, "train_seconds": result.train_seconds,
            "dev_best": result.best}


def run_plain(cfg: TrainConfig, rows: list[Triplet], workdir: Path, device: str, warmup: int) -> dict[str, Any]:
    """A plain sentence-transformers run on the same model: MNRL at scale 1/temperature, no evaluation."""
    model, _ = build_model(cfg)
    precision = resolve_precision(cfg.precision, device)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(workdir / "plain"), per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.lr,
        max_steps=cfg.max_steps, bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=device == "cpu",
        seed=42, save_strategy="no", report_to="none", disable_tqdm=True, logging_steps=cfg.max_steps,
        dataloader_drop_last=True,
    )
    timer = StepTimer()
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=to_dataset(rows),
                                         loss=MultipleNegativesRankingLoss(model, scale=1.0 / cfg.temperature),
                                         callbacks=[timer])
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    return {"median_step_s": timer.median_step_s(warmup), "steps": trainer.state.global_step,
            "end_to_end_examples_per_s": round(trainer.state.global_step * cfg.batch_size / seconds, 2),
            "train_seconds": round(seconds, 1)}


def sts_scores(model_dir: Path, settings: EvaluateConfig, data_root: str, device: str, tasks: tuple[str, ...]) -> dict[str, float]:
    """The saved model, reloaded as the evaluation stage loads it, scored by the STS harness."""
    from syncse.evaluate import CachedEncoder, encode_fn_for, evaluate_sts  # mteb is heavy: after training

    model = encoders.load_encoder(str(model_dir), max_seq_length=settings.max_seq_length).to(device)
    return evaluate_sts(CachedEncoder(encode_fn_for(model, settings.batch_size), model_dir.name), data_root, tasks)


def throughput(run: dict[str, Any], batch_size: int, flops_per_step: float, peak: float | None) -> dict[str, Any]:
    """examples/s, achieved TFLOP/s and MFU of a run's median step."""
    tflops = flops_per_step / run["median_step_s"] / 1e12
    return {**run, "examples_per_s": round(batch_size / run["median_step_s"], 2), "tflops": round(tflops, 3),
            "mfu": round(tflops / peak, 4) if peak else None}


# --------------------------------------------------------------------------- driver


def measure(args: argparse.Namespace, cfg: TrainConfig, report: dict[str, Any], out: Path, workdir: Path) -> None:
    """Both trainers at each precision; `report` is rewritten to `out` after every run."""
    rows = variant_rows("sup", args.data_root)
    probe, _ = build_model(cfg)
    length = padded_length(probe, rows, cfg.batch_size)
    flops_per_step = flops_per_token(probe, length) * len(COLUMNS) * cfg.batch_size * length
    report["flops"] = {"formula": "(6 N + 12 L H T) x 3 B T", "non_embedding_params_N": non_embedding_params(probe),
                       "layers_L": probe[0].model.config.num_hidden_layers, "hidden_H": probe[0].model.config.hidden_size,
                       "padded_length_T": round(length, 2), "flops_per_step": flops_per_step,
                       "attn_implementation": probe[0].model.config._attn_implementation}
    del probe
    peak = report["device"]["peak_bf16_tflops"]
    for precision in args.precisions.split(","):
        run_cfg = dataclasses.replace(cfg, precision=precision)
        ours = run_syncse(run_cfg, rows, workdir / precision, Path(args.dev_root or args.data_root), args.device, args.warmup)
        ours["sts"] = sts_scores(workdir / precision / "model", load_params(args.params).evaluate, args.data_root,
                                 args.device, tuple(args.sts_tasks.split(",")))
        shutil.copy(workdir / precision / "log.csv", out / f"train_log_{precision}.csv")
        report["runs"].append({"trainer": "syncse", "precision": precision, **throughput(ours, cfg.batch_size, flops_per_step, peak)})
        write_report(report, out)
        plain = run_plain(run_cfg, rows, workdir / precision, args.device, args.warmup)
        report["runs"].append({"trainer": "plain_st_mnrl", "precision": precision, **throughput(plain, cfg.batch_size, flops_per_step, peak)})
        report["ratio_syncse_to_plain"][precision] = round(plain["median_step_s"] / ours["median_step_s"], 3)
        write_report(report, out)


def write_report(report: dict[str, Any], out: Path) -> None:
    (out / "gpu_train.json").write_text(json.dumps(report, indent=2) + "\n")


def summary(report: dict[str, Any]) -> str:
    """The report as a few printable lines."""
    device = report["device"]
    lines = [f"device {device['name']} (bf16 peak {device['peak_bf16_tflops']} TFLOP/s), base {report['settings']['base']} "
             f"({report['settings']['weights']}), batch {report['settings']['batch_size']}, length {report['settings']['max_seq_length']}, "
             f"{report['settings']['steps']} steps; FLOPs/step {report['flops']['flops_per_step']:.3e} "
             f"(T = {report['flops']['padded_length_T']}, {report['flops']['formula']})"]
    for run in report["runs"]:
        mfu = f"{100 * run['mfu']:.1f}%" if run["mfu"] is not None else "n/a"
        sts = f", STS avg {run['sts']['avg']}, dev best {run['dev_best'].get('avg')}" if "sts" in run else ""
        lines.append(f"{run['trainer']:>13} {run['precision']}: {run['examples_per_s']:.1f} examples/s, "
                     f"{run['tflops']:.1f} TFLOP/s, MFU {mfu}, end to end {run['end_to_end_examples_per_s']} examples/s{sts}")
    for precision, ratio in report["ratio_syncse_to_plain"].items():
        lines.append(f"syncse / plain sentence-transformers, {precision}: {ratio:.3f}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="gguf:smollm2-135m", help="encoder spec (syncse.encoders)")
    parser.add_argument("--architecture", type=Path, default=None, help="config + tokenizer dir: random weights instead of --base")
    parser.add_argument("--export-architecture", type=Path, default=None, help="write --base's config + tokenizer here and exit")
    parser.add_argument("--tiny", action="store_true", help="with --architecture: a one-layer, 64-wide model (CPU runs)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precisions", default="bf16,fp16", help="comma-separated: fp32, bf16, fp16")
    parser.add_argument("--batch-size", type=int, default=512, help="anchors per step")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--eval-steps", type=int, default=100, help="dev evaluation + checkpoint every N steps")
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of the median")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the device, TFLOP/s")
    parser.add_argument("--params", default="params.yaml", help="the sup variant's training settings")
    parser.add_argument("--data-root", default="data", help="NLI rows and the STS test sets")
    parser.add_argument("--dev-root", default=None, help="dev sets for selection (default: --data-root)")
    parser.add_argument("--sts-tasks", default="sts12,sts13,sts14,sts15,sts16,stsb,sickr")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "artifacts/gpu-check")))
    args = parser.parse_args(argv)
    if args.tiny and args.architecture is None:
        parser.error("--tiny needs --architecture")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.export_architecture is not None:
        print(f"wrote {export_architecture(args.base, args.export_architecture)}")
        return None
    args.out.mkdir(parents=True, exist_ok=True)
    name = device_name(args.device)
    report: dict[str, Any] = {
        "device": {"name": name, "peak_bf16_tflops": args.peak_tflops or peak_tflops(name), "torch": torch.__version__,
                   "cuda": torch.version.cuda, "transformers": transformers.__version__,
                   "sentence_transformers": sentence_transformers.__version__},
        "settings": {"base": str(args.architecture or args.base), "weights": "random" if args.architecture else "pretrained",
                     "tiny": args.tiny, "batch_size": args.batch_size, "steps": args.steps,
                     "eval_steps": args.eval_steps, "warmup": args.warmup, "precisions": args.precisions},
        "runs": [], "ratio_syncse_to_plain": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        base = str(random_init_base(args.architecture, Path(tmp) / "base", args.tiny)) if args.architecture else args.base
        cfg = dataclasses.replace(load_params(args.params).train.for_variant("sup"), base=base, batch_size=args.batch_size,
                                  max_steps=args.steps, eval_steps=args.eval_steps, num_examples=0)
        report["settings"] |= {"max_seq_length": cfg.max_seq_length, "lr": cfg.lr, "temperature": cfg.temperature}
        measure(args, cfg, report, args.out, Path(tmp))
    print(summary(report))
    return report


if __name__ == "__main__":
    main()
