"""Corpus loaders (typed records) and the triplet JSONL format, read and written here only.

Layouts are SentEval's (tokenized files, as SimCSE and the paper evaluate):
`STS1x-en-test/STS.input.<subset>.txt` + `STS.gs.<subset>.txt`, `STSBenchmark/sts-<split>.csv`,
`SICK/SICK_<split>.txt`, `SNLI/{s1,s2,labels}.<split>`. Pairs without a gold score are
dropped, as SentEval does; every other malformed line (missing columns, an empty sentence, a gold
score that is not a number or out of its range, an unknown NLI label) raises `DataError` naming
file and line.

The training corpora shipped here are samples. SimCSE's full files, when placed in the data root
(`nli_for_simcse.csv`: 275,601 NLI triplets; `wiki1m_for_simcse.txt`: 1M wiki sentences), replace
them: that is the paper's setup (README, "Reproducing the paper").
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

logger = logging.getLogger(__name__)

# The subsets SentEval evaluates for each year (STS13 has no SMT: it is licensed).
STS_SUBSETS: dict[str, tuple[str, ...]] = {
    "sts12": ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"),
    "sts13": ("FNWN", "headlines", "OnWN"),
    "sts14": ("deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news"),
    "sts15": ("answers-forums", "answers-students", "belief", "headlines", "images"),
    "sts16": ("answer-answer", "headlines", "plagiarism", "postediting", "question-question"),
}
STSB_SPLITS = ("train", "dev", "test")
SICK_SPLITS = {"train": "SICK_train.txt", "trial": "SICK_trial.txt", "test": "SICK_test_annotated.txt"}
TRIPLET_SOURCES = ("partial", "scratch", "nli", "wiki")
NLI_LABELS = ("entailment", "neutral", "contradiction")
STS_SCORES = (0.0, 5.0)  # gold range of STS12-16 and STS-B
SICK_SCORES = (1.0, 5.0)  # gold range of SICK relatedness


class DataError(ValueError):
    """A data file that does not have the expected layout; the message names file and line."""


@dataclass(frozen=True)
class StsPair:
    """Two sentences and their gold similarity (0-5 for STS/STS-B, 1-5 for SICK)."""

    sentence1: str
    sentence2: str
    score: float


@dataclass(frozen=True)
class NliTriplet:
    """A premise with an entailed and a contradicted hypothesis (sup-SimCSE's training rows)."""

    premise: str
    entailment: str
    contradiction: str


@dataclass
class Triplet:
    """One contrastive training example; `negative` is None for unsupervised rows.

    `source` is one of `TRIPLET_SOURCES`; `meta` holds provenance (generator model,
    instruction and exemplar ids, sampling settings, prompt hash).
    """

    anchor: str
    positive: str
    negative: str | None
    source: str
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- STS


def load_sts_year(root: str | Path, year: str) -> dict[str, list[StsPair]]:
    """Scored pairs of one STS year (`sts12`..`sts16`), by subset, in file order."""
    if year not in STS_SUBSETS:
        raise ValueError(f"unknown STS year {year!r}; expected one of {sorted(STS_SUBSETS)}")
    folder = Path(root) / f"STS{year[3:]}-en-test"
    return {sub: _read_sts_subset(folder, sub) for sub in STS_SUBSETS[year]}


def _read_sts_subset(folder: Path, subset: str) -> list[StsPair]:
    inputs = folder / f"STS.input.{subset}.txt"
    golds = folder / f"STS.gs.{subset}.txt"
    input_lines = _read_lines(inputs)
    gold_lines = _read_lines(golds)
    if len(input_lines) != len(gold_lines):
        raise DataError(f"{inputs}: {len(input_lines)} lines but {golds} has {len(gold_lines)}")
    pairs = []
    for lineno, (text, gold) in enumerate(zip(input_lines, gold_lines), start=1):
        if not gold.strip():
            continue  # unscored pair: SentEval drops it too
        columns = text.split("\t")
        if len(columns) < 2:
            raise DataError(f"{inputs}:{lineno}: expected 2 tab-separated sentences")
        pairs.append(_pair(columns[0], columns[1], _score(gold, golds, lineno, STS_SCORES), f"{inputs}:{lineno}"))
    return pairs


def load_stsb(root: str | Path, split: str) -> list[StsPair]:
    """STS Benchmark pairs of `split` (train 5749, dev 1500, test 1379)."""
    if split not in STSB_SPLITS:
        raise ValueError(f"unknown STS-B split {split!r}; expected one of {STSB_SPLITS}")
    path = Path(root) / "STSBenchmark" / f"sts-{split}.csv"
    pairs = []
    for lineno, line in enumerate(_read_lines(path), start=1):
        columns = line.split("\t")
        if len(columns) < 7:
            raise DataError(f"{path}:{lineno}: expected 7 tab-separated columns, got {len(columns)}")
        pairs.append(_pair(columns[5], columns[6], _score(columns[4], path, lineno, STS_SCORES), f"{path}:{lineno}"))
    return pairs


def load_sickr(root: str | Path, split: str) -> list[StsPair]:
    """SICK relatedness pairs of `split` (train 4500, trial 500, test 4927)."""
    if split not in SICK_SPLITS:
        raise ValueError(f"unknown SICK split {split!r}; expected one of {sorted(SICK_SPLITS)}")
    path = Path(root) / "SICK" / SICK_SPLITS[split]
    lines = _read_lines(path)
    if not lines or not lines[0].startswith("pair_ID"):
        raise DataError(f"{path}:1: expected the header line starting with 'pair_ID'")
    pairs = []
    for lineno, line in enumerate(lines[1:], start=2):
        columns = line.split("\t")
        if len(columns) < 4:
            raise DataError(f"{path}:{lineno}: expected at least 4 tab-separated columns")
        pairs.append(_pair(columns[1], columns[2], _score(columns[3], path, lineno, SICK_SCORES), f"{path}:{lineno}"))
    return pairs


def _pair(sentence1: str, sentence2: str, score: float, where: str) -> StsPair:
    pair = StsPair(sentence1.strip(), sentence2.strip(), score)
    if not pair.sentence1 or not pair.sentence2:
        raise DataError(f"{where}: empty sentence")
    return pair


def _score(text: str, path: Path, lineno: int, allowed: tuple[float, float]) -> float:
    try:
        score = float(text)
    except ValueError:
        raise DataError(f"{path}:{lineno}: gold score {text.strip()!r} is not a number") from None
    low, high = allowed
    if not low <= score <= high:  # also rejects nan
        raise DataError(f"{path}:{lineno}: gold score {score} outside the range [{low}, {high}]")
    return score


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: file not found (run `dvc pull` to restore data/)")
    lines = path.read_text(encoding="utf-8").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


# --------------------------------------------------------------------------- NLI


def load_nli_pairs(root: str | Path) -> list[tuple[str, str, str]]:
    """All labelled (premise, hypothesis, label) pairs shipped: SNLI dev+test, SNLI train
    sample, MNLI matched+mismatched samples."""
    root = Path(root)
    pairs = [row for split in ("dev", "test") for row in _read_snli(root / "SNLI", split)]
    pairs += _read_label_columns(root / "SNLI_CAD_original" / "train.tsv", (0, 1, 2), header=True)
    for name in ("mnli_matched", "mnli_mismatched"):
        pairs += _read_label_columns(root / "MNLI_sample" / name, (1, 2, 0), header=False)
    return pairs


def _read_snli(folder: Path, split: str) -> list[tuple[str, str, str]]:
    """One SentEval SNLI split: three line-aligned files, `s1`, `s2` and `labels`."""
    paths = [folder / f"{name}.{split}" for name in ("s1", "s2", "labels")]
    files = [_read_lines(path) for path in paths]
    lengths = [len(lines) for lines in files]
    if len(set(lengths)) > 1:
        raise DataError(f"{folder}: s1/s2/labels.{split} differ in length ({lengths} lines)")
    rows = []
    for lineno, row in enumerate(zip(*files), start=1):
        empty = [path for path, text in zip(paths, row) if not text.strip()]
        if empty:
            raise DataError(f"{empty[0]}:{lineno}: empty line")
        rows.append(_nli_row(row, f"{paths[2]}:{lineno}"))
    return rows


def _read_label_columns(path: Path, order: tuple[int, int, int], header: bool) -> list[tuple[str, str, str]]:
    rows = []
    lines = _read_lines(path)
    for lineno, line in enumerate(lines[1:] if header else lines, start=2 if header else 1):
        columns = line.split("\t")
        if len(columns) != 3:
            raise DataError(f"{path}:{lineno}: expected 3 tab-separated columns, got {len(columns)}")
        rows.append(_nli_row([columns[i] for i in order], f"{path}:{lineno}"))
    return rows


def _nli_row(row: Sequence[str], where: str) -> tuple[str, str, str]:
    """A stripped (premise, hypothesis, label) row; an empty sentence or an unknown label names `where`."""
    premise, hypothesis, label = (text.strip() for text in row)
    if label not in NLI_LABELS:
        raise DataError(f"{where}: unknown NLI label {label!r}; allowed: {list(NLI_LABELS)}")
    if not premise or not hypothesis:
        raise DataError(f"{where}: empty premise or hypothesis")
    return premise, hypothesis, label


FULL_NLI = "nli_for_simcse.csv"  # SimCSE's sup training file: sent0 (premise), sent1 (entailment), hard_neg
FULL_WIKI = "wiki1m_for_simcse.txt"  # SimCSE's unsup corpus, one sentence per line


FULL_CORPORA = {"nli": FULL_NLI, "wiki": FULL_WIKI}  # what stands in for each: the shipped samples


def check_corpora(root: str | Path, require_full: bool = False) -> dict[str, str]:
    """Which training corpora the loaders read from `root`: `{"nli": "full" | "sample", "wiki": ...}`.
    Samples standing in for a full corpus are logged as a warning, or, with `require_full` (the
    `paper` profile), an error before any request is paid or any step trained.

    Raises:
        DataError: `require_full` and a full corpus is missing, naming the files and the README step.
    """
    kinds = {name: "full" if (Path(root) / file).is_file() else "sample" for name, file in FULL_CORPORA.items()}
    missing = [FULL_CORPORA[name] for name, kind in kinds.items() if kind == "sample"]
    if missing and require_full:
        raise DataError(f"data.require_full: {', '.join(missing)} missing from {root}/ (the shipped samples would stand in "
                        "for the paper's corpora); README 'Reproducing the paper', step 2 brings them")
    if missing:
        logger.warning("%s not in %s/: the shipped samples stand in for them (not the paper's data)", ", ".join(missing), root)
    return kinds


def load_nli_triplets(root: str | Path) -> list[NliTriplet]:
    """(premise, entailment, contradiction) rows as sup-SimCSE builds them: `nli_for_simcse.csv`
    when present in `root`, else, from the shipped samples, each premise's entailed and
    contradicted hypotheses zipped in file order."""
    full = Path(root) / FULL_NLI
    if full.is_file():
        return _read_simcse_nli(full)
    by_premise: dict[str, dict[str, list[str]]] = {}
    for premise, hypothesis, label in load_nli_pairs(root):
        by_premise.setdefault(premise, {}).setdefault(label, []).append(hypothesis)
    return [
        NliTriplet(premise, ent, con)
        for premise, labels in by_premise.items()
        for ent, con in zip(labels.get("entailment", []), labels.get("contradiction", []))
    ]


def _read_simcse_nli(path: Path) -> list[NliTriplet]:
    logger.info("NLI triplets from the full corpus %s", path)
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"sent0", "sent1", "hard_neg"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}:1: missing columns {sorted(missing)} (expected sent0,sent1,hard_neg)")
        rows = []
        for row in reader:
            lineno = reader.line_num  # the row's last physical line (a quoted field may span lines)
            if None in row:  # DictReader files fields beyond the header under None
                raise DataError(f"{path}:{lineno}: {len(row[None])} field(s) beyond the header's columns")
            if not all((row.get(key) or "").strip() for key in ("sent0", "sent1", "hard_neg")):
                raise DataError(f"{path}:{lineno}: empty or missing field")
            rows.append(NliTriplet(row["sent0"].strip(), row["sent1"].strip(), row["hard_neg"].strip()))
    return rows


