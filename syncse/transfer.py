"""SentEval's transfer tasks as SimCSE scores them (`evaluation.py --task_set transfer --mode test`).

Seven tasks on frozen embeddings: MR, CR, SUBJ, MPQA (10-fold cross-validation over the whole set,
the L2 penalty chosen in each training part by an inner 10-fold cross-validation), SST-2 (the penalty
chosen on dev), TREC and MRPC (the penalty chosen by 10-fold cross-validation on train); MRPC's
features are SentEval's `[|u - v|, u * v]`. The classifier is a logistic regression (no hidden layer)
over SentEval's penalty grid. Scores are test accuracy x100, each fold's rounded to 2 decimals and
averaged as SentEval does, and their `avg`.

Files are read as SentEval reads them (same encodings, whitespace tokens re-joined by one space as
SimCSE's batcher does, empty lines of CR and MPQA kept as empty sentences) and rows are put in the
order SentEval gives its classifier (by token count, then label), so that the same seeds give the same
folds. Where the classifier differs from SentEval's (L-BFGS to the optimum on centred features, Adam
stopped early on raw ones; the same penalty on the weights, none on the bias) is in the README,
"Transfer tasks".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from syncse.data import DataError

logger = logging.getLogger(__name__)

FOLDER = "senteval"  # under the data root: SentEval's data/downstream layout
PENALTIES = (1e-5, 1e-4, 1e-3, 1e-2)  # SentEval's L2 grid with usepytorch (Adam weight decay on the mean loss)
KFOLD = 10  # SimCSE's test mode (`kfold: 10`)
SEED = 1111  # SentEval's seed: its folds' random_state
MAX_ITER = 1000  # L-BFGS iterations per fit
TREC_LABELS = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
PROTOCOLS = ("cv", "dev", "train_cv")


@dataclass(frozen=True)
class Split:
    """Labelled rows of one split in SentEval's order; `second` holds the other side of each pair (MRPC)."""

    texts: tuple[str, ...]
    labels: np.ndarray  # (n,) int
    second: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TransferTask:
    """Declaration of one transfer task: its files under `<data root>/senteval/`, how it is read,
    and its protocol: `cv` (one `all` split, nested cross-validation), `dev` (train/dev/test) or
    `train_cv` (train/test, the penalty chosen by cross-validation on train)."""

    description: str
    files: tuple[str, ...]
    protocol: str
    read: Callable[[Path, tuple[str, ...]], dict[str, Split]]  # (senteval folder, files) -> splits

    @property
    def name(self) -> str:
        """The task's display name, as SentEval and the papers write it (MR, SST-2): its description's head."""
        return self.description.split(":", 1)[0]

    def load(self, root: str | Path) -> dict[str, Split]:
        """The task's splits from the data root `root` (its files under `root/senteval/`)."""
        return self.read(Path(root) / FOLDER, self.files)


def _read(path: Path, encoding: str) -> list[str]:
    """The lines of `path` as SentEval splits them (`str.splitlines`, empty lines kept)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found (data/SOURCES.md: how to add the transfer sets)")
    return path.read_text(encoding=encoding).splitlines()


def _joined(text: str) -> str:
    """Whitespace tokens re-joined by one space: SimCSE's batcher input (`' '.join(tokens)`)."""
    return " ".join(text.split())


def _split(texts: Sequence[str], labels: Sequence[int], second: Sequence[str] | None = None) -> Split:
    """A `Split` in SentEval's order: sorted (stably) by token count, the pair's second count, then label."""
    lengths = [(len(a.split()), len(second[i].split()) if second is not None else 0) for i, a in enumerate(texts)]
    order = sorted(range(len(texts)), key=lambda i: (*lengths[i], labels[i]))
    return Split(tuple(texts[i] for i in order), np.asarray([labels[i] for i in order], dtype=np.int64),
                 None if second is None else tuple(second[i] for i in order))


def _binary(root: Path, files: tuple[str, ...]) -> dict[str, Split]:
    """MR, CR, SUBJ, MPQA: one file per class (label 1, then 0), latin-1, one sentence a line."""
    ones, zeros = (_read(root / name, "latin-1") for name in files)
    return {"all": _split([_joined(t) for t in ones + zeros], [1] * len(ones) + [0] * len(zeros))}


def _sst(root: Path, files: tuple[str, ...]) -> dict[str, Split]:
    """SST-2: train, dev and test files of `sentence TAB label` (utf-8)."""
    splits = {}
    for split, name in zip(("train", "dev", "test"), files):
        rows = [line.strip().split("\t") for line in _read(root / name, "utf-8")]
        bad = [i for i, row in enumerate(rows, start=1) if len(row) != 2 or row[1] not in ("0", "1")]
        if bad:
            raise DataError(f"{root / name}:{bad[0]}: expected 'sentence TAB 0|1'")
        splits[split] = _split([_joined(row[0]) for row in rows], [int(row[1]) for row in rows])
    return splits


