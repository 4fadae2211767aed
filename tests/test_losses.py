"""The SimCSE loss against a direct transcription of the paper's equation (value and gradient)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from syncse.losses import SimCSELoss, contrastive_loss, mask_tokens, masked_lm_loss, simcse_loss

TEMPERATURE = 0.05


def paper_loss(z1: torch.Tensor, z2: torch.Tensor, z3: torch.Tensor | None, weight: float) -> torch.Tensor:
    """SimCSE Eq. 5 written out term by term, as `simcse/models.py::cl_forward` computes it:
    l_i = -log( e^{sim(h_i, h_i+)/t} / sum_j ( e^{sim(h_i, h_j+)/t} + w_ij e^{sim(h_i, h_j-)/t} ) ),
    with w_ij = e^{weight} if i == j else 1 (the weight is added to the logit: a log-weight)."""
    n = z1.size(0)
    losses = []
    for i in range(n):
        numerator = torch.exp(F.cosine_similarity(z1[i], z2[i], dim=0) / TEMPERATURE)
        denominator = sum(torch.exp(F.cosine_similarity(z1[i], z2[j], dim=0) / TEMPERATURE) for j in range(n))
        if z3 is not None:
            for j in range(z3.size(0)):  # fewer than n: rows whose negative left the batch
                w = torch.exp(torch.tensor(weight if i == j else 0.0, dtype=z1.dtype))
                denominator = denominator + w * torch.exp(F.cosine_similarity(z1[i], z3[j], dim=0) / TEMPERATURE)
        losses.append(-torch.log(numerator / denominator))
    return torch.stack(losses).mean()


def hand_built(with_negatives: bool) -> list[torch.Tensor]:
    """Small embeddings with structure: positives near anchors, negatives between."""
    g = torch.Generator().manual_seed(0)
    anchors = torch.randn(5, 8, generator=g, dtype=torch.float64)
    positives = anchors + 0.3 * torch.randn(5, 8, generator=g, dtype=torch.float64)
    tensors = [anchors, positives]
    if with_negatives:
        tensors.append(anchors.flip(0) + 0.5 * torch.randn(5, 8, generator=g, dtype=torch.float64))
    return [t.requires_grad_(True) for t in tensors]


def value_and_grads(fn, tensors: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    value = fn(*tensors)
    grads = torch.autograd.grad(value, tensors)
    return value.detach(), [g.detach() for g in grads]


@pytest.mark.parametrize(
    ("with_negatives", "weight"), [(False, 0.0), (True, 0.0), (True, 1.0), (True, -2.5)]
)
def test_simcse_loss_equals_paper_equation(with_negatives: bool, weight: float) -> None:
    tensors = hand_built(with_negatives)

    def ours(*t: torch.Tensor) -> torch.Tensor:
        return simcse_loss(*t, temperature=TEMPERATURE, hard_negative_weight=weight)

    def reference(*t: torch.Tensor) -> torch.Tensor:
        return paper_loss(t[0], t[1], t[2] if with_negatives else None, weight)

    value, grads = value_and_grads(ours, tensors)
    expected, expected_grads = value_and_grads(reference, tensors)
    assert torch.allclose(value, expected, atol=1e-6, rtol=0)
    for got, want in zip(grads, expected_grads):
        assert torch.allclose(got, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("with_negatives", "weight"), [(False, 0.0), (True, 0.0), (True, 1.0)])
def test_module_path_equals_paper_equation(with_negatives: bool, weight: float) -> None:
    """The module the trainer uses: sentence-transformers' MNRL at weight 0, ours otherwise."""
    loss = contrastive_loss(model=None, temperature=TEMPERATURE, hard_negative_weight=weight)  # type: ignore[arg-type]
    assert isinstance(loss, MultipleNegativesRankingLoss if weight == 0.0 else SimCSELoss)
    tensors = hand_built(with_negatives)
    value, grads = value_and_grads(lambda *t: loss.compute_loss_from_embeddings(list(t), None), tensors)
    expected, expected_grads = value_and_grads(
        lambda *t: paper_loss(t[0], t[1], t[2] if with_negatives else None, weight), tensors
    )
    assert torch.allclose(value, expected, atol=1e-6, rtol=0)
    for got, want in zip(grads, expected_grads):
        assert torch.allclose(got, want, atol=1e-6, rtol=0)


