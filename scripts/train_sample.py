"""Train and score one variant on a seeded sample of a triplet file, outside the DVC graph.

The ablation behind README "Quality controls": SynCSE-partial *without* the margin filter at the
filtered set's row count, every other setting from the params' profile, so that the filter's
effect on quality is read apart from its effect on quantity:

    python scripts/train_sample.py results/study-no-controls/artifacts/synth/partial.jsonl 507 /tmp/partial507 --profile study

With `--params`, a copy of params.yaml with one control changed (e.g. `false_negative_threshold: null`)
gives that control's ablation on the same rows.

Prints (and writes to OUT/result.json) the rows, the selected checkpoint's dev scores and the
STS test scores, measured as the evaluation stage measures them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from syncse.config import load_params
from syncse.data import read_triplets, write_json
from syncse.encoders import load_encoder
from syncse.evaluate import DEV_TASKS, CachedEncoder, encode_fn_for, evaluate_sts
from syncse.train import DevSettings, select_rows, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("triplets", help="a triplet JSONL (e.g. a banked synthesized set)")
    parser.add_argument("rows", type=int, help="rows to sample with the params' top-level seed (0: all)")
    parser.add_argument("out", help="folder for the model, its checkpoints and result.json")
    parser.add_argument("--variant", default="partial", help="whose train.variants overlay applies")
    parser.add_argument("--params", default="params.yaml", help="the params file (e.g. a copy with one control off)")
    parser.add_argument("--profile", default=None, help="params profile (default: the file's own)")
    parser.add_argument("--seed", type=int, default=None, help="training seed (default: the first of train.seeds)")
    args = parser.parse_args()
    params = load_params(args.params, profile=args.profile)
    cfg = params.train.for_variant(args.variant)
    seed = cfg.seeds[0] if args.seed is None else args.seed
    rows = select_rows(read_triplets(args.triplets), args.rows, params.seed)
    out = Path(args.out)
    dev = DevSettings(params.evaluate.max_seq_length, params.evaluate.precision)
    result = train(cfg, rows, out / "model", data_root=params.data.root, checkpoint_dir=out / "checkpoints",
                   seed=seed, dev=dev)
    model = load_encoder(str(out / "model"), max_seq_length=params.evaluate.max_seq_length)
    encoder = CachedEncoder(encode_fn_for(model, params.evaluate.batch_size, params.evaluate.precision), out.name)
    scores = {"rows": len(rows), "seed": seed, "selected": result.best,
              "sts": evaluate_sts(encoder, params.data.root), "dev": evaluate_sts(encoder, params.data.root, DEV_TASKS)}
    write_json(out / "result.json", scores)
    print(json.dumps(scores))


if __name__ == "__main__":
    main()