def _trec(root: Path, files: tuple[str, ...]) -> dict[str, Split]:
    """TREC: train and test files of `COARSE:fine question` (latin-1), the coarse class (6) as label."""
    splits = {}
    for split, name in zip(("train", "test"), files):
        texts, labels = [], []
        for lineno, line in enumerate(_read(root / name, "latin-1"), start=1):
            coarse, _, rest = line.strip().partition(":")
            if coarse not in TREC_LABELS or " " not in rest:
                raise DataError(f"{root / name}:{lineno}: expected 'COARSE:fine question' with COARSE in {TREC_LABELS}")
            texts.append(_joined(rest.split(" ", 1)[1]))
            labels.append(TREC_LABELS.index(coarse))
        splits[split] = _split(texts, labels)
    return splits


def _mrpc(root: Path, files: tuple[str, ...]) -> dict[str, Split]:
    """MRPC: train and test files, a header, then `label TAB id TAB id TAB s1 TAB s2` (utf-8)."""
    splits = {}
    for split, name in zip(("train", "test"), files):
        rows = [line.strip().split("\t") for line in _read(root / name, "utf-8")[1:]]
        bad = [i for i, row in enumerate(rows, start=2) if len(row) < 5 or row[0] not in ("0", "1")]
        if bad:
            raise DataError(f"{root / name}:{bad[0]}: expected 'label TAB id TAB id TAB sentence TAB sentence'")
        splits[split] = _split([_joined(r[3]) for r in rows], [int(r[0]) for r in rows], [_joined(r[4]) for r in rows])
    return splits


TASKS: dict[str, TransferTask] = {
    "mr": TransferTask("MR: movie review snippets, positive/negative (10,662)",
                       ("MR/rt-polarity.pos", "MR/rt-polarity.neg"), "cv", _binary),
    "cr": TransferTask("CR: product review sentences, positive/negative (3,775)",
                       ("CR/custrev.pos", "CR/custrev.neg"), "cv", _binary),
    "subj": TransferTask("SUBJ: objective/subjective movie sentences (10,000)",
                         ("SUBJ/subj.objective", "SUBJ/subj.subjective"), "cv", _binary),
    "mpqa": TransferTask("MPQA: opinion polarity of phrases (10,606)", ("MPQA/mpqa.pos", "MPQA/mpqa.neg"), "cv", _binary),
    "sst2": TransferTask("SST-2: binary sentiment, train phrases 67,349 / dev 872 / test 1,821",
                         tuple(f"SST/binary/sentiment-{s}" for s in ("train", "dev", "test")), "dev", _sst),
    "trec": TransferTask("TREC: question type, 6 classes (train 5,452 / test 500)",
                         ("TREC/train_5500.label", "TREC/TREC_10.label"), "train_cv", _trec),
    "mrpc": TransferTask("MRPC: paraphrase pairs (train 4,076 / test 1,725)",
                         ("MRPC/msr_paraphrase_train.txt", "MRPC/msr_paraphrase_test.txt"), "train_cv", _mrpc),
}
TRANSFER_TASKS = tuple(TASKS)


# --------------------------------------------------------------------------- protocol


def classifier(penalty: float, n_train: int) -> Pipeline:
    """A logistic regression whose L2 term is SentEval's weight decay `penalty` on the mean loss: sklearn
    minimises C * sum(loss) + |w|^2 / 2, i.e. n C (mean loss + |w|^2 / (2 n C)), so C = 1 / (penalty n).
    The features are centred on the training rows, not scaled: the unpenalised intercept absorbs the mean,
    so the optimum's weights are those of the raw features (the penalty keeps SentEval's meaning), while
    L-BFGS converges on a decoder's mean-pooled states, whose large common offset it did not get past
    (README "Transfer tasks")."""
    return make_pipeline(StandardScaler(with_std=False), LogisticRegression(C=1.0 / (penalty * n_train), max_iter=MAX_ITER))


def accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, penalty: float) -> float:
    """Test accuracy x100 (rounded to 2 decimals, as SentEval) of the classifier fitted on the training rows."""
    model = classifier(penalty, len(y_train)).fit(x_train, y_train)
    return round(100 * model.score(x_test, y_test), 2)


def _folds(x: np.ndarray, y: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """SentEval's folds: stratified, shuffled with `seed` (their assignment depends on the rows' order)."""
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(x, y))


def select_penalty(x: np.ndarray, y: np.ndarray, k: int = KFOLD, seed: int = SEED) -> tuple[float, float]:
    """The penalty of `PENALTIES` with the best k-fold accuracy on (x, y), and that accuracy (the first on ties)."""
    folds = _folds(x, y, k, seed)
    scores = [round(float(np.mean([accuracy(x[a], y[a], x[b], y[b], p) for a, b in folds])), 2) for p in PENALTIES]
    best = int(np.argmax(scores))
    return PENALTIES[best], scores[best]


