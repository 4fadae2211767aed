"""Can the embedded generator judge its own pairs (the self-check)? README "Self-check" figures.

Scores 20 human NLI premises against their entailment and their contradiction with the embedded
model three ways, greedy, each answer constrained by a JSON schema:
  - `zero-shot`: the self-check's own call (`judge_request`, MultiCSR's 0-5 scale);
  - `few-shot`: the same with four scored examples before it;
  - `contradict` / `entail`: yes/no questions instead of a scale.
A useful judge passes entailments (score >= 3) and fails contradictions (score <= 3 passes a negative).

    python benchmarks/bench_judge.py [--n 20] [--model qwen2.5-coder-0.5b]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Callable

from syncse.config import load_params
from syncse.data import load_nli_triplets
from syncse.llm import ChatClient, ChatRequest, EmbeddedServer, ServerSettings, resolve_gguf
from syncse.synth.requests import JUDGE_MAX_TOKENS, JUDGE_SYSTEM, SCORE_SCHEMA, judge_request
from syncse.synth.selfcheck import parse_score

SHOTS = (("A man is playing a guitar on stage.", "A musician performs with a guitar.", 4),
         ("A man is playing a guitar on stage.", "A man is not playing any instrument.", 1),
         ("Two dogs run through the snow.", "Two dogs are running in the snow.", 5),
         ("Two dogs run through the snow.", "Two cats sleep on a warm sofa.", 0))
YES_NO = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {
    "type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}}, "required": ["answer"]}}}
QUESTIONS = {"contradict": "Do the two sentences contradict each other (they cannot both be true)? Answer yes or no.",
             "entail": "If sentence 1 is true, must sentence 2 also be true? Answer yes or no."}
GREEDY = {"temperature": 0.0, "max_tokens": JUDGE_MAX_TOKENS}


def _pair(anchor: str, text: str) -> dict[str, str]:
    return {"role": "user", "content": f"Sentence 1: {anchor}\nSentence 2: {text}"}


def few_shot(anchor: str, text: str) -> ChatRequest:
    """The self-check's call with four scored examples before it."""
    messages = [{"role": "system", "content": JUDGE_SYSTEM}]
    for a, t, score in SHOTS:
        messages += [_pair(a, t), {"role": "assistant", "content": json.dumps({"score": score})}]
    return ChatRequest(tuple(messages + [_pair(anchor, text)]), {**GREEDY, "response_format": SCORE_SCHEMA})


def question(text: str) -> Callable[[str, str], ChatRequest]:
    """A yes/no question about the pair instead of a score."""
    return lambda anchor, other: ChatRequest(({"role": "system", "content": text}, _pair(anchor, other)),
                                             {**GREEDY, "response_format": YES_NO})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="NLI premises (seeded sample)")
    parser.add_argument("--model", default=None, help="embedded model (default: params llm.model)")
    args = parser.parse_args()
    params = load_params("params.yaml")
    rows = load_nli_triplets(params.data.root)
    random.Random(3).shuffle(rows)
    rows = rows[: args.n]
    gguf, digest = resolve_gguf(args.model or params.llm.model, params.llm.model_dir)
    scales = {"zero-shot": lambda a, t: judge_request(a, t, True), "few-shot": few_shot}
    questions = {name: question(text) for name, text in QUESTIONS.items()}
    with EmbeddedServer(gguf, ServerSettings(1, 1, 2048, True)) as url, tempfile.TemporaryDirectory() as cache:
        client = ChatClient(url, params.llm.model, "embedded", cache, f"q:{digest}", max_in_flight=1, progress=False)
        for name, build in {**scales, **questions}.items():
            for side in ("entailment", "contradiction"):
                started = time.perf_counter()
                answers = [r.content for r in client.complete([build(row.premise, getattr(row, side)) for row in rows])]
                per_request = (time.perf_counter() - started) / len(rows)
                if name in scales:
                    scores = [s for s in map(parse_score, answers) if s is not None]
                    passed = sum(s >= 3 if side == "entailment" else s <= 3 for s in scores)
                    found = f"mean score {sum(scores) / max(1, len(scores)):.1f}, passes as a {'positive' if side == 'entailment' else 'negative'} {passed}/{len(rows)}"
                else:
                    found = f"'yes' {sum(json.loads(a)['answer'] == 'yes' for a in answers)}/{len(rows)}"
                print(f"{name:10s} {side:13s} {found} ({per_request:.2f} s/request)", flush=True)


if __name__ == "__main__":
    main()
