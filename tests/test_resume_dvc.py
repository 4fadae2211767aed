"""kill -9 in the middle of a training stage run by `dvc repro` / `dvc exp run`, then the same
command again: training continues from its last checkpoint and ends where an uninterrupted run
ends (same selected step, same dev scores, same weights). The stage trains two seeds and is killed
in the second: the first, finished, is reused, not retrained."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import cli_env, run_cli
from sentence_transformers import SentenceTransformer

from syncse.data import Triplet, load_nli_triplets, write_triplets
from syncse.train import select_rows

REPO = Path(__file__).resolve().parents[1]
STAGE = "train@partial"
STEPS = 24
KILL_AT = 8  # the step whose complete checkpoint triggers the kill
SEEDS = (5, 6)  # train.seeds; the kill comes while the last one trains


@pytest.fixture(scope="module")
def make_project(tmp_path_factory: pytest.TempPathFactory, tiny_bert: str, tiny_dev: Path, data_root: Path):
    """A git + DVC copy of the pipeline whose `partial` variant trains the tiny BERT on NLI rows."""
    tmp_path = tmp_path_factory.mktemp("resume")
    rows = select_rows([Triplet(t.premise, t.entailment, t.contradiction, "partial") for t in load_nli_triplets(data_root)], 64, 0)

    def make(name: str) -> Path:
        root = tmp_path / name
        root.mkdir()
        for item in ("dvc.yaml", "notebooks", "syncse"):
            copy = shutil.copytree if (REPO / item).is_dir() else shutil.copy
            copy(REPO / item, root / item, **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}))
        shutil.copytree(tiny_dev, root / "data")
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        params["profile"] = "default"
        params["train"].update(base=tiny_bert, pooler="cls", attention_dropout=None, batch_size=8, equal_rows=False,
                               num_examples=len(rows), epochs=1.0, max_steps=STEPS, eval_steps=2, precision="fp32", seeds=list(SEEDS))
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        for synthesized in ("partial", "scratch"):  # stand-ins for the synthesis stages' outputs, committed to DVC
            write_triplets(root / f"artifacts/synth/{synthesized}.jsonl", rows)
            for output in (f"artifacts/synth/{synthesized}.config.json", f"metrics/synth/{synthesized}.json",
                           f"artifacts/notebooks/synthesize-{synthesized}.ipynb"):
                (root / output).parent.mkdir(parents=True, exist_ok=True)
                (root / output).write_text("{}\n")
        for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"],
                        ["dvc", "commit", "-f", "-q", "synthesize"], ["git", "add", "-A"],
                        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"]):
            run_cli(command, root)
        return root

    return make


def _kill_mid_training(command: list[str], root: Path) -> None:
    """Start `command`, SIGKILL its whole process group once checkpoint KILL_AT is complete."""
    process = subprocess.Popen(command, cwd=root, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    marker = root / f"artifacts/checkpoints/partial/seed-{SEEDS[-1]}/checkpoint-{KILL_AT}/trainer_state.json"
    deadline = time.monotonic() + 600
    while not marker.is_file():
        assert process.poll() is None, f"{' '.join(command)} exited ({process.returncode}) before step {KILL_AT}"
        assert time.monotonic() < deadline, "no checkpoint after 10 minutes"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (root / f"artifacts/checkpoints/partial/seed-{SEEDS[-1]}/checkpoint-{STEPS}").exists(), "killed too late: training had ended"


def _outcome(root: Path) -> tuple[list[tuple[str, str, str]], dict, dict[str, torch.Tensor]]:
    """The stage's log (seed, step, dev avg), and per seed the kept model's dev scores and weights."""
    log = [(r["seed"], r["step"], r["avg"]) for r in csv.DictReader((root / "metrics/train/partial.csv").open())]
    models = {seed: root / f"artifacts/models/partial/seed-{seed}" for seed in SEEDS}
    best = {seed: json.loads((model / "dev_scores.json").read_text()) for seed, model in models.items()}
    weights = {f"{seed}.{k}": v for seed, model in models.items()
               for k, v in SentenceTransformer(str(model), device="cpu").state_dict().items()}
    return log, best, weights


def _assert_same(resumed: Path, reference: Path) -> None:
    executed = (resumed / "artifacts/notebooks/train-partial.ipynb").read_text()
    steps = [int(step) for step in re.findall(rf"resuming from \S*seed-{SEEDS[-1]}/checkpoint-(\d+)", executed)]
    assert steps and KILL_AT <= steps[0] < STEPS, "the second run did not resume from the killed run's checkpoint"
    assert f"seed-{SEEDS[0]}: this config and rows finished training already" in executed  # reused, not retrained
    (log, best, weights), (log_ref, best_ref, weights_ref) = _outcome(resumed), _outcome(reference)
    assert [(seed, step) for seed, step, _ in log] == [(str(seed), str(s)) for seed in SEEDS for s in range(2, STEPS + 1, 2)]
    assert log == log_ref
    assert best == best_ref
    assert all(torch.allclose(weights[k], weights_ref[k], atol=1e-6) for k in weights_ref)


@pytest.fixture(scope="module")
def reference(make_project) -> Path:
    """The same stage, never interrupted."""
    root = make_project("straight")
    run_cli(["dvc", "repro", "--single-item", STAGE], root)
    return root


def test_dvc_repro_resumes_after_kill_9(make_project, reference: Path) -> None:
    root = make_project("killed")
    command = ["dvc", "repro", "--single-item", STAGE]
    _kill_mid_training(command, root)
    run_cli(command, root)
    _assert_same(root, reference)


def test_dvc_exp_run_resumes_after_kill_9(make_project, reference: Path) -> None:
    root = make_project("killed-exp")
    command = ["dvc", "exp", "run", "--single-item", STAGE]
    _kill_mid_training(command, root)
    run_cli(command, root)
    _assert_same(root, reference)
    assert "partial" in run_cli(["dvc", "exp", "show", "--csv"], root)
