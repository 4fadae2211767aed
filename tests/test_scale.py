"""The scale study (`studies/scale/dvc.yaml`, `syncse.scale`, `syncse.scale_report`): its stages, the per-size recipe, a size past
a pool recorded as absent through the real stages, and the curve's table, reading and figure from
hand-built metric files."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import cli_env, commit_placeholders, run_cli

from syncse import scale, scale_report
from syncse.config import ConfigError, load_params, parse_params
from syncse.testing import load_script

REPO = Path(__file__).resolve().parents[1]
STUDY = "studies/scale/dvc.yaml"


def _project(root: Path) -> Path:
    """A git+DVC copy of the pipelines, notebooks and library under `root`."""
    for name in ("dvc.yaml", "params.yaml", STUDY):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, root / name)
    for folder in ("notebooks", "syncse"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    run_cli(["git", "init", "-q", "-b", "main"], root)
    run_cli(["dvc", "init", "-q"], root)
    run_cli(["dvc", "config", "core.analytics", "false"], root)
    return root


def _stages(root: Path) -> list[str]:
    from dvc.repo import Repo

    with contextlib.chdir(root):
        return [s.addressing.split(":", 1)[1] for s in Repo(".").index.stages if s.addressing.startswith(STUDY)]


# --------------------------------------------------------------------------- params and stages


def test_each_size_has_one_recipe_for_every_variant() -> None:
    params = load_params(REPO / "params.yaml", "scale")
    assert scale.sizes(params.scale)[0] * 10 <= scale.sizes(params.scale)[-1] and scale.sizes(params.scale)[-1] >= 5000
    assert len(params.scale.sizes) >= 3 and params.train.seeds == [42, 43, 44]
    assert params.train.seed_draws_rows is True and params.train.equal_rows is False
    top = scale.sizes(params.scale)[-1]
    recipe = params.scale.sizes[str(top)]
    for variant in params.train.variants:
        cfg = scale.point_config(params.train.for_variant(variant), params.scale, top)
        assert (cfg.num_examples, cfg.lr, cfg.epochs, cfg.eval_steps) == (top, recipe.lr, recipe.epochs, recipe.eval_steps)
    assert scale.point_config(params.train.for_variant("unsup"), params.scale, top).hidden_dropout == 0.1  # its overlay stays
    with pytest.raises(ValueError, match=r"size 123: no recipe in scale.sizes; declared sizes: \[500, 1500, 5000\]"):
        scale.point_config(params.train, params.scale, 123)
    with pytest.raises(ValueError, match="equal_rows is true"):
        scale.point_config(load_params(REPO / "params.yaml").train, params.scale, top)


def test_a_size_must_be_a_quoted_whole_number() -> None:
    recipe = {"lr": 1e-4, "epochs": 1.0, "eval_steps": 4}
    with pytest.raises(ConfigError, match=r"^scale\.sizes\.500: .*quoted \('500': DVC's templating drops integer keys\)"):
        parse_params({"scale": {"sizes": {500: recipe}}})
    with pytest.raises(ConfigError, match=r"^profiles\.big\.scale\.sizes\.0: a size is a whole number of rows above 0"):
        parse_params({"scale": {"sizes": {"0": recipe}}}, "profiles.big")
    with pytest.raises(ConfigError, match=r"scale\.sizes\.500\.lr: expected float, got str 'fast'"):
        parse_params({"scale": {"sizes": {"500": {**recipe, "lr": "fast"}}}})
    assert parse_params({"scale": {"sizes": {"500": recipe}}}).scale.sizes["500"].eval_steps == 4


def test_the_study_has_a_stage_per_variant_and_size(tmp_path: Path) -> None:
    root = _project(tmp_path)
    params = load_params(root / "params.yaml", "scale")
    points = [f"{v}-{n}" for v in params.train.variants for n in scale.sizes(params.scale)]
    pairs = [f"partial-{n}" for n in scale.sizes(params.scale)]
    stages = _stages(root)
    assert sorted(stages) == sorted([
        "synthesize@partial", "synthesize@scratch", "synthesize_pair", "evaluate_base", "report",
        *(f"train@{p}" for p in points), *(f"evaluate@{p}" for p in points),
        *(f"train_pair@{p}" for p in pairs), *(f"evaluate_pair@{p}" for p in pairs)])
    assert {"train@unsup-500", "train@partial-5000", "train_pair@partial-5000", "evaluate@sup-1500"} <= set(stages)  # as the README names them


def test_a_recipe_change_reruns_only_its_size(tmp_path: Path) -> None:
    """What the grid relies on: `-S profiles.scale.scale.sizes.500.lr=...` re-runs the 500-row points' training
    (and the report, which reads the sizes), no other size, no synthesis; the main job's stages stay up to date."""
    root = _project(tmp_path)
    commit_placeholders(root)  # placeholder outputs and data, then every stage marked up to date
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["profiles"]["scale"]["scale"]["sizes"]["500"]["lr"] = 3e-5
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dry = run_cli(["dvc", "repro", "--dry", STUDY], root) + run_cli(["dvc", "repro", "--dry"], root)
    ran = {name.split(":", 1)[-1] for name in re.findall(r"Running stage '([^']+)'", dry)}
    variants = list(params["train"]["variants"])  # `--dry` lists the stages the change touches directly; their
    assert ran == {*(f"train@{v}-500" for v in variants), "train_pair@partial-500", "report"}  # evaluations follow the models


