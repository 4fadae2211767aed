"""Synthesis throughput: the client against a fake API, and the embedded runtime's configurations.

1. Fake OpenAI-compatible server on 127.0.0.1 with a fixed per-request latency: triplets/s and
   tokens/s as the client's in-flight limit grows (what concurrency buys against a remote API).
2. Embedded llama.cpp (Qwen2.5-Coder-0.5B by default): the same annotation calls under a naive
   setup (one request at a time, one slot, no prompt cache, a fresh few-shot sample per call)
   and under faster ones (prompt-prefix KV reuse with shared few-shot blocks, parallel slots,
   threads). All rows are measured in one run, so the ratios are comparable; absolute numbers
   depend on what else the machine is doing.

Run: `.venv/bin/python benchmarks/bench_synth.py [--anchors 8] [--model smollm2-135m]`.
Responses are never served from a cache here: each configuration gets a fresh cache folder.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace

from syncse import synth
from syncse.config import SynthConfig
from syncse.llm import ChatClient, ChatRequest, EmbeddedServer, ServerSettings, resolve_gguf
from syncse.testing import FakeOpenAIServer

SENTENCES = [
    "A man in a blue shirt is repairing a bicycle on the sidewalk.",
    "Two children are feeding ducks at a small pond.",
    "The city council approved a new budget for public parks.",
    "A woman is reading a newspaper on a crowded train.",
    "Several people are waiting in line outside a bakery.",
    "The orchestra rehearsed the symphony for three hours.",
    "A brown dog is swimming across a river to fetch a stick.",
    "Students are taking notes during a chemistry lecture.",
    "A chef is grilling vegetables in an outdoor kitchen.",
    "The old bridge was closed after the storm damaged it.",
    "A girl in a yellow raincoat is jumping into a puddle.",
    "Workers are unloading boxes from a delivery truck.",
    "The museum opened a new exhibit on ancient Egypt.",
    "Two elderly men are playing chess in the park.",
    "A surfer is riding a large wave near the shore.",
    "The team celebrated after winning the championship game.",
]


def fake_server_scaling(n_requests: int, latency_s: float, limits: list[int]) -> None:
    """Requests/s against a server that takes `latency_s` per request, per in-flight limit."""
    print(f"\n== fake OpenAI-compatible server, {latency_s * 1000:.0f} ms per request, {n_requests} requests")
    print(f"{'in-flight':>10} {'req/s':>8} {'triplets/s':>11} {'tokens/s':>9} {'speedup':>8}")
    requests = [ChatRequest(({"role": "user", "content": f"sentence {i}"},), {"seed": i}) for i in range(n_requests)]
    base = None
    with FakeOpenAIServer(latency_s=latency_s) as server:
        for limit in limits:
            with tempfile.TemporaryDirectory() as cache:
                client = ChatClient(server.base_url, "fake", "k", cache, "bench", max_in_flight=limit, progress=False)
                started = time.perf_counter()
                client.complete(requests)
                wall = time.perf_counter() - started
            rate = n_requests / wall
            base = base or rate
            tokens = client.stats.prompt_tokens + client.stats.completion_tokens
            print(f"{limit:>10} {rate:>8.1f} {rate / 2:>11.1f} {tokens / wall:>9.0f} {rate / base:>7.1f}x")


EMBEDDED_CONFIGS = {
    # name: (threads, slots, prompt cache, in-flight, exemplar block)
    "naive sequential": (1, 1, False, 1, 1),
    "prompt cache, fresh sample per call": (1, 1, True, 1, 1),
    "prompt cache + blocks of 8": (1, 1, True, 2, 8),
    "prompt cache + blocks of 16 (params.yaml)": (1, 1, True, 2, 16),
    "4 slots, 4 in flight, blocks of 16": (1, 4, True, 4, 16),
    "2 slots, 2 in flight, blocks of 16": (1, 2, True, 2, 16),
    "2 threads, blocks of 16": (2, 1, True, 2, 16),
}


def embedded(model: str, n_anchors: int, names: list[str]) -> None:
    """Annotation throughput (positive + negative per anchor, JSON aids on, no resampling)."""
    gguf, digest = resolve_gguf(model, ".cache/models")
    anchors = (SENTENCES * (n_anchors // len(SENTENCES) + 1))[:n_anchors]
    anchors = [f"{a[:-1]}, {i}." if i >= len(SENTENCES) else a for i, a in enumerate(anchors)]
    pools = synth.load_pools()
    print(f"\n== embedded {model} ({gguf.name}), {n_anchors} anchors = {2 * n_anchors} calls per configuration")
    print(f"{'configuration':<42} {'triplets/s':>10} {'tokens/s':>9} {'prompt tok':>10} {'wall s':>7} {'vs naive':>9}")
    naive = None
    for name in names:
        threads, slots, cache_prompt, in_flight, block = EMBEDDED_CONFIGS[name]
        cfg = replace(SynthConfig(), exemplar_block=block)
        with EmbeddedServer(gguf, ServerSettings(threads, slots, 2048, cache_prompt)) as url, \
                tempfile.TemporaryDirectory() as cache:
            client = ChatClient(url, model, "embedded", cache, f"bench:{digest}", max_in_flight=in_flight, progress=False)
            started = time.perf_counter()
            synth.annotate(anchors, client, cfg, pools, seed=7, aids=True, reject_retries=0, label=name)
            wall = time.perf_counter() - started
        rate = n_anchors / wall
        naive = naive or rate
        tokens = client.stats.prompt_tokens + client.stats.completion_tokens
        print(f"{name:<42} {rate:>10.3f} {tokens / wall:>9.1f} {client.stats.prompt_tokens:>10} {wall:>7.1f} "
              f"{rate / naive:>8.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--anchors", type=int, default=16, help="anchors per embedded configuration")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b", help="embedded model key or .gguf path")
    parser.add_argument("--configs", nargs="*", default=list(EMBEDDED_CONFIGS), choices=list(EMBEDDED_CONFIGS))
    parser.add_argument("--skip-embedded", action="store_true")
    args = parser.parse_args()
    fake_server_scaling(n_requests=256, latency_s=0.1, limits=[1, 2, 4, 8, 16, 32, 64])
    if not args.skip_embedded:
        embedded(args.model, args.anchors, args.configs)


if __name__ == "__main__":
    main()