def nested_cv(x: np.ndarray, y: np.ndarray, k: int = KFOLD, seed: int = SEED) -> float:
    """MR/CR/SUBJ/MPQA: mean test accuracy over k outer folds, each fold's penalty chosen by an inner
    k-fold cross-validation of its training part (SentEval's InnerKFoldClassifier)."""
    scores = []
    for train, test in _folds(x, y, k, seed):
        penalty, _ = select_penalty(x[train], y[train], k, seed)
        scores.append(accuracy(x[train], y[train], x[test], y[test], penalty))
    return round(float(np.mean(scores)), 2)


def train_cv(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], k: int = KFOLD,
             seed: int = SEED) -> float:
    """TREC/MRPC: the penalty chosen by k-fold cross-validation on train, then test accuracy (SentEval's KFoldClassifier)."""
    penalty, _ = select_penalty(*train, k, seed)
    return accuracy(*train, *test, penalty)


def dev_selected(train: tuple[np.ndarray, np.ndarray], dev: tuple[np.ndarray, np.ndarray],
                 test: tuple[np.ndarray, np.ndarray]) -> float:
    """SST-2: the penalty with the best dev accuracy, then test accuracy (SentEval's SplitClassifier)."""
    best = int(np.argmax([accuracy(*train, *dev, p) for p in PENALTIES]))
    return accuracy(*train, *test, PENALTIES[best])


def features(split: Split, embed: Callable[[Sequence[str]], np.ndarray]) -> np.ndarray:
    """A split's classifier input: the sentence embeddings, or for pairs SentEval's `[|u - v|, u * v]`."""
    u = np.asarray(embed(split.texts), dtype=np.float64)  # (n, dim); float64: float32 moved the decoder's TREC by up to 0.4
    if split.second is None:
        return u
    v = np.asarray(embed(split.second), dtype=np.float64)  # (n, dim)
    return np.concatenate([np.abs(u - v), u * v], axis=1)  # (n, 2 dim)


def score_task(task: TransferTask, splits: dict[str, Split], embed: Callable[[Sequence[str]], np.ndarray],
               k: int = KFOLD, seed: int = SEED) -> float:
    """Test accuracy x100 of one task by its protocol, `embed(texts) -> (n, dim)` giving frozen embeddings."""
    data = {name: (features(split, embed), split.labels) for name, split in splits.items()}
    if task.protocol == "cv":
        return nested_cv(*data["all"], k, seed)
    if task.protocol == "dev":
        return dev_selected(data["train"], data["dev"], data["test"])
    if task.protocol == "train_cv":
        return train_cv(data["train"], data["test"], k, seed)
    raise ValueError(f"unknown transfer protocol {task.protocol!r}; allowed: {PROTOCOLS}")


def available(data_root: str | Path, keys: Sequence[str] = TRANSFER_TASKS) -> list[str]:
    """The tasks of `keys` whose files are all present; each missing one is logged with the file it lacks."""
    unknown = sorted(set(keys) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown transfer task(s) {unknown}; expected some of {list(TASKS)}")
    present = []
    for key in keys:
        missing = [name for name in TASKS[key].files if not (Path(data_root) / FOLDER / name).is_file()]
        if missing:
            logger.warning("transfer task %s skipped: %s not found (data/SOURCES.md, 'Transfer tasks': how to add it)",
                           key, Path(data_root) / FOLDER / missing[0])
        else:
            present.append(key)
    return present


def evaluate_transfer(embed: Callable[[Sequence[str]], np.ndarray], data_root: str | Path,
                      keys: Sequence[str] = TRANSFER_TASKS, k: int = KFOLD, seed: int = SEED) -> dict[str, float]:
    """Test accuracy x100 of each task of `keys` whose files are present, and their `avg` when all of
    them ran (an average over fewer tasks is not SentEval's). Every sentence is passed to `embed` in
    one call first, so that a memoizing encoder (`CachedEncoder.embed`) encodes each once, longest first."""
    present = available(data_root, keys)
    splits = {key: TASKS[key].load(data_root) for key in present}
    texts = [t for parts in splits.values() for s in parts.values() for t in s.texts + (s.second or ())]
    if texts:
        embed(list(dict.fromkeys(texts)))
    scores = {}
    for key in present:
        scores[key] = score_task(TASKS[key], splits[key], embed, k, seed)
        logger.info("transfer %s: %.2f", key, scores[key])
    if present and len(present) == len(keys):
        scores["avg"] = round(float(np.mean([scores[key] for key in keys])), 2)
    elif present:
        logger.warning("transfer avg left out: %d of the %d tasks ran", len(present), len(keys))
    return scores


def transfer_scores(embed: Callable[[Sequence[str]], np.ndarray], data_root: str | Path, enabled: bool) -> dict[str, float]:
    """`evaluate_transfer` when `enabled` (`evaluate.transfer`), else `{}` ("not run" to every reader)."""
    return evaluate_transfer(embed, data_root) if enabled else {}
