"""The report from real metric files and triplets: its tables and reading, and the whole page rendered
by the report stage's own command from small fixture metrics."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

from syncse import report
from syncse.config import EvaluateConfig
from syncse.data import Triplet, load_nli_triplets, write_triplets
from syncse.evaluate import encode_fn_for
from syncse.progress import stage_times
from syncse.seeds import aggregate

REPO = Path(__file__).resolve().parents[1]
# Fixture STS averages: sup best, partial > scratch, scratch and unsup within the 0.5 tie margin.
AVG = {"base": 50.0, "unsup": 50.3, "sup": 53.0, "partial": 52.0, "scratch": 50.5, "mixed": 51.2}
ROWS = 1234  # training rows per variant in the fixture
VARIANTS = list(yaml.safe_load((REPO / "params.yaml").read_text())["train"]["variants"])  # the one declaration
STUDY = [*VARIANTS, "mixed"]  # the variants of a study that adds mixed (-S '+train.variants.mixed.scratch_share=0.5')
SEEDS = (42, 43, 44)


def _write(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


def _shifted(scores: dict[str, float], offset: float) -> dict[str, float]:
    return {k: round(v + offset, 4) for k, v in scores.items()}


def _fixture_metrics(root: Path, std: dict[str, float] | None = None) -> None:
    """metrics/ as the stages write them, with the averages in AVG: a trained variant one seed, or with
    `std` three seeds at avg - s, avg, avg + s (so its standard deviation over seeds is s)."""
    for i, (name, avg) in enumerate(AVG.items()):
        sts = {**{t: avg + d for t, d in zip(report.COLUMNS[:-1], (-1, 1, 0, 0, 0, 0, 0))}, "avg": avg}
        dev = {"stsb_dev": avg + 10, "sickr_dev": avg + 2, "avg": avg + 6}
        if name == "base":  # evaluate_base: one model, scored once
            _write(root / "sts" / "base.json", sts)
            _write(root / "dev" / "base.json", dev)
            _write(root / "rerank" / "base.json", {})  # evaluate.reranking off: the stages write {}
            _write(root / "transfer" / "base.json", {})  # evaluate.transfer off: likewise
            continue
        spread = (std or {}).get(name)
        offsets = dict(zip(SEEDS, (-spread, 0.0, spread))) if spread else {SEEDS[0]: 0.0}
        _write(root / "sts" / f"{name}.json", aggregate({s: _shifted(sts, o) for s, o in offsets.items()}))
        _write(root / "dev" / f"{name}.json", aggregate({s: _shifted(dev, o) for s, o in offsets.items()}))
        _write(root / "rerank" / f"{name}.json", aggregate({s: {} for s in offsets}))
        _write(root / "transfer" / f"{name}.json", aggregate({s: {} for s in offsets}))
        best = {"stsb_dev": avg + 10.1, "sickr_dev": avg + 2.1, "avg": avg + 6.1}
        _write(root / "train" / f"{name}.json", aggregate({s: {"best": {**_shifted(best, o), "step": 16 * i}, "steps": 96, "examples": ROWS,
                                                               "train_seconds": 120.0 + i, "examples_per_second": 20.5}
                                                           for s, o in offsets.items()}))
        (root / "train" / f"{name}.csv").write_text("seed,step,loss,avg\n" + "".join(
            f"{s},{step},{loss},{dev_avg + o}\n" for s, o in offsets.items() for step, loss, dev_avg in ((16, 2.0, 55.0), (32, 1.8, 56.5), (48, 1.7, 56.1))))
    for name, requested, kept in (("partial", 1850, 1500), ("scratch", 1700, 1493)):
        _write(root / "synth" / f"{name}.json", {"requested": requested, "kept": kept, "dropped_positive_copies_anchor": requested - kept,
                                                 "dropped_refusal": 0, "requests": 40, "cache_hits": 10, "prompt_tokens": 12000,
                                                 "completion_tokens": 800, "total_tokens": 12800, "cost_usd": 0.0, "wall_s": 30.0,
                                                 "triplets_per_s": 0.5, "tokens_per_s": 426.7})


def test_sts_table_and_markdown(tmp_path: Path) -> None:
    scores = {c: float(i) for i, c in enumerate(report.COLUMNS)}
    _write(tmp_path / "sts" / "sup.json", scores)
    table = report.sts_table(tmp_path, {"sup-SimCSE": "sup"})
    assert list(table.columns) == report.COLUMNS
    assert table.loc["sup-SimCSE", "sickr"] == 6.0
    assert table.loc["paper: SynCSE-partial (RoBERTa-base)", "avg"] == 81.94
    lines = report.markdown_table(table).splitlines()
    assert lines[0] == "| model | sts12 | sts13 | sts14 | sts15 | sts16 | stsb | sickr | avg |"
    assert lines[2] == "| sup-SimCSE | 0.00 | 1.00 | 2.00 | 3.00 | 4.00 | 5.00 | 6.00 | 7.00 |"
    assert len(lines) == 2 + 1 + len(report.PAPER_ROWS)
    with pytest.raises(FileNotFoundError, match=r"unsup\.json: metrics file missing"):
        report.sts_table(tmp_path, {"unsup-SimCSE": "unsup"})


def test_reading_judges_each_ordering_against_the_margin(tmp_path: Path) -> None:
    _fixture_metrics(tmp_path)
    table = report.sts_table(tmp_path, report.model_rows(STUDY, []))
    reading = report.reading_markdown(table, tie_margin=0.5, seeds=[7], spread=report.spread_table(tmp_path, report.model_rows(STUDY, [])))
    assert "- sup-SimCSE > SynCSE-partial: **holds** (53.00 vs 52.00, +1.00; paper +0.58)." in reading
    assert "- SynCSE-scratch > unsup-SimCSE: **a tie** (50.50 vs 50.30, +0.20; paper +4.18)." in reading
    assert "One seed per variant (seed 7)" in reading
    assert "SynCSE-mixed (51.20) lands between" in reading
    flipped = report.reading_markdown(table.assign(avg=table.avg.replace({53.0: 49.0})), tie_margin=0.5, seeds=[7])
    assert "- sup-SimCSE > SynCSE-partial: **reversed**" in flipped
    results = report.results_markdown(table, "base zero-shot", [report.LABELS[v] for v in VARIANTS])
    assert "| **sup-SimCSE (best)** |" in results and "| **+3.00** |" in results


SPREAD = {"unsup": 0.1, "sup": 0.8, "partial": 0.3, "scratch": 0.1, "mixed": 0.2}  # std over three seeds


def test_seeded_rows_show_mean_and_std(tmp_path: Path) -> None:
    _fixture_metrics(tmp_path, SPREAD)
    rows = report.model_rows(VARIANTS, [])
    table, spread = report.sts_table(tmp_path, rows), report.spread_table(tmp_path, rows)
    assert table.loc["SynCSE-partial", "avg"] == 52.0  # the mean over seeds
    lines = report.markdown_table(table, spread).splitlines()
    assert "| SynCSE-partial | 51.00 \u00b1 0.30 | 53.00 \u00b1 0.30 | 52.00 \u00b1 0.30 |" in "\n".join(lines)
    assert "| base zero-shot | 49.00 | 51.00 | 50.00 |" in "\n".join(lines)  # scored once: no spread
    assert "| paper: SynCSE-partial (RoBERTa-base) | 76.11 | 84.49 |" in "\n".join(lines)
    results = report.results_markdown(table, "base zero-shot", [report.label(v) for v in VARIANTS], spread)
    assert "| **53.00 \u00b1 0.80** |" in results and "mean \u00b1 standard deviation over training seeds" in results
    saved = report.metrics_table(table.loc[list(rows)], report.rerank_table(tmp_path, rows), spread)
    assert saved["SynCSE-partial"]["avg"] == 52.0 and saved["SynCSE-partial"]["std"]["avg"] == 0.3
    assert saved["SynCSE-partial"]["n_seeds"] == 3 and "std" not in saved["base zero-shot"]
    assert report.rerank_table(tmp_path, rows).empty  # three seeds that did not rerank: still "not run"


def test_a_win_must_exceed_both_rows_spread(tmp_path: Path) -> None:
    _fixture_metrics(tmp_path, SPREAD)
    rows = report.model_rows(VARIANTS, [])
    table, spread = report.sts_table(tmp_path, rows), report.spread_table(tmp_path, rows)
    reading = report.reading_markdown(table, tie_margin=0.5, seeds=list(SEEDS), spread=spread)
    assert reading.startswith("3 training seeds per variant (42, 43, 44; the same rows)")
    # +0.20 is within the 0.5 tie margin, but beyond both rows' std (0.10): a win
    assert "- SynCSE-scratch > unsup-SimCSE: **holds** (50.50 \u00b1 0.10 vs 50.30 \u00b1 0.10, +0.20; paper +4.18)." in reading
    # +1.00 is beyond the tie margin, but not beyond sup's std (0.80 < 1.00 holds; 1.20 would not)
    assert "- sup-SimCSE > SynCSE-partial: **holds**" in reading
    _fixture_metrics(tmp_path, {**SPREAD, "sup": 1.2})
    wider = report.reading_markdown(table, 0.5, list(SEEDS), report.spread_table(tmp_path, rows))
    assert "- sup-SimCSE > SynCSE-partial: **a tie** (53.00 \u00b1 1.20 vs 52.00 \u00b1 0.30, +1.00; paper +0.58)." in wider
    assert "SynCSE-scratch (+0.50)" in wider.split("below it")[0]  # above the base: 0.50 beats scratch's 0.10 (not the 0.5 margin)


def test_one_seed_rows_fall_back_to_the_tie_margin(tmp_path: Path) -> None:
    _fixture_metrics(tmp_path, {v: s for v, s in SPREAD.items() if v != "unsup"})  # unsup trained with one seed
    rows = report.model_rows(VARIANTS, [])
    table, spread = report.sts_table(tmp_path, rows), report.spread_table(tmp_path, rows)
    reading = report.reading_markdown(table, tie_margin=0.5, seeds=list(SEEDS), spread=spread)
    assert "a comparison with a row of one seed (no measured spread) reads gaps within 0.50 points" in reading
    assert "- SynCSE-scratch > unsup-SimCSE: **a tie** (50.50 \u00b1 0.10 vs 50.30, +0.20; paper +4.18)." in reading
    assert "| unsup-SimCSE | 49.30 | 51.30 |" in report.markdown_table(table, spread)


def test_a_variant_the_paper_does_not_name_is_a_row_by_its_own_name() -> None:
    assert report.model_rows(["sup", "sup-wiki"], ["m"]) == {"base zero-shot": "base", "sup-SimCSE": "sup",
                                                             "sup-wiki": "sup-wiki", "m (shipped)": "m"}


def test_yield_counts_are_integers_with_percentages(tmp_path: Path) -> None:
    _fixture_metrics(tmp_path)
    text = report.yield_markdown(tmp_path, ["partial", "scratch"])
    assert "| kept | 1,500 (81.1%) | 1,493 (87.8%) |" in text
    assert "| dropped: positive copies anchor | 350 (18.9%) | 207 (12.2%) |" in text
    assert "refusal" not in text  # reasons that never fired are left out
    assert "| prompt tokens | 12,000 | 12,000 |" in text
    drops = report.synth_drops(tmp_path, ["partial"])
    assert dict(zip(drops.outcome, drops["count"])) == {"kept": 1500, "positive_copies_anchor": 350}


def test_human_positives_are_closer_than_hard_negatives(minilm, data_root: Path) -> None:
    nli = [Triplet(t.premise, t.entailment, t.contradiction, "nli") for t in load_nli_triplets(data_root)[:200]]
    sims = report.triplet_similarities(encode_fn_for(minilm), {"nli": nli})
    assert len(sims) == 200 and sims.anchor.tolist() == [t.anchor for t in nli]
    assert sims.positive_cosine.mean() > sims.negative_cosine.mean() + 0.05
    samples = report.samples_markdown(sims, 10)
    assert samples.count("*positive* (cosine") == 10
    assert len(report.plot_similarities(sims).axes) == 1


def test_figures_render(tmp_path: Path) -> None:
    _write(tmp_path / "sts" / "m.json", {c: 50.0 for c in report.COLUMNS})
    report.plot_scores(report.sts_table(tmp_path, {"m": "m"})).savefig(tmp_path / "s.png")
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "sup.csv").write_text("step,loss,avg\n0,,40\n8,2.1,45\n16,1.9,47\n")
    figure = report.plot_curves(report.training_curves(tmp_path, ["sup"]), zero_shot=42.0)
    assert "base zero-shot (42.00)" in [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    figure.savefig(tmp_path / "c.png")
    assert (tmp_path / "s.png").stat().st_size > 1000 and (tmp_path / "c.png").stat().st_size > 1000


def _stage_command() -> str:
    """The report stage's command from dvc.yaml, with its `${nb}` variable filled in."""
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    nb = next(v["nb"] for v in dvc["vars"] if "nb" in v)
    return dvc["stages"]["report"]["cmd"].replace("${nb}", nb)


