"""Contrastive training of the variants, one concern per module.

From the bottom up (a module imports only modules listed before it):
- `rows`: what a variant trains on (`variant_rows`, `training_rows`, `rows_by_seed`, `select_rows`; at most `pool_size`), as a dataset
  (`to_dataset`; rows without a negative beside rows with one: `missing_negatives`), and the rows'
  digest in the training key.
- `rundir`: the run folder (`checkpoint_dir`): checkpoints, the best model, the log of record,
  atomic writes, and the key under which a finished run is reused and an interrupted one resumed.
- `selection`: dev scoring (STS-B dev and SICK-R trial, never a test set) and keeping the best model.
- `trainer`: the model, the loss and sentence-transformers' trainer; `train` runs it all.

Resumption survives `dvc repro` and a kill -9 (`rundir`); a run under changed code trains afresh:
the training key holds the fingerprint of this whole package and what it imports
(`syncse.provenance.code_fingerprint("syncse.train")`).

Seeds: a stage trains its variant once per seed in `train.seeds`, each in its own
`<models>/<variant>/seed-<s>` and `<checkpoints>/<variant>/seed-<s>` (`syncse.seeds`), on the same
rows (drawn with the top-level `seed`; with `train.seed_draws_rows` each seed draws its own);
an interrupted stage resumes the seed it was in.

Every public name is importable from `syncse.train` itself.
"""

from syncse.train.rows import (
    DATA_SOURCES,
    OWN_DATA,
    missing_negatives,
    negative_column,
    pool_size,
    rows_by_seed,
    rows_digest,
    select_rows,
    to_dataset,
    training_rows,
    variant_rows,
)
from syncse.train.rundir import (
    BEST_DIR,
    COMPLETE_MARKER,
    CONFIG_FILE,
    DEV_FILE,
    LOG_FIELDS,
    LOG_FILE,
    LOSS_STATE_FILE,
    RESULT_FILE,
    finished_run,
    prepare_checkpoint_dir,
    publish,
    read_json,
    read_log,
    record_finished,
    recover_dir,
    replace_dir,
    resumable_checkpoint,
    save_model,
    step_of,
    write_log,
    write_seed_logs,
)
from syncse.train.selection import DevEvaluator, DevSettings, SelectionCallback, at_length
from syncse.train.trainer import (
    BATCH_SAMPLERS,
    TrainResult,
    build_loss,
    build_model,
    masked_share,
    reference_embeddings,
    resolve_precision,
    train,
    training_args,
)

__all__ = [
    "BATCH_SAMPLERS", "BEST_DIR", "COMPLETE_MARKER", "CONFIG_FILE", "DATA_SOURCES", "DEV_FILE", "LOG_FIELDS",
    "LOG_FILE", "LOSS_STATE_FILE", "OWN_DATA", "RESULT_FILE", "DevEvaluator", "DevSettings", "SelectionCallback",
    "TrainResult", "at_length", "build_loss", "build_model", "finished_run", "masked_share", "missing_negatives",
    "negative_column", "pool_size", "prepare_checkpoint_dir", "publish", "read_json", "read_log", "record_finished", "recover_dir",
    "replace_dir", "reference_embeddings", "resolve_precision", "resumable_checkpoint", "rows_by_seed", "rows_digest",
    "save_model", "select_rows", "step_of", "to_dataset", "train", "training_args", "training_rows", "variant_rows",
    "write_log", "write_seed_logs",
]
