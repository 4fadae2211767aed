"""False-negative masking (MultiCSR): hand-built tensors, the module's row lookup, the cached and
gathered paths, and a short real run with the shipped MiniLM judge."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from syncse.config import ConfigError, TrainConfig, parse_params
from syncse.data import Triplet
from syncse.losses import CachedSimCSELoss, ReferenceEmbeddings, SimCSELoss, false_negative_mask, simcse_loss
from syncse.train import build_loss, build_model, reference_embeddings, to_dataset, train


def test_a_masked_candidate_leaves_the_softmax_exactly() -> None:
    """Two pairs at temperature 1: masking anchor 0's in-batch candidate p1 removes its term by hand."""
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    positives = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)  # cos: a0.p0 = 1, a0.p1 = a1.p1 = 1/sqrt2, a1.p0 = 0
    mask = torch.tensor([[False, True], [False, False]])
    s = 1 / math.sqrt(2)
    row0 = -math.log(math.exp(1) / (math.exp(1) + math.exp(s)))
    row1 = -math.log(math.exp(s) / (math.exp(0) + math.exp(s)))
    plain = simcse_loss(anchors, positives, temperature=1.0)
    masked = simcse_loss(anchors, positives, temperature=1.0, mask=mask)
    assert plain.item() == pytest.approx((row0 + row1) / 2, abs=1e-12)
    assert masked.item() == pytest.approx((0.0 + row1) / 2, abs=1e-12)  # row 0: only its own positive is left


def test_the_own_positive_is_never_masked() -> None:
    """A mask over every column still keeps each anchor's own positive: the loss is -log 1 = 0, finite."""
    g = torch.Generator().manual_seed(0)
    anchors, positives, negatives = (torch.randn(4, 8, generator=g) for _ in range(3))
    everything = torch.ones(4, 8, dtype=torch.bool)
    loss = simcse_loss(anchors, positives, negatives, mask=everything)
    assert loss.item() == 0.0
    shifted = simcse_loss(anchors, positives, negatives, labels=torch.tensor([1, 2, 3, 0]), mask=everything)
    assert shifted.item() == 0.0


REF_ANCHORS = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [1.0, 0.1, 0]])  # row 2 says what row 0 says
REF_POSITIVES = REF_ANCHORS.clone()
REF_NEGATIVES = torch.tensor([[0, 0, 1.0], [0, 1.0, 0], [0, 0, 1.0]])  # row 1's negative copies its anchor
EXPECTED = torch.tensor([
    [False, False, True, False, False, False],  # anchor 0: row 2's positive is a paraphrase
    [False, False, False, False, False, False],  # anchor 1: its own negative (cos 1) is never masked
    [True, False, False, False, False, False],  # anchor 2: row 0's positive
])


def test_mask_marks_only_other_rows_candidates_above_the_threshold() -> None:
    mask = false_negative_mask(REF_ANCHORS, REF_POSITIVES, REF_NEGATIVES, 0.9, torch.arange(3))
    assert torch.equal(mask, EXPECTED)
    assert not false_negative_mask(REF_ANCHORS, REF_POSITIVES, REF_NEGATIVES, 1.5, torch.arange(3)).any()
    pairs = false_negative_mask(REF_ANCHORS, REF_POSITIVES, None, 0.9, torch.arange(3))
    assert torch.equal(pairs, EXPECTED[:, :3])


def reference_table() -> ReferenceEmbeddings:
    """The three reference rows above as the loss stores them: distinct vectors and row ids."""
    vectors = torch.nn.functional.normalize(torch.cat([REF_ANCHORS, REF_NEGATIVES[[0]]]), dim=-1)  # 4 distinct texts
    ids = torch.tensor([[0, 0, 3], [1, 1, 1], [2, 2, 3]])  # (rows, anchor/positive/negative)
    return ReferenceEmbeddings(vectors, ids)


def batch_embeddings() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(3, 8, generator=g, dtype=torch.float64) for _ in range(3)]


