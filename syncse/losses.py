"""The SimCSE contrastive loss (with hard-negative log-weight and false-negative masking) and the
MLM auxiliary loss.

With no hard-negative weight and no masking the SimCSE loss *is* sentence-transformers'
`MultipleNegativesRankingLoss` at `scale = 1 / temperature` (scale 20 = temperature 0.05), so
`contrastive_loss` returns that class then; `SimCSELoss` adds the log-weight SimCSE puts on each
anchor's own hard negative, MultiCSR's false-negative masking (other rows' candidates that a
frozen reference encoder scores at or above a threshold are left out of the softmax), and rows
without a hard negative beside rows with one (`synth.on_bad_negative: pair`): their stand-in
negatives are left out of every anchor's softmax, so such a row trains on in-batch negatives only.
`CachedSimCSELoss` is the same loss embedded in mini-batches (GradCache). Distributed gathering
stays in the modules, the maths in the pure functions `simcse_loss`, `false_negative_mask` and
`masked_lm_loss`, which the tests check on hand-built tensors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.losses.gradcache import CachedLossMixin
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from sentence_transformers.util import all_gather, all_gather_with_grad, get_rank
from torch import Tensor, nn

logger = logging.getLogger(__name__)


def simcse_loss(
    anchors: Tensor,
    positives: Tensor,
    negatives: Tensor | None = None,
    *,
    temperature: float = 0.05,
    hard_negative_weight: float = 0.0,
    labels: Tensor | None = None,
    mask: Tensor | None = None,
    missing: Tensor | None = None,
) -> Tensor:
    """Supervised SimCSE loss: cross-entropy of each anchor over all positives and hard negatives.

    Logits are cos(anchor_i, candidate_j) / temperature; anchor i's own hard negative gets
    `hard_negative_weight` added to its logit (a log-weight: 0 means weight 1), as in SimCSE.
    Candidates marked in `mask` are left out of the softmax (logit -inf); an anchor's own
    positive never is, whatever `mask` says. Hard negatives marked in `missing` are stand-ins for
    rows that have none: left out of every anchor's softmax, as if they were not in the batch.

    Args:
        anchors: (n, d) anchor embeddings.
        positives: (m, d) positive embeddings, m >= n (m > n when gathered across devices).
        negatives: (m, d) hard-negative embeddings aligned with `positives`, or None.
        temperature: softmax temperature (SimCSE: 0.05).
        hard_negative_weight: log-weight added to each anchor's own hard-negative logit.
        labels: (n,) index of each anchor's own positive; defaults to 0..n-1.
        mask: (n, m|2m) bool, True for a candidate to leave out (`false_negative_mask`), or None.
        missing: (m,) bool, True where a row has no hard negative (its column in `negatives` is a
            stand-in), or None; ignored without `negatives`.

    Returns:
        The mean loss over anchors, a scalar tensor.
    """
    if labels is None:
        labels = torch.arange(anchors.size(0), device=anchors.device)  # (n,)
    candidates = positives if negatives is None else torch.cat([positives, negatives])  # (m or 2m, d)
    logits = F.cosine_similarity(anchors.unsqueeze(1), candidates.unsqueeze(0), dim=-1) / temperature  # (n, m|2m)
    if negatives is not None and hard_negative_weight != 0.0:
        own_negative = positives.size(0) + labels  # (n,) column of each anchor's own hard negative
        weights = torch.zeros_like(logits)  # (n, 2m)
        weights[torch.arange(anchors.size(0), device=anchors.device), own_negative] = hard_negative_weight
        logits = logits + weights  # (n, 2m)
    if negatives is not None and missing is not None:
        absent = torch.cat([torch.zeros_like(missing), missing]).expand_as(logits)  # (n, 2m) the stand-ins' columns
        mask = absent if mask is None else mask | absent
    if mask is not None:
        mask = mask.clone()  # (n, m|2m)
        mask[torch.arange(anchors.size(0), device=anchors.device), labels] = False  # the own positive stays
        logits = logits.masked_fill(mask, float("-inf"))  # (n, m|2m)
    return F.cross_entropy(logits, labels)


def false_negative_mask(
    anchors: Tensor, positives: Tensor, negatives: Tensor | None, threshold: float, labels: Tensor
) -> Tensor:
    """Other rows' candidates at least `threshold` cosine-similar to the anchor: likely false negatives.

    Computed on a frozen reference encoder's embeddings (MultiCSR masks at 0.95); an anchor's own
    positive and own hard negative are never marked.

    Args:
        anchors: (n, d) reference embeddings of the anchors.
        positives: (m, d) reference embeddings of the positives (all devices' when gathered).
        negatives: (m, d) reference embeddings of the hard negatives, or None.
        threshold: cosine at or above which a candidate is masked.
        labels: (n,) index of each anchor's own row among the m.

    Returns:
        (n, m|2m) bool, laid out as `simcse_loss`'s logits.
    """
    candidates = positives if negatives is None else torch.cat([positives, negatives])  # (m or 2m, d)
    mask = F.cosine_similarity(anchors.unsqueeze(1), candidates.unsqueeze(0), dim=-1) >= threshold  # (n, m|2m)
    rows = torch.arange(anchors.size(0), device=anchors.device)  # (n,)
    mask[rows, labels] = False
    if negatives is not None:
        mask[rows, positives.size(0) + labels] = False
    return mask


@dataclass(frozen=True)
class ReferenceEmbeddings:
    """A frozen encoder's unit embeddings of every training row's texts, looked up by row index.

    `vectors` holds each distinct text once; `ids[row, column]` indexes it (columns: anchor,
    positive[, negative], as the dataset's).
    """

    vectors: Tensor  # (distinct texts, d)
    ids: Tensor  # (rows, columns) long

    def column(self, rows: Tensor, column: int) -> Tensor:
        """(len(rows), d) embeddings of `column` of `rows`."""
        return self.vectors.to(rows.device)[self.ids.to(rows.device)[rows, column]]


class SimCSELoss(nn.Module):
    """SimCSE loss over (anchor, positive[, negative]) columns, with a hard-negative log-weight.

    Args:
        model: the SentenceTransformer being trained.
        temperature: softmax temperature; scale = 1 / temperature (0.05 = sentence-transformers' scale 20).
        hard_negative_weight: log-weight on each anchor's own hard negative (0 means weight 1).
        gather_across_devices: all-gather embeddings (with gradients) under DDP, so the negatives
            grow with the number of devices, as SimCSE does.
        reference: a frozen encoder's embeddings of every training row (`ReferenceEmbeddings`),
            needed with `false_negative_threshold`.
        false_negative_threshold: mask other rows' candidates whose reference cosine to the anchor
            is at least this (`false_negative_mask`); None: no masking. `masked_share()` reports
            the share of such candidates masked so far.
        missing_negatives: (rows,) bool over the training rows, True where a row has no hard
            negative and its `negative` column holds a stand-in (`syncse.train.to_dataset`),
            left out of the softmax; None: every row has one (or none does).

    References:
        Gao, Yao & Chen 2021, SimCSE, Eq. 5; `simcse/models.py::cl_forward` (`hard_negative_weight`).
        Wang et al. 2024, MultiCSR (NAACL), false-negative masking with a reference encoder.

    Inputs:
        | columns                        | labels                                                      |
        | (anchor, positive)             | none; row indices when masking                              |
        | (anchor, positive, negative)   | none; row indices when masking or some rows lack a negative |

    Example:
        >>> loss = SimCSELoss(model, temperature=0.05, hard_negative_weight=1.0)
    """

    def __init__(
        self,
        model: SentenceTransformer,
        temperature: float = 0.05,
        hard_negative_weight: float = 0.0,
        gather_across_devices: bool = False,
        reference: ReferenceEmbeddings | None = None,
        false_negative_threshold: float | None = None,
        missing_negatives: Tensor | None = None,
    ) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if false_negative_threshold is not None and reference is None:
            raise ValueError("false_negative_threshold needs reference embeddings of the training rows (reference=None)")
        self.model = model
        self.temperature = temperature
        self.hard_negative_weight = hard_negative_weight
        self.gather_across_devices = gather_across_devices
        self.reference = reference
        self.false_negative_threshold = false_negative_threshold
        self.missing_negatives = missing_negatives
        self.masked = self.maskable = 0  # running counts of masked / other rows' candidates

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        """Embed each column, then apply `compute_loss_from_embeddings`."""
        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features), labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        """Loss from per-column embeddings [(n, d) anchors, (n, d) positives, optional (n, d) negatives]."""
        if len(embeddings) not in (2, 3):
            raise ValueError(f"expected 2 or 3 columns (anchor, positive[, negative]), got {len(embeddings)}")
        anchors, candidates = embeddings[0], embeddings[1:]
        offset, rows = 0, labels
        if self.gather_across_devices:
            candidates = [all_gather_with_grad(c) for c in candidates]  # each (n * world, d)
            offset = get_rank() * anchors.size(0)
            rows = None if labels is None else all_gather(labels)  # (n * world,) row of each candidate
        targets = torch.arange(offset, offset + anchors.size(0), device=anchors.device)  # (n,)
        negatives = candidates[1] if len(candidates) == 2 else None
        mask = missing = None
        if self.false_negative_threshold is not None:
            mask = self._false_negatives(labels, rows, targets, negatives is not None)
        if self.missing_negatives is not None and negatives is not None:
            candidate_rows = _row_index(rows, "rows without a hard negative")  # (m,)
            missing = self.missing_negatives.to(anchors.device)[candidate_rows]  # (m,)
        return simcse_loss(
            anchors,
            candidates[0],
            negatives,
            temperature=self.temperature,
            hard_negative_weight=self.hard_negative_weight,
            labels=targets,
            mask=mask,
            missing=missing,
        )

    def _false_negatives(self, anchor_rows: Tensor | None, rows: Tensor | None, targets: Tensor, hard: bool) -> Tensor:
        """The mask of this batch from the reference embeddings of its rows; counts what it masks."""
        assert self.reference is not None  # __init__ requires it with a threshold
        anchor_rows, rows = (_row_index(r, "false-negative masking") for r in (anchor_rows, rows))
        ref = self.reference
        mask = false_negative_mask(
            ref.column(anchor_rows, 0), ref.column(rows, 1), ref.column(rows, 2) if hard else None,
            self.false_negative_threshold, targets,  # type: ignore[arg-type]
        )  # (n, m|2m)
        own = 2 if hard else 1
        self.masked += int(mask.sum())
        self.maskable += mask.numel() - own * mask.size(0)
        return mask

    def masked_share(self) -> float | None:
        """Share of other rows' candidates masked as false negatives so far (None: masking off)."""
        if self.false_negative_threshold is None:
            return None
        return round(self.masked / self.maskable, 6) if self.maskable else 0.0

    def get_config_dict(self) -> dict[str, Any]:
        """Hyperparameters, for the model card and the saved config."""
        return {
            "temperature": self.temperature,
            "hard_negative_weight": self.hard_negative_weight,
            "gather_across_devices": self.gather_across_devices,
            "false_negative_threshold": self.false_negative_threshold,
        }


def _row_index(rows: Tensor | None, what: str) -> Tensor:
    """The examples' row indices (their labels), or an error saying that `what` needs them."""
    if rows is None:
        raise ValueError(f"{what} needs each example's row index as its label "
                         "(a `label` column: syncse.train.to_dataset(rows, row_labels=True))")
    return rows


class CachedSimCSELoss(CachedLossMixin, SimCSELoss):
    """`SimCSELoss` with gradient caching (GradCache): columns are embedded `mini_batch_size` at a
    time, so a large batch fits the memory of a small one; the loss is the same.

    Args:
        model: the SentenceTransformer being trained.
        mini_batch_size: sentences embedded at once.
        **kwargs: `SimCSELoss`'s hyperparameters.

    References:
        Gao et al. 2021, Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup.

    Example:
        >>> loss = CachedSimCSELoss(model, mini_batch_size=32, hard_negative_weight=1.0)
    """

    def __init__(self, model: SentenceTransformer, mini_batch_size: int, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        if mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1, got {mini_batch_size}")
        self.mini_batch_size = mini_batch_size

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        """Embed in mini-batches without gradients, then back-propagate through cached gradients."""
        return self.forward_cached(sentence_features, labels)

    def calculate_loss(self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False) -> Tensor:
        """The loss of the whole batch from its per-mini-batch embeddings (backward now if asked)."""
        loss = self.compute_loss_from_embeddings([torch.cat(column) for column in reps], labels)
        if with_backward:
            loss.backward()
            loss = loss.detach()
        return loss

    def get_config_dict(self) -> dict[str, Any]:
        """Hyperparameters, for the model card and the saved config."""
        return {**super().get_config_dict(), "mini_batch_size": self.mini_batch_size}


def contrastive_loss(
    model: SentenceTransformer,
    temperature: float = 0.05,
    hard_negative_weight: float = 0.0,
    gather_across_devices: bool = False,
    reference: ReferenceEmbeddings | None = None,
    false_negative_threshold: float | None = None,
    missing_negatives: Tensor | None = None,
) -> nn.Module:
    """The SimCSE loss: sentence-transformers' MNRL when it matches (no weight, no masking, every
    row's negative real), else `SimCSELoss`."""
    if hard_negative_weight == 0.0 and false_negative_threshold is None and missing_negatives is None:
        return MultipleNegativesRankingLoss(model, scale=1.0 / temperature, gather_across_devices=gather_across_devices)
    return SimCSELoss(model, temperature, hard_negative_weight, gather_across_devices, reference, false_negative_threshold,
                      missing_negatives)


def mask_tokens(
    input_ids: Tensor,
    maskable: Tensor,
    mask_token_id: int,
    vocab_size: int,
    probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT masking: pick `probability` of the maskable tokens; 80% -> [MASK], 10% random, 10% kept.

    Args:
        input_ids: (b, t) token ids.
        maskable: (b, t) bool, False at special and padding tokens.
        mask_token_id: id of the tokenizer's mask token.
        vocab_size: size of the output vocabulary (for random replacements).
        probability: share of maskable tokens to predict (SimCSE: 0.15).
        generator: RNG for reproducible masks.

    Returns:
        (masked ids (b, t), labels (b, t) with -100 where nothing is predicted).
    """
    device = input_ids.device
    draw = torch.rand(input_ids.shape, generator=generator, device=device)  # (b, t)
    chosen = (draw < probability) & maskable  # (b, t)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))  # (b, t)
    split = torch.rand(input_ids.shape, generator=generator, device=device)  # (b, t)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, device=device)  # (b, t)
    masked = torch.where(chosen & (split < 0.8), torch.full_like(input_ids, mask_token_id), input_ids)  # (b, t)
    masked = torch.where(chosen & (split >= 0.8) & (split < 0.9), random_ids, masked)  # (b, t)
    return masked, labels


def masked_lm_loss(prediction_scores: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy over predicted tokens; (b, t, V) scores, (b, t) labels with -100 ignored."""
    return F.cross_entropy(prediction_scores.flatten(0, 1), labels.flatten(), ignore_index=-100)


class MLMAuxiliaryLoss(nn.Module):
    """Contrastive loss + `weight` x masked-LM loss on masked copies of every input sentence.

    SimCSE's `do_mlm` option (on in SynCSE's script: weight 0.1, mask rate 0.15): a second
    forward pass of the backbone on BERT-masked inputs, an LM head on its token states.

    Args:
        contrastive: the contrastive loss (holds `.model`, the SentenceTransformer).
        lm_head: maps (b, t, H) token states to (b, t, V) vocabulary scores.
        mask_token_id: the tokenizer's mask token id.
        special_ids: token ids never masked (CLS, SEP, PAD, ...).
        vocab_size: output vocabulary size.
        weight: weight of the MLM term (SimCSE's `mlm_weight`, 0.1).
        probability: masking rate (0.15).

    Masks are drawn from torch's global RNG, which the trainer seeds and checkpoints.
    """

    def __init__(
        self,
        contrastive: nn.Module,
        lm_head: nn.Module,
        mask_token_id: int,
        special_ids: list[int],
        vocab_size: int,
        weight: float = 0.1,
        probability: float = 0.15,
    ) -> None:
        super().__init__()
        if not 0.0 < probability < 1.0:
            raise ValueError(f"mlm probability must be in (0, 1), got {probability}")
        self.contrastive = contrastive
        self.model = contrastive.model
        self.lm_head = lm_head
        self.mask_token_id = mask_token_id
        self.register_buffer("special_ids", torch.tensor(special_ids, dtype=torch.long), persistent=False)
        self.vocab_size = vocab_size
        self.weight = weight
        self.probability = probability

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> dict[str, Tensor]:
        """Both terms, as a dict the trainer sums and logs separately."""
        features = list(sentence_features)
        contrastive = self.contrastive(features, labels)
        scores, targets = zip(*(self._column_scores(column) for column in features))
        # one mean over every masked token of every column, as SimCSE's single flattened batch
        vocab = scores[0].size(-1)
        mlm = masked_lm_loss(
            torch.cat([s.reshape(-1, vocab) for s in scores]).unsqueeze(0),  # (1, sum b*t, V)
            torch.cat([t.reshape(-1) for t in targets]).unsqueeze(0),  # (1, sum b*t)
        )
        return {"contrastive": contrastive, "mlm": self.weight * mlm}

    def _column_scores(self, column: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        input_ids, attention = column["input_ids"], column["attention_mask"]  # (b, t), (b, t)
        maskable = attention.bool() & ~torch.isin(input_ids, self.special_ids.to(input_ids.device))  # (b, t)
        masked, targets = mask_tokens(input_ids, maskable, self.mask_token_id, self.vocab_size, self.probability)
        backbone = self.model[0].model
        states = backbone(input_ids=masked, attention_mask=attention).last_hidden_state  # (b, t, H)
        return self.lm_head(states), targets  # (b, t, V), (b, t)

    def get_config_dict(self) -> dict[str, Any]:
        """Hyperparameters, for the model card and the saved config."""
        return {"mlm_weight": self.weight, "mlm_probability": self.probability}