# --------------------------------------------------------------------------- points, through the stages


def _trainable(root: Path, data_root: Path, tiny_bert: str, seeds: list[int], sizes: list[int]) -> Path:
    """The study's project at `root` training the tiny BERT on small real data, 24 synthesized rows a pool
    (partial's, scratch's and the ablation's) and `sizes` with one recipe."""
    from syncse.data import Triplet, load_nli_triplets, write_triplets
    from test_pipeline import _small_data

    _project(root)
    _small_data(data_root, root / "data")
    for folder in ("SNLI", "SNLI_CAD_original", "MNLI_sample", "wiki1m"):
        shutil.copytree(data_root / folder, root / "data" / folder)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"].update(base=tiny_bert, pooler="cls", attention_dropout=None, batch_size=4, precision="fp32")
    params["evaluate"]["max_seq_length"] = 64  # the tiny model's positions
    profile = params["profiles"]["scale"]
    profile["train"]["seeds"] = seeds
    profile["scale"]["sizes"] = {str(n): {"lr": 1e-4, "epochs": 1.0, "eval_steps": 1} for n in sizes}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    nli = load_nli_triplets(data_root)[:24]
    for folder, name in (("studies/scale", "partial"), ("studies/scale", "scratch"), ("studies/scale/pair", "partial")):
        write_triplets(root / f"{folder}/artifacts/synth/{name}.jsonl", [Triplet(t.premise, t.entailment, t.contradiction, name) for t in nli])
    return root


def test_a_queued_grid_run_trains_on_the_committed_synthesis(tmp_path: Path, data_root: Path, tiny_bert: str) -> None:
    """The README's grid, as the repository holds it (data in `data.dvc`, `.gitignore`'s artifacts): with the
    study's synthesis committed (lock and DVC cache), an experiment in a temporary copy (`dvc exp run --temp`, the
    executor `--queue` uses), where the git-ignored bank is absent, takes the triplets from the DVC cache and
    trains; synthesis (replay only, nothing banked there) is not run, and `grid_runs` reads its point and recipe."""
    root = _trainable(tmp_path, data_root, tiny_bert, [3], [8])
    shutil.copy(REPO / ".gitignore", root / ".gitignore")
    run_cli(["dvc", "add", "-q", "data"], root)
    commit_placeholders(root)  # the synthesized triplets as they are, every other output a placeholder; all up to date
    run_cli(["git", "add", "-A"], root)
    run_cli(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "synthesized"], root)
    out = run_cli(["dvc", "exp", "run", "--temp", f"{STUDY}:train@partial-8", "-S", "profiles.scale.scale.sizes.8.lr=3e-5"], root)
    assert f"Running stage '{STUDY}:train@partial-8'" in out and f"Running stage '{STUDY}:synthesize" not in out
    (run,) = scale_report.grid_runs(json.loads(run_cli(["dvc", "exp", "show", "--json"], root)), [8])
    assert run["sizes"] == {"8": {"lr": 3e-5, "epochs": 1.0, "eval_steps": 1}} and list(run["dev"]) == ["partial-8"]
    assert scale_report.grid_inputs(run["rev"], root) == scale_report.grid_inputs("HEAD", root)  # DVC's rewrite of params.yaml
    committed = run_cli(["git", "ls-tree", "-r", "--name-only", run_cli(["git", "for-each-ref", "--format=%(objectname)", "refs/exps"], root).strip()], root)
    assert "train/partial-8.json" in committed and "checkpoints" not in committed  # metrics in git, checkpoints ignored