def test_the_module_looks_rows_up_by_label_and_counts_what_it_masks() -> None:
    """A shuffled batch (rows 2, 0, 1): the mask follows the rows, not the batch positions."""
    order = torch.tensor([2, 0, 1])
    loss = SimCSELoss(None, reference=reference_table(), false_negative_threshold=0.9)  # type: ignore[arg-type]
    embeddings = batch_embeddings()
    got = loss.compute_loss_from_embeddings(embeddings, order)
    columns = torch.cat([order, order + 3])
    want = simcse_loss(*embeddings, mask=EXPECTED[order][:, columns])
    assert torch.equal(got, want) and got != simcse_loss(*embeddings)
    assert loss.masked_share() == round(2 / (3 * 4), 6)  # 2 of the 3 anchors x 4 other rows' candidates


def test_a_threshold_above_every_similarity_is_the_unmasked_loss() -> None:
    loss = SimCSELoss(None, reference=reference_table(), false_negative_threshold=1.5)  # type: ignore[arg-type]
    embeddings = batch_embeddings()
    assert torch.equal(loss.compute_loss_from_embeddings(embeddings, torch.arange(3)), simcse_loss(*embeddings))
    assert loss.masked_share() == 0.0
    assert SimCSELoss(None).masked_share() is None  # type: ignore[arg-type]


def test_masking_without_row_labels_or_reference_fails_clearly() -> None:
    loss = SimCSELoss(None, reference=reference_table(), false_negative_threshold=0.9)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="row index as its label"):
        loss.compute_loss_from_embeddings(batch_embeddings(), None)
    with pytest.raises(ValueError, match="needs reference embeddings"):
        SimCSELoss(None, false_negative_threshold=0.9)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="training rows to embed"):
        reference_embeddings([], lambda texts: None)


def test_reference_embeddings_encode_each_distinct_text_once() -> None:
    rows = [Triplet("a", "a", "b", "x"), Triplet("c", "b", "a", "x")]
    seen: list[list[str]] = []

    def encode(texts: list[str]) -> torch.Tensor:
        seen.append(texts)
        return torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])[: len(texts)]

    table = reference_embeddings(rows, encode)
    assert seen == [["a", "c", "b"]]
    assert table.ids.tolist() == [[0, 0, 2], [1, 2, 0]]
    assert torch.allclose(table.vectors.norm(dim=-1), torch.ones(3))


def test_row_labels_column_indexes_the_rows() -> None:
    rows = [Triplet(f"a{i}", f"p{i}", f"n{i}", "x") for i in range(3)]
    assert to_dataset(rows, row_labels=True)["label"] == [0, 1, 2]
    assert "label" not in to_dataset(rows).column_names


def test_threshold_is_checked_at_load() -> None:
    with pytest.raises(ConfigError, match=r"train\.false_negative_threshold: 1\.5 outside the allowed range \[-1, 1\]"):
        parse_params({"train": {"false_negative_threshold": 1.5}})
    assert parse_params({}).train.false_negative_threshold is None  # off by default


def tiny(base: str, **overrides: object) -> TrainConfig:
    settings = dict(base=base, pooler="cls", batch_size=8, lr=5e-4, max_steps=2, eval_steps=2, precision="fp32",
                    false_negative_threshold=0.5, hard_negative_weight=0.5)
    return TrainConfig(**{**settings, **overrides})  # type: ignore[arg-type]


ROWS = [  # two rows say the same thing: under the MiniLM judge each is the other's false negative
    Triplet("A man is playing a guitar.", "A man plays the guitar.", "A man is sleeping.", "x"),
    Triplet("Someone is playing the guitar.", "A person plays a guitar.", "Nobody is playing music.", "x"),
    Triplet("The stock market fell sharply today.", "Shares dropped a lot today.", "Stocks rose today.", "x"),
    Triplet("A cat sits on the windowsill.", "A cat is resting by the window.", "A dog runs in the park.", "x"),
]


