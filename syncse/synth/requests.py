"""The chat requests of synthesis: annotation (positive or hard negative of one anchor), scratch
generation (one-shot, by genre and topics), with their provenance, and the self-check's judge call.

The request body is the response cache's key: a change here re-pays every changed request.
`aids` (embedded backend only) adds a system prompt and JSON-schema output, which a 0.5B model
needs to produce anything usable; the openai backend sends the paper's prompts.
"""

from __future__ import annotations

import json
import random
from typing import Any

from syncse.config import LLMConfig, SamplingConfig, SynthConfig
from syncse.llm import ChatRequest
from syncse.synth.pools import Example, Instruction, PromptPools

AID_SYSTEM = (
    "You are a careful writing assistant that edits single sentences. Follow the instruction "
    "below. Never copy the input unchanged, never explain, answer with one sentence only.\n\n"
)
AID_SCRATCH_SYSTEM = "You are a creative writer. Answer with the list of sentences only, no commentary.\n\n"
SENTENCE_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "sentence",
        "schema": {"type": "object", "properties": {"sentence": {"type": "string"}}, "required": ["sentence"]},
    },
}
SENTENCES_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "sentences",
        "schema": {
            "type": "object",
            "properties": {"sentences": {"type": "array", "items": {"type": "string"}}},
            "required": ["sentences"],
        },
    },
}


JUDGE_SYSTEM = (
    "Rate how similar in meaning the two sentences are, from 0 (unrelated or contradictory) to 5 "
    "(the same meaning). Answer with the score only."
)
JUDGE_MAX_TOKENS = 16  # a score, or {"score": n} under the schema
SCORE_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "score",
        "schema": {
            "type": "object",
            "properties": {"score": {"type": "integer", "enum": [0, 1, 2, 3, 4, 5]}},
            "required": ["score"],
        },
    },
}


def aids_enabled(llm: LLMConfig) -> bool:
    """Small-model aids are for the embedded backend only; the openai backend sends the paper's prompts."""
    return llm.backend == "embedded" and llm.aids


def _sampling(cfg: SamplingConfig, seed: int, attempt: int) -> dict[str, Any]:
    """Body fields for one call; a resample (attempt > 0) is a little hotter and reseeded."""
    params: dict[str, Any] = {
        "temperature": round(cfg.temperature + 0.2 * attempt, 3),
        "top_p": cfg.top_p,
        "max_tokens": cfg.max_tokens,
        "seed": seed + attempt,
    }
    if cfg.presence_penalty:
        params["presence_penalty"] = cfg.presence_penalty
    if cfg.frequency_penalty:
        params["frequency_penalty"] = cfg.frequency_penalty
    return params


def request_seed(*parts: object) -> int:
    """A per-request seed derived from the run seed and the request's identity (order-free)."""
    return random.Random(":".join(map(str, parts))).randrange(2**31)


