"""The STS harness: the paper's protocol as mteb tasks defined on the local files.

Protocol (SentEval "all", as SimCSE and SynCSE report): Spearman correlation of the cosine
similarity with the gold scores, x100; STS12-16 pool every subset of a year into one set;
STS-B test (1,379 pairs) and SICK-R test (4,927 pairs, not MTEB's 9,927). Dev scores (STS-B dev,
SICK-R trial) are computed by the same code and are the only ones used for model selection.

Each distinct sentence is encoded once per model: `CachedEncoder` memoizes embeddings by text
across every task it is asked to run, and `evaluate_sts` encodes all of its tasks' sentences in
one pass, longest first, before mteb scores them. `precision: bf16` encodes under bf16 autocast,
faster on CPUs with native bf16 (README "Benchmarks": the speed-up, and how little the scores move).
mteb seeds the global RNGs whenever it builds a task; the harness puts them back (`syncse.seeds.keeps_global_rng`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import mteb
import numpy as np
import torch
from datasets import Dataset, DatasetDict
from mteb.abstasks.sts import AbsTaskSTS
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.models import ModelMeta
from mteb.models.abs_encoder import AbsEncoder
from sklearn.metrics import average_precision_score

from syncse import data
from syncse.encoders import cpu_has_native_bf16
from syncse.progress import progress_bar
from syncse.seeds import keeps_global_rng

logger = logging.getLogger(__name__)

EncodeFn = Callable[[list[str]], np.ndarray]
TEST_TASKS = ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr")
DEV_TASKS = ("stsb_dev", "sickr_dev")
# The paper's four MTEB reranking tasks: hub datasets, so they need a network.
RERANKING_TASKS = ("AskUbuntuDupQuestions", "MindSmallReranking", "SciDocsRR", "StackOverflowDupQuestions")
PRECISIONS = ("auto", "bf16", "fp32")
CHUNK_BATCHES = 16  # batches encoded per progress step


@dataclass(frozen=True)
class StsSource:
    """Declaration of one local STS evaluation set: how to load it and its score range."""

    description: str
    load: Callable[[Path], list[data.StsPair]]
    min_score: float
    max_score: float


def _year(year: str) -> Callable[[Path], list[data.StsPair]]:
    return lambda root: [p for pairs in data.load_sts_year(root, year).values() for p in pairs]


STS_SOURCES: dict[str, StsSource] = {
    **{y: StsSource(f"{y.upper()} test, all subsets pooled (SentEval 'all')", _year(y), 0, 5) for y in data.STS_SUBSETS},
    "stsb": StsSource("STS Benchmark test (1,379 pairs)", lambda r: data.load_stsb(r, "test"), 0, 5),
    "sickr": StsSource("SICK relatedness test (4,927 pairs)", lambda r: data.load_sickr(r, "test"), 1, 5),
    "stsb_dev": StsSource("STS Benchmark dev (model selection)", lambda r: data.load_stsb(r, "dev"), 0, 5),
    "sickr_dev": StsSource("SICK relatedness trial (model selection)", lambda r: data.load_sickr(r, "trial"), 1, 5),
}


class LocalSTSTask(AbsTaskSTS):
    """An mteb STS task whose data are the project's SentEval-layout files, not the hub.

    One subclass per entry of `STS_SOURCES` (see `TASKS`): mteb reads `metadata` from the class.
    """

    key: str

    def __init__(self, data_root: str | Path) -> None:
        self.data_root = Path(data_root)
        super().__init__()

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        """Read the local pairs into the single `test` split mteb evaluates."""
        if self.data_loaded:
            return
        pairs = STS_SOURCES[self.key].load(self.data_root)
        columns = {
            "sentence1": [p.sentence1 for p in pairs],
            "sentence2": [p.sentence2 for p in pairs],
            "score": [p.score for p in pairs],
        }
        self.dataset = DatasetDict({"test": Dataset.from_dict(columns)})
        self.data_loaded = True


def _task_class(key: str, source: StsSource) -> type[LocalSTSTask]:
    attributes = {
        "key": key,
        "min_score": source.min_score,
        "max_score": source.max_score,
        "metadata": _sts_metadata(key, source.description),
    }
    return type(f"LocalSTS_{key}", (LocalSTSTask,), attributes)


def _sts_metadata(key: str, description: str) -> TaskMetadata:
    return TaskMetadata(
        name=f"syncse-{key}",
        dataset={"path": f"local/{key}", "revision": "senteval-layout"},
        description=description,
        reference="https://arxiv.org/abs/2305.15077",
        type="STS",
        category="t2t",
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score="cosine_spearman",
        date=("2012-01-01", "2017-12-31"),
        domains=["News", "Written"],
        task_subtypes=[],
        license="not specified",
        annotations_creators="human-annotated",
        dialect=[],
        sample_creation="found",
        bibtex_citation="",
    )


TASKS: dict[str, type[LocalSTSTask]] = {key: _task_class(key, src) for key, src in STS_SOURCES.items()}


class CachedEncoder(AbsEncoder):
    """mteb encoder over a plain `encode_fn(list[str]) -> (n, dim) array`, memoized by text.

    Across all the tasks of one model each distinct sentence is encoded exactly once;
    `encoded` counts the sentences actually sent to `encode_fn`, `seconds` the time it took.
    """

    def __init__(self, encode_fn: EncodeFn, name: str) -> None:
        self.encode_fn = encode_fn
        self.cache: dict[str, np.ndarray] = {}
        self.encoded = 0
        self.seconds = 0.0
        self.mteb_model_meta = ModelMeta.create_empty({"name": f"syncse/{name}", "revision": "local"})

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of `texts`, computing only those not seen before."""
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            started = time.perf_counter()
            vectors = np.asarray(self.encode_fn(missing), dtype=np.float32)  # (len(missing), dim)
            self.seconds += time.perf_counter() - started
            if vectors.shape[0] != len(missing):
                raise ValueError(f"encode_fn returned {vectors.shape[0]} vectors for {len(missing)} texts")
            self.cache.update(zip(missing, vectors))
            self.encoded += len(missing)
        return np.stack([self.cache[t] for t in texts])  # (len(texts), dim)

    def encode(self, inputs: Any, *, task_metadata: TaskMetadata, hf_split: str, hf_subset: str,
               prompt_type: Any = None, **kwargs: Any) -> np.ndarray:
        """mteb's entry point: gather the batch texts, then `embed` them."""
        texts = [text for batch in inputs for text in batch["text"]]
        return self.embed(texts)