def test_a_size_past_the_pool_is_absent_not_trained_short(tmp_path: Path, data_root: Path, tiny_bert: str) -> None:
    """On a 24-row synthesized pool, partial at 8 rows trains (two seeds, 8 rows each); at 64 rows every
    output of its training and evaluation stages says it is absent, and no model is trained."""
    root = _trainable(tmp_path, data_root, tiny_bert, [3, 4], [8, 64])
    for stage in ("train@partial-8", "train@partial-64", "evaluate@partial-64"):
        run_cli(["dvc", "repro", "--single-item", f"{STUDY}:{stage}"], root)
    study = root / "studies/scale"
    trained = json.loads((study / "metrics/train/partial-8.json").read_text())
    assert trained["n_seeds"] == 2 and trained["examples"] == 8
    absent = json.loads((study / "metrics/train/partial-64.json").read_text())
    assert absent == {"absent": True, "variant": "partial", "size": 64, "available": 24,
                      "reason": "partial's pool holds 24 rows, fewer than 64: not trained (never on fewer rows)"}
    assert [p.name for p in (study / "artifacts/models/partial-64").iterdir()] == [scale.ABSENT_FILE]
    assert scale.read_absent(study / "artifacts/checkpoints/partial-64") == absent
    for kind in ("sts", "dev", "rerank", "transfer"):
        assert json.loads((study / f"metrics/{kind}/partial-64.json").read_text()) == absent


def test_the_ablation_synthesizes_into_its_own_folder_keeping_pairs(tmp_path: Path, data_root: Path) -> None:
    """The synthesis notebook as the study runs it, on a fake LLM whose negatives restate their anchor (so the
    shipped judge fails them on the margin): with `-p on_bad_negative pair` into the ablation's folder those
    rows stay as pairs; the study's own run (`drop`) loses them; both from the same cached responses."""
    from syncse.data import read_triplets
    from syncse.testing import FakeOpenAIServer
    from test_corpora import run_stage
    from test_synth import responder

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["root"] = str(data_root)
    profile = params["profiles"]["scale"]
    profile["synth"]["n_partial"] = 12
    with FakeOpenAIServer(responder=responder) as server:
        profile["llm"] = {"backend": "openai", "model": "fake-model", "base_url": server.base_url,
                          "cache_dir": str(tmp_path / "llm"), "progress": False}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        runs = {bad: run_stage("synthesize", tmp_path, "-p", "name", "partial", "-p", "profile", "scale", "-p", "out", folder,
                               *(["-p", "on_bad_negative", bad] if bad == "pair" else []))
                for bad, folder in (("pair", "studies/scale/pair"), ("drop", "studies/scale"))}
    for done in runs.values():
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    pair = read_triplets(tmp_path / "studies/scale/pair/artifacts/synth/partial.jsonl")
    drop = read_triplets(tmp_path / "studies/scale/artifacts/synth/partial.jsonl")
    pairs = [t for t in pair if t.negative is None]
    assert pairs and all(t.negative is not None for t in drop)
    assert [t for t in pair if t.negative is not None] == drop  # the same triplets pass; the failures differ in fate
    metrics = json.loads((tmp_path / "studies/scale/pair/metrics/synth/partial.json").read_text())
    assert metrics["kept_as_pair"] == len(pairs) and metrics["kept"] == len(pair)
    assert json.loads((tmp_path / "studies/scale/metrics/synth/partial.json").read_text())["cache_hits"] > 0  # replayed
    assert not (tmp_path / "artifacts").exists()  # nothing in the main job's folders


# --------------------------------------------------------------------------- the curve, from hand-built metrics

SIZES = [100, 1000, 10000]
# line -> STS avg mean and std over 3 seeds at each size; None: absent (past the pool). At 100 partial ties unsup
# (a gap of 0.3 under a std of 0.4); at 1,000 and 10,000 it is above by more than both spreads: a crossing.
POINTS = {
    "unsup": [(54.0, 0.2), (54.2, 0.2), (54.1, 0.2)],
    "sup": [(56.0, 0.1), (58.0, 0.1), (60.0, 0.1)],
    "partial": [(54.3, 0.4), (55.5, 0.3), (57.0, 0.3)],
    "scratch": [(53.0, 0.2), (53.9, 0.5), None],
    "partial-pair": [(54.4, 0.3), (55.6, 0.2), (57.5, 0.2)],
}