def annotation_request(
    anchor: str, side: str, pools: PromptPools, cfg: SynthConfig, seed: int, aids: bool, block: int, attempt: int = 0,
    repeat: int = 0,
) -> tuple[ChatRequest, dict[str, Any]]:
    """The chat call for one side of one anchor, and its provenance.

    Messages: the sampled instruction as the system message, `n_exemplars` exemplars as
    user/assistant turns, then the anchor. With `aids`: a guiding system preamble and JSON
    answers. The instruction and exemplars depend only on (seed, side, block): anchors of one
    block (`SynthConfig.exemplar_block` consecutive anchors) share the few-shot prefix, and a
    resample keeps it and changes only the sampling seed. `repeat` > 0 marks a later occurrence
    of the same anchor (premises repeat in the NLI rows): it gets its own sampling seed, so an
    independent answer instead of the cached first one.
    """
    instruction, rng = _instruction(side, pools, cfg, seed, block)
    shots = rng.sample(instruction.exemplars, min(cfg.n_exemplars, len(instruction.exemplars)))
    messages = [{"role": "system", "content": (AID_SYSTEM if aids else "") + instruction.text}]
    for shot in shots:
        answer = json.dumps({"sentence": shot.output}) if aids else shot.output
        messages += [{"role": "user", "content": shot.input}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": anchor})
    sampling_cfg = cfg.positive if side == "positive" else cfg.negative
    params = _sampling(sampling_cfg, request_seed(seed, side, anchor, *([repeat] if repeat else [])), attempt)
    if aids:
        params["response_format"] = SENTENCE_SCHEMA
    request = ChatRequest(tuple(messages), params)
    meta = {
        "instruction": instruction.id,
        "exemplars": [s.id for s in shots],
        "sampling": {k: v for k, v in params.items() if k != "response_format"},
        "prompt_hash": request.prompt_hash(),
        "attempt": attempt,
    }
    return request, meta


def _instruction(side: str, pools: PromptPools, cfg: SynthConfig, seed: int, block: int) -> tuple[Instruction, random.Random]:
    """The block's instruction and the generator its exemplars are drawn from.

    A negative block uses one of our targeted instructions with probability
    `cfg.targeted_negatives`, decided by a generator of its own: every other block draws exactly
    as without targeted instructions, so its requests (and cached responses) are unchanged.
    """
    if side == "negative" and cfg.targeted_negatives > 0:
        rng = random.Random(f"{seed}:targeted:{block}")
        if rng.random() < cfg.targeted_negatives:
            return rng.choice(pools.targeted), rng
    rng = random.Random(f"{seed}:{side}:{block}")
    return rng.choice(pools.instructions(side)), rng


def judge_request(anchor: str, text: str, aids: bool) -> ChatRequest:
    """The self-check's call: the similarity of `anchor` and `text` on MultiCSR's 0-5 scale, greedy
    and short; with `aids`, the answer is constrained to `{"score": 0..5}`."""
    messages = ({"role": "system", "content": JUDGE_SYSTEM},
                {"role": "user", "content": f"Sentence 1: {anchor}\nSentence 2: {text}"})
    params: dict[str, Any] = {"temperature": 0.0, "max_tokens": JUDGE_MAX_TOKENS}
    if aids:
        params["response_format"] = SCORE_SCHEMA
    return ChatRequest(messages, params)


def scratch_request(
    call: int, pools: PromptPools, cfg: SynthConfig, seed: int, aids: bool
) -> tuple[ChatRequest, dict[str, Any]]:
    """Scratch call number `call`: genre, instruction, one-shot sentences and topics sampled.

    The one-shot answer is `shot_sentences` of the genre's example sentences, sampled per call
    from its first `shot_pool` (0: all); the topics its question names are, with `shot_topics:
    shot` (the paper), the topics those sentences are about (at most `n_topics`, in order of
    appearance), or with `sampled` an independent draw. The real question names `n_topics`
    topics sampled from the paper's list.
    """
    rng = random.Random(f"{seed}:scratch:{call}")
    genre = rng.choice(pools.genres)
    templates = pools.caption if genre.caption else pools.scratch
    instruction_id = rng.choice(sorted(templates))
    pool = genre.shot_pool(cfg.shot_pool)
    shot: list[Example] = rng.sample(pool, min(cfg.shot_sentences, len(pool)))
    if cfg.shot_topics == "sampled":
        shot_topics, topics = (rng.sample(pools.topics, cfg.n_topics) for _ in range(2))
    else:
        shot_topics = list(dict.fromkeys(e.topic for e in shot))[: cfg.n_topics]
        topics = rng.sample(pools.topics, cfg.n_topics)

    def ask(number: int, chosen: list[str]) -> str:
        return templates[instruction_id].format(number=number, genre=genre.description, topics=", ".join(chosen))

    texts = [e.text for e in shot]
    answer = json.dumps({"sentences": texts}) if aids else "\n".join(f"{i}. {s}" for i, s in enumerate(texts, 1))
    messages = [
        {"role": "user", "content": ask(len(shot), shot_topics)},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": ask(cfg.sentences_per_call, topics)},
    ]
    if aids:
        messages.insert(0, {"role": "system", "content": AID_SCRATCH_SYSTEM.strip()})
    params = _sampling(cfg.scratch, request_seed(seed, "scratch", call), 0)
    if aids:
        params["response_format"] = SENTENCES_SCHEMA
    request = ChatRequest(tuple(messages), params)
    meta = {
        "genre": genre.id,
        "topics": topics,
        "shot_topics": shot_topics,
        "instruction": instruction_id,
        "sampling": {k: v for k, v in params.items() if k != "response_format"},
        "prompt_hash": request.prompt_hash(),
    }
    return request, meta
