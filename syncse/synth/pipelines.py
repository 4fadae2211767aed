"""The partial and scratch pipelines as steps: pick anchors, annotate, assemble, count.

- **partial**: unlabeled sentences (NLI premises by default) are shuffled and the first
  `n_partial` become anchors; each gets one positive and one hard negative from two chat calls.
- **scratch**: one-shot calls generate sentences by genre and topics; the answers are parsed,
  judged as `item`s, and the first `n_scratch` kept ones are annotated exactly like partial.

Every text passes the named filters of `synth.filters` (`syncse.synth.filters`); every drop is
counted by reason (`DROP_REASONS`), so kept + dropped = requested.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from syncse.config import PARTIAL_SOURCES, LLMConfig, SynthConfig
from syncse.data import Triplet, load_nli_triplets, nli_hypotheses, nli_premises, wiki_sentences
from syncse.llm import BudgetExceeded, ChatClient, ChatResult
from syncse.synth.filters import DROP_REASONS, Candidate, Filters
from syncse.synth.margin import REASON as MARGIN
from syncse.synth.margin import margin_filter
from syncse.synth.pools import SIDES, Instruction, PromptPools, load_pools
from syncse.synth.requests import aids_enabled, annotation_request, scratch_request
from syncse.synth.selfcheck import FAILED, UNPARSED, SelfCheck, open_self_check
from syncse.synth.text import clean_annotation, detokenize, normalize, parse_sentences

logger = logging.getLogger(__name__)

PIPELINES = ("partial", "scratch")


@dataclass
class SynthResult:
    """Triplets kept, drops by reason, rejected samples for the report, and metrics."""

    triplets: list[Triplet]
    drops: Counter[str]
    rejected: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    def drop_report(self) -> list[dict[str, Any]]:
        """Rows (reason, count, share of requested) for every reason with a drop, largest first."""
        requested = max(1, int(self.metrics.get("requested", 0)))
        return [
            {"reason": reason, "count": count, "share": round(count / requested, 3)}
            for reason, count in self.drops.most_common()
            if count
        ]


@dataclass
class SideState:
    """State of one side of one anchor across resamples."""

    output: str = ""
    reason: str | None = "empty"
    meta: dict[str, Any] = field(default_factory=dict)
    raw: str | None = None
    checks: int = 0  # self-check failures so far (each one regenerates the side)
    score: float | None = None  # the self-check's score of this output (None: not judged)


def _judge(
    result: ChatResult, side: str, anchor: str, instruction: Instruction, filters: Filters
) -> tuple[str, str | None]:
    """Cleaned output and its reject reason (None if usable)."""
    if result.error == "budget":
        return "", "budget"
    if result.error:
        return "", "request_failed"
    output = clean_annotation(result.content, anchor)
    candidate = Candidate(side, output, anchor, instruction.omits, result.refusal, instruction.reorders)
    return output, filters.reason(candidate)


def annotate(
    anchors: Sequence[str],
    client: ChatClient,
    cfg: SynthConfig,
    pools: PromptPools,
    seed: int,
    aids: bool,
    reject_retries: int,
    label: str,
    check: SelfCheck | None = None,
) -> tuple[list[dict[str, SideState]], Counter[str]]:
    """Positive and negative for each anchor; with aids, rejected outputs are resampled up to
    `reject_retries` times (a negative that copies its positive counts as a negative reject).
    With a self-check, a triplet whose sides both passed is judged, and a side that fails is
    resampled up to `synth.self_check_retries` times (with or without aids).

    Returns per-anchor side states and the count of resamples by first reason.
    """
    filters = Filters(cfg, pools)
    instructions = pools.by_id()
    repeats = _repeats(anchors)
    states = [{side: SideState() for side in SIDES} for _ in anchors]
    resampled: Counter[str] = Counter()
    tries: Counter[tuple[int, str]] = Counter()  # requests sent per side: a resample's attempt number
    retries = (reject_retries if aids else 0, cfg.self_check_retries if check else 0)
    todo = _block_order([(i, side) for i in range(len(anchors)) for side in SIDES], cfg.exemplar_block)
    for attempt in itertools.count():  # ends: a side is sent at most 1 + sum(retries) times
        if not todo:
            break
        built = [
            annotation_request(anchors[i], side, pools, cfg, seed, aids, i // cfg.exemplar_block, tries[i, side],
                               repeats[i])
            for i, side in todo
        ]
        results = client.complete([r for r, _ in built], desc=f"{label} annotate (try {attempt + 1})")
        for (i, side), (_, meta), result in zip(todo, built, results):
            output, reason = _judge(result, side, anchors[i], instructions[meta["instruction"]], filters)
            states[i][side] = SideState(output, reason, meta, result.content, states[i][side].checks)
            tries[i, side] += 1
        for state in states:
            pos, neg = state["positive"], state["negative"]
            if pos.reason is None and neg.reason is None:
                neg.reason = filters.reason(Candidate("pair", neg.output, pos.output))
        if check is not None:
            _self_check(anchors, states, check, label)
        todo = _block_order([(i, side) for i, s in enumerate(states) for side in SIDES
                             if _resend(s[side], tries[i, side], retries)], cfg.exemplar_block)
        resampled.update(f"{side}_{states[i][side].reason}" for i, side in todo)
    return states, resampled


def _resend(state: SideState, tries: int, retries: tuple[int, int]) -> bool:
    """Whether a side is sampled again: a filter reject while filter retries are left (`retries[0]`),
    a failed self-check while self-check retries are left (`retries[1]`)."""
    if state.reason in (None, "budget", "request_failed"):
        return False
    if state.reason in (FAILED, UNPARSED):
        return state.checks <= retries[1]
    return tries - state.checks <= retries[0]


def _self_check(anchors: Sequence[str], states: list[dict[str, SideState]], check: SelfCheck, label: str) -> None:
    """Judge every side not judged yet of the triplets whose two sides passed the filters; a side
    that fails takes the self-check's reason and counts one more failure."""
    todo = [(i, side) for i, s in enumerate(states) if all(x.reason is None for x in s.values())
            for side in SIDES if s[side].score is None]
    if not todo:
        return
    verdicts = check.score([(anchors[i], side, states[i][side].output) for i, side in todo], label)
    for (i, side), (score, reason) in zip(todo, verdicts):
        state = states[i][side]
        state.score, state.reason = score, reason
        state.meta = {**state.meta, "self_check": score}
        state.checks += reason in (FAILED, UNPARSED)