def resolve_precision(precision: str, device_type: str = "cpu") -> str:
    """`auto` -> bf16 where `device_type` computes it natively (CUDA Ampere+, AVX512-BF16/AMX CPUs), else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown evaluation precision {precision!r}; allowed: {PRECISIONS}")
    if precision != "auto":
        return precision
    native = torch.cuda.is_bf16_supported() if device_type == "cuda" else cpu_has_native_bf16()
    return "bf16" if native else "fp32"


def encode_fn_for(model: Any, batch_size: int = 64, precision: str = "fp32") -> EncodeFn:
    """An `encode_fn` for a SentenceTransformer (or anything with `.encode`) or a callable.

    A model encodes under bf16 autocast when `precision` resolves to bf16 (see `resolve_precision`).
    """
    if hasattr(model, "encode"):
        device_type = getattr(model, "device", torch.device("cpu")).type
        return partial(_encode_longest_first, model, batch_size, device_type, resolve_precision(precision, device_type))
    if callable(model):
        return model
    raise TypeError(f"cannot evaluate {type(model).__name__}: expected a SentenceTransformer or a callable")


def _encode_longest_first(model: Any, batch_size: int, device_type: str, precision: str, texts: list[str]) -> np.ndarray:
    """`model.encode(texts)` in batches of `batch_size` cut from the texts sorted by token count, longest
    first, so that a batch pads little: 37% fewer padded tokens than sorting by characters, as
    sentence-transformers does, on the STS test sets (README "Benchmarks"). One progress bar."""
    length = token_counts(model, texts)
    order = sorted(range(len(texts)), key=lambda i: -length[i])
    parts = []
    with (torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"),
          progress_bar(total=len(texts), desc=f"encoding ({precision})", unit="sent",
                       disable=len(texts) <= batch_size * CHUNK_BATCHES) as bar):
        for start in range(0, len(texts), batch_size):
            batch = [texts[i] for i in order[start:start + batch_size]]
            parts.append(model.encode(batch, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False))
            bar.update(len(batch))
    vectors = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)  # (n, dim)
    vectors[order] = np.concatenate(parts)  # back to the callers' order
    return vectors


def token_counts(model: Any, texts: list[str]) -> list[int]:
    """Tokens per text as the model will see them (its tokenizer, cut at `max_seq_length`); characters
    for a model without a tokenizer."""
    tokenizer, limit = getattr(model, "tokenizer", None), getattr(model, "max_seq_length", None) or 10**9
    if tokenizer is None:
        return [len(text) for text in texts]
    return [min(len(ids), limit) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]


@keeps_global_rng()
def evaluate_sts(encoder: CachedEncoder, data_root: str | Path, keys: Sequence[str] = TEST_TASKS) -> dict[str, float]:
    """Run the local STS tasks through mteb; returns `{key: spearman x100, ..., "avg": mean}`."""
    unknown = sorted(set(keys) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown STS task(s) {unknown}; expected some of {sorted(TASKS)}")
    tasks = [TASKS[key](data_root) for key in keys]
    before, seconds = encoder.encoded, encoder.seconds
    encoder.embed(task_sentences(tasks))  # every distinct sentence in one longest-first pass; mteb then hits the cache
    logger.info("%s: %d distinct sentences encoded in %.1f s", ", ".join(keys), encoder.encoded - before,
                encoder.seconds - seconds)
    result = mteb.evaluate(encoder, tasks, cache=None, show_progress_bar=False)
    by_name = {r.task_name: r for r in result.task_results}
    scores = {key: round(100 * by_name[f"syncse-{key}"].scores["test"][0]["cosine_spearman"], 2) for key in keys}
    scores["avg"] = round(float(np.mean([scores[k] for k in keys])), 2)
    return scores


def task_sentences(tasks: Sequence[LocalSTSTask]) -> list[str]:
    """Every sentence of `tasks` (both sides of each pair), loading their data."""
    for task in tasks:
        task.load_data()
    columns = [split.select_columns(["sentence1", "sentence2"]).to_dict() for task in tasks for split in task.dataset.values()]
    return [text for both in columns for text in both["sentence1"] + both["sentence2"]]  # to_dict: 30x faster than row iteration


def dev_scores(model: Any, data_root: str | Path, batch_size: int = 64, precision: str = "fp32") -> dict[str, float]:
    """Model-selection score: STS-B dev and SICK-R trial Spearman x100 and their mean (`avg`)."""
    encoder = CachedEncoder(encode_fn_for(model, batch_size, precision), "dev")
    return evaluate_sts(encoder, data_root, DEV_TASKS)


class RerankingUnavailable(RuntimeError):
    """The reranking tasks' data cannot be loaded (they come from the HF hub: offline, they never can)."""


