"""Targeted negatives against the paper's, from banked responses only: no LLM request is sent.

The study's partial anchors and their first-try negative requests at `--share` are built as the
pipeline builds them (`drawing_order`, `select_anchors`, `annotation_request`); each targeted one is
read from the response cache (`ChatClient.cached`: a miss is counted, never sent) and cleaned and
judged by the pipeline's own filters (`_judge`, then the pair check against the banked positive).
For the anchors with a kept targeted negative and a banked study triplet (whose negative came from
one of the paper's instructions), the judge encoder compares mean cos(anchor, negative) of the two
negatives, cos(anchor, positive), and the share of triplets the `margin` filter keeps with each
negative (the same banked positive in both). Human NLI rows, as the report takes them, are the reference.
It also counts the first-try negative requests still missing from the cache at each `--missing-at` share.

    python benchmarks/bench_targeted.py --profile study --share 1.0 --out /tmp/targeted.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from syncse import report
from syncse.config import Params, load_params
from syncse.data import Triplet, load_nli_triplets, read_triplets
from syncse.encoders import judge_encoder
from syncse.llm import ChatClient, ChatRequest, cache_namespace
from syncse.synth.filters import Candidate, Filters
from syncse.synth.margin import margin_filter
from syncse.synth.pipelines import _judge, _repeats, check_config, drawing_order, select_anchors
from syncse.synth.pools import PromptPools, load_pools
from syncse.synth.requests import aids_enabled, annotation_request

BANKED = "results/study/artifacts/synth/partial.jsonl"
COPY_REASONS = ("copies_anchor", "equals_positive")  # the `copy` filter's reasons for a negative
COUNTS = ("requests", "misses", "kept", "copy_rejected", "other_rejected")


@dataclass(frozen=True)
class NegativeRequest:
    """One anchor's first-try negative request and its instruction id."""

    anchor: str
    request: ChatRequest
    instruction: str


def first_try_negatives(params: Params, share: float, pools: PromptPools) -> list[NegativeRequest]:
    """The study's partial anchors and their first-try negative requests at targeted share `share`,
    exactly as `syncse.synth.pipelines._partial` and `annotate` build them."""
    cfg = replace(params.synth, targeted_negatives=share)
    check_config(cfg, pools)
    filters = Filters(cfg, pools)
    anchors, _, _ = select_anchors(drawing_order(cfg, filters, params.seed, params.data.root), cfg.n_partial, filters)
    aids, repeats = aids_enabled(params.llm), _repeats(anchors)
    out = []
    for i, anchor in enumerate(anchors):
        request, meta = annotation_request(anchor, "negative", pools, cfg, params.seed, aids, i // cfg.exemplar_block,
                                           0, repeats[i])
        out.append(NegativeRequest(anchor, request, meta["instruction"]))
    return out


def missing(reader: ChatClient, requests: Sequence[NegativeRequest], targeted: set[str]) -> dict[str, int]:
    """How many first-try negative requests (targeted and paper) the cache lacks: what finishing would send."""
    counts: Counter[str] = Counter()
    for r in requests:
        kind = "targeted" if r.instruction in targeted else "paper"
        counts[f"{kind}_requests"] += 1
        counts[f"{kind}_missing"] += not reader.cache.has(reader.key(r.request))
    return dict(counts)


class MemoEncoder:
    """The judge with every distinct text encoded once, whichever comparison asks for it first."""

    def __init__(self, encode: Callable[[list[str]], Any]) -> None:
        self.encode = encode
        self.vectors: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if new:
            self.vectors.update(zip(new, np.asarray(self.encode(new))))
        return np.stack([self.vectors[t] for t in texts])


Pairs = dict[str, list[tuple[Triplet, Triplet]]]  # per instruction: (targeted triplet, banked paper triplet)


def judged_targeted(reader: ChatClient, requests: Sequence[NegativeRequest], params: Params, pools: PromptPools,
                    banked: dict[str, Triplet]) -> tuple[dict[str, Counter[str]], Pairs]:
    """Per targeted instruction: counts (requests, misses, kept, copy and other rejects), and the kept
    negatives with a banked triplet as (targeted triplet, banked paper triplet) pairs."""
    filters, instructions = Filters(params.synth, pools), pools.by_id()
    counts: dict[str, Counter[str]] = {i.id: Counter(dict.fromkeys(COUNTS, 0)) for i in pools.targeted}
    pairs: Pairs = {i.id: [] for i in pools.targeted}
    for r in requests:
        if r.instruction not in counts:
            continue
        c = counts[r.instruction]
        c["requests"] += 1
        result = reader.cached(r.request)
        if result is None:
            c["misses"] += 1
            continue
        output, reason = _judge(result, "negative", r.anchor, instructions[r.instruction], filters)
        paper = banked.get(r.anchor)
        if reason is None and paper is not None:  # the pipeline's pair check, against the banked positive
            reason = filters.reason(Candidate("pair", output, paper.positive))
        c["kept" if reason is None else "copy_rejected" if reason in COPY_REASONS else "other_rejected"] += 1
        if reason is None and paper is not None:
            pairs[r.instruction].append((Triplet(r.anchor, paper.positive, output, "partial"), paper))
    return counts, pairs