def _repeats(anchors: Sequence[str]) -> list[int]:
    """How many times each anchor occurred before it (premises repeat in the NLI rows)."""
    seen: Counter[str] = Counter()
    out = []
    for anchor in anchors:
        out.append(seen[anchor])
        seen[anchor] += 1
    return out


def _block_order(todo: list[tuple[int, str]], block: int) -> list[tuple[int, str]]:
    """Send calls block by block, and within a block side by side: calls sharing a few-shot
    prefix run back to back (KV reuse), and a budget stop leaves whole triplets behind
    (at most the block in progress is half done)."""
    return sorted(todo, key=lambda item: (item[0] // block, SIDES.index(item[1]), item[0]))


def _assemble(
    anchors: Sequence[str], states: list[dict[str, SideState]], source: str, extra: Sequence[dict[str, Any]], model: str
) -> tuple[list[Triplet], Counter[str], list[dict[str, Any]]]:
    """Triplets from side states; drops counted (first failing side wins) and sampled."""
    triplets, drops, rejected = [], Counter[str](), []
    for anchor, state, more in zip(anchors, states, extra):
        pos, neg = state["positive"], state["negative"]
        bad = next((side for side in SIDES if state[side].reason is not None), None)
        if bad is not None:
            key = _drop_key(bad, state[bad].reason)
            drops[key] += 1
            rejected.append({"anchor": anchor, "side": bad, "output": state[bad].raw, "reason": key})
            continue
        meta = {"model": model, **more, "positive": pos.meta, "negative": neg.meta}
        triplets.append(Triplet(anchor, pos.output, neg.output, source, meta))
    return triplets, drops, rejected


def _drop_key(side: str, reason: str | None) -> str:
    """The drop report's reason for a triplet whose `side` failed with `reason`."""
    if reason == "equals_positive":
        return "positive_equals_negative"
    if reason == FAILED:
        return f"self_check_{side}"
    return UNPARSED if reason == UNPARSED else f"{side}_{reason}"


def negative_instructions(triplets: Sequence[Triplet], pools: PromptPools) -> dict[str, int]:
    """Kept triplets per instruction of their negative (`kept_negative_<id>`: the paper's four and ours)."""
    counts = Counter(t.meta["negative"]["instruction"] for t in triplets)
    return {f"kept_negative_{i.id}": counts[i.id] for i in pools.negative + pools.targeted}


def select_anchors(candidates: Sequence[str], n: int, filters: Filters) -> tuple[list[str], list[int], Counter[str]]:
    """The first `n` candidates, minus those the filters drop at the `anchor` stage (counted by reason)."""
    kept, index, drops = [], [], Counter[str]()
    for i, candidate in enumerate(candidates[:n]):
        anchor = normalize(candidate)
        reason = filters.reason(Candidate("anchor", anchor))
        if reason:
            drops[reason] += 1
        else:
            kept.append(anchor)
            index.append(i)
    return kept, index, drops


def check_config(cfg: SynthConfig, pools: PromptPools) -> None:
    """Reject settings the pipelines (or the pools' sizes) cannot honour, naming the key and the allowed range."""
    smallest_genre = min(len(g.examples) for g in pools.genres)
    annotating = pools.positive + pools.negative + (pools.targeted if cfg.targeted_negatives else ())
    bounds = {
        "n_exemplars": (cfg.n_exemplars, 0, min(len(i.exemplars) for i in annotating)),
        "exemplar_block": (cfg.exemplar_block, 1, None),
        "n_topics": (cfg.n_topics, 1, len(pools.topics)),
        "sentences_per_call": (cfg.sentences_per_call, 1, None),
        "shot_pool": (cfg.shot_pool, 0, smallest_genre),
        "shot_sentences": (cfg.shot_sentences, 1, min(len(g.shot_pool(cfg.shot_pool)) for g in pools.genres)),
        "max_words": (cfg.max_words, 1, None),
    }
    for key, (value, low, high) in bounds.items():
        if value < low or (high is not None and value > high):
            raise ValueError(f"synth.{key}: {value} outside the allowed range [{low}, {high or 'inf'}]")
    if not 0 < cfg.copy_jaccard <= 1:
        raise ValueError(f"synth.copy_jaccard: {cfg.copy_jaccard} outside the allowed range (0, 1]")
    if cfg.overgenerate < 1:
        raise ValueError(f"synth.overgenerate: {cfg.overgenerate} must be >= 1")
    if cfg.on_bad_negative == "pair" and MARGIN not in cfg.filters:
        raise ValueError(f"synth.on_bad_negative: 'pair' acts on the margin filter's verdicts; add 'margin' to "
                         f"synth.filters (now {cfg.filters}) or set on_bad_negative: drop")
    Filters(cfg, pools)  # unknown filter names


def synthesize(
    name: str, client: ChatClient, cfg: SynthConfig, llm: LLMConfig, seed: int, data_root: str
) -> SynthResult:
    """Run pipeline `name` (`partial` or `scratch`) end to end and return triplets and metrics."""
    if name not in PIPELINES:
        raise ValueError(f"unknown synthesis pipeline {name!r}; expected one of {PIPELINES}")
    started = time.perf_counter()
    pools = load_pools()
    check_config(cfg, pools)
    aids = aids_enabled(llm)
    with open_self_check(client, cfg, llm) as check:
        if name == "partial":
            result = _partial(client, cfg, pools, seed, data_root, aids, llm.reject_retries, check)
        else:
            result = _scratch(client, cfg, pools, seed, aids, llm.reject_retries, check)
    missing = budget_missing(result)
    if missing:  # never train on a silently truncated set: fail the stage (before the judge), keep what was paid for
        raise BudgetExceeded(client.budget.stop_message(f"synthesize {name}", missing, result.metrics["requested"]))
    if MARGIN in cfg.filters:
        _margin_pass(result, cfg)
    if check is not None:
        result.metrics.update(check.metrics())
    result.metrics.update(negative_instructions(result.triplets, pools))
    result.metrics.update(run_metrics(result, client, time.perf_counter() - started))
    logger.info("%s: kept %d of %d requested; drops %s", name, len(result.triplets),
                result.metrics["requested"], dict(result.drops))
    return result


def partial_pool(source: str, data_root: str, distinct: bool) -> list[str]:
    """Partial's unlabeled sentences, detokenized: wiki1m sentences (deduplicated by the loader),
    or NLI premises: with `distinct` each premise once, else one per sup-SimCSE NLI row,
    duplicates included, as the paper annotated them (275,601 with the full `nli_for_simcse.csv`);
    `nli+hypotheses`: those premises, then each hypothesis that is no premise, once."""
    if source not in PARTIAL_SOURCES:
        raise ValueError(f"synth.partial_source: unknown source {source!r}; expected one of {PARTIAL_SOURCES}")
    if source == "wiki":
        return [detokenize(s) for s in wiki_sentences(data_root)]
    premises = nli_premises(data_root) if distinct else [t.premise for t in load_nli_triplets(data_root)]
    pool = [detokenize(s) for s in premises]
    if source == "nli+hypotheses":
        seen = set(pool)
        pool += [s for s in dict.fromkeys(detokenize(h) for h in nli_hypotheses(data_root)) if s not in seen]
    return pool


def drawing_order(cfg: SynthConfig, filters: Filters, seed: int, data_root: str) -> list[str]:
    """Partial's pool shuffled with `seed`: `select_anchors` takes its anchors in this order. Under
    `nli+hypotheses` the hypotheses, shuffled on their own, follow every premise, so the premises are
    drawn (and their requests sent) exactly as under `nli`: a bank grown past the premises keeps them."""
    distinct = "duplicate" in filters
    pool = partial_pool(cfg.partial_source, data_root, distinct)
    head = len(partial_pool("nli", data_root, distinct)) if cfg.partial_source == "nli+hypotheses" else len(pool)
    first, more = pool[:head], pool[head:]
    random.Random(f"{seed}:partial").shuffle(first)
    random.Random(f"{seed}:partial:hypotheses").shuffle(more)
    return first + more


def _partial(
    client: ChatClient, cfg: SynthConfig, pools: PromptPools, seed: int, data_root: str, aids: bool, retries: int,
    check: SelfCheck | None,
) -> SynthResult:
    filters = Filters(cfg, pools)
    pool = drawing_order(cfg, filters, seed, data_root)
    anchors, _, drops = select_anchors(pool, cfg.n_partial, filters)
    if len(pool) < cfg.n_partial:
        logger.warning("partial: %d sentences in the pool, %d requested", len(pool), cfg.n_partial)
        drops["shortfall"] = cfg.n_partial - len(pool)
    states, resampled = annotate(anchors, client, cfg, pools, seed, aids, retries, "partial", check)
    triplets, out_drops, rejected = _assemble(anchors, states, "partial", [{}] * len(anchors), client.model)
    result = SynthResult(triplets, drops + out_drops, rejected)
    result.metrics = {"requested": cfg.n_partial, "pool_sentences": len(pool),
                      **{f"resampled_{k}": v for k, v in resampled.items()}}
    return result


def _scratch(
    client: ChatClient, cfg: SynthConfig, pools: PromptPools, seed: int, aids: bool, retries: int,
    check: SelfCheck | None,
) -> SynthResult:
    calls = math.ceil(cfg.n_scratch * cfg.overgenerate / cfg.sentences_per_call)
    built = [scratch_request(call, pools, cfg, seed, aids) for call in range(calls)]
    results = client.complete([r for r, _ in built], desc="scratch generate")
    filters = Filters(cfg, pools)
    candidates, provenance, sentence_drops = [], [], Counter[str]()
    parsed = [(meta, sentence) for (_, meta), result in zip(built, results) for sentence in parse_sentences(result.content)]
    for meta, sentence in parsed:
        reason = filters.reason(Candidate("item", sentence))
        if reason:
            sentence_drops[reason] += 1
            continue
        candidates.append(sentence)
        provenance.append({"scratch": meta})
    anchors, index, anchor_drops = select_anchors(candidates, len(candidates), filters)
    sentence_drops += anchor_drops
    anchors, index = anchors[: cfg.n_scratch], index[: cfg.n_scratch]
    states, resampled = annotate(anchors, client, cfg, pools, seed, aids, retries, "scratch", check)
    extra = [provenance[i] for i in index]
    triplets, drops, rejected = _assemble(anchors, states, "scratch", extra, client.model)
    drops["shortfall"] = cfg.n_scratch - len(anchors)
    result = SynthResult(triplets, drops, rejected)
    result.metrics = {
        "requested": cfg.n_scratch,
        "generation_calls": calls,
        "generation_failed": sum(1 for r in results if r.error),
        "generation_budget": sum(1 for r in results if r.error == "budget"),
        "generated_sentences": len(parsed),
        **{f"sentences_dropped_{k}": v for k, v in sentence_drops.items()},
        **{f"resampled_{k}": v for k, v in resampled.items()},
    }
    return result


def _margin_pass(result: SynthResult, cfg: SynthConfig) -> None:
    """The `margin` filter over the assembled triplets: drops counted as `margin` (none with
    `synth.on_bad_negative: pair`, which keeps those rows as pairs), the judge's mean cosines
    before and after in the metrics."""
    from syncse.encoders import judge_encoder  # torch and an encoder: loaded only when the filter is on

    judged = margin_filter(result.triplets, judge_encoder(cfg.margin_judge), cfg.margin, cfg.on_bad_negative == "pair")
    result.drops[MARGIN] += len(result.triplets) - len(judged.kept)
    result.triplets, result.rejected = judged.kept, result.rejected + judged.rejected
    result.metrics.update(judged.metrics)


def budget_missing(result: SynthResult) -> int:
    """Rows lost because the budget cap stopped requests (scratch: also the sentences never generated)."""
    missing = result.drops.get("positive_budget", 0) + result.drops.get("negative_budget", 0)
    if result.metrics.get("generation_budget"):
        missing += result.drops.get("shortfall", 0)
    return missing


def run_metrics(result: SynthResult, client: ChatClient, wall_s: float) -> dict[str, float]:
    """The flat metrics: kept, dropped by every reason, tokens, cost, throughput."""
    stats, budget = client.stats, client.budget
    tokens = stats.prompt_tokens + stats.completion_tokens
    kept = len(result.triplets)
    return {
        "kept": kept,
        "kept_as_pair": sum(t.negative is None for t in result.triplets),  # synth.on_bad_negative: pair
        "yield": round(kept / max(1, int(result.metrics["requested"])), 4),
        **{f"dropped_{reason}": result.drops.get(reason, 0) for reason in DROP_REASONS},
        "requests": stats.requests,
        "cache_hits": stats.cache_hits,
        "http_attempts": stats.sent,
        "retries": stats.retries,
        "failed_requests": stats.failed,
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "total_tokens": tokens,
        "paid_tokens": budget.paid_tokens,
        "cost_usd": round(budget.cost(stats.prompt_tokens, stats.completion_tokens), 6),
        "paid_usd": round(budget.paid_usd, 6),
        "budget_exhausted": int(budget.exhausted),
        "wall_s": round(wall_s, 2),
        "triplets_per_s": round(kept / wall_s, 4) if wall_s else 0.0,
        "tokens_per_s": round(tokens / wall_s, 2) if wall_s else 0.0,
    }


def sample_rows(triplets: Sequence[Triplet], n: int = 5) -> list[dict[str, Any]]:
    """The first `n` triplets as plain rows for display (anchor, positive, negative, instructions)."""
    return [
        {
            "anchor": t.anchor,
            "positive": t.positive,
            "negative": t.negative,
            "instructions": f"{t.meta['positive']['instruction']}/{t.meta['negative']['instruction']}",
        }
        for t in list(triplets)[:n]
    ]


def config_record(cfg: SynthConfig, llm: LLMConfig) -> dict[str, Any]:
    """The resolved synthesis config to save beside the triplets (no secrets: only the env var name)."""
    return {"synth": asdict(cfg), "llm": asdict(llm)}
