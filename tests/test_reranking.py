"""The reranking score is the paper's: MTEB v1's reranking MAP (per query, sklearn's average
precision of the candidates ranked by cosine; queries lacking a positive or a negative skipped;
several query texts take each candidate's best), on a task in mteb v2's layout."""

from __future__ import annotations


import numpy as np
import pytest
from datasets import Dataset
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from test_evaluate import TinyRerankingTask

from syncse.evaluate import CachedEncoder, evaluate_reranking

VECTORS = {"q": [1.0, 0.0], "r": [0.0, 1.0], "a": [0.9, 0.1], "b": [0.5, 0.5], "c": [0.8, 0.2], "d": [0.05, 0.95]}


class HandTask(TinyRerankingTask):
    """Three queries whose average precisions are known by hand."""

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        self.dataset = {"default": {"test": RetrievalSplitData(
            corpus=Dataset.from_list([{"id": k, "text": k} for k in "abcd"]),
            queries=[{"id": "1", "text": "q"}, {"id": "2", "text": "q"}, {"id": "3", "text": ["q", "r"]}],  # mixed types: no Dataset
            relevant_docs={"1": {"a": 1, "b": 1}, "2": {"a": 1, "c": 1}, "3": {"d": 1}},
            top_ranked={"1": ["b", "c", "a"], "2": ["a", "c"], "3": ["a", "d", "c"]},
        )}}
        self.data_loaded = True


def test_reranking_map_is_mteb_v1s() -> None:
    encoder = CachedEncoder(lambda texts: np.array([VECTORS[t] for t in texts]), "hand")
    scores = evaluate_reranking(encoder, [HandTask()])
    # query 1 ranks a, c, b: AP (1/1 + 2/3) / 2; query 2 has no negative: skipped;
    # query 3 (texts q and r) scores each candidate by its best: d first (0.9986 via r, a 0.9939), AP 1
    assert scores["SyncseTinyReranking"] == pytest.approx(100 * ((1 + 2 / 3) / 2 + 1) / 2, abs=0.01)
    assert scores["avg"] == scores["SyncseTinyReranking"]
