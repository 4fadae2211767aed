"""`dvc exp run -S key=value` re-runs only the stages that read the key.

The pipeline is copied into a temporary git+DVC project, every stage is marked up to date with
placeholder outputs (`dvc commit`), then one parameter at a time is changed and `dvc repro --dry`
(what `dvc exp run` executes) lists the stages that would run.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

REPO = Path(__file__).resolve().parents[1]
DATA_DIRS = ["STS12-en-test", "STS13-en-test", "STS14-en-test", "STS15-en-test", "STS16-en-test",
             "STSBenchmark", "SICK", "SNLI", "SNLI_CAD_original", "MNLI_sample", "wiki1m"]


def _dvc(*args: str, cwd: Path) -> str:
    return run_cli(["dvc", *args], cwd)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dvc.repo import Repo

    root = tmp_path_factory.mktemp("pipeline")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, root / name)
    for folder in ("notebooks", "syncse"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for folder in DATA_DIRS:
        (root / "data" / folder).mkdir(parents=True)
        (root / "data" / folder / "placeholder.txt").write_text("x\n")
    run_cli(["git", "init", "-q"], root)
    _dvc("init", "-q", cwd=root)
    with contextlib.chdir(root):
        repo = Repo(".")
        for stage in repo.index.stages:  # outputs, and deps kept in git (e.g. make mpnet's metrics)
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
    return root


def _would_run(root: Path, key: str, value: object) -> set[str]:
    original = (root / "params.yaml").read_text()
    params = yaml.safe_load(original)
    node = params
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    try:
        return set(re.findall(r"Running stage '([^']+)'", _dvc("repro", "--dry", cwd=root)))
    finally:
        (root / "params.yaml").write_text(original)


def test_pipeline_starts_up_to_date(pipeline: Path) -> None:
    assert "up to date" in _dvc("status", cwd=pipeline)


def test_evaluation_batch_size_reruns_only_evaluation(pipeline: Path) -> None:
    stages = _would_run(pipeline, "evaluate.batch_size", 32)
    assert stages and all(s.startswith("evaluate") for s in stages)


def test_number_of_partial_triplets_reruns_only_partial_synthesis(pipeline: Path) -> None:
    assert _would_run(pipeline, "synth.n_partial", 12) == {"synthesize@partial"}


def test_training_size_reruns_training_not_synthesis(pipeline: Path) -> None:
    stages = _would_run(pipeline, "train.num_examples", 64)
    assert {"train@unsup", "train@sup", "train@partial", "train@scratch"} <= stages
    assert not any(s.startswith("synthesize") for s in stages)


def test_report_settings_rerun_only_the_report(pipeline: Path) -> None:
    assert _would_run(pipeline, "report.samples", 5) == {"report"}


def test_paper_profile_resolves_and_rewires_every_model_stage(pipeline: Path) -> None:
    from syncse.config import load_params

    raw = yaml.safe_load((pipeline / "params.yaml").read_text())
    paper = pipeline / "paper.yaml"
    paper.write_text(yaml.safe_dump({**raw, "profile": "paper"}))
    params = load_params(paper)
    assert (params.train.base, params.train.batch_size, params.train.eval_steps) == ("roberta-base", 512, 25)
    assert (params.train.mlm_weight, params.train.pooler, params.llm.backend) == (0.1, "cls", "openai")
    assert params.synth.exemplar_block == 1  # the paper's fresh exemplar sample per call
    stages = _would_run(pipeline, "profile", "paper")  # dry: nothing runs, nothing is fetched
    assert {"synthesize@partial", "synthesize@scratch", "train@sup", "evaluate_base", "report"} <= stages