def reranking_scores(encoder: CachedEncoder, enabled: bool, tasks: Sequence[Any] | None = None) -> dict[str, float]:
    """`evaluate_reranking` when `enabled` (`evaluate.reranking`), else `{}`. Tasks whose data cannot be
    loaded are skipped with a warning and give `{}` too ("not run" in the report), so that an evaluation
    stage without a network still writes its STS and dev scores."""
    if not enabled:
        return {}
    try:
        return evaluate_reranking(encoder, tasks)
    except RerankingUnavailable as err:
        logger.warning("reranking skipped, its metrics left empty ({}): %s", err)
        return {}


@keeps_global_rng()
def evaluate_reranking(encoder: CachedEncoder, tasks: Sequence[Any] | None = None) -> dict[str, float]:
    """MAP x100 per reranking task and their `avg`, as the paper's numbers: MTEB v1's reranking MAP
    (`reranking_map`; default tasks: the paper's four, whose data come from the HF hub).

    Raises:
        RerankingUnavailable: naming the tasks, when their data cannot be loaded (e.g. offline).
    """
    tasks = list(tasks) if tasks is not None else list(mteb.get_tasks(tasks=list(RERANKING_TASKS), languages=["eng"]))
    try:
        for task in tasks:
            task.load_data()
    except Exception as err:  # noqa: BLE001 - any loading failure means "unavailable here"
        names = [t.metadata.name for t in tasks]
        raise RerankingUnavailable(f"reranking tasks {names} unavailable (their data come from the HF hub): {err}") from err
    scores = {task.metadata.name: round(100 * reranking_map(encoder, task), 2) for task in tasks}
    scores["avg"] = round(float(np.mean(list(scores.values()))), 2)
    return scores


def reranking_map(encoder: CachedEncoder, task: Any) -> float:
    """MTEB v1's `RerankingEvaluator` MAP on a loaded mteb v2 reranking task: for each query, the
    average precision (sklearn's) of its candidates ranked by cosine similarity (a query given as
    several texts takes each candidate's best), queries without a positive or a negative skipped,
    then the mean (mteb v2's MAP@1000 is computed otherwise and does not always agree)."""
    precisions = []
    for subset in task.dataset.values():
        for split in task.metadata.eval_splits:
            data = subset[split]
            queries = {row["id"]: row["text"] for row in data["queries"]}
            corpus = {row["id"]: row["text"] for row in data["corpus"]}
            for query, candidates in data["top_ranked"].items():
                relevant = [int(doc in data["relevant_docs"].get(query, {})) for doc in candidates]
                if 0 < sum(relevant) < len(relevant):
                    texts = queries[query] if isinstance(queries[query], list) else [queries[query]]
                    similarity = _cosine(encoder.embed(texts), encoder.embed([corpus[doc] for doc in candidates]))
                    precisions.append(average_precision_score(relevant, similarity.max(axis=0)))
    if not precisions:
        raise ValueError(f"{task.metadata.name}: no query has both a relevant and an irrelevant candidate")
    return float(np.mean(precisions))


def unit_rows(vectors: Any) -> np.ndarray:
    """Each row scaled to length 1 (float32; a zero row stays zero): dot products become cosines."""
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)


def _cosine(queries: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """(q, d) cosine similarities of (q, dim) and (d, dim) embeddings."""
    return unit_rows(queries) @ unit_rows(docs).T