def _write(root: Path, line: str, size: int, point: tuple[float, float] | None) -> None:
    """A point's `metrics/sts` and `metrics/train` files, as the stages write them (absent: the record)."""
    variant, folder = ("partial", root / "pair") if line == scale_report.PAIR else (line, root)
    name = scale.point_name(variant, size)
    if point is None:
        record = scale.absence(variant, size, 1507)
        files = {"sts": record, "train": record}
    else:
        avg, std = point
        files = {"sts": {"avg": avg, "std": {"avg": std}, "n_seeds": 3, "seeds": {}},
                 "train": {"examples": size, "best": {"avg": avg + 8}, "n_seeds": 3}}
    for kind, payload in files.items():
        (folder / "metrics" / kind).mkdir(parents=True, exist_ok=True)
        (folder / "metrics" / kind / f"{name}.json").write_text(json.dumps(payload))


@pytest.fixture()
def curve(tmp_path: Path):
    for line, points in POINTS.items():
        for size, point in zip(SIZES, points):
            _write(tmp_path, line, size, point)
    lines = scale_report.study_lines(["unsup", "sup", "partial", "scratch"], tmp_path, tmp_path / "pair")
    return scale_report.curve_table(lines, SIZES)


def test_curve_table_reads_every_point_and_marks_the_absent(curve) -> None:
    assert len(curve) == 15
    partial = curve[curve.line == "partial"].set_index("size")
    assert partial.loc[1000, ["rows", "avg", "std", "n_seeds", "dev_avg"]].tolist() == [1000, 55.5, 0.3, 3, 63.5]
    absent = curve[curve.absent != ""]
    assert absent[["line", "size"]].values.tolist() == [["scratch", 10000]]
    assert "pool holds 1,507 rows, fewer than 10,000" in absent.absent.iloc[0]
    table = scale_report.curve_markdown(curve)
    assert "| SynCSE-scratch | 53.00 \u00b1 0.20 | 53.90 \u00b1 0.50 | absent |" in table
    assert "- SynCSE-scratch, N = 10,000: scratch's pool holds 1,507 rows" in table
    assert scale_report.curve_metrics(curve)["scratch-10000"] == {"absent": absent.absent.iloc[0]}
    assert scale_report.curve_metrics(curve)["partial-pair-100"] == {"rows": 100, "avg": 54.4, "std": 0.3, "n_seeds": 3, "dev_avg": 62.4}


def test_reading_applies_the_spread_rule_at_each_size(curve) -> None:
    reading = scale_report.scale_reading(curve, base=54.32, tie_margin=0.5)
    per_size, across = reading.split("**Across sizes**")
    blocks = {block.split("**")[0]: block for block in per_size.split("- **N = ")[1:]}
    at_100, at_1000, at_10000 = (blocks[n] for n in ("100", "1,000", "10,000"))
    assert "SynCSE-partial > unsup-SimCSE: **a tie** (54.30 \u00b1 0.40 vs 54.00 \u00b1 0.20, +0.30)" in at_100
    assert "SynCSE-partial > unsup-SimCSE: **holds** (55.50 \u00b1 0.30 vs 54.20 \u00b1 0.20, +1.30)" in at_1000
    assert "SynCSE-scratch > unsup-SimCSE: **reversed** (53.00 \u00b1 0.20 vs 54.00 \u00b1 0.20, -1.00)" in at_100
    assert "SynCSE-scratch > unsup-SimCSE: **a tie**" in at_1000  # -0.30 under scratch's 0.50
    assert "SynCSE-scratch" not in at_10000  # absent there: no comparison made with it
    assert "SynCSE-partial (pairs kept) > SynCSE-partial: **holds** (57.50 \u00b1 0.20 vs 57.00 \u00b1 0.30, +0.50)" in at_10000
    assert "above the base zero-shot (54.32) beyond the spread: sup-SimCSE\n" in at_100  # partial's +0.02 is within its 0.4
    assert "below the base zero-shot (54.32) beyond the spread: unsup-SimCSE, SynCSE-scratch\n" in at_100  # -0.32 beyond 0.2
    assert ("- SynCSE-partial > unsup-SimCSE: crosses above between N = 100 and 1,000 "
            "(a tie at 100, holds at 1,000, holds at 10,000).") in across
    assert "- SynCSE-scratch > unsup-SimCSE: no crossing: never above it beyond the spread (reversed at 100, a tie at 1,000)." in reading
    assert "- sup-SimCSE > SynCSE-partial, by: +1.70 at 100 (holds); +2.50 at 1,000 (holds); +3.00 at 10,000 (holds)." in reading