def test_report_stage_renders_one_self_contained_page(tmp_path: Path, data_root: Path) -> None:
    _fixture_metrics(tmp_path / "metrics")
    synth = {name: [Triplet(f"{name} anchor number {i}: a long sentence of about sixty characters, written out in full.",
                            f"{name} positive {i}.", f"{name} negative {i}.", name) for i in range(12)]
             for name in ("partial", "scratch")}
    for name, rows in synth.items():
        write_triplets(tmp_path / "artifacts" / "synth" / f"{name}.jsonl", rows)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["root"] = str(data_root)
    params["evaluate"]["anchors"] = {}
    params["report"].update(shipped_rows=[], max_pairs=12, samples=10)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "report.py").write_text((REPO / "notebooks" / "report.py").read_text())
    run_cli(["git", "init", "-q"], tmp_path)
    run_cli(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "fixture"], tmp_path)
    revision = run_cli(["git", "rev-parse", "--short=10", "HEAD"], tmp_path).strip()
    run_cli(["bash", "-c", _stage_command()], tmp_path)

    executed = json.loads((tmp_path / "artifacts/notebooks/report.ipynb").read_text())
    streams = [o for c in executed["cells"] for o in c.get("outputs", []) if o["output_type"] == "stream"]
    text = ["".join(o["text"]) for o in streams]  # no log line, warning or progress bar but the stage's closing line
    assert len(streams) == 1 and list(stage_times(text[0].splitlines())) == ["report"], text
    page = (tmp_path / "artifacts/report/report.html").read_text()
    title = "SynCSE: partial vs scratch vs unsupervised vs supervised SimCSE"
    assert f"<title>{title}</title>" in page
    assert re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page) == []  # nothing loaded from outside
    assert "<script src" not in page
    assert page.count('src="data:image/png;base64,') == 4  # scores, dev curves, yield, similarities: embedded
    for local in (str(tmp_path), str(REPO), str(data_root), sys.prefix):
        assert local not in page
    assert "import " not in page and "Traceback" not in page and "%|" not in page
    assert f"<strong>{ROWS:,} training rows per variant</strong>" in page  # the header shows the rows trained on
    assert "96 steps each" in page and f"from revision <code>{revision}</code>" in page
    assert "sup-SimCSE (best)" in page and "+3.00" in page
    assert "1,850 (100.0%)" in page and "1,500 (81.1%)" in page
    assert "<strong>not run</strong>" in page
    assert "partial anchor number 9: a long sentence of about sixty characters, written out in full." in page
    assert "partial anchor number 10" not in page  # samples: 10 per source (0..9)
    table = json.loads((tmp_path / "metrics/table.json").read_text())
    assert table["sup-SimCSE"]["avg"] == AVG["sup"]


