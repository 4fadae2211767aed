"""The embedded generator's llama.cpp build: PyPI's xllamacpp wheel (a portable AVX2 build) against
one compiled on this machine (`make native-llama`: GGML_NATIVE, e.g. AVX-512 and VNNI where the CPU has them).

Both builds annotate the same partial anchors of the `--profile`'s synthesis settings (the first of
its seeded drawing order, its `llm.model`), each on a fresh response cache of its own, so nothing is
served from an earlier run. The builds take turns of `--step` anchors, each turn a fresh process (the
native build is put first on its `sys.path` by PYTHONPATH), so that a change in the machine's speed
falls on both. Per build: wall seconds, completion tokens, kept rows, and llama.cpp's own prompt and
generation tokens/s summed over the responses. Printed figures, not a timed test:

    make native-llama   # compiles xllamacpp into .cache/native-llama (about 25 min on 2 cores)
    python benchmarks/bench_llama_build.py [--native .cache/native-llama] [--anchors 48] [--step 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path


def annotate(profile: str, anchors: int, cache_dir: str) -> dict[str, object]:
    """Synthesize `anchors` partial anchors into `cache_dir` with the profile's settings (in this process)."""
    import xllamacpp

    from syncse.config import load_params
    from syncse.llm import open_client
    from syncse.synth import synthesize

    params = load_params("params.yaml", profile)
    llm = replace(params.llm, cache_dir=cache_dir, progress=False)
    synth = replace(params.synth, n_partial=anchors)
    with open_client(llm) as client:
        result = synthesize("partial", client, synth, llm, params.seed, params.data.root)
    return {"wall_s": result.metrics["wall_s"], "completion_tokens": result.metrics["completion_tokens"],
            "kept": len(result.triplets), "xllamacpp": str(Path(xllamacpp.__file__).parent),
            "system_info": xllamacpp.get_system_info()}


def llama_rates(cache_dir: Path) -> dict[str, float]:
    """Prompt and generation tokens/s from llama.cpp's `timings` in every response of a cache."""
    from syncse.llm import ResponseCache

    totals = {"prompt_n": 0.0, "prompt_ms": 0.0, "predicted_n": 0.0, "predicted_ms": 0.0}
    for body in ResponseCache(cache_dir).responses():
        timings = body.get("timings", {})
        for key in totals:
            totals[key] += timings.get(key, 0.0)
    return {"prompt_tok_s": round(1000 * totals["prompt_n"] / max(totals["prompt_ms"], 1e-9), 1),
            "gen_tok_s": round(1000 * totals["predicted_n"] / max(totals["predicted_ms"], 1e-9), 1)}


def run_turn(native: str | None, args: argparse.Namespace, anchors: int, cache_dir: Path) -> dict[str, object]:
    """One turn in a fresh process: the wheel's build, or the native one first on the path."""
    env = dict(os.environ)
    if native:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(native).resolve()), env.get("PYTHONPATH")]))
    command = [sys.executable, __file__, "--child", str(anchors), "--cache", str(cache_dir), "--profile", args.profile]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--native", default=".cache/native-llama", help="`pip install --target` folder of the native build")
    parser.add_argument("--profile", default="scale", help="params.yaml profile whose synthesis settings and model are used")
    parser.add_argument("--anchors", type=int, default=48)
    parser.add_argument("--step", type=int, default=16)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(annotate(args.profile, args.child, args.cache)))
        return
    if not (Path(args.native) / "xllamacpp").is_dir():
        raise SystemExit(f"no native build in {args.native}: run `make native-llama` first")
    builds = {"wheel": None, "native": args.native}
    caches = {name: Path(tempfile.mkdtemp(prefix=f"bench-llama-{name}-")) for name in builds}
    seconds = dict.fromkeys(builds, 0.0)
    last: dict[str, dict[str, object]] = {}
    for anchors in range(args.step, args.anchors + 1, args.step):
        for name, native in builds.items():
            last[name] = run_turn(native, args, anchors, caches[name])
            seconds[name] += float(last[name]["wall_s"])
            print(f"{name:6s} {anchors} anchors, {seconds[name]:.0f} s so far ({last[name]['xllamacpp']})", flush=True)
    for name in builds:
        figures = {"seconds": round(seconds[name], 1), "completion_tokens": last[name]["completion_tokens"],
                   "kept": last[name]["kept"], **llama_rates(caches[name])}
        print(f"{name:6s} " + "  ".join(f"{key} {value}" for key, value in figures.items()))
        print(f"{name:6s} {last[name]['system_info']}")
    print(f"wheel / native, seconds: {seconds['wheel'] / seconds['native']:.2f}x "
          f"(seconds per completion token: {(seconds['wheel'] / float(last['wheel']['completion_tokens'])) / (seconds['native'] / float(last['native']['completion_tokens'])):.2f}x)")


if __name__ == "__main__":
    main()
