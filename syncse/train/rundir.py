"""The run folder (`checkpoint_dir`): checkpoints, the best model, the log of record, and its key.

Resumption survives `dvc repro`: DVC deletes a stage's outputs before running it, so everything a
resumed run needs (checkpoints, the best model so far, the log of record) lives in the persistent
`checkpoint_dir`, and the stage's log is a copy of it. Every file and directory is written beside
its target and renamed into place, so a kill -9 leaves the old version or the new one. A run that
finished leaves `RESULT_FILE` there: run again on the same key, it costs a copy.

The key of both (reuse and resume) is the run's resolved config, stored as `CONFIG_FILE`: in
training, the config, the seed, the rows' sha256, the dev settings and the code
(`syncse.provenance.code_fingerprint`), so a run under changed code trains afresh. This module only
compares keys: it knows nothing of what they hold, nor of training.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformer

from syncse.data import atomic_writer, write_json

logger = logging.getLogger(__name__)

LOG_FIELDS = ("step", "epoch", "loss", "stsb_dev", "sickr_dev", "avg", "learning_rate", "elapsed_s")
CONFIG_FILE = "syncse_train_config.json"  # the resolved config, beside every model and checkpoint
DEV_FILE = "dev_scores.json"
LOSS_STATE_FILE = "loss_state.pt"  # parameters owned by the loss (the MLM head), for resumption
LOG_FILE = "train_log.csv"  # the log of record, kept with the checkpoints; the stage's log is its copy
COMPLETE_MARKER = "trainer_state.json"  # written last into a checkpoint: without it the checkpoint is torn
RESULT_FILE = "train_result.json"  # written into checkpoint_dir when a run has finished: a rerun reuses it
BEST_DIR = "best"  # the best model so far, in checkpoint_dir


# --------------------------------------------------------------------------- files and directories


def write_log(path: Path, rows: list[dict[str, Any]], fields: tuple[str, ...] = LOG_FIELDS) -> None:
    """Write the whole CSV log atomically (a few hundred rows at most: rewriting is cheap)."""
    with atomic_writer(path) as out:
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def read_log(path: Path, until_step: float = math.inf) -> list[dict[str, Any]]:
    """Rows of the log at `path` up to `until_step` (a resumed run writes the later ones again; default: all)."""
    if not path.is_file():
        return []
    with path.open(newline="") as lines:
        return [r for r in csv.DictReader(lines) if int(r["step"]) <= until_step]


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object at `path`, or `{}` when there is no file (no best model, no finished run yet)."""
    return json.loads(path.read_text()) if path.is_file() else {}


def save_model(model: SentenceTransformer, path: Path, config: dict[str, Any], scores: dict[str, Any]) -> None:
    """A SentenceTransformer directory plus the resolved config and dev scores, written atomically."""

    def write(where: Path) -> None:
        model.save(str(where))
        write_json(where / CONFIG_FILE, config)
        write_json(where / DEV_FILE, scores)

    replace_dir(path, write)


