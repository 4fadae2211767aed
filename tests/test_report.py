"""Report tables and figures from real metric files and real triplets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syncse import report
from syncse.data import Triplet, load_nli_triplets
from syncse.evaluate import encode_fn_for


def _write(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


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


def test_synth_drops_long_format(tmp_path: Path) -> None:
    _write(tmp_path / "synth" / "partial.json", {"requested": 10, "kept": 7, "dropped_copy": 2, "dropped_refusal": 1, "dropped_empty": 0, "tokens": 99})
    drops = report.synth_drops(tmp_path, ["partial"])
    assert dict(zip(drops.outcome, drops["count"])) == {"kept": 7, "copy": 2, "refusal": 1}


def test_human_positives_are_closer_than_hard_negatives(minilm, data_root: Path) -> None:
    nli = [Triplet(t.premise, t.entailment, t.contradiction, "nli") for t in load_nli_triplets(data_root)[:200]]
    sims = report.pair_similarities(encode_fn_for(minilm), {"nli": nli})
    means = sims.groupby("pair").cosine.mean()
    assert len(sims) == 400
    assert means["positive"] > means["negative"] + 0.05
    figure = report.plot_similarities(sims)
    assert len(figure.axes) == 1


def test_figures_render(tmp_path: Path) -> None:
    _write(tmp_path / "sts" / "m.json", {c: 50.0 for c in report.COLUMNS})
    report.plot_scores(report.sts_table(tmp_path, {"m": "m"})).savefig(tmp_path / "s.png")
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "sup.csv").write_text("step,loss,avg\n0,,40\n8,2.1,45\n16,1.9,47\n")
    curves = report.training_curves(tmp_path, ["sup"])
    report.plot_curves(curves).savefig(tmp_path / "c.png")
    assert (tmp_path / "s.png").stat().st_size > 1000 and (tmp_path / "c.png").stat().st_size > 1000
