"""The `margin` filter (GCSE-style): keep a triplet only if a frozen judge encoder puts its
positive closer to the anchor than its negative by at least `synth.margin`:

    cos(anchor, positive) - cos(anchor, negative) >= margin

It judges whole triplets, so it runs once over the assembled triplets, after the candidate filters
(`syncse.synth.filters`), encoding every distinct text once, in batches. A negative that copies its
anchor scores cos 1 and fails any positive margin; a negative equal to its positive scores exactly
0. Drops are counted under the reason `margin`; the judge's mean cosines over the triplets before
and after the filter go to the metrics. With `keep_pairs` (`synth.on_bad_negative: pair`) a
triplet below the margin is not dropped: it keeps its anchor and positive as a pair (negative
None, the lost negative in `meta["dropped_negative"]`, without its margin: a judge's cosines move in the
4th decimal between CPUs, and the rows must not, or a replay on another machine would make every model
trained on them stale) and trains with in-batch negatives only (`syncse.losses`).

References:
    GCSE (ACL 2025): a frozen encoder keeps generated pairs by their cosine to the anchor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from syncse.data import Triplet

logger = logging.getLogger(__name__)

REASON = "margin"


@dataclass
class MarginResult:
    """Rows kept (triplets, and pairs with `keep_pairs`), the dropped ones as rejected rows (for the
    drop report), and metrics."""

    kept: list[Triplet]
    rejected: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


def margin_filter(
    triplets: Sequence[Triplet], encode: Callable[[list[str]], Any], margin: float, keep_pairs: bool = False
) -> MarginResult:
    """Keep the triplets whose judge margin cos(a, p) - cos(a, n) is at least `margin`.

    Args:
        triplets: assembled triplets, each with a non-empty anchor, positive and negative.
        encode: the judge, texts -> (len(texts), d) embeddings (`syncse.encoders.judge_encoder`).
        margin: the least margin kept (GCSE-style; 0 keeps every positive at least as close).
        keep_pairs: keep a triplet below the margin as a pair (negative None) instead of dropping it.

    Returns:
        The kept rows in order, a rejected row per drop, and `margin_*` metrics (`margin_kept`:
        triplets whose negative passed).

    Raises:
        ValueError: a triplet without a negative or with an empty text (the `failed` filter drops those).
    """
    for i, t in enumerate(triplets):
        if not (t.anchor.strip() and t.positive.strip() and t.negative and t.negative.strip()):
            raise ValueError(f"margin filter: triplet {i} has an empty anchor, positive or negative: {t!r}")
    if not triplets:
        return MarginResult([], metrics={"margin_judged": 0, "margin_kept": 0})
    positive, negative = judge_cosines(triplets, encode)  # (n,), (n,)
    margins = positive - negative  # (n,)
    keep = margins >= margin  # (n,)
    metrics: dict[str, float] = {"margin_judged": len(triplets), "margin_kept": int(keep.sum()),
                                 **_means("before", positive, negative)}
    if keep.any():
        metrics.update(_means("after", positive[keep], negative[keep]))
    logger.info("margin filter (>= %s): %d of %d triplets pass; the others are %s", margin, int(keep.sum()),
                len(triplets), "kept as pairs" if keep_pairs else "dropped")
    if keep_pairs:
        pairs = [t if k else as_pair(t) for t, k in zip(triplets, keep)]
        return MarginResult(pairs, metrics=metrics)
    rejected = [{"anchor": t.anchor, "side": "negative", "output": t.negative, "reason": REASON,
                 "margin": round(float(m), 4)} for t, k, m in zip(triplets, keep, margins) if not k]
    return MarginResult([t for t, k in zip(triplets, keep) if k], rejected, metrics)


def as_pair(triplet: Triplet) -> Triplet:
    """`triplet` without its negative, which `meta["dropped_negative"]` keeps (not its margin, a float that
    differs between machines: the training rows are the same bytes wherever the bank is replayed)."""
    dropped = {"text": triplet.negative, "reason": REASON}
    return replace(triplet, negative=None, meta={**triplet.meta, "dropped_negative": dropped})


def judge_cosines(triplets: Sequence[Triplet], encode: Callable[[list[str]], Any]) -> tuple[np.ndarray, np.ndarray]:
    """(n,) cos(anchor, positive) and (n,) cos(anchor, negative) under `encode`, each distinct text encoded once."""
    texts = list(dict.fromkeys(s for t in triplets for s in (t.anchor, t.positive, t.negative)))
    index = {text: i for i, text in enumerate(texts)}
    vectors = np.asarray(encode(texts), dtype=np.float64)  # (distinct, d)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)  # unit rows, never NaN
    anchors = vectors[[index[t.anchor] for t in triplets]]  # (n, d)
    positives = vectors[[index[t.positive] for t in triplets]]  # (n, d)
    negatives = vectors[[index[t.negative] for t in triplets]]  # (n, d)  # type: ignore[index]
    return (anchors * positives).sum(1), (anchors * negatives).sum(1)


def _means(when: str, positive: np.ndarray, negative: np.ndarray) -> dict[str, float]:
    return {f"margin_positive_cosine_{when}": round(float(positive.mean()), 4),
            f"margin_negative_cosine_{when}": round(float(negative.mean()), 4)}