def compare(pairs: Sequence[tuple[Triplet, Triplet]], encode: MemoEncoder, margin: float) -> dict[str, Any]:
    """Mean judge cosines and margin-filter pass shares of the targeted and the paper negative on the same anchors."""
    if not pairs:
        return {"compared": 0}
    targeted = margin_filter([t for t, _ in pairs], encode, margin)
    paper = margin_filter([p for _, p in pairs], encode, margin)
    return {
        "compared": len(pairs),
        "cos_anchor_positive": targeted.metrics["margin_positive_cosine_before"],
        "cos_anchor_negative_targeted": targeted.metrics["margin_negative_cosine_before"],
        "cos_anchor_negative_paper": paper.metrics["margin_negative_cosine_before"],
        "margin_pass_targeted": round(len(targeted.kept) / len(pairs), 4),
        "margin_pass_paper": round(len(paper.kept) / len(pairs), 4),
    }


def human_reference(params: Params, encode: MemoEncoder, margin: float) -> dict[str, Any]:
    """The report's human NLI rows (premise, entailment, contradiction): mean cosines and margin pass share."""
    rows = [Triplet(t.premise, t.entailment, t.contradiction, "nli")
            for t in load_nli_triplets(params.data.root)[: params.report.max_pairs]]
    sims = report.triplet_similarities(encode, {"nli (human)": rows})
    return {"rows": len(rows), "cos_premise_entailment": round(float(sims.positive_cosine.mean()), 4),
            "cos_premise_contradiction": round(float(sims.negative_cosine.mean()), 4),
            "margin_pass": round(len(margin_filter(rows, encode, margin).kept) / len(rows), 4)}


def table(rows: dict[str, dict[str, Any]], human: dict[str, Any], margin: float) -> str:
    """The printed table: one line per instruction id and overall, then the human reference."""
    head = ["instruction", "requests", "misses", "kept", "copy_rej", "other_rej", "compared", "cos(a,p)",
            "cos(a,n) tgt", "cos(a,n) paper", f"pass@{margin} tgt", f"pass@{margin} paper"]
    keys = [*COUNTS, "compared", "cos_anchor_positive",
            "cos_anchor_negative_targeted", "cos_anchor_negative_paper", "margin_pass_targeted", "margin_pass_paper"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in rows.items():
        cells = [f"{row[k]:.3f}" if isinstance(row.get(k), float) else str(row.get(k, "-")) for k in keys]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    lines.append(f"human NLI ({human['rows']} rows): cos(premise, entailment) {human['cos_premise_entailment']:.3f}, "
                 f"cos(premise, contradiction) {human['cos_premise_contradiction']:.3f}, "
                 f"pass@{margin} {human['margin_pass']:.3f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--profile", default="study")
    parser.add_argument("--share", type=float, default=1.0, help="synth.targeted_negatives of the requests judged")
    parser.add_argument("--missing-at", type=float, nargs="*", default=[0.5, 1.0],
                        help="shares whose first-try misses are counted")
    parser.add_argument("--banked", default=BANKED, help="the study's triplets (paper-instruction negatives)")
    parser.add_argument("--out", required=True, help="JSON file for the table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params, pools = load_params(args.params, args.profile), load_pools()
    targeted_ids = {i.id for i in pools.targeted}
    reader = ChatClient("http://127.0.0.1:9/v1", params.llm.model, "unused", params.llm.cache_dir,
                        cache_namespace(params.llm), progress=False)  # never sends: only `cached` and `key` are used
    banked = {t.anchor: t for t in read_triplets(args.banked)}
    if any(t.meta["negative"]["instruction"] in targeted_ids for t in banked.values()):
        raise ValueError(f"{args.banked}: has targeted negatives; expected the paper's instructions only")
    counts, pairs = judged_targeted(reader, first_try_negatives(params, args.share, pools), params, pools, banked)
    encode, margin = MemoEncoder(judge_encoder(params.synth.margin_judge)), params.synth.margin
    rows = {name: {**counts[name], **compare(pairs[name], encode, margin)} for name in counts}
    every = [p for v in pairs.values() for p in v]
    rows["overall"] = {**{k: sum(c[k] for c in counts.values()) for k in COUNTS}, **compare(every, encode, margin)}
    human = human_reference(params, encode, margin)
    misses = {str(s): missing(reader, first_try_negatives(params, s, pools), targeted_ids) for s in args.missing_at}
    print(table(rows, human, margin))
    for share, m in misses.items():
        print(f"share {share}: first-try negatives missing from the cache: targeted {m.get('targeted_missing', 0)} "
              f"of {m.get('targeted_requests', 0)}, paper {m.get('paper_missing', 0)} of {m.get('paper_requests', 0)}")
    print(f"judge {params.synth.margin_judge}: {len(encode.vectors)} distinct texts encoded")
    result = {"params": args.params, "profile": args.profile, "share": args.share, "judge": params.synth.margin_judge,
              "margin": margin, "rows": rows, "human_nli": human, "missing_first_try_negatives": misses}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