def nli_premises(root: str | Path) -> list[str]:
    """Deduplicated NLI premises in first-seen order: SynCSE-partial's unlabeled sentences."""
    if (Path(root) / FULL_NLI).is_file():
        return list(dict.fromkeys(t.premise for t in load_nli_triplets(root)))
    return list(dict.fromkeys(p for p, _, _ in load_nli_pairs(root) if p))


def nli_hypotheses(root: str | Path) -> list[str]:
    """Deduplicated NLI hypotheses that are not also premises, in first-seen order: more unlabeled
    sentences of the same domain for `synth.partial_source: nli+hypotheses`."""
    if (Path(root) / FULL_NLI).is_file():
        triplets = load_nli_triplets(root)
        hypotheses = [h for t in triplets for h in (t.entailment, t.contradiction)]
    else:
        hypotheses = [h for _, h, _ in load_nli_pairs(root) if h]
    premises = set(nli_premises(root))
    return [h for h in dict.fromkeys(hypotheses) if h not in premises]


def wiki_sentences(root: str | Path) -> list[str]:
    """Deduplicated wiki1m sentences (unsup-SimCSE's corpus): `wiki1m_for_simcse.txt` when present
    in `root`, else the two shipped samples (the byte-cut last line of the head sample dropped)."""
    full = Path(root) / FULL_WIKI
    if full.is_file():
        logger.info("wiki sentences from the full corpus %s", full)
        lines = _read_lines(full)
    else:
        folder = Path(root) / "wiki1m"
        head = (folder / "head_1280000B" / "wiki1m_for_simcse.txt").read_text(encoding="utf-8")
        lines = head.split("\n")[:-1]  # the last piece has no newline: it was cut mid-sentence
        lines += _read_lines(folder / "random10k_seed42" / "corpus_0.01.txt")
    return list(dict.fromkeys(s.strip() for s in lines if s.strip()))