def test_one_seed_points_fall_back_to_the_tie_margin(tmp_path: Path) -> None:
    """Without a measured spread a gap must exceed `tie_margin` (the report's rule for one seed)."""
    for line, avg in (("unsup", 54.0), ("partial", 54.4), ("sup", 55.0), ("scratch", 53.0)):
        (tmp_path / "metrics/sts").mkdir(parents=True, exist_ok=True)
        (tmp_path / "metrics/train").mkdir(parents=True, exist_ok=True)
        (tmp_path / f"metrics/sts/{line}-100.json").write_text(json.dumps({"avg": avg, "std": {"avg": 0.0}, "n_seeds": 1}))
        (tmp_path / f"metrics/train/{line}-100.json").write_text(json.dumps({"examples": 100, "best": {"avg": 60.0}}))
    lines = {k: v for k, v in scale_report.study_lines(["unsup", "sup", "partial", "scratch"], tmp_path, tmp_path).items() if k != scale_report.PAIR}
    reading = scale_report.scale_reading(scale_report.curve_table(lines, [100]), base=54.32, tie_margin=0.5)
    assert "SynCSE-partial > unsup-SimCSE: **a tie** (54.40 vs 54.00, +0.40)" in reading
    assert "sup-SimCSE > unsup-SimCSE: **holds** (55.00 vs 54.00, +1.00)" in reading