@pytest.mark.parametrize("threshold", [0.9, None])
def test_cached_loss_equals_the_plain_loss(tiny_bert: str, threshold: float | None) -> None:
    """GradCache in chunks of 2, hard-negative weight 0.5, with and without masking: the same value
    and gradients as the loss on the whole batch."""
    cfg = tiny(tiny_bert, mini_batch_size=2, false_negative_threshold=threshold)
    model, _ = build_model(cfg)
    model.eval()  # no dropout: both passes see the same embeddings
    reference = reference_embeddings(ROWS, lambda texts: torch.eye(3)[[len(t) % 3 for t in texts]])  # same length mod 3: cos 1
    kwargs = {"hard_negative_weight": 0.5, "reference": reference, "false_negative_threshold": threshold}
    features = [model.preprocess([getattr(r, c) for r in ROWS]) for c in ("anchor", "positive", "negative")]
    labels = torch.arange(len(ROWS))

    def value_and_grads(loss: SimCSELoss) -> tuple[float, list[torch.Tensor]]:
        model.zero_grad()
        value = loss([dict(f) for f in features], labels)
        value.backward()
        return value.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain, plain_grads = value_and_grads(SimCSELoss(model, **kwargs))
    cached_loss = CachedSimCSELoss(model, 2, **kwargs)
    cached, cached_grads = value_and_grads(cached_loss)
    assert cached == pytest.approx(plain, abs=1e-5)
    assert len(cached_grads) == len(plain_grads)
    for got, want in zip(cached_grads, plain_grads):
        assert torch.allclose(got, want, atol=1e-5)
    assert (cached_loss.masked > 0) == (threshold is not None)  # the mask is in play when on
    assert isinstance(build_loss(model, cfg, rows=ROWS), CachedSimCSELoss)


def test_a_short_run_with_the_minilm_judge_reports_the_masked_share(tiny_bert: str, tiny_dev: Path, tmp_path: Path) -> None:
    """train() on four rows, two of them paraphrases: the judge masks some candidates, the result says how many."""
    result = train(tiny(tiny_bert, batch_size=4), ROWS, tmp_path / "model", data_root=tiny_dev,
                   checkpoint_dir=tmp_path / "ckpt", log_path=tmp_path / "log.csv", seed=3)
    assert result.steps == 2
    assert result.false_negatives_masked is not None and 0.0 < result.false_negatives_masked < 1.0
    off = train(tiny(tiny_bert, batch_size=4, false_negative_threshold=None), ROWS, tmp_path / "model2",
                data_root=tiny_dev, checkpoint_dir=tmp_path / "ckpt2", log_path=tmp_path / "log2.csv", seed=3)
    assert off.false_negatives_masked is None


DDP_SCRIPT = """
import json, sys, torch
import torch.distributed as dist
from syncse.losses import ReferenceEmbeddings, SimCSELoss
dist.init_process_group("gloo")
rank = dist.get_rank()
g = torch.Generator().manual_seed(0)
embeddings = [torch.randn(4, 8, generator=g, dtype=torch.float64) for _ in range(3)]  # the whole batch, every rank
reference = ReferenceEmbeddings(torch.eye(3, dtype=torch.float64)[[0, 1, 0, 2, 2, 1]], torch.tensor([[0, 1, 2], [2, 3, 4], [3, 4, 5], [5, 0, 1]]))
rows = torch.tensor([3, 1, 0, 2])  # dataset rows of the batch's four examples
loss = SimCSELoss(None, gather_across_devices=True, reference=reference, false_negative_threshold=0.9)
mine = slice(2 * rank, 2 * rank + 2)
value = loss.compute_loss_from_embeddings([e[mine] for e in embeddings], rows[mine])
whole = SimCSELoss(None, reference=reference, false_negative_threshold=0.9).compute_loss_from_embeddings(embeddings, rows)
print("RESULT", json.dumps({"rank": rank, "value": value.item(), "whole": whole.item(), "masked": loss.masked}))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_gathered_masks_follow_each_ranks_rows(tmp_path: Path) -> None:
    """torchrun, 2 CPU processes: each rank masks its anchors against every rank's candidates, so the
    mean of the two ranks' losses is the one-process loss of the whole batch."""
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    torchrun = Path(sys.executable).parent / "torchrun"
    done = subprocess.run([str(torchrun), "--nproc_per_node", "2", str(script)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines() if line.startswith("RESULT")]
    assert len(results) == 2
    assert sum(r["value"] for r in results) / 2 == pytest.approx(results[0]["whole"], abs=1e-12)
    assert sum(r["masked"] for r in results) > 0