def replace_dir(path: Path, write: Callable[[Path], None]) -> None:
    """Have `write` fill a new directory beside `path`, then swap it in: a kill at any point leaves
    the old directory or the new one (`recover_dir` puts the old one back after a kill mid-swap)."""
    new, old = _sibling(path, "new"), _sibling(path, "old")
    shutil.rmtree(new, ignore_errors=True)
    recover_dir(path)
    write(new)
    if path.exists():
        path.rename(old)
    new.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def recover_dir(path: Path) -> None:
    """Undo a swap that a kill interrupted between its two renames (the old directory returns)."""
    old = _sibling(path, "old")
    if old.exists() and not path.exists():
        old.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def _sibling(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{kind}")


def write_seed_logs(path: str | Path, logs: dict[int, Path]) -> None:
    """The logs of record of a variant's seeds (`seed -> train_log.csv`) as one CSV with a `seed` column."""
    rows = [{"seed": seed, **row} for seed, log in logs.items() for row in read_log(log)]
    write_log(Path(path), rows, ("seed", *LOG_FIELDS))


# --------------------------------------------------------------------------- reuse and resume


def finished_run(checkpoint_dir: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The stored result (`RESULT_FILE`) of a run of this very key that finished in `checkpoint_dir`,
    with its best model and log of record still there; None otherwise."""
    recover_dir(checkpoint_dir / BEST_DIR)
    stored = read_json(checkpoint_dir / RESULT_FILE)
    if not stored or _changed_keys(checkpoint_dir, config):
        return None
    if not (checkpoint_dir / BEST_DIR / DEV_FILE).is_file() or not (checkpoint_dir / LOG_FILE).is_file():
        return None
    return stored


def record_finished(checkpoint_dir: Path, result: dict[str, Any]) -> None:
    """Mark the run in `checkpoint_dir` finished with `result`: a rerun of its key reuses it (`finished_run`)."""
    write_json(checkpoint_dir / RESULT_FILE, result)


def publish(checkpoint_dir: Path, output_dir: Path, log_path: Path | None) -> None:
    """Copy the best model to `output_dir` and the log of record to `log_path` (when given)."""
    replace_dir(output_dir, lambda where: shutil.copytree(checkpoint_dir / BEST_DIR, where))
    if log_path:
        write_log(log_path, read_log(checkpoint_dir / LOG_FILE))


def resumable_checkpoint(checkpoint_dir: Path, config: dict[str, Any]) -> str | None:
    """The newest complete checkpoint of this very key (config, rows and code), or None (start over)."""
    if not checkpoint_dir.is_dir():
        return None
    if not (checkpoint_dir / CONFIG_FILE).is_file():
        logger.warning("checkpoints in %s have no %s: starting over", checkpoint_dir, CONFIG_FILE)
        return None
    changed = _changed_keys(checkpoint_dir, config)
    if changed:
        logger.warning("checkpoints in %s come from another %s: starting over", checkpoint_dir, ", ".join(changed))
        return None
    if not (checkpoint_dir / LOG_FILE).is_file():
        logger.warning("checkpoints in %s have no %s: starting over", checkpoint_dir, LOG_FILE)
        return None
    complete = [path for path in checkpoint_dir.glob("checkpoint-*") if _is_complete(path)]
    return str(max(complete, key=step_of)) if complete else None


def _changed_keys(checkpoint_dir: Path, config: dict[str, Any]) -> list[str]:
    """The keys (`lr`, `rows_sha256`, `code`, ...) whose value differs from the run kept in `checkpoint_dir`."""
    stored, wanted = read_json(checkpoint_dir / CONFIG_FILE), json.loads(json.dumps(config))
    return sorted(key for key in stored.keys() | wanted.keys() if stored.get(key) != wanted.get(key))


def _is_complete(checkpoint: Path) -> bool:
    """Whether a kill left this checkpoint whole: its trainer state, written last, parses."""
    try:
        json.loads((checkpoint / COMPLETE_MARKER).read_text())
    except (OSError, ValueError):
        return False
    return True


def step_of(checkpoint: str | Path) -> int:
    """The training step a checkpoint folder was saved at (`checkpoint-40` -> 40)."""
    return int(Path(checkpoint).name.split("-")[-1])


def prepare_checkpoint_dir(checkpoint_dir: Path, config: dict[str, Any], fresh: bool) -> None:
    """Start over (`fresh`) or keep the resumable state, dropping torn checkpoints and swaps; store the key."""
    if fresh:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    for torn in (path for path in checkpoint_dir.glob("checkpoint-*") if not _is_complete(path)):
        logger.warning("removing %s: a kill left it incomplete", torn.name)
        shutil.rmtree(torn)
    recover_dir(checkpoint_dir / BEST_DIR)
    write_json(checkpoint_dir / CONFIG_FILE, config)
