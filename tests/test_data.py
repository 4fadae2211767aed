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


NLI_FILES = [f"SNLI/{name}.{split}" for split in ("dev", "test") for name in ("s1", "s2", "labels")] + [
    "SNLI_CAD_original/train.tsv", "MNLI_sample/mnli_matched", "MNLI_sample/mnli_mismatched"]
STS_FILES = [f"STS13-en-test/STS.{kind}.{sub}.txt" for sub in data.STS_SUBSETS["sts13"] for kind in ("input", "gs")] + [
    "STSBenchmark/sts-test.csv", "SICK/SICK_test_annotated.txt"]
LOADERS = {
    "nli": data.load_nli_pairs,
    "sts13": lambda root: data.load_sts_year(root, "sts13"),
    "stsb": lambda root: data.load_stsb(root, "test"),
    "sick": lambda root: data.load_sickr(root, "test"),
}


@pytest.fixture
def small_data(data_root: Path, tmp_path: Path) -> Path:
    """The first 4 lines of every real file the NLI and STS test loaders read."""
    for name in NLI_FILES + STS_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("\n".join((data_root / name).read_text(encoding="utf-8").split("\n")[:4]) + "\n")
    return tmp_path


def test_small_copies_load(small_data: Path) -> None:
    assert [len(LOADERS[name](small_data)) for name in ("nli", "stsb", "sick")] == [4 * 2 + 3 + 4 * 2, 4, 3]
    assert sum(len(pairs) for pairs in LOADERS["sts13"](small_data).values()) == 12


def column(index: int, value: str):
    """An edit that sets tab-separated column `index` of a line to `value`."""
    return lambda line: "\t".join(value if i == index else c for i, c in enumerate(line.split("\t")))


@pytest.mark.parametrize(
    ("name", "lineno", "edit", "loader", "message"),
    [
        ("SNLI/labels.dev", 2, "entail", "nli", "unknown NLI label 'entail'; allowed: ['entailment', 'neutral', 'contradiction']"),
        ("MNLI_sample/mnli_matched", 3, column(0, "neutrall"), "nli", "unknown NLI label 'neutrall'"),
        ("SNLI_CAD_original/train.tsv", 2, column(2, "-"), "nli", "unknown NLI label '-'"),
        ("SNLI_CAD_original/train.tsv", 3, "A man sleeps.\tneutral", "nli", "expected 3 tab-separated columns, got 2"),
        ("MNLI_sample/mnli_mismatched", 4, lambda line: line + "\tneutral", "nli", "expected 3 tab-separated columns, got 4"),
        ("MNLI_sample/mnli_mismatched", 1, column(2, " "), "nli", "empty premise or hypothesis"),
        ("SNLI/s2.test", 2, " ", "nli", "empty line"),
        ("STS13-en-test/STS.gs.FNWN.txt", 2, "5.2", "sts13", "gold score 5.2 outside the range [0.0, 5.0]"),
        ("STS13-en-test/STS.gs.headlines.txt", 1, "high", "sts13", "gold score 'high' is not a number"),
        ("STS13-en-test/STS.input.OnWN.txt", 3, column(0, ""), "sts13", "empty sentence"),
        ("STS13-en-test/STS.input.FNWN.txt", 4, "one sentence only", "sts13", "expected 2 tab-separated sentences"),
        ("STSBenchmark/sts-test.csv", 3, column(4, "-0.5"), "stsb", "gold score -0.5 outside the range [0.0, 5.0]"),
        ("STSBenchmark/sts-test.csv", 2, "main-captions\tMSRvid\t2012test\t0033", "stsb", "expected 7 tab-separated columns, got 4"),
        ("SICK/SICK_test_annotated.txt", 2, column(3, "0.5"), "sick", "gold score 0.5 outside the range [1.0, 5.0]"),
        ("SICK/SICK_test_annotated.txt", 3, column(3, "nan"), "sick", "gold score nan outside the range [1.0, 5.0]"),
        ("SICK/SICK_test_annotated.txt", 4, "8\tA man sleeps.", "sick", "expected at least 4 tab-separated columns"),
        ("SICK/SICK_test_annotated.txt", 1, "6\ta\tb\t3.3\tN", "sick", "expected the header line"),
    ],
)
def test_bad_data_files_name_file_and_line(small_data: Path, name: str, lineno: int, edit, loader: str, message: str) -> None:
    path = small_data / name
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[lineno - 1] = edit(lines[lineno - 1]) if callable(edit) else edit
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataError) as err:
        LOADERS[loader](small_data)
    assert str(err.value).startswith(f"{path}:{lineno}: {message}")


def test_full_nli_rows_name_their_physical_line(tmp_path: Path) -> None:
    """A quoted field may span lines: the error names the line where the bad row ends."""
    (tmp_path / data.FULL_NLI).write_text('sent0,sent1,hard_neg\n"a\nb",c,d\ne,f,g,h\n')
    with pytest.raises(DataError, match=r"nli_for_simcse\.csv:4: 1 field\(s\) beyond the header's columns"):
        data.load_nli_triplets(tmp_path)
    (tmp_path / data.FULL_NLI).write_text('sent0,sent1,hard_neg\n"a\nb",c,d\ne, ,g\n')
    with pytest.raises(DataError, match=r"nli_for_simcse\.csv:4: empty or missing field"):
        data.load_nli_triplets(tmp_path)


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