def test_the_figure_has_a_line_and_band_per_variant_and_the_reference_lines(curve, tmp_path: Path) -> None:
    fig = scale_report.plot_curve(curve, base=54.32, anchors={"all-MiniLM-L6-v2": 78.88, "near": 57.0})
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    drawn = {line.get_label(): line for line in ax.get_lines()}
    assert set(drawn) == {"unsup-SimCSE", "sup-SimCSE", "SynCSE-partial", "SynCSE-scratch", "SynCSE-partial (pairs kept)",
                          "base zero-shot (54.32)", "all-MiniLM-L6-v2 (shipped, 78.88, above the axis)", "near (shipped, 57.00)"}
    low, high = ax.get_ylim()  # the axis spans the lines and the base, not the far anchor
    assert low < 54.32 and 60.1 < high < 78.88
    assert list(drawn["SynCSE-scratch"].get_xdata()) == [100, 1000]  # the absent point is not drawn
    assert list(drawn["sup-SimCSE"].get_ydata()) == [56.0, 58.0, 60.0]
    assert list(drawn["base zero-shot (54.32)"].get_ydata()) == [54.32, 54.32]
    assert len(ax.collections) == 5  # a band per line
    band = ax.collections[[*drawn].index("sup-SimCSE")].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(55.9) and band.max() == pytest.approx(60.1)
    fig.savefig(tmp_path / "scale.png")
    assert (tmp_path / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_stage_writes_the_figure_table_and_reading(tmp_path: Path) -> None:
    """The study's report stage on hand-built points at the profile's sizes: figure, curve table (CSV and
    `dvc metrics`' JSON), the Markdown with the reading, and the HTML page."""
    root = _project(tmp_path)
    study = root / "studies/scale"
    study_sizes = scale.sizes(load_params(root / "params.yaml", "scale").scale)
    for line, points in POINTS.items():
        for size, point in zip(study_sizes, points):
            _write(study, line, size, point)
    (study / "metrics/sts/base.json").write_text(json.dumps({"avg": 54.32}))
    for anchor in ("all-MiniLM-L6-v2", "all-mpnet-base-v2"):
        (root / "metrics/sts").mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / f"metrics/sts/{anchor}.json", root / f"metrics/sts/{anchor}.json")
    run_cli(["dvc", "repro", "--single-item", f"{STUDY}:report"], root)
    assert (study / "artifacts/report/scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((study / "metrics/curve.csv").read_text().splitlines()) == 1 + len(POINTS) * len(study_sizes)
    assert json.loads((study / "metrics/curve.json").read_text())["scratch-5000"]["absent"].startswith("scratch's pool holds")
    written = (study / "artifacts/report/curve.md").read_text()
    assert "| SynCSE-scratch | 53.00 \u00b1 0.20 | 53.90 \u00b1 0.50 | absent |" in written
    assert "SynCSE-partial > unsup-SimCSE: crosses above between N = 500 and 1,500" in written
    assert "<title>The scale study: STS against training rows</title>" in (study / "artifacts/report/scale.html").read_text()


def test_the_grid_keeps_per_size_the_recipe_with_the_best_mean_dev() -> None:
    """Two runs: the first wins at 100 (mean 62.0 vs 61.5), the second at 1,000 (63.0 vs 62.5); a third run
    missing a point at 1,000 is never kept there, however high its mean; an absent point is left out of every run."""
    def run(name: str, lr: float, dev: dict[str, float]) -> dict:
        return {"name": name, "sizes": {"100": {"lr": lr, "epochs": 2.0, "eval_steps": 8},
                                        "1000": {"lr": lr, "epochs": 1.0, "eval_steps": 16}}, "dev": dev}

    runs = [run("a", 1e-4, {"unsup-100": 61.0, "sup-100": 63.0, "unsup-1000": 62.0, "sup-1000": 63.0}),
            run("b", 3e-5, {"unsup-100": 61.0, "sup-100": 62.0, "unsup-1000": 62.5, "sup-1000": 63.5}),
            run("c", 1e-5, {"unsup-100": 60.0, "sup-100": 61.0, "sup-1000": 70.0})]
    grid = scale_report.recipe_grid(runs, [100, 1000])
    kept = grid[grid.kept].set_index("size")
    assert kept.loc[100, ["run", "lr", "epochs", "dev_avg"]].tolist() == ["a", 1e-4, 2.0, 62.0]
    assert kept.loc[1000, ["run", "lr", "epochs", "dev_avg"]].tolist() == ["b", 3e-5, 1.0, 63.0]
    assert grid.set_index(["run", "size"]).loc[("c", 1000), "points"] == 1
    assert "| **1,000** | **b** | **3e-05** | **1** | **16** | **63.00** | **2** |" in scale_report.grid_markdown(grid)
    other = scale_report.recipe_grid([runs[0], run("d", 1e-5, {"unsup-100": 70.0, "partial-100": 70.0})], [100])
    assert not other.kept.any()  # as many points, other variants: neither mean is over every variant


def test_the_grid_reader_waits_for_queued_runs_and_leaves_out_failed_ones_and_inherited_points() -> None:
    """`grid_runs` on `dvc exp show --json`'s shape: a queued or running experiment stops it; a failed one is left out;
    a point's file as the baseline commit holds it (the curve's, carried into every experiment's commit) is not the run's."""
    def metric(avg: float) -> dict:
        return {"data": {"best": {"avg": avg}}}

    def exp(name: str, state: str | None, metrics: dict) -> dict:
        params = {"params.yaml": {"data": {"profiles": {"scale": {"scale": {"sizes": {"100": {"lr": 1e-4}}}}}}}}
        return {"name": name, "executor": {"state": state} if state else None,
                "revs": [{"rev": f"{name}0123", "data": {"metrics": metrics, "params": params}}]}

    inherited = {f"{scale_report.GRID_METRICS}sup-1000.json": metric(70.0)}
    trained = {**inherited, f"{scale_report.GRID_METRICS}sup-100.json": metric(60.0)}
    shown = [{"rev": "workspace", "experiments": None},
             {"rev": "main0", "data": {"metrics": inherited}, "experiments": [exp("done", None, trained), exp("bad", "failed", trained),
                                                                              exp("none", None, inherited)]}]
    (run,) = scale_report.grid_runs(shown, [100, 1000])
    assert (run["name"], run["rev"], run["baseline"], run["dev"]) == ("done", "done0123", "main0", {"sup-100": 60.0})
    shown[1]["experiments"].append(exp("later", "queued", trained))
    with pytest.raises(ValueError, match=r"1 experiment\(s\) still queued or running \(later\)"):
        scale_report.grid_runs(shown, [100])


def _commit(root: Path, message: str) -> str:
    run_cli(["git", "add", "-A"], root)
    run_cli(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", message], root)
    return run_cli(["git", "rev-parse", "HEAD"], root).strip()


def _study_lock(root: Path, md5: str, run: str = "first") -> None:
    """A study lock whose synthesis wrote triplets of hash `md5`, and notebooks and metrics of hash `run` (which
    every replay rewrites). The rest of a lock does not enter `grid_inputs`."""
    stages = {f"synthesize@{name}": {"cmd": "x", "outs": [
        {"path": f"studies/scale/artifacts/notebooks/synthesize-{name}.ipynb", "md5": run},
        {"path": f"studies/scale/artifacts/synth/{name}.jsonl", "md5": md5},
        {"path": f"studies/scale/metrics/synth/{name}.json", "md5": run}]} for name in ("partial", "scratch")}
    (root / scale_report.STUDY_LOCK).write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))


