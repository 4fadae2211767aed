"""The scale study's recipe grid, from its DVC experiments, banked so that it can span sessions: per size, each
run's recipe and the mean over variants of its points' selected dev avg (STS-B dev + SICK-R trial), the kept
recipe in bold (test scores are never read).

    python scripts/scale_grid.py --queue --lr 1e-4 3e-5 --epochs 1 2   # queue each recipe and size not yet banked
    dvc queue start -j 1                                              # then, once the queue has run (or is stopped):
    python scripts/scale_grid.py --num 20                             # bank the finished runs, show the grid

A queued run trains one size (the four variants' points at N, one seed) with one recipe. Finished runs are read
from `dvc exp show --json` (`syncse.scale_report.grid_runs`, which refuses while any experiment is queued or
running) and added to the bank (`--bank`, committed with the study): the experiments themselves live in one
machine's repository. Only runs whose inputs (code, data, triplets and params other than the recipe:
`syncse.scale_report.grid_inputs`) are HEAD's compete; the choice is `syncse.scale_report.recipe_grid`'s. Write
each size's kept recipe into `profiles.scale.scale.sizes` by hand: the recipe in params.yaml is the one place it lives.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

import pandas as pd

from syncse.config import load_params
from syncse.scale import point_name, sizes
from syncse.scale_report import STUDY_PIPELINE, bank_grid, grid_inputs, grid_markdown, grid_runs, recipe_grid

logger = logging.getLogger("scale_grid")
SIZES = "profiles.scale.scale.sizes"


def dvc(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "dvc", *args], check=True, capture_output=True, text=True).stdout


def current_grid(num: int, bank: Path, study_sizes: list[int]) -> pd.DataFrame:
    """The grid of HEAD's inputs: the finished experiments of the last `num` commits banked into `bank`, then
    every banked run whose inputs are HEAD's; the others are named and left out."""
    try:
        live = grid_runs(json.loads(dvc("exp", "show", "--json", "--num", str(num))), study_sizes)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    runs = bank_grid(bank, [{**run, "inputs": grid_inputs(run["rev"])} for run in live])
    head = grid_inputs("HEAD")
    for run in runs:
        if run["inputs"] != head:
            logger.warning("grid: run %s (%s) trained on other inputs than HEAD's (code, data, triplets or params): "
                           "left out", run["name"], run["rev"][:7])
    return recipe_grid([run for run in runs if run["inputs"] == head], study_sizes)


def queue_missing(grid: pd.DataFrame, variants: list[str], study_sizes: list[int], lrs: list[float], epochs: list[float]) -> int:
    """Queue one experiment per size and recipe (lr x epochs) that `grid` has no complete run of (`recipe_grid`: a
    point of every variant any run has there): that size's points only, one seed. Returns how many were queued."""
    most = grid.groupby("size").points.max()
    done = {(row.size, float(row.lr), float(row.epochs)) for row in grid.itertuples() if row.points == most[row.size]}
    queued = 0
    for size in study_sizes:
        for lr in lrs:
            for ep in epochs:
                if (size, lr, ep) in done:
                    continue
                targets = [f"{STUDY_PIPELINE}:train@{point_name(v, size)}" for v in variants]
                dvc("exp", "run", "--queue", *targets, "-S", "profiles.scale.train.seeds=[42]",
                    "-S", f"{SIZES}.{size}.lr={lr}", "-S", f"{SIZES}.{size}.epochs={ep}")
                print(f"queued N={size:,} lr={lr:g} epochs={ep:g}")
                queued += 1
    return queued


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=20, help="experiments of the last N commits")
    parser.add_argument("--bank", default="studies/scale/grid.json", help="the grid's bank (commit it)")
    parser.add_argument("--out", default=None, help="write the grid as JSON here")
    parser.add_argument("--queue", action="store_true", help="queue each recipe (--lr x --epochs) and size not yet in the grid")
    parser.add_argument("--lr", type=float, nargs="+", default=[1e-4, 3e-5], help="the grid's learning rates")
    parser.add_argument("--epochs", type=float, nargs="+", default=[1.0, 2.0], help="the grid's epochs")
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="queue these sizes only (default: every size of the study), e.g. one a session can finish")
    args = parser.parse_args()
    params = load_params("params.yaml", "scale")
    study_sizes = sizes(params.scale)
    if unknown := set(args.sizes or []) - set(study_sizes):
        parser.error(f"--sizes {sorted(unknown)}: not a size of the study ({study_sizes})")
    grid = current_grid(args.num, Path(args.bank), study_sizes)
    if args.queue:
        queued = queue_missing(grid, list(params.train.variants), args.sizes or study_sizes, args.lr, args.epochs)
        print(f"{queued} experiment(s) queued: `dvc queue start -j 1`, then this script again without --queue")
        return
    print(grid_markdown(grid))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(grid.to_dict(orient="records"), indent=1) + "\n")
    chosen = set(grid[grid.kept]["size"])
    if missing := [n for n in study_sizes if n not in chosen]:
        raise SystemExit(f"no recipe with a point of every variant yet at N = {', '.join(f'{n:,}' for n in missing)}: "
                         "queue them (--queue), run the queue, then read the grid again")


if __name__ == "__main__":
    main()
