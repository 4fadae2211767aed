"""OpenMP's wait policy on the main job's two kinds of work: PASSIVE (threads sleep between parallel
regions; the Makefile exported it until 2026-12-03) against libgomp's default (spin a while, then sleep).

Each measurement is a fresh process, since the policy is read once when OpenMP starts; the two policies
alternate, round after round, so that a slow spell of the machine falls on both:

- `encode`: the evaluation stage's encode (`syncse.evaluate.encode_fn_for`, `evaluate.precision`) of a
  seeded sample of the STS test sentences through `train.base`, after a warm-up batch;
- `generate`: annotation-sized chat calls (a shared few-shot system prompt, a new sentence each call,
  up to 40 tokens) to the embedded Qwen2.5-Coder-0.5B on `llm.n_threads` threads, no response cache;
  llama.cpp's own timings give prompt and generation tokens/s.

Printed figures, not a timed test:

    python benchmarks/bench_omp_wait.py [--rounds 3] [--sentences 3000] [--calls 8]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
import urllib.request

POLICIES = {"PASSIVE": "PASSIVE", "default": None}


def encode_seconds(sentences: int) -> dict[str, float]:
    """Seconds to encode `sentences` STS test sentences as the evaluation stage does."""
    from syncse.config import load_params
    from syncse.encoders import load_encoder
    from syncse.evaluate import TASKS, TEST_TASKS, encode_fn_for, task_sentences

    params = load_params("params.yaml")
    model = load_encoder(params.train.base, "auto", max_seq_length=params.evaluate.max_seq_length)
    texts = list(dict.fromkeys(task_sentences([TASKS[key](params.data.root) for key in TEST_TASKS])))
    random.seed(0)
    texts = random.sample(texts, min(sentences, len(texts)))
    encode = encode_fn_for(model, params.evaluate.batch_size, params.evaluate.precision)
    encode(texts[:params.evaluate.batch_size])  # warm-up
    started = time.perf_counter()
    encode(texts)
    return {"seconds": time.perf_counter() - started}


def generate_rates(calls: int) -> dict[str, float]:
    """Wall seconds of `calls` chat calls to the embedded model, and llama.cpp's prompt and generation tokens/s."""
    from syncse.config import load_params
    from syncse.llm import EmbeddedServer, ServerSettings, resolve_gguf

    llm = load_params("params.yaml").llm
    gguf, _ = resolve_gguf(llm.model, llm.model_dir)
    system = "Rewrite the sentence so that it is entailed by it. " + " ".join(
        f"Example {i}: A man number {i} is playing a guitar near the old station. -> A man plays music." for i in range(12))
    totals = {"prompt_n": 0, "prompt_ms": 0.0, "predicted_n": 0, "predicted_ms": 0.0}
    with EmbeddedServer(gguf, ServerSettings(n_threads=llm.n_threads, cache_prompt=True)) as url:
        started = time.perf_counter()
        for i in range(calls):
            body = {"model": llm.model, "max_tokens": 40, "temperature": 1.0, "seed": i,
                    "messages": [{"role": "system", "content": system},
                                 {"role": "user", "content": f"Sentence {i}: two children number {i} feed the ducks at a pond."}]}
            request = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request) as response:
                timings = json.load(response)["timings"]
            if i:  # the first call also evaluates the shared prefix
                for key in totals:
                    totals[key] += timings[key]
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "prompt_tok_s": 1000 * totals["prompt_n"] / totals["prompt_ms"],
            "gen_tok_s": 1000 * totals["predicted_n"] / totals["predicted_ms"]}


def run_child(workload: str, policy: str | None, args: argparse.Namespace) -> dict[str, float]:
    """One measurement in a fresh process with OMP_WAIT_POLICY set to `policy` (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    command = [sys.executable, __file__, "--child", workload, "--sentences", str(args.sentences), "--calls", str(args.calls)]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=3000)
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--child", choices=["encode", "generate"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = encode_seconds(args.sentences) if args.child == "encode" else generate_rates(args.calls)
        print(json.dumps(result))
        return
    for workload in ("encode", "generate"):
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in POLICIES}
        for _ in range(args.rounds):
            for name, policy in POLICIES.items():
                runs[name].append(run_child(workload, policy, args))
        for name, results in runs.items():
            figures = {key: [round(r[key], 2) for r in results] for key in results[0]}
            print(f"{workload:8s} {name:8s} " + "  ".join(f"{key} {values}" for key, values in figures.items()))
        ratio = statistics.median(r["seconds"] for r in runs["PASSIVE"]) / statistics.median(r["seconds"] for r in runs["default"])
        print(f"{workload:8s} PASSIVE / default, median seconds: {ratio:.2f}x")


if __name__ == "__main__":
    main()