def test_render_html_drops_stderr_and_titles_the_page(tmp_path: Path) -> None:
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[
        nbformat.v4.new_output("stream", name="stderr", text="Batches: 100%|##########| 3/3\n"),
        nbformat.v4.new_output("display_data", data={"text/markdown": "# A title\n\nbody text"})])])
    nbformat.write(notebook, tmp_path / "n.ipynb")
    subprocess.run([sys.executable, "-m", "syncse.report", str(tmp_path / "n.ipynb"), str(tmp_path / "n.html")], check=True)
    page = (tmp_path / "n.html").read_text()
    assert "<title>A title</title>" in page and "body text" in page
    assert "Batches" not in page and "mathjax" not in page.lower() and "require.js" not in page


def test_reranking_scores_reach_the_table_and_the_page(tmp_path: Path) -> None:
    rows = {"base (zero-shot)": "base", "SynCSE-partial": "partial"}
    for name in rows.values():
        _write(tmp_path / "sts" / f"{name}.json", {c: 50.0 for c in report.COLUMNS})
    _write(tmp_path / "rerank" / "base.json", {})  # not run for this one
    _write(tmp_path / "rerank" / "partial.json", {"AskUbuntuDupQuestions": 51.25, "avg": 48.5})
    reranked = report.rerank_table(tmp_path, rows)
    assert reranked.loc["SynCSE-partial", "avg"] == 48.5 and "base (zero-shot)" not in reranked.index
    assert reranked.loc["paper: SynCSE-partial (RoBERTa-base)", "avg"] == 46.74
    page = report.reranking_markdown(EvaluateConfig(reranking=True), reranked)
    assert "| SynCSE-partial | 51.25 | 48.50 |" in page and "MTEB v1" in page
    table = report.metrics_table(report.sts_table(tmp_path, rows, paper=False), reranked)
    assert table["SynCSE-partial"]["rerank_avg"] == 48.5 and "rerank_avg" not in table["base (zero-shot)"]
    assert "not run" in report.reranking_markdown(EvaluateConfig(), report.rerank_table(tmp_path, {"b": "base"}))


