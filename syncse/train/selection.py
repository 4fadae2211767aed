"""Dev scoring and model selection, during training as in the evaluation stage.

Every `eval_steps` the model is scored on the development sets: the mean of STS-B dev and SICK-R
trial Spearman (the paper's rule), or STS-B dev alone (`train.select_on`); test sets are never read
here. `SelectionCallback` appends a row to the CSV log (step, mean training loss, dev scores) and
keeps the best model so far in the run folder (`syncse.train.rundir`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformer
from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from syncse.config import SELECTIONS
from syncse.train.rundir import BEST_DIR, DEV_FILE, LOG_FILE, read_json, save_model, write_log

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DevSettings:
    """How dev scores are computed, during training as in the evaluation stage (so they agree):
    sentences cut at `max_seq_length` tokens (SimCSE: never cut; 128 covers the dev sets'
    sentences) and encoded at `precision` (`syncse.evaluate.resolve_precision`)."""

    max_seq_length: int = 128
    precision: str = "fp32"
    batch_size: int = 64


class DevEvaluator(BaseEvaluator):
    """STS-B dev and SICK-R trial Spearman x100 and their mean; `select_on` names the one selected on.

    Uses `syncse.evaluate.dev_scores`; evaluates `eval_model` (the model without a train-only
    head) when given, at the evaluation length, not the training one.
    """

    def __init__(self, data_root: str | Path, eval_model: SentenceTransformer | None = None,
                 settings: DevSettings = DevSettings(), select_on: str = "stsb+sickr"):
        super().__init__()
        self.data_root = str(data_root)
        self.eval_model = eval_model
        self.settings = settings
        self.primary_metric = SELECTIONS[select_on]

    def __call__(self, model: Any, output_path: str | None = None, epoch: float = -1, steps: int = -1) -> dict[str, float]:
        """Dev scores `{stsb_dev, sickr_dev, avg}` of the model being trained."""
        from syncse.evaluate import dev_scores  # mteb is heavy: import when first needed

        started = time.perf_counter()
        scored = self.eval_model or model
        with at_length(scored, self.settings.max_seq_length):
            scores = dev_scores(scored, self.data_root, self.settings.batch_size, self.settings.precision)
        logger.info("step %s dev %s (%.1f s)", steps, scores, time.perf_counter() - started)
        return scores


@contextlib.contextmanager
def at_length(model: SentenceTransformer, max_seq_length: int) -> Iterator[None]:
    """Temporarily encode at `max_seq_length` tokens (training runs at its own, shorter length)."""
    trained = model.max_seq_length
    model.max_seq_length = max_seq_length
    try:
        yield
    finally:
        model.max_seq_length = trained


class SelectionCallback(TrainerCallback):
    """After each evaluation: log a row, save the model if its dev score (`select`: `avg` or
    `stsb_dev`) is the best so far, at the evaluation length `eval_length`.

    The log is kept in `checkpoint_dir` (it survives DVC's clean-up) and copied to `log_path`;
    `rows` are the rows of the run being resumed, up to its checkpoint.
    """

    def __init__(self, export_model: SentenceTransformer, checkpoint_dir: Path, log_path: Path | None,
                 config: dict[str, Any], rows: list[dict[str, Any]], select: str, eval_length: int,
                 eval_last_step: bool = True):
        self.export_model = export_model
        self.eval_last_step = eval_last_step
        self.select = select
        self.eval_length = eval_length
        self.best_dir = checkpoint_dir / BEST_DIR
        self.log_paths = (checkpoint_dir / LOG_FILE, *([log_path] if log_path else []))
        self.config = config
        self.rows = rows
        self.best = read_json(self.best_dir / DEV_FILE).get(select, -math.inf)
        self.window_loss: float | None = None
        self.started = time.perf_counter()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        """Evaluate and checkpoint at the last step too (`eval_last_step`), or at multiples of `eval_steps`
        only, as SimCSE's trainer (transformers >= 5 adds a last evaluation of its own: undone here)."""
        if state.global_step < state.max_steps:
            return
        if self.eval_last_step:
            control.should_log = control.should_evaluate = control.should_save = True
        elif state.global_step % args.eval_steps:
            control.should_evaluate = False

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: dict | None = None, **kwargs: Any) -> None:
        """Remember the mean training loss of the last window."""
        if logs and "loss" in logs:
            self.window_loss = float(logs["loss"])

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, metrics: dict | None = None, **kwargs: Any) -> None:
        """Log the row; keep the model if it beats the best dev average."""
        if not state.is_world_process_zero or not metrics:
            return
        scores = {k: float(metrics[f"eval_{k}"]) for k in ("stsb_dev", "sickr_dev", "avg")}
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "loss": self.window_loss, **scores,
               "learning_rate": _last(state, "learning_rate"), "elapsed_s": round(time.perf_counter() - self.started, 1)}
        self.rows.append(row)
        for path in self.log_paths:
            write_log(path, self.rows)
        if scores[self.select] > self.best:
            self.best = scores[self.select]
            with at_length(self.export_model, self.eval_length):  # the saved model encodes as it was scored
                save_model(self.export_model, self.best_dir, self.config, {**scores, "step": state.global_step})
            logger.info("new best dev %s %.2f at step %d", self.select, self.best, state.global_step)


def _last(state: TrainerState, key: str) -> float | None:
    values = [entry[key] for entry in state.log_history if key in entry]
    return values[-1] if values else None
