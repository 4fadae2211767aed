"""The `margin` filter (GCSE-style): keep a triplet only if a frozen judge encoder puts its
positive closer to the anchor than its negative by at least `synth.margin`:

    cos(anchor, positive) - cos(anchor, negative) >= margin

It judges whole triplets, so it runs once over the assembled triplets, after the candidate filters
(`syncse.synth.filters`), encoding every distinct text once, in batches. A negative that copies its
anchor scores cos 1 and fails any positive margin; a negative equal to its positive scores exactly
0. Drops are counted under the reason `margin`; the judge's mean cosines over the triplets before
and after the filter go to the metrics.

References:
    GCSE (ACL 2025): a frozen encoder keeps generated pairs by their cosine to the anchor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from syncse.data import Triplet

logger = logging.getLogger(__name__)

REASON = "margin"


@dataclass
class MarginResult:
    """Triplets kept, the dropped ones as rejected rows (for the drop report), and metrics."""

    kept: list[Triplet]
    rejected: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


def margin_filter(triplets: Sequence[Triplet], encode: Callable[[list[str]], Any], margin: float) -> MarginResult:
    """Keep the triplets whose judge margin cos(a, p) - cos(a, n) is at least `margin`.

    Args:
        triplets: assembled triplets, each with a non-empty anchor, positive and negative.
        encode: the judge, texts -> (len(texts), d) embeddings (`syncse.encoders.judge_encoder`).
        margin: the least margin kept (GCSE-style; 0 keeps every positive at least as close).

    Returns:
        The kept triplets in order, a rejected row per drop, and `margin_*` metrics.

    Raises:
        ValueError: a triplet without a negative or with an empty text (the `failed` filter drops those).
    """
    for i, t in enumerate(triplets):
        if not (t.anchor.strip() and t.positive.strip() and t.negative and t.negative.strip()):
            raise ValueError(f"margin filter: triplet {i} has an empty anchor, positive or negative: {t!r}")
    if not triplets:
        return MarginResult([], metrics={"margin_judged": 0, "margin_kept": 0})
    positive, negative = judge_cosines(triplets, encode)  # (n,), (n,)
    keep = positive - negative >= margin  # (n,)
    kept = [t for t, k in zip(triplets, keep) if k]
    rejected = [{"anchor": t.anchor, "side": "negative", "output": t.negative, "reason": REASON,
                 "margin": round(float(p - n), 4)}
                for t, k, p, n in zip(triplets, keep, positive, negative) if not k]
    metrics: dict[str, float] = {"margin_judged": len(triplets), "margin_kept": len(kept),
                                 **_means("before", positive, negative)}
    if kept:
        metrics.update(_means("after", positive[keep], negative[keep]))
    logger.info("margin filter (>= %s): kept %d of %d triplets", margin, len(kept), len(triplets))
    return MarginResult(kept, rejected, metrics)


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