def test_rows_without_a_negative_train_on_in_batch_negatives_only() -> None:
    """Stand-in negatives marked `missing` leave every anchor's softmax: all missing is the pairs loss
    (any weight), some missing is the loss with those negatives taken out of the batch."""
    anchors, positives, negatives = hand_built(True)
    every = torch.ones(5, dtype=torch.bool)
    for weight in (0.0, 1.0):
        value, grads = value_and_grads(
            lambda a, p, n: simcse_loss(a, p, n, temperature=TEMPERATURE, hard_negative_weight=weight, missing=every),
            [anchors, positives, negatives])
        expected, expected_grads = value_and_grads(lambda a, p: paper_loss(a, p, None, 0.0), [anchors, positives])
        assert torch.allclose(value, expected, atol=1e-6, rtol=0)
        assert all(torch.allclose(g, w, atol=1e-6, rtol=0) for g, w in zip(grads, expected_grads))
        assert not grads[2].any()  # a stand-in gets no gradient
    some = torch.tensor([True, False, True, False, False])
    got = simcse_loss(anchors, positives, negatives, temperature=TEMPERATURE, missing=some)
    assert torch.allclose(got, paper_loss(anchors, positives, negatives[~some], 0.0), atol=1e-6, rtol=0)
    assert got != simcse_loss(anchors, positives, negatives, temperature=TEMPERATURE)


def test_the_module_looks_up_which_rows_lack_a_negative_by_label() -> None:
    anchors, positives, negatives = (t.detach() for t in hand_built(True))
    missing = torch.tensor([False, True, False, False, True])  # by training row
    loss = contrastive_loss(model=None, temperature=TEMPERATURE, missing_negatives=missing)  # type: ignore[arg-type]
    assert isinstance(loss, SimCSELoss)
    order = torch.tensor([4, 0, 3, 1, 2])  # the batch holds these training rows
    got = loss.compute_loss_from_embeddings([anchors, positives, negatives], order)
    assert torch.equal(got, simcse_loss(anchors, positives, negatives, temperature=TEMPERATURE, missing=missing[order]))
    assert torch.equal(loss.compute_loss_from_embeddings([anchors, positives], order), simcse_loss(anchors, positives))
    with pytest.raises(ValueError, match="rows without a hard negative needs each example's row index as its label"):
        loss.compute_loss_from_embeddings([anchors, positives, negatives], None)


def test_aligned_pairs_give_low_loss() -> None:
    anchors = torch.eye(4)  # (4, 4) orthogonal anchors
    aligned = simcse_loss(anchors, anchors.clone())
    shuffled = simcse_loss(anchors, anchors.roll(1, dims=0))
    assert aligned < 1e-6 < shuffled


def test_positive_hard_negative_weight_raises_the_loss() -> None:
    anchors, positives, negatives = (t.detach() for t in hand_built(True))
    base = simcse_loss(anchors, positives, negatives)
    assert simcse_loss(anchors, positives, negatives, hard_negative_weight=1.0) > base
    assert simcse_loss(anchors, positives, negatives, hard_negative_weight=-1.0) < base


def test_bad_column_count_and_temperature_are_rejected() -> None:
    loss = SimCSELoss(model=None, hard_negative_weight=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected 2 or 3 columns"):
        loss.compute_loss_from_embeddings([torch.randn(2, 3)])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        SimCSELoss(model=None, temperature=0.0)  # type: ignore[arg-type]


def test_mask_tokens_follows_bert_recipe() -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 100, (64, 32), generator=g)  # (b, t)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, 0] = False  # a special token position: never predicted
    masked, labels = mask_tokens(ids, maskable, mask_token_id=1, vocab_size=100, probability=0.15, generator=g)
    chosen = labels != -100
    assert not chosen[:, 0].any()
    assert 0.12 < chosen.float().mean() < 0.18
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(masked[~chosen], ids[~chosen])
    assert 0.7 < (masked[chosen] == 1).float().mean() < 0.9


def test_masked_lm_loss_ignores_unpredicted_positions() -> None:
    scores = torch.zeros(1, 3, 4)  # (b, t, V) uniform predictions
    labels = torch.tensor([[2, -100, -100]])  # (b, t)
    assert torch.isclose(masked_lm_loss(scores, labels), torch.log(torch.tensor(4.0)))