def test_grid_inputs_change_with_code_data_triplets_and_params_never_with_the_recipe(tmp_path: Path) -> None:
    """Two runs compete in the grid only when they trained on the same inputs: the digest of a commit moves with
    the train stage's code, the data, the triplets and any training param, not with the sizes' recipes or the seeds,
    nor with a replay of synthesis that rewrote its notebook and metrics (but not the triplets) on a new machine."""
    root = _project(tmp_path)
    (root / "data.dvc").write_text("outs:\n- md5: aaa.dir\n  path: data\n")
    _study_lock(root, "111")
    base = scale_report.grid_inputs(_commit(root, "base"), root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["profiles"]["scale"]["scale"]["sizes"]["500"]["lr"] = 3e-5
    params["profiles"]["scale"]["train"]["seeds"] = [42]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert scale_report.grid_inputs(_commit(root, "a grid run's recipe"), root) == base
    _study_lock(root, "111", run="replayed on a new machine")  # the same triplets, new notebooks and timings
    assert scale_report.grid_inputs(_commit(root, "a replay"), root) == base
    changes = {
        "code": lambda: (root / "syncse/train/rows.py").write_text((root / "syncse/train/rows.py").read_text() + "\n# changed\n"),
        "data": lambda: (root / "data.dvc").write_text("outs:\n- md5: bbb.dir\n  path: data\n"),
        "triplets": lambda: _study_lock(root, "222"),
        "params": lambda: (root / "params.yaml").write_text((root / "params.yaml").read_text().replace(
            "temperature: 0.05", "temperature: 0.1")),
    }
    digests = {base}
    for name, change in changes.items():
        change()
        digests.add(scale_report.grid_inputs(_commit(root, name), root))
    assert len(digests) == 1 + len(changes)  # each change moved it, and to a digest of its own


def test_the_grid_bank_keeps_every_run_by_commit(tmp_path: Path) -> None:
    """What a session's experiments measured stays in the bank when the next session's are added (a rerun's
    record replaces its commit's)."""
    bank = tmp_path / "grid.json"
    first = [{"name": "a", "rev": "r1", "dev": {"sup-100": 60.0}}, {"name": "b", "rev": "r2", "dev": {"sup-100": 61.0}}]
    scale_report.bank_grid(bank, first)
    runs = scale_report.bank_grid(bank, [{"name": "c", "rev": "r3", "dev": {}}, {"name": "b2", "rev": "r2", "dev": {}}])
    assert [r["name"] for r in runs] == ["a", "b2", "c"] and json.loads(bank.read_text()) == runs
    assert scale_report.bank_grid(tmp_path / "none.json", []) == [] and not (tmp_path / "none.json").exists()  # a read only


def test_the_grid_script_queues_each_size_and_recipe_not_yet_banked(tmp_path: Path) -> None:
    """`scale_grid.py --queue` on a study whose bank holds one complete run (N=500, lr 1e-4, 2 epochs, at HEAD's inputs)
    and one of older inputs: it queues every other recipe at 500 and all four at each other size, each experiment
    training that size's points alone with one seed (`--sizes` limits it to the sizes named, and refuses one the study
    lacks); with experiments queued, reading the grid refuses."""
    root = _project(tmp_path)
    shutil.copytree(REPO / "scripts", root / "scripts")
    (root / "data.dvc").write_text("outs:\n- md5: aaa.dir\n  path: data\n")
    _study_lock(root, "111")
    head = scale_report.grid_inputs(_commit(root, "study"), root)
    params = load_params(root / "params.yaml", "scale")
    variants, study_sizes = list(params.train.variants), scale.sizes(params.scale)
    recipe = {str(n): {"lr": 1e-4, "epochs": 2.0, "eval_steps": 8} for n in study_sizes}
    dev = {scale.point_name(v, 500): 60.0 for v in variants}
    (root / "studies/scale/grid.json").write_text(json.dumps([
        {"name": "kept", "rev": "r1", "inputs": head, "sizes": recipe, "dev": dev},
        {"name": "old", "rev": "r0", "inputs": "other", "sizes": {**recipe, "1500": {"lr": 1e-4, "epochs": 1.0, "eval_steps": 8}},
         "dev": {scale.point_name(v, 1500): 60.0 for v in variants}}]))
    bad = subprocess.run([sys.executable, "scripts/scale_grid.py", "--queue", "--sizes", "700"], cwd=root,
                         capture_output=True, text=True, env=cli_env())
    assert bad.returncode == 2 and "--sizes [700]: not a size of the study" in bad.stderr
    one = run_cli([sys.executable, "scripts/scale_grid.py", "--queue", "--sizes", "1500", "--epochs", "1"], root)
    assert one.count("queued N=") == 2 and one.count("queued N=1,500") == 2 and "epochs=2" not in one
    run_cli(["dvc", "queue", "remove", "--queued"], root)
    out = run_cli([sys.executable, "scripts/scale_grid.py", "--queue"], root)
    assert out.count("queued N=") == 4 * len(study_sizes) - 1 and "queued N=500 lr=0.0001 epochs=2" not in out
    assert "queued N=1,500 lr=0.0001 epochs=1" in out  # the older run does not count
    shown = json.loads(run_cli(["dvc", "exp", "show", "--json"], root))
    queued = [e["revs"][0]["data"]["params"]["params.yaml"]["data"]["profiles"]["scale"]
              for b in shown for e in b.get("experiments") or []]
    assert len(queued) == 4 * len(study_sizes) - 1 and all(q["train"]["seeds"] == [42] for q in queued)
    assert {(q["scale"]["sizes"]["5000"]["lr"], q["scale"]["sizes"]["5000"]["epochs"]) for q in queued} >= {(1e-4, 1.0), (3e-5, 2.0)}
    done = subprocess.run([sys.executable, "scripts/scale_grid.py"], cwd=root, capture_output=True, text=True, env=cli_env())
    assert done.returncode != 0 and "still queued or running" in done.stderr


# --------------------------------------------------------------------------- the curve over sessions

POINT_STAGES = """\
stages:
  train:
    foreach: [a, b]
    do:
      cmd: echo ${item} >> ../runs.log && mkdir -p models/${item} && echo w > models/${item}/w
      deps:
        - src.txt
      outs:
        - models/${item}
  evaluate:
    foreach: [a, b]
    do:
      cmd: echo eval-${item} >> ../runs.log && cat models/${item}/w > sts-${item}.json
      deps:
        - models/${item}
      metrics:
        - sts-${item}.json:
            cache: false
"""


def test_the_curve_goes_on_on_a_new_machine_retraining_only_a_point_left_unevaluated(tmp_path: Path) -> None:
    """`scale_curve.bring_up_to_date` over sessions: every point runs once; on a machine without the models (a
    fresh DVC cache) a done point is skipped, and a point trained but not evaluated is trained again, then
    evaluated, never taken as done; past its time budget it starts nothing. The study's own targets are its
    evaluation stages, base first and smaller sizes first."""
    curve = load_script(REPO / "scripts" / "scale_curve.py")
    root = tmp_path / "repo"
    root.mkdir()
    run_cli(["git", "init", "-q", "-b", "main"], root)
    run_cli(["dvc", "init", "-q"], root)
    (root / "dvc.yaml").write_text(POINT_STAGES)
    (root / "src.txt").write_text("x\n")
    runs = tmp_path / "runs.log"
    with contextlib.chdir(root):
        assert curve.bring_up_to_date(["evaluate@a", "evaluate@b"], stop_after_s=3600) == []
        assert runs.read_text().split() == ["a", "eval-a", "b", "eval-b"]
        lock = yaml.safe_load((root / "dvc.lock").read_text())
        del lock["stages"]["evaluate@b"]  # the session ended between b's training and its evaluation
        (root / "dvc.lock").write_text(yaml.safe_dump(lock))
        (root / "sts-b.json").unlink()
        shutil.rmtree(root / ".dvc" / "cache")
        shutil.rmtree(root / "models")  # a new machine: the lock and metrics from git, no models
        runs.write_text("")
        assert curve.bring_up_to_date(["evaluate@a", "evaluate@b"], stop_after_s=0) == ["evaluate@b"]
        assert runs.read_text() == ""
        assert curve.bring_up_to_date(["evaluate@a", "evaluate@b"], stop_after_s=3600) == []
        assert runs.read_text().split() == ["b", "eval-b"]
    project = _project(tmp_path / "study")
    params = load_params(project / "params.yaml", "scale")
    targets = curve.curve_targets(list(params.train.variants), scale.sizes(params.scale))
    assert targets[0] == f"{STUDY}:evaluate_base" and targets[-1] == f"{STUDY}:evaluate_pair@partial-5000"
    assert sorted(t.split(":", 1)[1] for t in targets) == sorted(s for s in _stages(project) if s.startswith("evaluate"))
