"""A small DVC pipeline runs end to end through papermill in a temporary copy of the project."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli as _run

from syncse.progress import stage_times

REPO = Path(__file__).resolve().parents[1]
TASK_FILES = ["STS1{}-en-test".format(y) for y in range(2, 7)] + ["STSBenchmark", "SICK"]


def _small_data(source: Path, target: Path, lines: int = 60) -> None:
    """The evaluation files cut to their first `lines` lines (same layout, real text, bytes as they are),
    the transfer sets' too (an evaluation stage's dependency, read only with evaluate.transfer)."""
    paths = [p for folder in TASK_FILES for p in (source / folder).glob("*.*")]
    for path in paths + [p for p in (source / "senteval").rglob("*") if p.is_file()]:
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"\n".join(path.read_bytes().splitlines()[:lines]) + b"\n")


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


def _pairs(task: str, data: Path) -> tuple[list[str], list[str], list[float]]:
    """A test set's pairs, read here as SentEval reads them: STS-B columns 5, 6 (gold 4); SICK
    columns 1, 2 (gold 3) after the header."""
    if task == "stsb":
        rows = [line.split("\t") for line in (data / "STSBenchmark/sts-test.csv").read_text().splitlines()]
        return [r[5] for r in rows], [r[6] for r in rows], [float(r[4]) for r in rows]
    rows = [line.split("\t") for line in (data / "SICK/SICK_test_annotated.txt").read_text().splitlines()[1:]]
    return [r[1] for r in rows], [r[2] for r in rows], [float(r[3]) for r in rows]


def _spearman_x100(model, left: list[str], right: list[str], gold: list[float]) -> float:
    """Spearman x100 of the cosines of `model.encode` on each pair, with the gold scores."""
    from scipy.stats import spearmanr

    a, b = (model.encode([t.strip() for t in side], convert_to_numpy=True) for side in (left, right))  # (n, dim) each
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return 100 * spearmanr(cosine, gold).statistic


def test_evaluate_stage_runs_through_papermill_and_reruns_as_noop(project: Path, minilm) -> None:
    """The stage's STS-B and SICK-R scores are those of the shipped model on the cut files, computed
    here directly (fp32: `auto` would encode in bf16 on some CPUs); the STS12-16 reading is
    checked the same way in test_evaluate."""
    import yaml

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate"]["precision"] = "fp32"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stage = "evaluate_anchor@all-MiniLM-L6-v2"
    _run(["dvc", "repro", "--single-item", stage], project)
    metrics = json.loads((project / "metrics/sts/all-MiniLM-L6-v2.json").read_text())
    assert set(metrics) == {"sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr", "avg"}
    for task in ("stsb", "sickr"):
        assert metrics[task] == pytest.approx(_spearman_x100(minilm, *_pairs(task, project / "data")), abs=0.02), task
    tasks = [v for k, v in metrics.items() if k != "avg"]
    assert metrics["avg"] == pytest.approx(sum(tasks) / len(tasks), abs=0.01)
    dev = json.loads((project / "metrics/dev/all-MiniLM-L6-v2.json").read_text())
    assert set(dev) == {"stsb_dev", "sickr_dev", "avg"}
    executed = json.loads((project / "artifacts/notebooks/evaluate-all-MiniLM-L6-v2.ipynb").read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in executed["cells"])
    assert "didn't change" in _run(["dvc", "repro", "--single-item", stage], project)
    shown = _run(["dvc", "metrics", "show", "--json"], project)
    assert "metrics/sts/all-MiniLM-L6-v2.json" in shown


def test_variant_trains_and_is_scored_once_per_seed(project: Path, tiny_bert: str) -> None:
    """train@partial and evaluate_variant@partial from dvc.yaml's foreach over train.variants, with two seeds
    on a tiny model: one model per seed, metrics the mean with std and per-seed scores; a rerun is a no-op."""
    import yaml

    from syncse.data import Triplet, load_nli_triplets, write_triplets

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"].update(base=tiny_bert, pooler="cls", attention_dropout=None, batch_size=8, equal_rows=False,
                           num_examples=16, max_steps=2, eval_steps=1, precision="fp32", seeds=[3, 4])
    params["evaluate"]["max_seq_length"] = 64  # the tiny model's positions
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    nli = load_nli_triplets(REPO / "data")[:32]
    for name in ("partial", "scratch"):
        write_triplets(project / f"artifacts/synth/{name}.jsonl", [Triplet(t.premise, t.entailment, t.contradiction, name) for t in nli])
    logged = [_run(["bash", "-c", f"dvc repro --single-item {stage} 2>&1"], project) for stage in ("train@partial", "evaluate_variant@partial")]
    times = stage_times("\n".join(logged).splitlines())  # make repro's table, from the stages' own closing lines
    assert list(times) == ["train partial", "evaluate partial"] and all(seconds > 0 for seconds in times.values())
    assert sorted(p.name for p in (project / "artifacts/models/partial").iterdir()) == ["seed-3", "seed-4"]
    sts = json.loads((project / "metrics/sts/partial.json").read_text())
    assert sts["n_seeds"] == 2 and set(sts["seeds"]) == {"3", "4"}
    per_seed = [sts["seeds"][s]["avg"] for s in ("3", "4")]
    assert sts["avg"] == round(sum(per_seed) / 2, 4) and sts["std"]["avg"] == round(abs(per_seed[0] - per_seed[1]) / 2 ** 0.5, 4)
    assert json.loads((project / "metrics/rerank/partial.json").read_text()) == {}  # not run offline: still `{}`
    assert json.loads((project / "metrics/transfer/partial.json").read_text()) == {}  # evaluate.transfer off: `{}`
    assert json.loads((project / "metrics/train/partial.json").read_text())["n_seeds"] == 2
    assert "didn't change" in _run(["dvc", "repro", "--single-item", "train@partial"], project)
