"""A small DVC pipeline runs end to end through papermill in a temporary copy of the project."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli as _run

REPO = Path(__file__).resolve().parents[1]
TASK_FILES = ["STS1{}-en-test".format(y) for y in range(2, 7)] + ["STSBenchmark", "SICK"]


def _small_data(source: Path, target: Path, lines: int = 60) -> None:
    """The evaluation files cut to their first `lines` lines (same layout, real text)."""
    for folder in TASK_FILES:
        for path in (source / folder).glob("*.*"):
            out = target / folder / path.name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("\n".join(path.read_text().splitlines()[:lines]) + "\n")


@pytest.fixture()
def project(tmp_path: Path, data_root: Path) -> Path:
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks")
    shutil.copytree(REPO / "syncse", tmp_path / "syncse", ignore=shutil.ignore_patterns("__pycache__"))
    _small_data(data_root, tmp_path / "data")
    _run(["git", "init", "-q"], tmp_path)
    _run(["dvc", "init", "-q"], tmp_path)
    _run(["dvc", "config", "core.analytics", "false"], tmp_path)
    return tmp_path


def test_evaluate_stage_runs_through_papermill_and_reruns_as_noop(project: Path) -> None:
    stage = "evaluate_anchor@all-MiniLM-L6-v2"
    _run(["dvc", "repro", "--single-item", stage], project)
    metrics = json.loads((project / "metrics/sts/all-MiniLM-L6-v2.json").read_text())
    assert set(metrics) == {"sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr", "avg"}
    assert all(-100 <= v <= 100 for v in metrics.values())
    dev = json.loads((project / "metrics/dev/all-MiniLM-L6-v2.json").read_text())
    assert set(dev) == {"stsb_dev", "sickr_dev", "avg"}
    executed = json.loads((project / "artifacts/notebooks/evaluate-all-MiniLM-L6-v2.ipynb").read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in executed["cells"])
    assert "didn't change" in _run(["dvc", "repro", "--single-item", stage], project)
    shown = _run(["dvc", "metrics", "show", "--json"], project)
    assert "metrics/sts/all-MiniLM-L6-v2.json" in shown
