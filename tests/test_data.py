"""The loaders on the real files, and clear errors on malformed ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syncse import data
from syncse.data import DataError, Triplet


@pytest.mark.parametrize(
    ("year", "count"), [("sts12", 3108), ("sts13", 1500), ("sts14", 3750), ("sts15", 3000), ("sts16", 1186)]
)
def test_sts_years_have_senteval_counts(data_root: Path, year: str, count: int) -> None:
    subsets = data.load_sts_year(data_root, year)
    assert tuple(subsets) == data.STS_SUBSETS[year]
    assert sum(len(p) for p in subsets.values()) == count
    assert all(0 <= p.score <= 5 and p.sentence1 and p.sentence2 for ps in subsets.values() for p in ps)


def test_stsb_and_sick_counts(data_root: Path) -> None:
    assert [len(data.load_stsb(data_root, s)) for s in ("train", "dev", "test")] == [5749, 1500, 1379]
    assert [len(data.load_sickr(data_root, s)) for s in ("train", "trial", "test")] == [4500, 500, 4927]
    first = data.load_sickr(data_root, "test")[0]
    assert first.score == pytest.approx(3.3) and first.sentence1.startswith("There is no boy")


def test_nli_triplets_and_unlabeled_sources(data_root: Path) -> None:
    triplets = data.load_nli_triplets(data_root)
    assert len(triplets) > 5000
    assert all(t.premise and t.entailment and t.contradiction and t.entailment != t.contradiction for t in triplets)
    premises = data.nli_premises(data_root)
    assert len(premises) == len(set(premises)) > 6641  # SNLI dev+test alone has 6641
    wiki = data.wiki_sentences(data_root)
    assert len(wiki) == len(set(wiki)) > 21000
    assert not any(s.endswith("eld") for s in wiki[-10:])  # the byte-cut line ("...and eld") is gone


def test_simcse_full_corpora_replace_the_shipped_samples(data_root: Path, tmp_path: Path) -> None:
    """The paper's files (README: "Reproducing the paper"), built here from shipped rows."""
    import csv

    shipped = data.load_nli_triplets(data_root)[:40]
    with (tmp_path / data.FULL_NLI).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sent0", "sent1", "hard_neg"])
        writer.writerows([(t.premise, t.entailment, t.contradiction) for t in shipped])
    (tmp_path / data.FULL_WIKI).write_text("\n".join(data.wiki_sentences(data_root)[:30] * 2) + "\n")
    assert data.load_nli_triplets(tmp_path) == shipped
    assert data.nli_premises(tmp_path) == list(dict.fromkeys(t.premise for t in shipped))
    assert data.wiki_sentences(tmp_path) == data.wiki_sentences(data_root)[:30]
    (tmp_path / data.FULL_NLI).write_text("sent0,sent1,hard_neg\na,b,c\nd,e,\n")
    with pytest.raises(data.DataError, match=r"nli_for_simcse.csv:3: empty or missing field"):
        data.load_nli_triplets(tmp_path)
    (tmp_path / data.FULL_NLI).write_text("premise,hypothesis\na,b\n")
    with pytest.raises(data.DataError, match=r"missing columns \['hard_neg', 'sent0', 'sent1'\]"):
        data.nli_premises(tmp_path)


def _sts_folder(tmp_path: Path, inputs: str, golds: str) -> Path:
    folder = tmp_path / "STS13-en-test"
    folder.mkdir()
    for sub in data.STS_SUBSETS["sts13"]:
        (folder / f"STS.input.{sub}.txt").write_text(inputs)
        (folder / f"STS.gs.{sub}.txt").write_text(golds)
    return folder


def test_sts_drops_unscored_pairs(tmp_path: Path) -> None:
    _sts_folder(tmp_path, "a b\tc d\ne f\tg h\n", "4.0\n\n")
    pairs = data.load_sts_year(tmp_path, "sts13")["FNWN"]
    assert pairs == [data.StsPair("a b", "c d", 4.0)]


@pytest.mark.parametrize(
    ("inputs", "golds", "message"),
    [
        ("a\tb\nc\td\n", "1.0\n", "2 lines but"),
        ("only one sentence\n", "1.0\n", ":1: expected 2 tab-separated"),
        ("a\tb\n", "high\n", ":1: gold score 'high' is not a number"),
    ],
)
def test_sts_malformed_files_name_file_and_line(tmp_path: Path, inputs: str, golds: str, message: str) -> None:
    _sts_folder(tmp_path, inputs, golds)
    with pytest.raises(DataError, match=message) as err:
        data.load_sts_year(tmp_path, "sts13")
    assert "STS.input.FNWN.txt" in str(err.value) or "STS.gs.FNWN.txt" in str(err.value)


def test_missing_data_says_how_to_restore(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dvc pull"):
        data.load_stsb(tmp_path, "test")
    with pytest.raises(ValueError, match="unknown STS-B split 'validation'"):
        data.load_stsb(tmp_path, "validation")


def test_triplets_round_trip(tmp_path: Path) -> None:
    rows = [
        Triplet("A man sleeps.", "A person rests.", "A man runs.", "partial", {"model": "m", "instruction": 2}),
        Triplet("Cats purr.", "Cats purr.", None, "wiki"),
    ]
    path = tmp_path / "t.jsonl"
    assert data.write_triplets(path, rows) == 2
    assert data.read_triplets(path) == rows


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "invalid JSON"),
        ('["a", "b"]', "expected a JSON object"),
        ('{"anchor": "a", "source": "nli"}', "missing field"),
        ('{"anchor": "a", "positive": "", "negative": "c", "source": "nli"}', "'positive' must be a non-empty"),
        ('{"anchor": "a", "positive": "b", "negative": "c", "source": "gpt"}', "source 'gpt' not in"),
        ('{"anchor": "a", "positive": "b", "negative": "c", "source": "nli", "label": 1}', "unknown field"),
        ("", "empty line"),
    ],
)
def test_malformed_triplet_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    good = json.dumps({"anchor": "a", "positive": "b", "negative": "c", "source": "nli"})
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{good}\n{line}\n{good}\n")
    with pytest.raises(DataError, match=message) as err:
        data.read_triplets(path)
    assert f"{path}:2:" in str(err.value)


def test_interrupted_write_leaves_no_file(tmp_path: Path) -> None:
    def rows():
        yield Triplet("a", "b", "c", "nli")
        raise KeyboardInterrupt

    path = tmp_path / "out.jsonl"
    with pytest.raises(KeyboardInterrupt):
        data.write_triplets(path, rows())
    assert list(tmp_path.iterdir()) == []