# --------------------------------------------------------------------------- triplet JSONL


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[TextIO]:
    """Open `path` for writing through a temp file renamed into place on success, so an
    interrupted write never leaves a partial file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            yield out
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    """Write a JSON object atomically (metrics files, resolved configs)."""
    with atomic_writer(path) as out:
        json.dump(payload, out, indent=2, ensure_ascii=False)
        out.write("\n")


def write_triplets(path: str | Path, triplets: Iterable[Triplet]) -> int:
    """Write triplets as JSONL atomically; returns the count written."""
    count = 0
    with atomic_writer(path) as out:
        for triplet in triplets:
            row = asdict(triplet)
            _validate(row, Path(path), count + 1)
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_triplets(path: str | Path) -> list[Triplet]:
    """Read and validate a triplet JSONL; any bad line raises `DataError` with file:line."""
    return list(iter_triplets(path))


def iter_triplets(path: str | Path) -> Iterator[Triplet]:
    """Stream a triplet JSONL, validating each line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: triplet file not found")
    with path.open(encoding="utf-8") as lines:
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                raise DataError(f"{path}:{lineno}: empty line")
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: invalid JSON ({err.msg})") from None
            _validate(row, path, lineno)
            yield Triplet(row["anchor"], row["positive"], row.get("negative"), row["source"], row.get("meta") or {})


_REQUIRED = ("anchor", "positive", "source")
_ALLOWED = {"anchor", "positive", "negative", "source", "meta"}


def _validate(row: Any, path: Path, lineno: int) -> None:
    where = f"{path}:{lineno}"
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [k for k in _REQUIRED if k not in row]
    if missing:
        raise DataError(f"{where}: missing field(s) {missing}")
    unknown = sorted(set(row) - _ALLOWED)
    if unknown:
        raise DataError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(_ALLOWED)}")
    for key in ("anchor", "positive"):
        if not isinstance(row[key], str) or not row[key].strip():
            raise DataError(f"{where}: {key!r} must be a non-empty string")
    negative = row.get("negative")
    if negative is not None and (not isinstance(negative, str) or not negative.strip()):
        raise DataError(f"{where}: 'negative' must be a non-empty string or null")
    if row["source"] not in TRIPLET_SOURCES:
        raise DataError(f"{where}: source {row['source']!r} not in {TRIPLET_SOURCES}")
    if not isinstance(row.get("meta", {}), dict):
        raise DataError(f"{where}: 'meta' must be an object")
