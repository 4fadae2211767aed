"""Which embedded generator gives more useful triplets per hour: Qwen2.5-Coder-0.5B or -1.5B (issue 21).

Both annotate the same partial anchors (params.yaml's `synth`, `seed` and data; the first
`--anchors` of the seeded drawing order) with the margin filter on in `pair` mode, so that every
kept row is judged: a triplet whose negative the judge (`synth.margin_judge`) puts at least
`synth.margin` further from the anchor than its positive is a useful triplet; the others keep only
their pair. Per model: kept rows and useful triplets, copies of the anchor (resampled and dropped),
the judge's mean cos(anchor, positive) and cos(anchor, negative), and generation seconds per useful
triplet. The models take turns in steps of `--step` anchors (one process, each on its own fresh
response cache, so nothing is served from an earlier run), so that a change in the machine's speed
during the run falls on both. At the end each model's responses are banked in `--bank` (the `study`
profile's response cache by default, `study-cache/llm`: content-addressed, so the study's synthesis
over the same anchors reuses them; `dvc pull study-cache.dvc` first, `scripts/bank_push.py` after).
Printed figures and `--out` (JSON); not a timed test:

    python benchmarks/bench_generators.py [--anchors 200] [--step 100] [--out results/generators.json]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from syncse.config import load_params
from syncse.data import write_json
from syncse.llm import open_client
from syncse.synth import synthesize

MODELS = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")


def copies(metrics: dict[str, float]) -> int:
    """Outputs that copied their anchor: resampled (the embedded backend's aids) and dropped."""
    return int(sum(value for key, value in metrics.items() if key.endswith("copies_anchor")))


def summary(metrics: dict[str, float], seconds: float) -> dict[str, float]:
    """The comparison's figures for one model from its last (full-size) run's metrics."""
    useful = int(metrics["kept"] - metrics["kept_as_pair"])
    return {
        "anchors": int(metrics["requested"]),
        "kept_rows": int(metrics["kept"]),
        "useful_triplets": useful,
        "useful_share": round(useful / metrics["requested"], 4),
        "copies": copies(metrics),
        "judge_cos_anchor_positive": metrics["margin_positive_cosine_before"],
        "judge_cos_anchor_negative": metrics["margin_negative_cosine_before"],
        "generation_s": round(seconds, 1),
        "s_per_useful_triplet": round(seconds / max(useful, 1), 2),
        "useful_triplets_per_hour": round(3600 * useful / seconds, 1),
        "completion_tokens": int(metrics["completion_tokens"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--anchors", type=int, default=200, help="partial anchors annotated by each model")
    parser.add_argument("--step", type=int, default=100, help="anchors per turn")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="llm.model values to compare")
    parser.add_argument("--bank", default=None, help="response cache that keeps the responses (default: the study profile's)")
    parser.add_argument("--out", default=None, help="also write the figures here (JSON)")
    args = parser.parse_args()
    params = load_params("params.yaml")
    bank = args.bank or load_params("params.yaml", "study").llm.cache_dir
    synth_cfg = replace(params.synth, filters=[*params.synth.filters, "margin"], on_bad_negative="pair")
    caches = {model: Path(tempfile.mkdtemp(prefix=f"bench-generators-{model}-")) for model in args.models}
    seconds = dict.fromkeys(args.models, 0.0)
    metrics: dict[str, dict[str, float]] = {}
    for size in range(args.step, args.anchors + args.step, args.step):
        for model in args.models:  # turns: each run's wall time covers only the anchors not yet cached
            llm = replace(params.llm, model=model, cache_dir=str(caches[model]))
            with open_client(llm) as client:
                result = synthesize("partial", client, replace(synth_cfg, n_partial=min(size, args.anchors)), llm,
                                    params.seed, params.data.root)
            seconds[model] += result.metrics["wall_s"]
            metrics[model] = result.metrics
            print(f"{model}: {min(size, args.anchors)} anchors, {seconds[model]:.0f} s so far", flush=True)
    figures = {model: summary(metrics[model], seconds[model]) for model in args.models}
    for model, cache in caches.items():
        shutil.copytree(cache, bank, dirs_exist_ok=True)
        shutil.rmtree(cache)
    keys = list(next(iter(figures.values())))
    print("| model | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for model, row in figures.items():
        print(f"| {model} | " + " | ".join(f"{row[key]:,}" for key in keys) + " |")
    if args.out:
        write_json(args.out, {"settings": {"anchors": args.anchors, "margin": synth_cfg.margin,
                                           "judge": synth_cfg.margin_judge, "seed": params.seed}, **figures})


if __name__ == "__main__":
    main()