def test_transfer_scores_reach_the_table_and_the_page(tmp_path: Path) -> None:
    rows = {"base (zero-shot)": "base", "SynCSE-partial": "partial"}
    for name in rows.values():
        _write(tmp_path / "sts" / f"{name}.json", {c: 50.0 for c in report.COLUMNS})
        _write(tmp_path / "rerank" / f"{name}.json", {})
    _write(tmp_path / "transfer" / "base.json", {})  # not run for this one
    _write(tmp_path / "transfer" / "partial.json", aggregate({1: {"mr": 80.0, "trec": 90.0, "avg": 85.0},
                                                              2: {"mr": 82.0, "trec": 92.0, "avg": 87.0}}))
    transferred = report.transfer_table(tmp_path, rows)
    assert transferred.loc["SynCSE-partial", "avg"] == 86.0 and "base (zero-shot)" not in transferred.index  # mean over seeds
    assert not any(label.startswith("paper:") for label in transferred.index)  # the paper's summary gives no transfer scores
    page = report.transfer_markdown(EvaluateConfig(transfer=True), transferred)
    assert "| SynCSE-partial | 81.00 | 91.00 | 86.00 |" in page and "accuracy x100" in page
    assert "| model | MR | TREC | avg |" in page  # the tasks as SentEval names them, not their keys
    table = report.metrics_table(report.sts_table(tmp_path, rows, paper=False), report.rerank_table(tmp_path, rows), None, transferred)
    assert table["SynCSE-partial"]["transfer_avg"] == 86.0 and "transfer_avg" not in table["base (zero-shot)"]
    assert "rerank_avg" not in table["SynCSE-partial"]
    assert "not run" in report.transfer_markdown(EvaluateConfig(), report.transfer_table(tmp_path, {"b": "base"}))
