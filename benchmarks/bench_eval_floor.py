"""The evaluation stage's compute floor: how close encoding the STS sets in bf16 comes to it.

Counts the tokens of every distinct test-set sentence as the stage batches them (most tokens first,
`evaluate.batch_size`, `evaluate.max_seq_length`; beside it the padded tokens of sentence-transformers'
own order, most characters first, which the stage used before), turns them into the forward pass's matmul FLOPs
(2 x the non-embedding weights per padded token; attention's own products are under 1% at these
lengths and left out), and divides by the bf16 GEMM rate this machine reaches on the model's own
shapes (a batch's tokens x hidden, times each projection): the floor. Then encodes the sentences
(or a random sample, extrapolated) as the stage does (bf16 autocast), and as `SentenceTransformer.encode`
batches them (the baseline). Printed figures, one process,
not a timed test:

    python benchmarks/bench_eval_floor.py [--model gguf:smollm2-135m:6] [--sample 0]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from syncse.config import load_params
from syncse.encoders import load_encoder
from syncse.evaluate import TASKS, TEST_TASKS, encode_fn_for, resolve_precision, task_sentences, token_counts


def gemm_rate(rows: int, shapes: list[tuple[int, int]], repeats: int = 20) -> float:
    """bf16 GFLOP/s of (rows, k) @ (k, n) over the model's projection shapes (median of `repeats` passes)."""
    pairs = [(torch.randn(rows, k, dtype=torch.bfloat16), torch.randn(k, n, dtype=torch.bfloat16)) for k, n in shapes]
    flops = sum(2 * rows * k * n for k, n in shapes)
    for a, b in pairs:  # warm-up
        a @ b
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for a, b in pairs:
            a @ b
        times.append(time.perf_counter() - started)
    return flops / statistics.median(times) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="encoder spec (default: train.base of params.yaml)")
    parser.add_argument("--sample", type=int, default=0, help="sentences encoded to measure the achieved rate (0: all)")
    args = parser.parse_args()
    params = load_params("params.yaml")
    cfg = params.evaluate
    model = load_encoder(args.model or params.train.base, "auto", max_seq_length=cfg.max_seq_length)
    config = model[0].model.config
    hidden, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = hidden * config.num_key_value_heads // config.num_attention_heads
    shapes = [(hidden, hidden), (hidden, kv), (hidden, kv), (hidden, hidden), (hidden, inner), (hidden, inner), (inner, hidden)]
    weights = layers * sum(k * n for k, n in shapes)

    sentences = list(dict.fromkeys(task_sentences([TASKS[key](params.data.root) for key in TEST_TASKS])))
    counts = token_counts(model, sentences)
    lengths = sorted(counts, reverse=True)
    batches = [lengths[i:i + cfg.batch_size] for i in range(0, len(lengths), cfg.batch_size)]
    padded = sum(max(batch) * len(batch) for batch in batches)
    by_chars = [count for _, count in sorted(zip(sentences, counts), key=lambda pair: -len(pair[0]))]
    padded_by_chars = sum(max(by_chars[i:i + cfg.batch_size]) * len(by_chars[i:i + cfg.batch_size])
                          for i in range(0, len(by_chars), cfg.batch_size))
    flops = 2 * weights * padded
    typical_rows = int(statistics.median(max(batch) * len(batch) for batch in batches))
    rate = gemm_rate(typical_rows, shapes)
    floor = flops / (rate * 1e9)

    random.seed(0)
    sample = random.sample(sentences, args.sample) if 0 < args.sample < len(sentences) else sentences
    encode = encode_fn_for(model, cfg.batch_size, cfg.precision)
    encode(sample[:64])  # warm-up
    started = time.perf_counter()
    encode(sample)
    achieved = (time.perf_counter() - started) * len(sentences) / len(sample)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=resolve_precision(cfg.precision) == "bf16"):
        started = time.perf_counter()  # the baseline: sentence-transformers' own batching, most characters first
        model.encode(sample, batch_size=cfg.batch_size, show_progress_bar=False)
        baseline = (time.perf_counter() - started) * len(sentences) / len(sample)

    print(f"model {args.model or params.train.base}: {layers} layers, hidden {hidden}, {weights / 1e6:.2f} M non-embedding weights; "
          f"{torch.get_num_threads()} threads")
    print(f"{len(sentences):,} distinct test sentences, {sum(lengths):,} tokens, {padded:,} padded in {len(batches)} batches of "
          f"{cfg.batch_size}: {flops / 1e12:.2f} TFLOP forward")
    print(f"sorted by characters instead (sentence-transformers' order): {padded_by_chars:,} padded tokens, "
          f"{padded_by_chars / padded:.2f}x")
    print(f"bf16 GEMM on the model's shapes at {typical_rows} rows (a median batch): {rate:.0f} GFLOP/s")
    print(f"floor {floor:.0f} s; encoding {len(sample):,} ({cfg.precision}) takes or extrapolates to {achieved:.0f} s: "
          f"{achieved / floor:.2f}x the floor")
    print(f"sentence-transformers' own encode of the same sentences (characters first, the same autocast): {baseline:.0f} s, "
          f"{baseline / achieved:.2f}x the stage's")


if __name__ == "__main__":
    main()
