"""The run folder on its own, without training: atomic swaps, torn checkpoints, resume and reuse by key."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from syncse.data import write_json
from syncse.train.rundir import (
    BEST_DIR,
    COMPLETE_MARKER,
    CONFIG_FILE,
    DEV_FILE,
    LOG_FILE,
    finished_run,
    prepare_checkpoint_dir,
    publish,
    read_log,
    record_finished,
    recover_dir,
    replace_dir,
    resumable_checkpoint,
    write_log,
)

KEY = {"lr": 5e-4, "seed": 7, "rows_sha256": "ab" * 32, "code": {"sources_sha256": "c0de"}}
RESULT = {"best": {"avg": 71.5, "step": 4}, "steps": 4, "examples": 32, "train_seconds": 1.0,
          "examples_per_second": 128.0}
LOG = [{"step": 2, "avg": 70.0}, {"step": 4, "avg": 71.5}]


def fill(text: str):
    """A `write` for `replace_dir`: one file holding `text`."""
    return lambda where: (where.mkdir(), (where / "content.txt").write_text(text))


def checkpoint(run: Path, step: int, complete: bool = True) -> Path:
    """A checkpoint folder; a torn one lacks the trainer state (written last) or holds half of it."""
    folder = run / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_text("weights")
    (folder / COMPLETE_MARKER).write_text('{"global_step": %d}' % step if complete else '{"global_st')
    return folder


def stored_run(run: Path, key: dict = KEY) -> Path:
    """A run folder as training leaves it: its key, a log of record, a best model, checkpoints."""
    prepare_checkpoint_dir(run, key, fresh=True)
    write_log(run / LOG_FILE, LOG)
    replace_dir(run / BEST_DIR, fill("best model"))
    write_json(run / BEST_DIR / DEV_FILE, RESULT["best"])
    return run


class Killed(BaseException):
    """What a kill -9 between two statements looks like to the code after it: nothing runs."""


def test_a_kill_between_the_two_renames_is_undone_by_recover_dir(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "best"
    replace_dir(target, fill("old"))
    rename = Path.rename

    def killed_before_the_new_one_lands(self: Path, to: Path) -> Path:
        if self.name == ".best.new":
            raise Killed
        return rename(self, to)

    monkeypatch.setattr(Path, "rename", killed_before_the_new_one_lands)
    with pytest.raises(Killed):
        replace_dir(target, fill("new"))
    monkeypatch.undo()
    assert not target.exists() and (tmp_path / ".best.old").is_dir()  # the swap was cut in its middle
    recover_dir(target)
    assert (target / "content.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".best.new", "best"]  # the next swap clears .new
    replace_dir(target, fill("new"))
    assert (target / "content.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_a_kill_while_writing_leaves_the_old_directory(tmp_path: Path) -> None:
    target = tmp_path / "model"
    replace_dir(target, fill("old"))

    def half_written(where: Path) -> None:
        fill("new")(where)
        raise Killed

    with pytest.raises(Killed):
        replace_dir(target, half_written)
    recover_dir(target)
    assert (target / "content.txt").read_text() == "old"


def test_torn_checkpoints_are_skipped_and_removed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = stored_run(tmp_path / "ckpt")
    checkpoint(run, 2)
    checkpoint(run, 4, complete=False)  # half a trainer state
    (checkpoint(run, 6) / COMPLETE_MARKER).unlink()  # no trainer state at all
    assert resumable_checkpoint(run, KEY) == str(run / "checkpoint-2")
    with caplog.at_level(logging.WARNING, logger="syncse.train.rundir"):
        prepare_checkpoint_dir(run, KEY, fresh=False)
    assert "removing checkpoint-4: a kill left it incomplete" in caplog.text
    assert "removing checkpoint-6: a kill left it incomplete" in caplog.text
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2"]
    assert [row["step"] for row in read_log(run / LOG_FILE)] == ["2", "4"]  # the log of record is kept


def test_the_newest_complete_checkpoint_is_resumed(tmp_path: Path) -> None:
    run = stored_run(tmp_path / "ckpt")
    for step in (2, 10, 4):  # by step, not by name: checkpoint-10 sorts before checkpoint-2 as text
        checkpoint(run, step)
    checkpoint(run, 12, complete=False)
    assert resumable_checkpoint(run, KEY) == str(run / "checkpoint-10")


def test_a_checkpoint_of_another_key_is_not_resumed_and_the_changed_keys_are_named(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = stored_run(tmp_path / "ckpt")
    checkpoint(run, 2)
    other = {**KEY, "lr": 1e-3, "code": {"sources_sha256": "5ca1e"}}
    with caplog.at_level(logging.WARNING, logger="syncse.train.rundir"):
        assert resumable_checkpoint(run, other) is None
    assert f"checkpoints in {run} come from another code, lr: starting over" in caplog.text
    prepare_checkpoint_dir(run, other, fresh=True)
    assert not list(run.glob("checkpoint-*")) and not (run / LOG_FILE).exists()
    assert json.loads((run / CONFIG_FILE).read_text()) == other


def test_no_run_folder_or_no_stored_key_means_a_fresh_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert resumable_checkpoint(tmp_path / "absent", KEY) is None
    checkpoint(tmp_path / "unkeyed", 2)
    with caplog.at_level(logging.WARNING, logger="syncse.train.rundir"):
        assert resumable_checkpoint(tmp_path / "unkeyed", KEY) is None
    assert f"have no {CONFIG_FILE}: starting over" in caplog.text


def test_a_finished_run_is_reused_only_under_its_key(tmp_path: Path) -> None:
    run = stored_run(tmp_path / "ckpt")
    assert finished_run(run, KEY) is None  # not finished yet: no result recorded
    record_finished(run, RESULT)
    assert finished_run(run, KEY) == RESULT
    assert finished_run(run, {**KEY, "seed": 8}) is None  # another seed is another run
    assert finished_run(run, {**KEY, "code": {"sources_sha256": "5ca1e"}}) is None  # other code: train afresh
    publish(run, tmp_path / "model", tmp_path / "log.csv")
    assert (tmp_path / "model" / "content.txt").read_text() == "best model"
    assert (tmp_path / "log.csv").read_text() == (run / LOG_FILE).read_text()


def test_a_finished_run_missing_its_model_is_not_reused_and_a_cut_swap_is_recovered(tmp_path: Path) -> None:
    run = stored_run(tmp_path / "ckpt")
    record_finished(run, RESULT)
    (run / BEST_DIR).rename(run / f".{BEST_DIR}.old")  # a kill cut the swap of a new best model
    assert finished_run(run, KEY) == RESULT  # the old best model is put back first
    assert (run / BEST_DIR / DEV_FILE).is_file()
    (run / LOG_FILE).unlink()
    assert finished_run(run, KEY) is None  # no log of record to publish: train again
